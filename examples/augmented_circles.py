"""Augmented Neural ODEs on concentric circles: why a plain 2-D Neural ODE cannot separate them.

Points in the plane: class 0 fills the disc |x| ≤ 0.5, class 1 the annulus 1 ≤ |x| ≤ 1.5
(uniform by area; Dupont, Doucet & Teh 2019, Sec. 3). A Neural ODE classifier maps x to the
solution h(1) of dh/dt = f(t, h) with h(0) = x and reads the class off h(1) with a linear
layer. The flow of an ODE on R² is a homeomorphism — trajectories never cross — so the image of
the annulus still surrounds the image of the disc, and no line separates them: the plain
model can only squeeze the annulus thin and misclassify what is left over. Padding the state
with one zero (``nn.ZeroPad(1)``: h(0) = (x, 0), an ODE on R³) lets the flow lift the disc out
of the plane past the annulus, and a plane then separates them (Dupont et al., Sec. 4).

Models (same field form, same training):

=========  =========================================================================
plain      ODEBlock(MLP([2, 32, 2], softplus, time input)), Linear(2→2)
augmented  ZeroPad(1), ODEBlock(MLP([3, 32, 3], softplus, time input)), Linear(3→2)
=========  =========================================================================

dopri5 at rtol = atol = 1e-3 over t ∈ [0, 1], backsolve adjoint (on the Numba kernels),
softmax cross-entropy, Adam (lr 1e-2, cosine decay to 0), batches of 64, ``--epochs`` epochs
(default 50) over 512 training points; 512 other points test. The script prints, per model,
the train and test accuracy, the parameters and the mean forward and backward NFE per sample
of the last epoch, and saves a figure: for each model the learned flow (trajectories of test
points from t = 0 to t = 1, coloured by class; in 3-D for the augmented model) and the
decision regions in the input plane with the test points.

Usage::

    python examples/augmented_circles.py             # under a minute; out/augmented_circles.png
    python examples/augmented_circles.py --epochs 100 --seed 1 --out /tmp/circles
    python examples/augmented_circles.py --epochs 1 --n-points 64     # smoke run

Progress is a tqdm bar on a terminal (if installed), log lines otherwise. On Ctrl-C or SIGTERM
(:mod:`pyode.interrupt`) the script stops training, writes the table and then the figure of
the models so far and exits with status 130. Writes ``OUT/augmented_circles.png`` and
``OUT/augmented_circles.json`` and prints their paths.

References
----------
E. Dupont, A. Doucet, Y. W. Teh, "Augmented Neural ODEs", NeurIPS 2019, arXiv:1904.01681,
Sec. 3 (the function g that Neural ODEs cannot represent, Proposition 2), Sec. 4 (augmentation)
and Fig. 4 / Fig. 6 (the concentric-circles data, r1 = 0.5, r2 = 1, r3 = 1.5).
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366 (the ODE block and its adjoint).
"""
import argparse
import json
import logging
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from pyode import AdjointReconstructionWarning, interrupt, losses, nn, optim
from pyode.progress import progress

if str(Path(__file__).resolve().parent) not in sys.path:    # _cli.py, beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

LOG = logging.getLogger("augmented_circles")

NAME = "augmented_circles"
RADII = (0.5, 1.0, 1.5)       # disc |x| <= r1; annulus r2 <= |x| <= r3 (Dupont et al.)
HIDDEN = 32
TOL = 1e-3
BATCH = 64
LR = 1e-2
DATA_SEED = 1234              # the points are the same whatever --seed is
DEFAULT_EPOCHS = 50
DEFAULT_SEED = 0
DEFAULT_POINTS = 512
MODELS = ("plain", "augmented")
N_TRAJECTORIES = 80           # test points whose trajectories are drawn


def circles(n, rng):
    """``n`` points: half in the disc (class 0), half in the annulus (class 1).

    Returns
    -------
    x : ndarray, shape (n, 2)
    y : ndarray of int, shape (n,)
    """
    r1, r2, r3 = RADII
    n0 = n // 2
    radius = np.concatenate([np.sqrt(rng.uniform(0.0, r1 ** 2, n0)),          # uniform by area
                             np.sqrt(rng.uniform(r2 ** 2, r3 ** 2, n - n0))])
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    y = np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n - n0, dtype=np.int64)])
    order = rng.permutation(n)
    return x[order], y[order]


def build_model(kind, seed=0):
    """The plain (state R²) or augmented (state R³) Neural ODE classifier."""
    width = 2 if kind == "plain" else 3
    field = nn.MLP([width, HIDDEN, width], activation="softplus", time_input=True,
                   seed=seed + 1)
    ode = nn.ODEBlock(field, rtol=TOL, atol=TOL, adjoint_method="backsolve")
    pad = [] if kind == "plain" else [nn.ZeroPad(width - 2)]
    return nn.Model(*pad, ode, nn.Linear(width, 2), seed=seed, input_shape=(2,))


def train(kind, model, x, y, epochs, seed, on_epoch=None):
    """Train in place; return the history. Ctrl-C or SIGTERM (under
    :func:`pyode.interrupt.catch`; :func:`pyode.interrupt.check` after each batch also catches
    one that a Numba callback swallowed), or a KeyboardInterrupt raised by
    ``on_epoch(kind, epoch)``, ends training early with ``history["interrupted"] = True``."""
    rng = np.random.default_rng(seed)
    opt = optim.Adam(model.params, lr=LR)
    n_batches = math.ceil(len(y) / BATCH)
    total = epochs * n_batches
    hist = {"loss": [], "nfe_forward": [], "nfe_backward": [], "recon_warnings": 0,
            "batches": 0, "interrupted": False}
    bar = progress(total, desc=kind, log_every=max(1, total // 5))
    it = 0
    try:
        for epoch in range(1, epochs + 1):
            order = rng.permutation(len(y))
            sums = np.zeros(3)
            for k in range(n_batches):
                idx = order[k * BATCH:(k + 1) * BATCH]
                opt.lr = LR * 0.5 * (1.0 + math.cos(math.pi * it / total))
                logits, vjp = model.forward_vjp(x[idx])
                loss, g = losses.cross_entropy(logits, y[idx])
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", AdjointReconstructionWarning)
                    grads = vjp(g)
                hist["recon_warnings"] += int(any(
                    issubclass(w.category, AdjointReconstructionWarning) for w in caught))
                opt.step(grads.params)
                it += 1
                hist["batches"] += 1
                sums += (loss, grads.nfe_forward, grads.nfe_backward)
                bar.update(1, loss=loss, epoch=epoch)
                interrupt.check()
            for key, value in zip(("loss", "nfe_forward", "nfe_backward"), sums / n_batches):
                hist[key].append(float(value))
            if on_epoch is not None:
                on_epoch(kind, epoch)
    except KeyboardInterrupt:
        hist["interrupted"] = True
    finally:
        bar.close()
    return hist


def summarise(kind, model, hist, train_set, test_set):
    """One row of the table."""
    n = len(hist["loss"])
    test_logits, info = model.forward(test_set[0], full_output=True)
    return {"model": kind, "epochs": n, "interrupted": hist["interrupted"],
            "train_accuracy": losses.accuracy(model(train_set[0]), train_set[1]),
            "test_accuracy": losses.accuracy(test_logits, test_set[1]),
            "params": model.n_params, "nfe_test": info.nfe,
            "nfe_forward": hist["nfe_forward"][-1] if n else float("nan"),
            "nfe_backward": hist["nfe_backward"][-1] if n else float("nan"),
            "recon_warnings": hist["recon_warnings"], "batches": hist["batches"]}


def format_table(rows):
    head = ("model", "train acc", "test acc", "params", "NFE-F", "NFE-B", "NFE test",
            "recon. warnings")
    stop = (lambda r: f" (stopped after epoch {r['epochs']})" if r["interrupted"] else "")
    lines = [(r["model"] + stop(r),
              f"{100 * r['train_accuracy']:.1f} %", f"{100 * r['test_accuracy']:.1f} %",
              str(r["params"]), f"{r['nfe_forward']:.1f}", f"{r['nfe_backward']:.1f}",
              f"{r['nfe_test']:.1f}", f"{r['recon_warnings']}/{r['batches']} batches")
             for r in rows]
    if not lines:
        return "(no model finished an epoch)"
    widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if k in (0, 7) else f"{{:>{w}}}"
                    for k, w in enumerate(widths))
    return "\n".join([fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*line).rstrip() for line in lines]
                     + ["NFE-F / NFE-B: field evaluations per sample of the forward solve / "
                        "backward pass, mean of the last epoch; NFE test: forward, test set"])


def plot(path, models, test_set):
    """Flows and decision regions of each model (module docstring)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = test_set
    colors = np.array(["tab:blue", "tab:orange"])
    fig = plt.figure(figsize=(11, 5.2 * max(1, len(models))), constrained_layout=True)
    grid = np.linspace(-1.8, 1.8, 161)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    for row, (kind, model) in enumerate(models.items()):
        block = model.ode_blocks[0]
        h0 = x[:N_TRAJECTORIES]
        if kind != "plain":
            h0 = np.concatenate([h0, np.zeros((len(h0), block.width - 2))], axis=1)
        traj = block.trajectory(h0, np.linspace(block.t0, block.t1, 25))   # (T, n, D)
        cls = y[:N_TRAJECTORIES]
        if block.width == 2:
            ax = fig.add_subplot(len(models), 2, 2 * row + 1)
            for j in range(traj.shape[1]):
                ax.plot(traj[:, j, 0], traj[:, j, 1], color=colors[cls[j]], lw=0.8, alpha=0.7)
            ax.scatter(traj[-1, :, 0], traj[-1, :, 1], c=colors[cls], s=10, zorder=3)
            ax.set(aspect="equal", xlabel="h1", ylabel="h2")
        else:
            ax = fig.add_subplot(len(models), 2, 2 * row + 1, projection="3d")
            for j in range(traj.shape[1]):
                ax.plot(traj[:, j, 0], traj[:, j, 1], traj[:, j, 2], color=colors[cls[j]],
                        lw=0.8, alpha=0.7)
            ax.scatter(traj[-1, :, 0], traj[-1, :, 1], traj[-1, :, 2], c=colors[cls], s=10)
            ax.set(xlabel="h1", ylabel="h2", zlabel="h3 (starts at 0)")
        ax.set_title(f"{kind}: trajectories h(t), t = 0 → 1 (dots: h(1))")
        logits = model(points)
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))       # stable softmax
        prob = (prob[:, 1] / prob.sum(axis=1)).reshape(gx.shape)        # P(class 1)
        ax = fig.add_subplot(len(models), 2, 2 * row + 2)
        ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.0)
        ax.scatter(x[:, 0], x[:, 1], c=colors[y], s=6, edgecolors="none")
        acc = losses.accuracy(model(x), y)
        ax.set(aspect="equal", xlabel="x1", ylabel="x2",
               title=f"{kind}: decision regions (test accuracy {100 * acc:.1f} %)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    """The options, checked (one line and status 2 for a mistake); creates ``args.out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=_cli.positive_int, default=DEFAULT_EPOCHS,
                        help=f"training epochs of each model (default {DEFAULT_EPOCHS})")
    parser.add_argument("--seed", type=_cli.nonnegative_int, default=DEFAULT_SEED,
                        help=f"seed of the initialisation and the batches (default "
                             f"{DEFAULT_SEED}; the data are fixed)")
    parser.add_argument("--out", type=Path, default=Path("out"),
                        help="output directory, created if missing (default out/)")
    parser.add_argument("--n-points", type=int, default=DEFAULT_POINTS,
                        help=f"training points, and as many test points (default "
                             f"{DEFAULT_POINTS})")
    args = parser.parse_args(argv)
    if args.n_points < 4:
        parser.error(f"argument --n-points: must be at least 4; got {args.n_points}")
    _cli.require_matplotlib(parser)
    args.out = _cli.output_dir(parser, args.out)
    return args


def main(argv=None, on_epoch=None):
    """Run the script; ``argv`` as on the command line. ``on_epoch(name, epoch)`` is called
    after each training epoch (a ``KeyboardInterrupt`` from it acts like Ctrl-C).

    Returns
    -------
    dict
        ``rows`` (one per model) and the paths written (``figure``, ``json``).

    Raises
    ------
    SystemExit
        Code 130 after a Ctrl-C or SIGTERM (the table, then the figure, are written first);
        code 2 for a mistake on the command line.
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with interrupt.catch():
        return run(args, on_epoch)


def run(args, on_epoch=None):
    """The work of :func:`main` (inside :func:`pyode.interrupt.catch`)."""
    rng = np.random.default_rng(DATA_SEED)
    train_set, test_set = circles(args.n_points, rng), circles(args.n_points, rng)
    paths = {"figure": args.out / f"{NAME}.png", "json": args.out / f"{NAME}.json"}
    rows, models, histories, interrupted = [], {}, {}, False
    kind = MODELS[0]
    try:
        for kind in MODELS:
            model = build_model(kind, args.seed)
            LOG.info("%s: %s", kind, model)
            hist = train(kind, model, *train_set, args.epochs, args.seed, on_epoch)
            models[kind], histories[kind] = model, hist
            interrupted = hist["interrupted"]
            rows.append(summarise(kind, model, hist, train_set, test_set))
            LOG.info("%s: test accuracy %.1f %%, NFE forward %.1f, backward %.1f", kind,
                     100 * rows[-1]["test_accuracy"], rows[-1]["nfe_forward"],
                     rows[-1]["nfe_backward"])
            if interrupted:
                break
    except KeyboardInterrupt:           # Ctrl-C outside a training loop (an evaluation)
        interrupted = True
    except Exception as exc:            # the evaluation of an interrupted model failed
        if not interrupted:
            raise
        LOG.warning("%s: could not evaluate the interrupted model (%s: %s)", kind,
                    type(exc).__name__, exc)
        models.pop(kind, None)
    with interrupt.shielded():          # a Ctrl-C now waits until the files are written
        table = format_table(rows)
        paths["json"].write_text(json.dumps({"rows": rows, "history": histories,
                                             "args": {"epochs": args.epochs,
                                                      "seed": args.seed,
                                                      "n_points": args.n_points}}, indent=1),
                                 encoding="utf-8")
        figure = (lambda: plot(paths["figure"], models, test_set))
        print(table)
        if interrupted:
            note = _cli.attempt(figure, f"the figure {paths['figure']}")
            done = ("no epoch completed" if not any(h["loss"] for h in histories.values())
                    else "wrote the models so far")
            _cli.exit_interrupted(
                f"{NAME}: interrupted{_cli.interrupted_by()} during {kind}; {done}: "
                f"{paths['json']}" + ("" if note else f" and {paths['figure']}") + note)
        figure()
    for key in ("figure", "json"):
        print(paths[key])
    return {"rows": rows, **paths}


if __name__ == "__main__":
    _cli.run(NAME, main)
