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
    python examples/spiral.py --resume out/spiral_checkpoint.npz     # after a Ctrl-C
    python examples/spiral.py --evaluate out/spiral_best.npz         # full loss of a saved model

Progress is a tqdm bar on a terminal (when tqdm is installed), log lines otherwise
(:func:`pyode.progress.progress`). Every ``--test-freq`` iterations the script reports the
iteration, the loss of the last batch, the mean absolute error of the whole trajectory
integrated from ``y(0)`` (the "full loss" of torchdiffeq's demo), the backward nfev and the
time, and keeps the model with the lowest full loss in ``OUT/spiral_best.npz``
(``f.save``; ``pyode.nn.load`` reads it). Every ``--save-every`` iterations it writes the
training state (model, Adam, iteration, batch generator, best loss) to
``OUT/spiral_checkpoint.npz``; ``--resume`` continues from it, bit-identically to a run that
was never interrupted; resumed into another ``--out``, it copies the best model there first.
On Ctrl-C or SIGTERM (:mod:`pyode.interrupt`; also a Ctrl-C that Numba swallowed, after that
iteration) it writes the checkpoint of the last completed iteration, then the figure of the
model so far (a figure that fails is named), says in one line how to resume and exits with
status 130; a second Ctrl-C waits until the files are written. A mistake on the command line
is one line and status 2 (``examples/_cli.py``). At the end it
writes the final model (``OUT/spiral_final.npz``), the checkpoint and a figure with x(t) and
y(t), the phase portrait and the learned vector field, logs the final and the best full loss
(all digits: ``--evaluate`` on the saved file prints the same number) and prints the paths.

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
import sys
import time
from pathlib import Path

import numpy as np

import pyode
from pyode import interrupt, losses, nn, odeint, odeint_adjoint, optim
from pyode.progress import progress

if str(Path(__file__).resolve().parent) not in sys.path:    # _cli.py, beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

LOG = logging.getLogger("spiral")

A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0_TRUE = np.array([2.0, 0.0])
T_END = 25.0
N_TIMES = 1000
BATCH_SIZE = 20          # windows per iteration
BATCH_TIME = 10          # consecutive points per window
RTOL, ATOL = 1e-7, 1e-9  # model solves (forward and adjoint), the torchdiffeq defaults
DEFAULT_LR = 3e-3        # initial Adam learning rate (cosine-decayed to 0 in main)
DEFAULT_ITERS = 3000
DEFAULT_SEED = 0
DEFAULT_TEST_FREQ = 250
NAME = "spiral"          # prefix of the output files


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
    """The options, checked: every mistake ends the script with one line and status 2.

    Also settles ``args.out`` (not for ``--evaluate``): the directory given, the checkpoint's
    with ``--resume``, else ``out/``; created if missing and checked to be writable.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # Settings that fix the training run default to None: a fresh run fills in the defaults,
    # --resume the checkpoint's values (giving one explicitly overrides it).
    parser.add_argument("--iters", type=_cli.positive_int, default=None,
                        help=f"training iterations in all (default {DEFAULT_ITERS}; with "
                             "--resume, the checkpoint's)")
    parser.add_argument("--seed", type=_cli.nonnegative_int, default=None,
                        help=f"seed of the model initialisation and the batches (default "
                             f"{DEFAULT_SEED}; ignored with --resume)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory, created if missing (default out/; with "
                             "--resume, the checkpoint's directory)")
    parser.add_argument("--test-freq", type=_cli.positive_int, default=None,
                        help=f"evaluate the full loss, report and keep the best model every "
                             f"this many iterations (default {DEFAULT_TEST_FREQ}; with "
                             "--resume, the checkpoint's)")
    parser.add_argument("--save-every", type=_cli.positive_int, default=None,
                        help="write OUT/spiral_checkpoint.npz every this many iterations "
                             "(default: --test-freq; with --resume, the checkpoint's)")
    parser.add_argument("--lr", type=_cli.positive_float, default=None,
                        help=f"initial Adam learning rate, cosine-decayed to 0 "
                             f"(default {DEFAULT_LR}; with --resume, the checkpoint's)")
    parser.add_argument("--resume", type=Path, default=None, metavar="PATH",
                        help="continue the run saved in the checkpoint PATH")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="PATH",
                        help="print the full-trajectory loss of the model saved in PATH "
                             "(a model file or a checkpoint) and exit")
    args = parser.parse_args(argv)
    if args.resume is not None and args.evaluate is not None:
        parser.error("--resume and --evaluate exclude each other")
    if args.evaluate is not None:
        _cli.input_file(parser, args.evaluate, "--evaluate",
                        [f"{NAME}_best.npz", f"{NAME}_final.npz", f"{NAME}_checkpoint.npz"])
        return args
    if args.resume is not None:
        _cli.input_file(parser, args.resume, "--resume", [f"{NAME}_checkpoint.npz"])
    _cli.require_matplotlib(parser)
    if args.out is not None:
        args.out = _cli.output_dir(parser, args.out)
    elif args.resume is not None:
        args.out = _cli.output_dir(parser, args.resume.parent,
                                   default_note="the checkpoint's directory")
    else:
        args.out = _cli.output_dir(parser, Path("out"), default_note="the default")
    return args


#: What --evaluate takes, for its error messages.
EVALUATE_ACCEPTS = (f"a model file (OUT/{NAME}_best.npz or OUT/{NAME}_final.npz) or a training "
                    f"checkpoint (OUT/{NAME}_checkpoint.npz) written by examples/{NAME}.py")
#: What --resume takes.
RESUME_ACCEPTS = (f"the training checkpoint OUT/{NAME}_checkpoint.npz written by "
                  f"examples/{NAME}.py (a model file is for --evaluate)")


def load_model_file(path):
    """The field saved in ``path``: a model file (``f.save``) or a checkpoint's model.

    Raises
    ------
    pyode.SaveFormatError
        Neither kind of pyode file, or a checkpoint without a model.
    """
    try:
        return nn.load(path)
    except pyode.SaveFormatError as exc:
        if exc.found != "pyode.checkpoint":
            raise
    model = pyode.load_checkpoint(path).model
    if model is None:
        raise pyode.SaveFormatError(path, "a training checkpoint without a model")
    return model


class Run:
    """The training state: everything a checkpoint holds, and where the files go.

    Attributes
    ----------
    f : nn.MLP
    opt : optim.Adam
        Over ``f.params``.
    rng : numpy.random.Generator
        Draws the batches.
    it : int
        Completed iterations.
    iters, lr, seed
        The settings that fix the run (stored in the checkpoint).
    test_freq, save_every
        How often the full loss is evaluated and the checkpoint written (also stored, so
        that a resumed run keeps the best model the way the first part did).
    best_loss : float
        Lowest full loss evaluated so far (inf before the first evaluation).
    best_it : int
        Iteration of ``best_loss`` (0 before the first evaluation).
    """

    def __init__(self, f, opt, rng, it, iters, lr, seed, test_freq, save_every,
                 best_loss=math.inf, best_it=0):
        self.f, self.opt, self.rng, self.it = f, opt, rng, it
        self.iters, self.lr, self.seed = iters, lr, seed
        self.test_freq, self.save_every = test_freq, save_every
        self.best_loss, self.best_it = best_loss, best_it

    @classmethod
    def fresh(cls, args):
        iters = DEFAULT_ITERS if args.iters is None else args.iters
        lr = DEFAULT_LR if args.lr is None else args.lr
        seed = DEFAULT_SEED if args.seed is None else args.seed
        test_freq = args.test_freq or DEFAULT_TEST_FREQ
        f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=seed)
        return cls(f, optim.Adam(f.params, lr=lr), np.random.default_rng(seed), 0, iters,
                   lr, seed, test_freq, args.save_every or test_freq)

    @classmethod
    def resume(cls, args):
        """The run of the checkpoint ``args.resume``.

        Raises
        ------
        pyode.SaveFormatError, OSError
            The file is not a checkpoint of this script (or cannot be read).
        """
        ck = pyode.load_checkpoint(args.resume)
        extra = ck.extra
        needed = {"iters", "lr", "seed", "test_freq", "save_every", "best_loss", "best_it"}
        if (ck.model is None or ck.optimizer is None or ck.rng is None or ck.step is None
                or not needed <= set(extra)):
            raise pyode.SaveFormatError(
                args.resume, "a pyode checkpoint, but not one of examples/spiral.py (it needs "
                "the model, the optimizer, the generator and the run settings)")
        iters, lr = extra["iters"], extra["lr"]
        for flag, given, saved in (("--iters", args.iters, iters), ("--lr", args.lr, lr)):
            if given is not None and given != saved:
                LOG.warning("%s %s differs from the checkpoint's %s: the learning-rate "
                            "schedule changes, so the result will differ from an "
                            "uninterrupted run", flag, given, saved)
        if args.seed is not None:
            LOG.warning("--seed %d is ignored with --resume: the model and the batch generator "
                        "come from the checkpoint (seed %d)", args.seed, extra["seed"])
        iters = iters if args.iters is None else args.iters
        lr = lr if args.lr is None else args.lr
        if ck.step > iters:
            _cli.error(f"argument --iters: the checkpoint {args.resume} is at iteration "
                       f"{ck.step}, past --iters {iters}; pass a larger --iters")
        f = ck.model
        opt = optim.Adam(f.params, lr=lr)
        opt.load_state_dict(ck.optimizer)
        return cls(f, opt, ck.rng, ck.step, iters, lr, extra["seed"],
                   args.test_freq or extra["test_freq"], args.save_every or extra["save_every"],
                   extra["best_loss"], extra["best_it"])

    def carry_best(self, source, target):
        """Make ``target`` hold the best model of the checkpoint, which is ``source``.

        A run resumed into another directory copies the best file over, so the best of the
        whole run is in its output directory even if the resumed part never beats it. If the
        file is missing (the checkpoint was moved without it), the best is forgotten with a
        warning: the resumed part then keeps its own best, and the file reported at the end
        always exists.
        """
        if self.best_it == 0:            # no evaluation yet: no best file to carry
            return
        if not source.is_file():
            LOG.warning("the best model of iteration %d (full loss %r) should be in %s, which "
                        "does not exist: %s will hold the best model of the resumed "
                        "iterations only", self.best_it, self.best_loss, source, target)
            self.best_loss, self.best_it = math.inf, 0
        elif not _cli.same_file(source, target):
            _cli.copy_file(source, target)
            LOG.info("copied the best model so far (iteration %d) from %s to %s",
                     self.best_it, source, target)

    def snapshot(self):
        """Copies of the mutable state, for :meth:`restore` (cheap: ~800 floats)."""
        return (self.it, self.f.params.copy(), self.opt.state_dict(),
                self.rng.bit_generator.state, self.best_loss, self.best_it)

    def restore(self, snap):
        """Go back to a :meth:`snapshot` (undoes a half-done iteration)."""
        self.it, params, opt_state, rng_state, self.best_loss, self.best_it = snap
        self.f.params = params
        self.opt.load_state_dict(opt_state)
        self.rng.bit_generator.state = rng_state

    def save(self, path):
        pyode.save_checkpoint(path, model=self.f, optimizer=self.opt, step=self.it,
                              rng=self.rng,
                              extra={"iters": self.iters, "lr": self.lr, "seed": self.seed,
                                     "test_freq": self.test_freq,
                                     "save_every": self.save_every,
                                     "best_loss": self.best_loss, "best_it": self.best_it})


def main(argv=None, on_iteration=None):
    """Run the script; ``argv`` as on the command line (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
    on_iteration : callable, optional
        Called as ``on_iteration(it)`` after each completed iteration ``it`` (after its
        checkpoint, if one was due). A ``KeyboardInterrupt`` raised from it acts like Ctrl-C.

    Returns
    -------
    dict
        ``final_loss``, ``best_loss``, ``best_it`` and the paths written (``figure``,
        ``final``, ``best``, ``checkpoint``); for ``--evaluate``, ``{"loss": ...}``.

    Raises
    ------
    SystemExit
        Code 130 after a Ctrl-C or SIGTERM (the checkpoint and the figure are written first);
        code 2 for a mistake on the command line, or a file given that is not the right kind.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with interrupt.catch():
        if args.evaluate is not None:
            try:
                model = load_model_file(args.evaluate)
            except (pyode.SaveFormatError, OSError) as exc:
                _cli.file_error("--evaluate", args.evaluate, exc, EVALUATE_ACCEPTS)
            t, true_y = make_data()
            _, total = full_loss(model, t, true_y)
            LOG.info("full-trajectory loss (mean |pred - true|) of %s:", args.evaluate)
            print(repr(total))
            return {"loss": total}
        return train(args, on_iteration)


def _open_run(args, paths):
    """The run to train: fresh, or the checkpoint of ``--resume`` (its best model carried to
    ``paths["best"]``); a checkpoint that is not one of this script ends it (status 2)."""
    if args.resume is None:
        return Run.fresh(args)
    try:
        run = Run.resume(args)
    except (pyode.SaveFormatError, OSError) as exc:
        _cli.file_error("--resume", args.resume, exc, RESUME_ACCEPTS)
    run.carry_best(args.resume.parent / f"{NAME}_best.npz", paths["best"])
    return run


def train(args, on_iteration=None):
    """The training run of :func:`main` (inside :func:`pyode.interrupt.catch`)."""
    out = args.out
    paths = {"figure": out / f"{NAME}.png", "final": out / f"{NAME}_final.npz",
             "best": out / f"{NAME}_best.npz", "checkpoint": out / f"{NAME}_checkpoint.npz"}
    t, true_y = make_data()
    run = _open_run(args, paths)
    test_freq, save_every = run.test_freq, run.save_every
    f = run.f
    first_it = run.it
    LOG.info("spiral: %d iterations%s, batch %d windows x %d points, MLP 2-50-2 (%d params)",
             run.iters, f" from iteration {run.it}" if run.it else "", BATCH_SIZE, BATCH_TIME,
             f.n_params)

    last = run.snapshot()
    bar = progress(run.iters, desc="spiral", initial=run.it, log_every=test_freq)
    start = time.perf_counter()
    try:
        for it in range(run.it + 1, run.iters + 1):
            run.opt.lr = run.lr * 0.5 * (1.0 + math.cos(math.pi * (it - 1) / run.iters))
            loss, nfev_b = train_step(f, run.opt, *get_batch(run.rng, t, true_y))
            run.it = it
            postfix = {"batch loss": loss, "nfev": round(nfev_b)}
            if it % test_freq == 0 or it == run.iters:
                _, total = full_loss(f, t, true_y)
                if total < run.best_loss:
                    f.save(paths["best"])
                    run.best_loss, run.best_it = total, it
                postfix.update({"full loss": total, "best": run.best_loss})
                if bar.bar:     # log lines show these values already; keep them above a bar
                    bar.write(f"iter {it:5d} | batch loss {loss:.4f} | full loss {total:.4f} "
                              f"| backward nfev {nfev_b:3.0f} | "
                              f"{time.perf_counter() - start:5.1f} s")
            # The snapshot first: an interrupt during the save then goes back to this
            # iteration, and the handler writes the same checkpoint again.
            last = run.snapshot()
            if it % save_every == 0:
                run.save(paths["checkpoint"])
            bar.update(1, **postfix)
            if on_iteration is not None:
                on_iteration(it)
            interrupt.check()       # a Ctrl-C that a Numba callback swallowed stops here
    except KeyboardInterrupt:
        with interrupt.shielded():  # a second Ctrl-C waits until the files are written
            bar.close()
            run.restore(last)
            _stop(run, first_it, paths, lambda: plot(paths["figure"], f, t, true_y,
                                                     full_loss(f, t, true_y)[0]), args)
    finally:
        bar.close()

    with interrupt.shielded():
        pred_y, total = full_loss(f, t, true_y)
        if total < run.best_loss:   # only when no best is known (a resume without one)
            f.save(paths["best"])
            run.best_loss, run.best_it = total, run.it
        f.save(paths["final"])
        run.save(paths["checkpoint"])
        plot(paths["figure"], f, t, true_y, pred_y)
    LOG.info("final full-trajectory loss (mean |pred - true|): %.4f", total)
    LOG.info("best full-trajectory loss %r at iteration %d, saved in %s (python "
             "examples/spiral.py --evaluate %s prints it again)", run.best_loss, run.best_it,
             paths["best"], paths["best"])
    for key in ("figure", "final", "best", "checkpoint"):
        print(paths[key])
    return {"final_loss": total, "best_loss": run.best_loss, "best_it": run.best_it, **paths}


def _stop(run, first_it, paths, figure, args):
    """End an interrupted run: the checkpoint of the last completed iteration (pure NumPy,
    first), then the figure if it can be drawn, one line on stderr, exit status 130."""
    by = _cli.interrupted_by()
    if run.it == first_it:
        kept = ("no checkpoint written" if args.resume is None else
                f"{args.resume} is unchanged; resume with: python examples/spiral.py --resume "
                f"{args.resume}")
        _cli.exit_interrupted(f"spiral: interrupted{by} before any iteration completed "
                              f"(at iteration {run.it} of {run.iters}); {kept}")
    run.save(paths["checkpoint"])
    note = _cli.attempt(figure, f"the figure {paths['figure']}")
    wrote = f"{paths['checkpoint']}" + ("" if note else f" and {paths['figure']}")
    _cli.exit_interrupted(f"spiral: interrupted{by} after iteration {run.it} of {run.iters}; "
                          f"wrote {wrote}{note}; resume with: python examples/spiral.py "
                          f"--resume {paths['checkpoint']}")


if __name__ == "__main__":
    _cli.run(NAME, main)
