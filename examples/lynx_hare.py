"""Fit a Neural ODE to the Hudson's Bay Company lynx and snowshoe hare pelt counts, 1900-1920.

The data (``examples/data/lynx_hare_1900_1920.csv``) are 21 yearly counts of hare and lynx
pelts, in thousands. The model is an autonomous two-dimensional field

    dz/dt = f(z; θ),     f = nn.MLP([2, H, 2], activation="tanh"),

on the standardised state ``z = (counts − mean) / std`` (per species, over the 21 years), with
``t = year − 1900`` in years. Standardising puts both species on the same O(1) scale and
centres the cycle on the origin, where a freshly initialised tanh MLP is most expressive;
plain division by one constant (e.g. 50 thousand) leaves the cycle off-centre and training
then often stalls in a decaying spiral. The initial state z(0) is learned along with θ: it
starts at the 1900 data point and receives the adjoint gradient ``g.y0``.

The loss is the mean squared error of z over all 21 years and both species, its gradient comes
from :func:`pyode.odeint_adjoint` (dopri5, checkpointed adjoint: see :func:`train_step`), and
Adam with a cosine learning-rate decay takes the steps. The script reports the
root-mean-square error in thousands of pelts, overall and per species, next to the baseline
that predicts each species' mean count every year, and saves a figure of the data against the
fitted trajectories (and the phase plane).

The loss of every iteration is already that of the whole series, so the script keeps the best
model seen (field and learned z(0)) in ``OUT/lynx_hare_best.npz`` and the final one in
``OUT/lynx_hare_final.npz``; both are :func:`pyode.save_checkpoint` files with the model and
``extra["z0"]`` (the field alone does not give the trajectory). Every ``--save-every``
iterations it writes the training state to ``OUT/lynx_hare_checkpoint.npz``; ``--resume``
continues from it bit-identically (into another ``--out``, it copies the best model there
first). On Ctrl-C or SIGTERM (:mod:`pyode.interrupt`; also a Ctrl-C that Numba swallowed,
after that iteration) it writes the checkpoint of the last completed iteration, then the
figure so far (a figure that fails is named), says in one line how to resume and exits with
status 130; a second Ctrl-C waits until the files are written. A mistake on the command line
is one line and status 2 (``examples/_cli.py``). Progress is a tqdm bar on a terminal (if
installed), log lines otherwise.

Usage::

    python examples/lynx_hare.py                   # 3000 iterations, writes out/lynx_hare.png
    python examples/lynx_hare.py --iters 500 --seed 1 --out /tmp/lh
    python examples/lynx_hare.py --resume out/lynx_hare_checkpoint.npz
    python examples/lynx_hare.py --evaluate out/lynx_hare_best.npz   # prints its mse again

References
----------
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366 (Sec. 2; Algorithm 1 for the adjoint).
Data: Hudson's Bay Company pelt records as tabulated in E. P. Odum, *Fundamentals of Ecology*
(1953), via P. Howard, "Modeling Basics", lecture notes, Texas A&M University, Math 442 (see
the header of the CSV file).
"""
import argparse
import copy
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

LOG = logging.getLogger("lynx_hare")

DATA_FILE = Path(__file__).resolve().parent / "data" / "lynx_hare_1900_1920.csv"
YEAR0 = 1900.0
RTOL, ATOL = 1e-6, 1e-8   # the standardised state is O(1)
DEFAULTS = {"iters": 3000, "seed": 0, "hidden": 64, "lr": 1e-2}
NAME = "lynx_hare"        # prefix of the output files


def load_data(path=DATA_FILE):
    """Read the CSV, skipping ``#`` comment lines.

    Returns
    -------
    years : ndarray, shape (N,)
    counts : ndarray, shape (N, 2)
        Hare and lynx pelts, thousands, in the column order of the file.
    names : list of str
        ``["hare", "lynx"]``.
    """
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip() and not line.lstrip().startswith("#")]
    header = [name.strip() for name in lines[0].split(",")]
    table = np.loadtxt(lines[1:], delimiter=",", ndmin=2)
    return table[:, 0], table[:, 1:], header[1:]


def rmse(pred, target, axis=None):
    """Root-mean-square error over ``axis`` (all entries by default)."""
    return np.sqrt(np.mean((pred - target) ** 2, axis=axis))


def train_step(f, z0, opt_f, opt_z0, t, z):
    """One iteration: forward solve from ``z0``, MSE over the series, adjoint, two Adam steps.

    The gradient is the checkpointed adjoint: the fitted dynamics contract onto a limit cycle,
    and re-integrating the state backward from z(T) (``"backsolve"``, the default) is unstable
    on contracting dynamics, so after a few hundred iterations it warns with
    ``AdjointReconstructionWarning`` that the reconstruction left the forward solution.
    ``"checkpoint"`` solves the adjoint against the stored forward states instead; with 21
    outputs and 2 states it costs little memory.

    Returns
    -------
    loss : float
        MSE of the model *before* the step (the whole series, standardised units).
    nfev_backward : int
    """
    pred, vjp = odeint_adjoint(f, z0, t, method="dopri5", rtol=RTOL, atol=ATOL,
                               adjoint_method="checkpoint")
    loss, dloss = losses.mse(pred, z)
    grads = vjp(dloss)
    opt_f.step(grads.params)
    opt_z0.step(grads.y0)
    return loss, int(grads.info.nfev)


def evaluate(f, z0, t, z):
    """MSE (standardised units) of the trajectory of ``f`` from ``z0`` against ``z``."""
    pred = odeint(f, z0, t, method="dopri5", rtol=RTOL, atol=ATOL)
    return losses.mse(pred, z)[0]


def save_model(path, f, z0, steps):
    """A fitted model: the field and its initial state, after ``steps`` Adam steps."""
    pyode.save_checkpoint(path, model=f, extra={"z0": z0, "steps": steps})


def load_model(path):
    """``(f, z0)`` from a model file of :func:`save_model` or a training checkpoint."""
    ck = pyode.load_checkpoint(path)
    if ck.model is None or "z0" not in ck.extra:
        raise pyode.SaveFormatError(path, "a pyode checkpoint without the model and "
                                          "extra['z0'] of examples/lynx_hare.py")
    return ck.model, np.array(ck.extra["z0"], dtype=np.float64)


#: What --evaluate takes, for its error messages.
EVALUATE_ACCEPTS = (f"a model of examples/{NAME}.py, the field with its learned initial state: "
                    f"OUT/{NAME}_best.npz, OUT/{NAME}_final.npz or OUT/{NAME}_checkpoint.npz")
#: What --resume takes.
RESUME_ACCEPTS = (f"the training checkpoint OUT/{NAME}_checkpoint.npz written by "
                  f"examples/{NAME}.py (the best and final models are for --evaluate)")


def _file_error(flag, path, exc, accepted):
    """:func:`_cli.file_error`, with the model file of ``f.save`` (the field alone) named as
    such: this script's files also hold the learned initial state."""
    if getattr(exc, "found", None) == "pyode.model":
        _cli.error(f"argument {flag}: {path} is a model file with the field alone (written "
                   f"by f.save), without the learned initial state z(0); pass {accepted}")
    _cli.file_error(flag, path, exc, accepted)


class Run:
    """The training state (what a checkpoint holds).

    Attributes
    ----------
    f : nn.MLP
    z0 : ndarray, shape (2,)
        Learned initial state (updated in place by ``opt_z0``).
    opt_f, opt_z0 : optim.Adam
    it : int
        Completed iterations.
    settings : dict
        ``iters``, ``seed``, ``hidden``, ``lr`` (fix the run), ``save_every``.
    best_loss : float
        Lowest loss seen (inf before the first iteration).
    best : tuple or None
        ``(params, z0, steps)`` of that model while it is not yet written to the best file.
    """

    def __init__(self, f, z0, opt_f, opt_z0, it, settings, best_loss=math.inf):
        self.f, self.z0, self.opt_f, self.opt_z0, self.it = f, z0, opt_f, opt_z0, it
        self.settings = settings
        self.best_loss, self.best = best_loss, None

    @classmethod
    def fresh(cls, args, z):
        settings = {k: DEFAULTS[k] if getattr(args, k) is None else getattr(args, k)
                    for k in DEFAULTS}
        settings["save_every"] = args.save_every or max(1, settings["iters"] // 10)
        f = nn.MLP([2, settings["hidden"], 2], activation="tanh", seed=settings["seed"])
        z0 = z[0].copy()
        # Adam acts entry by entry, so two optimisers with one schedule equal one on [θ, z0].
        return cls(f, z0, optim.Adam(f.params, lr=settings["lr"]),
                   optim.Adam(z0, lr=settings["lr"]), 0, settings)

    @classmethod
    def resume(cls, args):
        """The run of the checkpoint ``args.resume``.

        Raises
        ------
        pyode.SaveFormatError, OSError
            The file is not a training checkpoint of this script (or cannot be read).
        """
        ck = pyode.load_checkpoint(args.resume)
        needed = {"z0", "best_loss", "save_every", *DEFAULTS}
        if (ck.model is None or not isinstance(ck.optimizer, dict) or ck.step is None
                or not needed <= set(ck.extra)):
            raise pyode.SaveFormatError(
                args.resume, "a pyode checkpoint, but not a training checkpoint of "
                "examples/lynx_hare.py (it needs the model, both optimizers and the settings)")
        settings = {k: ck.extra[k] for k in (*DEFAULTS, "save_every")}
        settings["save_every"] = args.save_every or settings["save_every"]
        for key in ("iters", "lr"):
            given = getattr(args, key)
            if given is not None and given != settings[key]:
                LOG.warning("--%s %s differs from the checkpoint's %s: the learning-rate "
                            "schedule changes, so the result will differ from an "
                            "uninterrupted run", key, given, settings[key])
                settings[key] = given
        for key in ("seed", "hidden"):
            given = getattr(args, key)
            if given is not None:
                LOG.warning("--%s %s is ignored with --resume: the model comes from the "
                            "checkpoint (%s %s)", key, given, key, settings[key])
        if ck.step > settings["iters"]:
            _cli.error(f"argument --iters: the checkpoint {args.resume} is at iteration "
                       f"{ck.step}, past --iters {settings['iters']}; pass a larger --iters")
        f, z0 = ck.model, np.array(ck.extra["z0"], dtype=np.float64)
        opt_f, opt_z0 = optim.Adam(f.params), optim.Adam(z0)
        opt_f.load_state_dict(ck.optimizer["f"])
        opt_z0.load_state_dict(ck.optimizer["z0"])
        return cls(f, z0, opt_f, opt_z0, ck.step, settings, ck.extra["best_loss"])

    def carry_best(self, source, target):
        """Make ``target`` hold the best model of the checkpoint, which is ``source``.

        The best file is written with the checkpoint, so it matches the checkpoint's best
        loss. A run resumed into another directory copies it over, so the best of the whole
        run is in its output directory even if the resumed part never beats it. If it is
        missing (the checkpoint was moved without it), the best is forgotten with a warning:
        the resumed part then keeps its own best, and the file reported at the end exists.
        """
        if not math.isfinite(self.best_loss):       # no iteration yet: no best file
            return
        if not source.is_file():
            LOG.warning("the best model (mse %r) should be in %s, which does not exist: %s "
                        "will hold the best model of the resumed iterations only",
                        self.best_loss, source, target)
            self.best_loss = math.inf
        elif not _cli.same_file(source, target):
            _cli.copy_file(source, target)
            LOG.info("copied the best model so far from %s to %s", source, target)

    def snapshot(self):
        """Copies of the mutable state, for :meth:`restore`."""
        return (self.it, self.f.params.copy(), self.z0.copy(), self.opt_f.state_dict(),
                self.opt_z0.state_dict(), self.best_loss, self.best)

    def restore(self, snap):
        """Go back to a :meth:`snapshot` (undoes a half-done iteration)."""
        self.it, params, z0, state_f, state_z0, self.best_loss, self.best = snap
        self.f.params = params
        self.z0[...] = z0
        self.opt_f.load_state_dict(state_f)
        self.opt_z0.load_state_dict(state_z0)

    def save(self, checkpoint, best_path):
        """Write the best model if it changed, then the checkpoint (which relies on it)."""
        if self.best is not None:
            params, z0, steps = self.best
            best_f = copy.deepcopy(self.f)
            best_f.params = params
            save_model(best_path, best_f, z0, steps)
            self.best = None
        pyode.save_checkpoint(checkpoint, model=self.f,
                              optimizer={"f": self.opt_f, "z0": self.opt_z0}, step=self.it,
                              extra={"z0": self.z0, "best_loss": self.best_loss,
                                     **self.settings})


def plot(path, years, counts, names, years_fine, fitted_fine):
    """Save data (markers) and fitted trajectories (lines) against the year, and the phase
    plane, to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ("tab:orange", "tab:blue")
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(13, 4.5), constrained_layout=True,
                                     gridspec_kw={"width_ratios": (1.8, 1)})
    for k, name in enumerate(names):
        ax_t.plot(years, counts[:, k], "o", color=colors[k], label=f"{name} (data)")
        ax_t.plot(years_fine, fitted_fine[:, k], "-", color=colors[k], label=f"{name} (fit)")
    ax_t.set(title="Hudson's Bay Company pelts: data vs Neural ODE fit", xlabel="year",
             ylabel="pelts (thousands)", xticks=years[::2])
    ax_t.legend(fontsize=8)

    ax_p.plot(counts[:, 0], counts[:, 1], "k:", lw=0.8, alpha=0.5)
    ax_p.plot(counts[:, 0], counts[:, 1], "ko", ms=4, label="data (dotted: year order)")
    ax_p.plot(fitted_fine[:, 0], fitted_fine[:, 1], "-", color="tab:green", label="fit")
    ax_p.set(title="Phase plane", xlabel=f"{names[0]} (thousands)",
             ylabel=f"{names[1]} (thousands)")
    ax_p.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    """The options, checked: every mistake ends the script with one line and status 2.

    Also settles ``args.out`` (not for ``--evaluate``): the directory given, the checkpoint's
    with ``--resume``, else ``out/``; created if missing and checked to be writable.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # None: a fresh run takes DEFAULTS, --resume the checkpoint's settings.
    parser.add_argument("--iters", type=_cli.positive_int, default=None,
                        help="training iterations in all (default 3000; with --resume, the "
                             "checkpoint's)")
    parser.add_argument("--seed", type=_cli.nonnegative_int, default=None,
                        help="seed of the model initialisation (default 0; ignored with "
                             "--resume)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory, created if missing (default out/; with "
                             "--resume, the checkpoint's directory)")
    parser.add_argument("--hidden", type=_cli.positive_int, default=None,
                        help="hidden width H of the MLP 2-H-2 (default 64; ignored with "
                             "--resume)")
    parser.add_argument("--lr", type=_cli.positive_float, default=None,
                        help="initial Adam learning rate, cosine-decayed to 0 (default 1e-2; "
                             "with --resume, the checkpoint's)")
    parser.add_argument("--save-every", type=_cli.positive_int, default=None,
                        help="write OUT/lynx_hare_checkpoint.npz (and the best model) every "
                             "this many iterations (default: the log interval, iters // 10; "
                             "with --resume, the checkpoint's)")
    parser.add_argument("--resume", type=Path, default=None, metavar="PATH",
                        help="continue the run saved in the checkpoint PATH")
    parser.add_argument("--evaluate", type=Path, default=None, metavar="PATH",
                        help="print the mse of the model saved in PATH (best, final or "
                             "checkpoint file) and exit")
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


def main(argv=None, on_iteration=None):
    """Run the script; ``argv`` as on the command line (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
    on_iteration : callable, optional
        Called as ``on_iteration(it)`` after each completed iteration ``it``. A
        ``KeyboardInterrupt`` raised from it acts like Ctrl-C.

    Returns
    -------
    dict
        ``final_loss``, ``best_loss`` and the paths written (``figure``, ``final``, ``best``,
        ``checkpoint``); for ``--evaluate``, ``{"loss": ...}``.

    Raises
    ------
    SystemExit
        Code 130 after a Ctrl-C or SIGTERM (the checkpoint and the figure are written first);
        code 2 for a mistake on the command line, or a file given that is not the right kind.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    years, counts, names = load_data()
    t = years - YEAR0
    mean, std = counts.mean(axis=0), counts.std(axis=0)
    z = (counts - mean) / std
    with interrupt.catch():
        if args.evaluate is not None:
            try:
                model = load_model(args.evaluate)
            except (pyode.SaveFormatError, OSError) as exc:
                _file_error("--evaluate", args.evaluate, exc, EVALUATE_ACCEPTS)
            loss = evaluate(*model, t, z)
            LOG.info("mse (standardised units) of %s:", args.evaluate)
            print(repr(loss))
            return {"loss": loss}
        return train(args, on_iteration, years, counts, names)


def _open_run(args, paths, z):
    """The run to train: fresh, or the checkpoint of ``--resume`` (its best model carried to
    ``paths["best"]``); a checkpoint that is not one of this script ends it (status 2)."""
    if args.resume is None:
        return Run.fresh(args, z)
    try:
        run = Run.resume(args)
    except (pyode.SaveFormatError, OSError) as exc:
        _file_error("--resume", args.resume, exc, RESUME_ACCEPTS)
    run.carry_best(args.resume.parent / f"{NAME}_best.npz", paths["best"])
    return run


def train(args, on_iteration, years, counts, names):
    """The training run of :func:`main` (inside :func:`pyode.interrupt.catch`)."""
    t = years - YEAR0
    mean, std = counts.mean(axis=0), counts.std(axis=0)
    z = (counts - mean) / std
    out = args.out
    paths = {"figure": out / f"{NAME}.png", "final": out / f"{NAME}_final.npz",
             "best": out / f"{NAME}_best.npz", "checkpoint": out / f"{NAME}_checkpoint.npz"}
    run = _open_run(args, paths, z)
    iters, lr = run.settings["iters"], run.settings["lr"]
    log_every = max(1, iters // 10)
    save_every = run.settings["save_every"]
    f, z0 = run.f, run.z0
    first_it = run.it
    LOG.info("lynx_hare: %d years (%d-%d), species %s, MLP 2-%d-2, %d iterations%s",
             len(years), years[0], years[-1], names, run.settings["hidden"], iters,
             f" from iteration {run.it}" if run.it else "")

    def figure():
        fitted_fine = odeint(f, z0, t_fine, rtol=RTOL, atol=ATOL) * std + mean
        plot(paths["figure"], years, counts, names, t_fine + YEAR0, fitted_fine)

    t_fine = np.linspace(t[0], t[-1], 401)
    last = run.snapshot()
    bar = progress(iters, desc="lynx_hare", initial=run.it, log_every=log_every)
    start = time.perf_counter()
    try:
        for it in range(run.it + 1, iters + 1):
            run.opt_f.lr = run.opt_z0.lr = lr * 0.5 * (1.0 + math.cos(math.pi * (it - 1)
                                                                       / iters))
            params_before, z0_before = f.params.copy(), z0.copy()
            loss, nfev_b = train_step(f, z0, run.opt_f, run.opt_z0, t, z)
            if loss < run.best_loss:       # the loss of the model before this step
                run.best_loss, run.best = loss, (params_before, z0_before, it - 1)
            run.it = it
            if bar.bar and (it % log_every == 0 or it == iters):
                bar.write(f"iter {it:5d} | mse (standardised) {loss:.5f} | backward nfev "
                          f"{nfev_b:4d} | {time.perf_counter() - start:5.1f} s")
            # The snapshot first: an interrupt during the save then goes back to this
            # iteration, and the handler writes the same checkpoint again.
            last = run.snapshot()
            if it % save_every == 0:
                run.save(paths["checkpoint"], paths["best"])
            bar.update(1, mse=loss, nfev=nfev_b)
            if on_iteration is not None:
                on_iteration(it)
            interrupt.check()       # a Ctrl-C that a Numba callback swallowed stops here
    except KeyboardInterrupt:
        with interrupt.shielded():  # a second Ctrl-C waits until the files are written
            bar.close()
            run.restore(last)
            _stop(run, first_it, iters, paths, figure, args)
    finally:
        bar.close()

    with interrupt.shielded():
        loss = evaluate(f, z0, t, z)
        if loss < run.best_loss:
            run.best_loss, run.best = loss, (f.params.copy(), z0.copy(), run.it)
        save_model(paths["final"], f, z0, run.it)
        run.save(paths["checkpoint"], paths["best"])
        figure()
    # The logged best loss is computed from the file, as --evaluate does.
    best_loss = evaluate(*load_model(paths["best"]), t, z)

    fitted = odeint(f, z0, t, rtol=RTOL, atol=ATOL) * std + mean
    base = np.broadcast_to(mean, counts.shape)
    per_species = rmse(fitted, counts, axis=0)
    per_species_base = rmse(base, counts, axis=0)
    LOG.info("final mse (standardised units): %.5f", loss)
    LOG.info("best mse (standardised units) %r, saved in %s (python examples/lynx_hare.py "
             "--evaluate %s prints it again)", best_loss, paths["best"], paths["best"])
    LOG.info("RMSE, thousands of pelts: %.2f overall (%s %.2f, %s %.2f)",
             rmse(fitted, counts), names[0], per_species[0], names[1], per_species[1])
    LOG.info("constant-mean baseline RMSE: %.2f overall (%s %.2f, %s %.2f)",
             rmse(base, counts), names[0], per_species_base[0], names[1], per_species_base[1])
    for key in ("figure", "final", "best", "checkpoint"):
        print(paths[key])
    return {"final_loss": loss, "best_loss": best_loss, **paths}


def _stop(run, first_it, iters, paths, figure, args):
    """End an interrupted run: the checkpoint of the last completed iteration (and the best
    model; pure NumPy, first), then the figure if it can be drawn, one line on stderr, exit
    status 130."""
    by = _cli.interrupted_by()
    if run.it == first_it:
        kept = ("no checkpoint written" if args.resume is None else
                f"{args.resume} is unchanged; resume with: python examples/lynx_hare.py "
                f"--resume {args.resume}")
        _cli.exit_interrupted(f"lynx_hare: interrupted{by} before any iteration completed "
                              f"(at iteration {run.it} of {iters}); {kept}")
    run.save(paths["checkpoint"], paths["best"])
    note = _cli.attempt(figure, f"the figure {paths['figure']}")
    wrote = f"{paths['checkpoint']}" + ("" if note else f" and {paths['figure']}")
    _cli.exit_interrupted(f"lynx_hare: interrupted{by} after iteration {run.it} of {iters}; "
                          f"wrote {wrote}{note}; resume with: python examples/lynx_hare.py "
                          f"--resume {paths['checkpoint']}")


if __name__ == "__main__":
    _cli.run(NAME, main)
