"""Every way to differentiate an ODE solve, side by side (README, "Gradient methods").

Two problems, each with a user-written field that implements the whole vector-field protocol
(``__call__``, ``params``, ``jvp``, ``vjp`` and ``jvp_params``):

* **dissipative** — the fast–slow cascade ``u' = −k u, v' = −θ v + u`` (k = 20, θ = 1) from
  y0 = (1, 1) to T = 2, loss L = v(T) ≈ 0.14, with its closed-form gradient. The forward solve
  is accurate, but the backsolve adjoint re-integrates u backward from u(T) ≈ e^{−40}, whose
  error (≈ atol) grows by e^{40} on the way: the reconstruction warning fires and its dL/dθ is
  wrong by orders of magnitude. The other three methods are right.
* **spiral** — the cubic spiral of ``spiral.py``, ``dy/dt = (y³) A``, with the four entries
  of A as the parameters θ, from y0 = (2, 0) over [0, 2.5] with 10 outputs, loss = mean squared
  error to the trajectory of a slightly different A. Every method is right here.

For each problem the script prints :func:`pyode.compare_gradients`'s table at rtol 1e-7
(errors against central differences: "err y0", "err θ", "err t"; field evaluations of the
forward and backward passes; wall time; peak traced memory), then sweeps rtol from 1e-3 to
1e-10 (atol = rtol/100) and saves two figures:

* ``OUT/gradient_methods_error.png`` — relative error of dL/dθ against rtol for each method;
* ``OUT/gradient_methods_memory.png`` — peak memory of forward + backward against the number
  of accepted forward steps: flat for backsolve and forward sensitivity, growing with the steps
  for checkpoint (one stored state per step) and discrete (the state and all stages per step).

The sweep's reference gradients are the closed form (dissipative) and forward sensitivity at
rtol 1e-12 (spiral; it agrees with the central differences of the first table to their own
error, ~1e-8). Memory is measured with tracemalloc on the NumPy path (Python and NumPy
allocations).

Usage::

    python examples/gradient_methods.py                 # about a minute; writes out/*.png
    python examples/gradient_methods.py --quick --out /tmp/gm   # four tolerances, ~30 s

References
----------
Ma, Dixit, Innes, Rackauckas et al. (2018), arXiv:1812.01892 (the comparison);
Chen et al. (2018), arXiv:1806.07366 (backsolve); Kidger, Chen & Lyons (2021),
arXiv:2009.09457 (seminorm); Kim et al. (2021), arXiv:2103.15341 (why backsolve fails).
"""
import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from pyode import ADJOINT_METHODS, compare_gradients, losses, odeint, odeint_adjoint

if str(Path(__file__).resolve().parent) not in sys.path:    # _cli.py, beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

LOG = logging.getLogger("gradient_methods")

RTOLS = 10.0 ** -np.arange(3, 11)                # the sweep, 1e-3 … 1e-10 (atol = rtol / 100)
QUICK_RTOLS = 10.0 ** -np.array([3.0, 5.0, 7.0, 9.0])
TABLE_RTOL, TABLE_ATOL = 1e-7, 1e-9              # the printed tables (torchdiffeq's defaults)
METHODS = tuple(ADJOINT_METHODS) + (("backsolve", {"norm": "seminorm"}),)
COLORS = {"backsolve": "tab:red", "checkpoint": "tab:blue", "discrete": "tab:green",
          "forward": "tab:purple", "backsolve(norm=seminorm)": "tab:orange"}
# backsolve and its seminorm variant often coincide: large hollow squares under small crosses.
STYLES = {"backsolve": "s-", "backsolve(norm=seminorm)": "x--"}
MARKER = {"backsolve": dict(ms=8, mfc="none")}


class Cascade:
    """``u' = −k u, v' = −θ v + u``, params ``[k, θ]``: a fast mode feeding a slow one.

    ``∂f/∂y = [[−k, 0], [1, −θ]]``; ``∂f/∂(k, θ) · (δk, δθ) = (−δk u, −δθ v)``; no t.
    """

    def __init__(self, k=20.0, theta=1.0):
        self.params = np.array([k, theta])

    def __call__(self, t, y):
        k, th = self.params
        return np.stack([-k * y[..., 0], -th * y[..., 1] + y[..., 0]], axis=-1)

    def jvp(self, t, y, u):
        k, th = self.params
        return np.stack([-k * u[..., 0], -th * u[..., 1] + u[..., 0]], axis=-1)

    def jvp_params(self, t, y, w):
        return np.stack([-w[0] * y[..., 0], -w[1] * y[..., 1]], axis=-1)

    def vjp(self, t, y, v):
        k, th = self.params
        v_y = np.stack([-k * v[..., 0] + v[..., 1], -th * v[..., 1]], axis=-1)
        v_theta = np.array([-np.sum(v[..., 0] * y[..., 0]), -np.sum(v[..., 1] * y[..., 1])])
        return v_y, v_theta, (0.0 if np.ndim(t) == 0 else np.zeros(np.shape(t)))

    def exact_gradients(self, y0, T):
        """dv(T)/d(u0, v0) and dv(T)/d(k, θ) in closed form (v(T) = v0 e^{−θT} + u0 q)."""
        k, th = self.params
        u0, v0 = y0
        ek, et = np.exp(-k * T), np.exp(-th * T)
        q = (et - ek) / (k - th)
        d_k = u0 * (T * ek - q) / (k - th)
        d_th = -T * v0 * et + u0 * (q - T * et) / (k - th)
        return np.array([q, et]), np.array([d_k, d_th])


class CubicSpiral:
    """``f(t, y) = (y³) A`` with θ = A.ravel() (row-major), the spiral of ``spiral.py``.

    Per sample ``∂f/∂y = diag(3y²) A`` (row vectors), ``∂f_j/∂A_kj = y_k³``.
    """

    def __init__(self, A):
        self.params = np.array(A, dtype=np.float64).ravel()

    @property
    def A(self):
        return self.params.reshape(2, 2)

    def __call__(self, t, y):
        return (y ** 3) @ self.A

    def jvp(self, t, y, u):
        return (3.0 * y * y * u) @ self.A

    def jvp_params(self, t, y, w):
        return (y ** 3) @ np.reshape(w, (2, 2))

    def vjp(self, t, y, v):
        y3 = (y ** 3).reshape(-1, 2)
        v_theta = np.einsum("bk,bj->kj", y3, np.reshape(v, (-1, 2))).ravel()
        return 3.0 * y * y * (v @ self.A.T), v_theta, (0.0 if np.ndim(t) == 0
                                                       else np.zeros(np.shape(t)))


def dissipative_problem():
    f = Cascade()
    y0, t = np.array([1.0, 1.0]), np.array([0.0, 2.0])

    def loss(ys):                                # L = v(T)
        g = np.zeros_like(ys)
        g[-1, 1] = 1.0
        return float(ys[-1, 1]), g

    d_y0, d_theta = f.exact_gradients(y0, t[-1])
    return dict(name="dissipative", f=f, y0=y0, t=t, loss=loss,
                reference={"y0": d_y0, "params": d_theta})


def spiral_problem():
    A_true = np.array([[-0.1, 2.0], [-2.0, -0.1]])
    f = CubicSpiral(A_true + np.array([[0.05, -0.1], [0.1, 0.05]]))
    y0, t = np.array([2.0, 0.0]), np.linspace(0.0, 2.5, 10)
    target = odeint(CubicSpiral(A_true), y0, t, rtol=1e-12, atol=1e-14)

    def loss(ys):
        return losses.mse(ys, target)

    ys, vjp = odeint_adjoint(f, y0, t, rtol=1e-12, atol=1e-14, adjoint_method="forward")
    g = vjp(loss(ys)[1])
    return dict(name="spiral", f=f, y0=y0, t=t, loss=loss,
                reference={"y0": g.y0, "params": g.params, "t": g.t})


def sweep(problem, rtols):
    """Errors of dL/dθ, peak memory and forward steps for every method and tolerance."""
    out = {}
    for rtol in rtols:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # the table records the warnings
            res = compare_gradients(problem["f"], problem["y0"], problem["t"], problem["loss"],
                                    methods=METHODS, rtol=rtol, atol=rtol * 1e-2,
                                    backend="numpy", reference=problem["reference"],
                                    verbose=False)
        for row in res.rows:
            g = res.gradients.get(row["method"])
            steps = np.nan if g is None else float(np.sum(g.forward_info.n_accepted))
            out.setdefault(row["method"], []).append((rtol, row["err_params"], row["peak_kib"],
                                                      steps))
        LOG.info("%s: rtol %.0e done", problem["name"], rtol)
    return {m: np.array(v) for m, v in out.items()}


def plot_errors(path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5),
                             constrained_layout=True)
    for ax, (name, res) in zip(np.atleast_1d(axes), results.items()):
        for method, data in res.items():
            ax.loglog(data[:, 0], np.maximum(data[:, 1], 1e-16), STYLES.get(method, "o-"),
                      label=method, color=COLORS.get(method), lw=1.3,
                      **MARKER.get(method, dict(ms=4)))
        ax.loglog(data[:, 0], data[:, 0], "k:", lw=1, label="= rtol")
        ax.set(title=f"{name}: error of dL/dθ", xlabel="rtol (atol = rtol/100)",
               ylabel="relative error")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory(path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5),
                             constrained_layout=True)
    for ax, (name, res) in zip(np.atleast_1d(axes), results.items()):
        for method, data in res.items():
            ax.plot(data[:, 3], data[:, 2], STYLES.get(method, "o-"), label=method,
                    color=COLORS.get(method), lw=1.3, **MARKER.get(method, dict(ms=4)))
        ax.set(title=f"{name}: peak memory of forward + backward",
               xlabel="accepted forward steps", ylabel="peak traced memory (KiB)", ylim=(0, None))
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"),
                        help="output directory, created if missing (default out/)")
    parser.add_argument("--quick", action="store_true",
                        help="four tolerances instead of eight (a smoke run)")
    args = parser.parse_args(argv)
    _cli.require_matplotlib(parser)                 # before the sweeps, not after them
    args.out = _cli.output_dir(parser, args.out)
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problems = [dissipative_problem(), spiral_problem()]
    for p in problems:
        print(f"\n== {p['name']} ==")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # shown in the table's notes
            compare_gradients(p["f"], p["y0"], p["t"], p["loss"], methods=METHODS,
                              rtol=TABLE_RTOL, atol=TABLE_ATOL, backend="numpy")
    rtols = QUICK_RTOLS if args.quick else RTOLS
    results = {p["name"]: sweep(p, rtols) for p in problems}
    error_path = args.out / "gradient_methods_error.png"
    memory_path = args.out / "gradient_methods_memory.png"
    plot_errors(error_path, results)
    plot_memory(memory_path, results)
    print(error_path)
    print(memory_path)


if __name__ == "__main__":
    _cli.run("gradient_methods", main)
