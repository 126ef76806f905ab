"""Fig. 3 of Chen et al. (2018) on the digits ODE-Net: what the number of evaluations buys.

Trains the ODE-Net of ``odenet_digits.py`` (same data, model and training; ``--epochs``
epochs), recording the mean forward and backward evaluations of the field per sample (NFE)
in every epoch, then solves its ODE block on the 360 test images at a sweep of tolerances
(rtol = atol = 1e-1 … 1e-8, dopri5) and measures, at each tolerance:

* the forward NFE (mean per sample) — against the tolerance;
* the numerical error of the block's output h(1): the RMS over samples and components of its
  difference from a reference solve at rtol = atol = 1e-12;
* the wall time of the forward solve (Numba kernels, best of ``REPEATS``);
* the backward NFE of one gradient pass (cross-entropy on the test images, backsolve adjoint
  at the same tolerance), and the test error.

One figure with the four panels of the paper's Fig. 3: (a) numerical error against forward
NFE, each point labelled with its tolerance (so NFE against tolerance can be read too);
(b) wall time against forward NFE; (c) backward against forward NFE; (d) forward and backward
NFE over the training epochs. The script prints the sweep and the fitted slopes:
NFE ∝ tol^(−a) (least squares in log–log; a → 1/5 for the 5th-order dopri5 pair as the
tolerance shrinks), error ∝ NFE^(−b) (b → 5), seconds per evaluation, backward NFE per forward
NFE, and NFE per epoch. The log–log fits leave out the loose tolerances at which the solver
already takes its fewest steps (the NFE floor), all but the tightest of them. The paper
reports, on MNIST: error falls as NFE grows, time grows linearly with NFE, the backward pass
takes roughly half the forward's evaluations, and the NFE grows during training.

Usage::

    python examples/nfe_figures.py                 # 1-2 minutes; writes out/nfe_figures.png
    python examples/nfe_figures.py --epochs 10 --seed 1 --out /tmp/nfe
    python examples/nfe_figures.py --epochs 1 --subset 200 --tolerances 1e-2 1e-4   # smoke run

Progress is a tqdm bar on a terminal (if installed), log lines otherwise. On Ctrl-C or SIGTERM
(:mod:`pyode.interrupt`) the script stops, writes the JSON and then the figure of what it has
measured so far and exits with status 130. Writes ``OUT/nfe_figures.png`` and
``OUT/nfe_figures.json`` and prints their paths.

References
----------
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366, Sec. 3 ("Error control in ODE-Nets") and Fig. 3.
J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta formulae", J. Comput. Appl.
Math. 6 (1980) 19-26 (the 5(4) pair).
"""
import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

import odenet_digits as digits  # also puts this folder (_cli.py) on sys.path
from pyode import interrupt, odeint

import _cli  # noqa: E402  (after odenet_digits, which makes it importable)

LOG = logging.getLogger("nfe_figures")

NAME = "nfe_figures"
TOLERANCES = tuple(10.0 ** -np.arange(1, 9))      # rtol = atol, 1e-1 … 1e-8
REFERENCE_TOL = 1e-12
REPEATS = 5                                       # forward solves timed; the best is kept
DEFAULT_EPOCHS = 30
DEFAULT_SEED = 0


def block_input(model, x):
    """The ODE block's input for images ``x`` (B, 8, 8): the layers before it, by hand.

    The digits ODE-Net is ``Flatten, Linear, ReLU, ODEBlock, Linear``.
    """
    _, linear, relu = model.blocks[:3]           # Flatten is the reshape below
    return relu.forward(linear.forward(x.reshape(len(x), -1)))


def sweep_point(model, x, y, h0, reference, tol):
    """Everything measured at one tolerance (module docstring); a dict."""
    block = model.ode_blocks[0]
    block.rtol = block.atol = tol
    t = np.array([block.t0, block.t1])
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        ys, info = odeint(block.field, h0, t, rtol=tol, atol=tol, full_output=True)
        times.append(time.perf_counter() - start)
    error = float(np.sqrt(np.mean((ys[-1] - reference) ** 2)))
    _, grads, _ = digits.gradient_step(model, x, y)
    err, _ = digits.evaluate(model, x, y)
    return {"tol": tol, "nfe_forward": float(np.mean(info.nfev)), "error": error,
            "time_s": min(times), "nfe_backward": grads.nfe_backward, "test_error": err}


def fit_slope(x, y):
    """Least-squares slope and intercept of y against x (None with fewer than 2 points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or np.ptp(x) == 0:
        return None, None
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def slopes(points, hist):
    """The fitted slopes printed and saved (module docstring)."""
    tol = np.array([p["tol"] for p in points])
    nfe_f = np.array([p["nfe_forward"] for p in points])
    nfe_b = np.array([p["nfe_backward"] for p in points])
    error = np.array([p["error"] for p in points])
    secs = np.array([p["time_s"] for p in points])
    # Loose tolerances all stop at the solver's floor (the fewest steps it takes over [0, 1]):
    # those points say nothing about how NFE and error scale, so the log-log fits leave them
    # out (all but the tightest of them).
    floor = nfe_f == nfe_f.min() if nfe_f.size else nfe_f.astype(bool)
    fit = ~floor
    if floor.any():
        fit[np.flatnonzero(floor)[-1]] = True
    fit &= error > 0
    out = {"nfe_vs_tol": fit_slope(np.log10(tol[fit]), np.log10(nfe_f[fit]))[0],
           "error_vs_nfe": fit_slope(np.log10(nfe_f[fit]), np.log10(error[fit]))[0],
           "fitted_tolerances": [float(v) for v in tol[fit]],
           "seconds_per_nfe": fit_slope(nfe_f, secs)[0],
           "backward_per_forward": fit_slope(nfe_f, nfe_b)[0],
           "nfe_forward_per_epoch": fit_slope(np.arange(len(hist["nfe_forward"])),
                                              hist["nfe_forward"])[0]}
    return out


def format_report(points, fitted, hist):
    lines = [f"{'tol':>8}  {'NFE-F':>7}  {'NFE-B':>7}  {'error h(1)':>10}  {'time ms':>8}  "
             f"{'test err':>8}"]
    lines += [f"{p['tol']:>8.0e}  {p['nfe_forward']:>7.1f}  {p['nfe_backward']:>7.1f}  "
              f"{p['error']:>10.2e}  {1e3 * p['time_s']:>8.2f}  {100 * p['test_error']:>7.2f}%"
              for p in points]
    fmt = (lambda v, spec: "n/a" if v is None else format(v, spec))
    a = fitted["nfe_vs_tol"]
    per_nfe = fitted["seconds_per_nfe"]
    per_nfe = None if per_nfe is None else 1e3 * per_nfe
    lines += [
        "",
        "slopes (least squares; the log-log fits over tol = "
        + ", ".join(f"{v:.0e}" for v in fitted["fitted_tolerances"])
        + ", leaving out looser tolerances at the NFE floor):",
        f"  NFE-F against tolerance (log-log): {fmt(a, '.3f')}  (NFE ∝ tol^-a with a = "
        f"{fmt(None if a is None else -a, '.3f')}; 1/5 for dopri5 as tol -> 0)",
        f"  error against NFE-F (log-log):     {fmt(fitted['error_vs_nfe'], '.2f')}  (-5 for "
        "a 5th-order method)",
        f"  wall time against NFE-F:           {fmt(per_nfe, '.3f')} ms per evaluation "
        f"(all {points[0]['batch'] if points else 0} samples)",
        f"  NFE-B against NFE-F:               {fmt(fitted['backward_per_forward'], '.3f')}  "
        "(the paper: about 0.5)",
        f"  NFE-F against training epoch:      {fmt(fitted['nfe_forward_per_epoch'], '.3f')} "
        f"per epoch (from {hist['nfe_forward'][0]:.1f} to {hist['nfe_forward'][-1]:.1f})"
        if hist["nfe_forward"] else "  NFE-F against training epoch:      n/a",
    ]
    return "\n".join(lines)


def plot(path, points, fitted, hist):
    """The four panels of Fig. 3."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), constrained_layout=True)
    ax_a, ax_b, ax_c, ax_d = axes
    if points:
        nfe_f = np.array([p["nfe_forward"] for p in points])
        nfe_b = np.array([p["nfe_backward"] for p in points])
        error = np.array([p["error"] for p in points])
        secs = np.array([p["time_s"] for p in points])
        ax_a.loglog(nfe_f, error, "o-", color="tab:red")
        ax_a.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax_a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        for p in points:
            ax_a.annotate(f"{p['tol']:.0e}", (p["nfe_forward"], p["error"]), fontsize=7,
                          xytext=(4, 3), textcoords="offset points")
        ax_b.plot(nfe_f, 1e3 * secs, "o-", color="tab:blue")
        ax_c.plot(nfe_f, nfe_b, "o-", color="tab:green", label="measured")
        top = max(nfe_f.max(), nfe_b.max())
        ax_c.plot([0, top], [0, top], "k:", lw=0.8, label="NFE-B = NFE-F")
        ax_c.plot([0, top], [0, top / 2], "k--", lw=0.6, label="NFE-B = NFE-F / 2")
        ax_c.legend(fontsize=8)
    ax_a.set(title="(a) numerical error of h(1) (labels: rtol = atol)", xlabel="NFE forward",
             ylabel="RMS error vs rtol 1e-12")
    ax_b.set(title="(b) wall time of the forward solve", xlabel="NFE forward",
             ylabel="ms (360 samples)", xlim=(0, None), ylim=(0, None))
    ax_c.set(title="(c) backward vs forward evaluations", xlabel="NFE forward",
             ylabel="NFE backward", xlim=(0, None), ylim=(0, None))
    epochs = np.arange(1, len(hist["nfe_forward"]) + 1)
    ax_d.plot(epochs, hist["nfe_forward"], "o-", ms=3, color="tab:red", label="forward")
    ax_d.plot(epochs, hist["nfe_backward"], "s-", ms=3, color="tab:purple", label="backward")
    ax_d.set(title=f"(d) NFE during training (tol {digits.ODE_TOL:g})", xlabel="epoch",
             ylabel="NFE per sample (mean over the epoch)")
    ax_d.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    """The options, checked (one line and status 2 for a mistake); creates ``args.out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=_cli.positive_int, default=DEFAULT_EPOCHS,
                        help=f"training epochs of the ODE-Net (default {DEFAULT_EPOCHS})")
    parser.add_argument("--seed", type=_cli.nonnegative_int, default=DEFAULT_SEED,
                        help=f"seed of the initialisation, batches and noise (default "
                             f"{DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=Path("out"),
                        help="output directory, created if missing (default out/)")
    parser.add_argument("--subset", type=int, default=None,
                        help="train on the first N training images only (smoke runs)")
    parser.add_argument("--tolerances", type=float, nargs="+", default=list(TOLERANCES),
                        help="rtol = atol values of the sweep (default 1e-1 ... 1e-8)")
    args = parser.parse_args(argv)
    if args.subset is not None and args.subset < 10:
        parser.error(f"argument --subset: must be at least 10 images; got {args.subset}")
    bad = [tol for tol in args.tolerances if not 1e-11 <= tol < 1]
    if bad:
        parser.error(f"argument --tolerances: must lie in [1e-11, 1) (the reference solve "
                     f"uses {REFERENCE_TOL:g}); got {bad}")
    args.tolerances = sorted(set(args.tolerances), reverse=True)
    digits.require_packages(parser)
    args.out = _cli.output_dir(parser, args.out)
    return args


def main(argv=None, on_epoch=None):
    """Run the script; ``argv`` as on the command line. ``on_epoch(name, epoch)`` is called
    after each training epoch (a ``KeyboardInterrupt`` from it acts like Ctrl-C).

    Returns
    -------
    dict
        ``points`` (the sweep), ``slopes``, ``history`` and the paths written.

    Raises
    ------
    SystemExit
        Code 130 after a Ctrl-C or SIGTERM (the JSON, then the figure, are written first);
        code 2 for a mistake on the command line.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with interrupt.catch():
        return run(args, on_epoch)


def run(args, on_epoch=None):
    """The work of :func:`main` (inside :func:`pyode.interrupt.catch`)."""
    data = digits.load_data(args.subset)
    x_te, y_te = data[2], data[3]
    paths = {"figure": args.out / f"{NAME}.png", "json": args.out / f"{NAME}.json"}
    model = digits.build_model("odenet", args.seed)
    LOG.info("nfe_figures: training the ODE-Net for %d epochs on %d images", args.epochs,
             len(data[1]))
    hist = digits.train("odenet", model, data, args.epochs, args.seed, on_epoch)
    points, interrupted = [], hist["interrupted"]
    if not interrupted:
        block = model.ode_blocks[0]
        try:
            h0 = block_input(model, x_te)
            reference = odeint(block.field, h0, np.array([block.t0, block.t1]),
                               rtol=REFERENCE_TOL, atol=REFERENCE_TOL)[-1]
            for tol in args.tolerances:
                points.append({**sweep_point(model, x_te, y_te, h0, reference, tol),
                               "batch": len(y_te)})
                LOG.info("tol %.0e: NFE-F %.1f, NFE-B %.1f, error %.2e", tol,
                         points[-1]["nfe_forward"], points[-1]["nfe_backward"],
                         points[-1]["error"])
                interrupt.check()
        except KeyboardInterrupt:
            interrupted = True
        block.rtol = block.atol = digits.ODE_TOL
    with interrupt.shielded():          # a Ctrl-C now waits until the files are written
        fitted = slopes(points, hist)
        report = format_report(points, fitted, hist)
        paths["json"].write_text(json.dumps({"points": points, "slopes": fitted,
                                             "history": hist, "args": vars(args) | {
                                                 "out": str(args.out)}}, indent=1),
                                 encoding="utf-8")
        figure = (lambda: plot(paths["figure"], points, fitted, hist))
        print(report)
        if interrupted:
            note = _cli.attempt(figure, f"the figure {paths['figure']}")
            done = ("no epoch completed" if not hist["loss"]
                    else "wrote what was measured so far")
            _cli.exit_interrupted(f"{NAME}: interrupted{_cli.interrupted_by()}; {done}: "
                                  f"{paths['json']}"
                                  + ("" if note else f" and {paths['figure']}") + note)
        figure()
    for key in ("figure", "json"):
        print(paths[key])
    return {"points": points, "slopes": fitted, "history": hist, **paths}


if __name__ == "__main__":
    _cli.run(NAME, main)
