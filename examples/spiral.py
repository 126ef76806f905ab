"""Learn the dynamics of a cubic spiral with a Neural ODE (the classic demo of Chen et al.).

The true system is the two-dimensional cubic oscillator, written for row vectors ``y`` (1, 2)

    dy/dt = (y ** 3) @ A,     A = [[-0.1, 2.0], [-2.0, -0.1]],     y(0) = [2, 0],

sampled at ``t = linspace(0, 25, 1000)``. The true trajectory is computed with pyode's own
:func:`pyode.odeint` (dopri5, rtol 1e-10) on :class:`CubicSpiral`, a user-written field that
implements the whole vector-field protocol of the README (``__call__``, ``params``, ``jvp``,
``vjp``).

The model is ``f = Linear(50 → 2) ∘ tanh ∘ Linear(2 → 50) ∘ cube``
(``nn.MLP([2, 50, 2], activation="tanh", input_activation="cube")``). Each iteration draws 20
windows of 10 consecutive points, integrates the model from the first point of each window
with :func:`pyode.odeint_adjoint` (every window is its own initial value problem), takes the
mean absolute error to the true points (:func:`pyode.losses.l1`) and steps Adam with the
adjoint gradient. The learning rate follows a cosine decay from ``--lr`` to 0; without it the
full-trajectory error keeps jumping between iterates at the end of training.

Usage::

    python examples/spiral.py                      # 3000 iterations, writes out/spiral.png
    python examples/spiral.py --iters 500 --seed 1 --out /tmp/spiral --test-freq 50

Every ``--test-freq`` iterations the script logs the iteration, the loss of the last batch,
the mean absolute error of the whole trajectory integrated from ``y(0)`` (the "full loss" of
torchdiffeq's demo) and the elapsed time. At the end it saves a figure with x(t) and y(t),
the phase portrait and the learned vector field, and prints the file's path.

References
----------
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366 (Sec. 2; Algorithm 1 for the adjoint).
The experiment follows ``examples/ode_demo.py`` of torchdiffeq
(https://github.com/rtqichen/torchdiffeq): same system, times, window sampling and model.
"""
import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np

from pyode import losses, nn, odeint, odeint_adjoint, optim

LOG = logging.getLogger("spiral")

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0_TRUE = np.array([2.0, 0.0])
T_END = 25.0
N_TIMES = 1000
BATCH_SIZE = 20          # windows per iteration
BATCH_TIME = 10          # consecutive points per window
RTOL, ATOL = 1e-7, 1e-9  # model solves (forward and adjoint), the torchdiffeq defaults
DEFAULT_LR = 3e-3        # initial Adam learning rate (cosine-decayed to 0 in main)


class CubicSpiral:
    """The true field ``f(t, y) = (y ** 3) @ A``, a worked example of the field protocol.

    Parameters
    ----------
    A : ndarray, shape (2, 2)

    Notes
    -----
    Per sample, ``∂f/∂y = diag(3 y²) A`` acting on row vectors, so
    ``jvp(u) = (3 y² ⊙ u) @ A`` and ``vjp(v) = 3 y² ⊙ (v @ Aᵀ)``. The field has no parameters
    and does not depend on ``t``.
    """

    def __init__(self, A):
        self.A = np.asarray(A, dtype=np.float64)
        self.params = np.zeros(0)

    def __call__(self, t, y):
        """``(y ** 3) @ A``; ``y`` of shape (2,) or (B, 2)."""
        return (y ** 3) @ self.A

    def jvp(self, t, y, u):
        """``∂f/∂y · u = (3 y² ⊙ u) @ A``, shape of ``y``."""
        return (3.0 * y * y * u) @ self.A

    def vjp(self, t, y, v):
        """``(vᵀ∂f/∂y, vᵀ∂f/∂θ, vᵀ∂f/∂t) = (3 y² ⊙ (v @ Aᵀ), empty (0,), 0)``."""
        g_t = 0.0 if np.ndim(t) == 0 else np.zeros(np.shape(t))
        return 3.0 * y * y * (v @ self.A.T), np.zeros(0), g_t


def make_data():
    """Return ``t`` (1000,) and the true trajectory ``true_y`` (1000, 2)."""
    t = np.linspace(0.0, T_END, N_TIMES)
    true_y = odeint(CubicSpiral(A_TRUE), Y0_TRUE, t, method="dopri5", rtol=1e-10, atol=1e-12)
    return t, true_y


def get_batch(rng, t, true_y):
    """Draw ``BATCH_SIZE`` windows of ``BATCH_TIME`` consecutive points.

    Returns
    -------
    batch_y0 : ndarray, shape (20, 2)
        First point of each window.
    batch_t : ndarray, shape (10,)
        ``t[:10]``: the field is autonomous, so every window can start at t = 0.
    batch_y : ndarray, shape (10, 20, 2)
        ``batch_y[k, b] = true_y[s_b + k]``.
    """
    starts = rng.choice(len(t) - BATCH_TIME, size=BATCH_SIZE, replace=False)
    batch_y = true_y[starts[None, :] + np.arange(BATCH_TIME)[:, None]]
    return true_y[starts], t[:BATCH_TIME], batch_y


def train_step(f, opt, batch_y0, batch_t, batch_y):
    """One iteration: forward solve, L1 loss, adjoint gradient, optimiser step.

    Returns
    -------
    loss : float
    nfev_backward : float
        Mean field evaluations per window of the adjoint (backward) solve.
    """
    pred, vjp = odeint_adjoint(f, batch_y0, batch_t, method="dopri5", rtol=RTOL, atol=ATOL)
    loss, dloss = losses.l1(pred, batch_y)
    grads = vjp(dloss)
    opt.step(grads.params)
    return loss, float(np.mean(grads.info.nfev))


def full_loss(f, t, true_y):
    """Integrate the model from ``y(0)`` over all of ``t``; return (prediction, L1 error)."""
    pred = odeint(f, true_y[0], t, method="dopri5", rtol=RTOL, atol=ATOL)
    return pred, losses.l1(pred, true_y)[0]


def plot(path, f, t, true_y, pred_y):
    """Save x(t), y(t), the phase portrait and the learned vector field to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_p, ax_v) = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    ax_t.plot(t, true_y[:, 0], "g-", lw=1.5, label="x true")
    ax_t.plot(t, pred_y[:, 0], "b--", lw=1.2, label="x learned")
    ax_t.plot(t, true_y[:, 1], color="tab:olive", ls="-", lw=1.5, label="y true")
    ax_t.plot(t, pred_y[:, 1], color="tab:purple", ls="--", lw=1.2, label="y learned")
    ax_t.set(title="Trajectories", xlabel="t", ylabel="x, y", xlim=(t[0], t[-1]))
    ax_t.legend(loc="lower right", fontsize=8, ncol=2)

    ax_p.plot(true_y[:, 0], true_y[:, 1], "g-", lw=1.5, label="true")
    ax_p.plot(pred_y[:, 0], pred_y[:, 1], "b--", lw=1.2, label="learned")
    ax_p.set(title="Phase portrait", xlabel="x", ylabel="y", xlim=(-2.2, 2.2),
             ylim=(-2.2, 2.2), aspect="equal")
    ax_p.legend(loc="lower right", fontsize=8)

    grid = np.linspace(-2.0, 2.0, 21)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    dydt = f(0.0, points)
    # Normalise the arrows: the field grows like |y|³, so raw arrows would hide the centre.
    speed = np.linalg.norm(dydt, axis=1, keepdims=True)
    dydt = dydt / np.maximum(speed, 1e-12)
    ax_v.quiver(gx, gy, dydt[:, 0].reshape(gx.shape), dydt[:, 1].reshape(gx.shape),
                speed.reshape(gx.shape), cmap="viridis", pivot="mid")
    ax_v.plot(true_y[:, 0], true_y[:, 1], "g-", lw=0.8, alpha=0.6)
    ax_v.set(title="Learned vector field (direction; colour = speed)", xlabel="x", ylabel="y",
             xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), aspect="equal")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=3000,
                        help="training iterations (default 3000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the model initialisation and the batches (default 0)")
    parser.add_argument("--out", type=Path, default=Path("out"),
                        help="output directory, created if missing (default out/)")
    parser.add_argument("--test-freq", type=int, default=250,
                        help="log progress every this many iterations (default 250)")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR,
                        help=f"initial Adam learning rate, cosine-decayed to 0 "
                             f"(default {DEFAULT_LR})")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.test_freq < 1:
        parser.error("--iters and --test-freq must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    t, true_y = make_data()
    f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=args.seed)
    opt = optim.Adam(f.params, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    LOG.info("spiral: %d iterations, batch %d windows x %d points, MLP 2-50-2 (%d params)",
             args.iters, BATCH_SIZE, BATCH_TIME, f.n_params)

    start = time.perf_counter()
    for it in range(1, args.iters + 1):
        opt.lr = args.lr * 0.5 * (1.0 + math.cos(math.pi * (it - 1) / args.iters))
        loss, nfev_b = train_step(f, opt, *get_batch(rng, t, true_y))
        if it % args.test_freq == 0 or it == args.iters:
            _, total = full_loss(f, t, true_y)
            LOG.info("iter %5d | batch loss %.4f | full loss %.4f | backward nfev %3.0f | "
                     "%5.1f s", it, loss, total, nfev_b, time.perf_counter() - start)

    pred_y, total = full_loss(f, t, true_y)
    path = args.out / "spiral.png"
    plot(path, f, t, true_y, pred_y)
    LOG.info("final full-trajectory loss (mean |pred - true|): %.4f", total)
    print(path)


if __name__ == "__main__":
    main()
