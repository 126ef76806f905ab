"""Table 1 of Chen et al. (2018) on 8×8 handwritten digits: MLP, ResNet, RK-Net and ODE-Net.

The paper compares, on MNIST, a one-hidden-layer MLP, a ResNet with 6 residual blocks, an
RK-Net (the ODE-Net's architecture, trained by backpropagation through a Runge-Kutta
integrator) and an ODE-Net (the 6 residual blocks replaced by one ODE block, trained with the
adjoint): test error, parameters, memory and time. This script runs the same comparison on
scikit-learn's digits (``sklearn.datasets.load_digits``: 1797 images of 8×8 pixels, values
0–16, bundled with scikit-learn, so nothing is downloaded), with a fixed stratified split of
1437 training and 360 test images (``train_test_split(test_size=360, random_state=0)``).

Models (pixels standardised with the training set's mean image and overall std; D = 64,
H = 64; every residual function and ODE field is ``Linear(D→H), softplus, Linear(H→D)``):

=========  ===========================================================================
mlp        Flatten, Linear(64→200), ReLU, Linear(200→10)
resnet     Flatten, Linear(64→D), ReLU, 6 × ResidualBlock(r), Linear(D→10)
rknet      Flatten, Linear(64→D), ReLU, ODEBlock(f, rk4, step 0.25, "discrete"), Linear(D→10)
odenet     Flatten, Linear(64→D), ReLU, ODEBlock(f, dopri5, rtol = atol = 1e-3, "backsolve"),
           Linear(D→10)
=========  ===========================================================================

where f(t, h) is the residual function with t appended to its input (``nn.MLP([D, H, D],
activation="softplus", time_input=True)``), integrated over t ∈ [0, 1]. The RK-Net takes 4
classical RK4 steps (16 evaluations of f) and differentiates them exactly
(``adjoint_method="discrete"``, memory O(L̃) in the steps); the ODE-Net uses the adjoint of the
paper (Algorithm 1; ``adjoint_method="backsolve"``, memory O(1) in the steps). The ODE-Net's
field runs on the Numba kernels, the RK-Net's discrete adjoint on the NumPy path.

Training: softmax cross-entropy (``pyode.losses.cross_entropy``), Adam (lr 3e-3, cosine decay
to 0), mini-batches of 64, ``--epochs`` epochs (default 30), Gaussian input noise of std 0.6
(in standardised units) on every training batch — without it every model overfits the 1437
images (train loss ~1e-4) and lands at 2.5–3.6 % test error. The hyper-parameters were chosen
by hand on this split (there is no separate validation set), the same for all four models.

The table reports, per model: test error on the 360 test images; parameters; the peak memory
of one gradient pass (forward, loss and backward on one training batch of 64) measured with
:mod:`tracemalloc` on the path the model trains on — it counts the Python and NumPy
allocations made during the pass (not the parameters or the data, which exist before it), and
not the scratch that Numba kernels allocate inside themselves (the ODE-Net's backsolve kernel
holds one sample's augmented state and stages per thread), so for the ODE-Net the same pass is
also measured on the NumPy path, where every allocation is seen; the mean wall time of a
training epoch; and the mean forward and backward evaluations of the field per sample (NFE)
over the last epoch. A second table measures the same peak memory as the depth grows: the
ResNet with 6, 12, 24 blocks, the RK-Net with 4, 8, 16 steps and the trained ODE-Net at
rtol = atol = 1e-3, 1e-5, 1e-7 (its NFE grows; its memory does not). Both ODE models keep one
parameter gradient per sample (``odeint_adjoint`` integrates a_θ per sample: B × P floats,
4.3 MB here) before summing it, a constant that does not grow with the steps.

The backsolve adjoint re-integrates the state backward; the learned flows contract, and at
rtol 1e-3 its reconstruction of the input can miss by more than 100× the tolerance, which
pyode reports with ``AdjointReconstructionWarning``. The script counts the batches where it
fired (column "recon. warnings") and, for the trained ODE-Net, prints how far its dL/dθ is
from that of the checkpointed adjoint (which needs no reconstruction) on one batch.

Usage::

    python examples/odenet_digits.py                    # all four models, 2-3 minutes
    python examples/odenet_digits.py --epochs 5 --models mlp odenet --out /tmp/digits
    python examples/odenet_digits.py --subset 200 --epochs 1    # smoke run (seconds)

Progress is a tqdm bar on a terminal (if installed), log lines otherwise. On Ctrl-C or SIGTERM
(:mod:`pyode.interrupt`) the script stops training, writes the table and then the figure of
the models so far (the interrupted one at its last completed batch) and exits with status
130. Writes ``OUT/odenet_digits.txt`` (the tables), ``OUT/odenet_digits.json`` (every number
and the per-epoch history) and ``OUT/odenet_digits.png`` (training loss and test error per
epoch; peak memory against the evaluations of the residual function or field in the forward
pass), and prints their paths.

References
----------
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366: Sec. 3 and Table 1 (MNIST: 1-layer MLP 1.60 %,
0.24 M parameters, memory O(L); ResNet 0.41 %, 0.60 M, O(L); RK-Net 0.47 %, 0.22 M, O(L̃);
ODE-Net 0.42 %, 0.22 M, O(1)).
Data: E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
Repository (1998); the test set of that collection, as shipped with scikit-learn.
"""
import argparse
import gc
import json
import logging
import math
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

from pyode import AdjointReconstructionWarning, interrupt, losses, nn, optim
from pyode.progress import progress

if str(Path(__file__).resolve().parent) not in sys.path:    # _cli.py, beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cli  # noqa: E402

LOG = logging.getLogger("odenet_digits")

NAME = "odenet_digits"                  # prefix of the output files
MODELS = ("mlp", "resnet", "rknet", "odenet")
LABELS = {"mlp": "1-layer MLP", "resnet": "ResNet", "rknet": "RK-Net", "odenet": "ODE-Net"}
#: Chen et al. (2018), Table 1 (MNIST): test error, parameters, memory.
PAPER = {"mlp": ("1.60 %", "0.24 M", "O(L)"), "resnet": ("0.41 %", "0.60 M", "O(L)"),
         "rknet": ("0.47 %", "0.22 M", "O(L̃)"), "odenet": ("0.42 %", "0.22 M", "O(1)")}
TEST_SIZE = 360             # images held out (20 %), stratified
SPLIT_SEED = 0              # random_state of the split: fixed, whatever --seed is
WIDTH = 64                  # D, the state after the downsampling layer
HIDDEN = 64                 # H, hidden width of the residual function / the field
MLP_HIDDEN = 200            # the MLP's one hidden layer (parameters comparable to the ODE-Net)
N_RES_BLOCKS = 6            # as in the paper's ResNet
RK_STEP = 0.25              # RK-Net: 4 RK4 steps over [0, 1]
ODE_TOL = 1e-3              # ODE-Net: rtol = atol (the tolerance of torchdiffeq's MNIST example)
BATCH = 64
LR = 3e-3                   # initial Adam learning rate, cosine-decayed to 0
NOISE = 0.6                 # std of the Gaussian input noise on training batches
DEFAULT_EPOCHS = 30
DEFAULT_SEED = 0
SCALING = {"resnet": (6, 12, 24), "rknet": (0.25, 0.125, 0.0625), "odenet": (1e-3, 1e-5, 1e-7)}


# ---------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------


def load_data(subset=None):
    """The fixed split of the digits, standardised with training-set statistics.

    Parameters
    ----------
    subset : int, optional
        Keep only the first ``subset`` training images (smoke runs); the test set is whole.

    Returns
    -------
    x_train : ndarray, shape (N, 8, 8)
    y_train : ndarray of int, shape (N,)
    x_test : ndarray, shape (360, 8, 8)
    y_test : ndarray of int, shape (360,)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.float64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target, test_size=TEST_SIZE,
                                              random_state=SPLIT_SEED, stratify=digits.target)
    if subset is not None:
        x_tr, y_tr = x_tr[:subset], y_tr[:subset]
    mean, std = x_tr.mean(axis=0), x_tr.std()
    return (x_tr - mean) / std, y_tr.astype(np.int64), (x_te - mean) / std, y_te.astype(np.int64)


def residual_layers():
    """The layers of one residual function r: Linear(D→H), softplus, Linear(H→D)."""
    return nn.Linear(WIDTH, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, WIDTH)


def build_model(kind, seed=0, n_blocks=N_RES_BLOCKS, rk_step=RK_STEP, tol=ODE_TOL):
    """One of the four models (module docstring).

    Parameters
    ----------
    kind : {"mlp", "resnet", "rknet", "odenet"}
    seed : int
        Seed of the initialisation (the field's seed is ``seed + 1``).
    n_blocks : int
        Residual blocks of the ResNet.
    rk_step : float
        Step of the RK-Net's RK4 solver (units of t; the block spans [0, 1]).
    tol : float
        rtol = atol of the ODE-Net's dopri5 solve.

    Returns
    -------
    pyode.nn.Model
    """
    head = (nn.Flatten(), nn.Linear(64, WIDTH), nn.ReLU())
    if kind == "mlp":
        return nn.Model(nn.Flatten(), nn.Linear(64, MLP_HIDDEN), nn.ReLU(),
                        nn.Linear(MLP_HIDDEN, 10), seed=seed, input_shape=(8, 8))
    if kind == "resnet":
        blocks = [nn.ResidualBlock(*residual_layers()) for _ in range(n_blocks)]
        return nn.Model(*head, *blocks, nn.Linear(WIDTH, 10), seed=seed, input_shape=(8, 8))
    field = nn.MLP([WIDTH, HIDDEN, WIDTH], activation="softplus", time_input=True,
                   seed=seed + 1)
    if kind == "rknet":
        block = nn.ODEBlock(field, method="rk4", options={"step_size": rk_step},
                            adjoint_method="discrete")
    elif kind == "odenet":
        block = nn.ODEBlock(field, method="dopri5", rtol=tol, atol=tol,
                            adjoint_method="backsolve")
    else:
        raise ValueError(f"unknown model {kind!r}; choose from {', '.join(MODELS)}")
    return nn.Model(*head, block, nn.Linear(WIDTH, 10), seed=seed, input_shape=(8, 8))


# ---------------------------------------------------------------------------------------------
# Training, evaluation, memory
# ---------------------------------------------------------------------------------------------


def gradient_step(model, xb, yb):
    """Forward, cross-entropy and backward on one batch.

    Returns
    -------
    loss : float
    grads : pyode.nn.ModelGradients
    recon_warned : bool
        Whether the backsolve adjoint warned (``AdjointReconstructionWarning``).
    """
    logits, vjp = model.forward_vjp(xb)
    loss, g = losses.cross_entropy(logits, yb)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AdjointReconstructionWarning)
        grads = vjp(g)
    others = [w for w in caught if not issubclass(w.category, AdjointReconstructionWarning)]
    for w in others:                          # pass anything else on unchanged
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loss, grads, len(others) < len(caught)


def evaluate(model, x_test, y_test):
    """Test error (fraction misclassified) and forward NFE per sample of the test pass."""
    logits, info = model.forward(x_test, full_output=True)
    return 1.0 - losses.accuracy(logits, y_test), info.nfe


def gradient_memory(model, xb, yb, numpy_path=False):
    """Peak traced memory (KiB) of one gradient pass on ``(xb, yb)``, and its gradients.

    tracemalloc counts the Python and NumPy allocations made between its start and the end of
    the pass (the parameters and the data exist before it and are not counted; one untraced
    pass first builds what the solver caches across calls, so that is not counted either). It
    does not see what Numba kernels allocate inside themselves (the backsolve kernel's
    per-thread scratch: one sample's augmented state and its stages); ``numpy_path=True``
    runs the ODE blocks on the NumPy path instead, where every allocation is seen.
    """
    blocks = model.ode_blocks if numpy_path else []
    saved = [b.backend for b in blocks]
    for b in blocks:
        b.backend = "numpy"
    gradient_step(model, xb, yb)      # untraced: what a first call builds and caches is not
    gc.collect()                      # part of a training step's memory
    tracemalloc.start()
    try:
        _, grads, _ = gradient_step(model, xb, yb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        for b, backend in zip(blocks, saved):
            b.backend = backend
    return peak / 1024.0, grads


def train(kind, model, data, epochs, seed, on_epoch=None):
    """Train ``model`` in place; return its history (a dict of per-epoch lists).

    A ``KeyboardInterrupt`` (Ctrl-C or SIGTERM under :func:`pyode.interrupt.catch`, also one
    that a Numba callback swallowed: :func:`pyode.interrupt.check` after each batch raises it
    again; or raised by ``on_epoch(kind, epoch)``) ends training; the history then holds the
    completed epochs and ``history["interrupted"]`` is True.
    """
    x_tr, y_tr, x_te, y_te = data
    rng = np.random.default_rng(seed)
    opt = optim.Adam(model.params, lr=LR)
    n_batches = math.ceil(len(y_tr) / BATCH)
    total = epochs * n_batches
    hist = {"loss": [], "test_error": [], "epoch_s": [], "nfe_forward": [], "nfe_backward": [],
            "recon_warnings": 0, "batches": 0, "interrupted": False}
    bar = progress(total, desc=LABELS[kind], log_every=max(1, total // 5))
    it = 0
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            order = rng.permutation(len(y_tr))
            sums = np.zeros(3)
            for k in range(n_batches):
                idx = order[k * BATCH:(k + 1) * BATCH]
                xb = x_tr[idx] + NOISE * rng.standard_normal(x_tr[idx].shape)
                opt.lr = LR * 0.5 * (1.0 + math.cos(math.pi * it / total))
                loss, grads, warned = gradient_step(model, xb, y_tr[idx])
                opt.step(grads.params)
                it += 1
                sums += (loss, grads.nfe_forward, grads.nfe_backward)
                hist["recon_warnings"] += int(warned)
                hist["batches"] += 1
                bar.update(1, loss=loss, epoch=epoch)
                interrupt.check()
            elapsed = time.perf_counter() - start
            err, _ = evaluate(model, x_te, y_te)
            for key, value in zip(("loss", "nfe_forward", "nfe_backward"), sums / n_batches):
                hist[key].append(float(value))
            hist["test_error"].append(err)
            hist["epoch_s"].append(elapsed)
            if on_epoch is not None:
                on_epoch(kind, epoch)
    except KeyboardInterrupt:
        hist["interrupted"] = True
    finally:
        bar.close()
    return hist


def backsolve_error(model, xb, yb):
    """Relative difference of dL/dθ between the backsolve adjoint and the checkpointed adjoint
    (which integrates the adjoint against the stored forward states, not a reconstruction)."""
    block = model.ode_blocks[0]
    _, g_backsolve, _ = gradient_step(model, xb, yb)
    saved = block.adjoint_method
    block.adjoint_method = "checkpoint"
    try:
        _, g_checkpoint, _ = gradient_step(model, xb, yb)
    finally:
        block.adjoint_method = saved
    return float(np.linalg.norm(g_backsolve.params - g_checkpoint.params)
                 / np.linalg.norm(g_checkpoint.params))


def memory_scaling(trained, data, seed):
    """Peak memory of a gradient pass as the depth grows (module docstring).

    Returns
    -------
    list of dict
        ``model``, ``setting`` (blocks, step or tolerance), ``evals`` (evaluations of r / f
        in the forward pass), ``peak_kib``.
    """
    x_tr, y_tr = data[0][:BATCH], data[1][:BATCH]
    rows = []
    for n_blocks in SCALING["resnet"]:
        peak, _ = gradient_memory(build_model("resnet", seed, n_blocks=n_blocks), x_tr, y_tr)
        rows.append({"model": "resnet", "setting": f"{n_blocks} blocks", "evals": n_blocks,
                     "peak_kib": peak})
    for step in SCALING["rknet"]:
        peak, grads = gradient_memory(build_model("rknet", seed, rk_step=step), x_tr, y_tr)
        rows.append({"model": "rknet", "setting": f"step {step:g} ({round(1 / step)} steps)",
                     "evals": grads.nfe_forward, "peak_kib": peak})
    model = trained.get("odenet") or build_model("odenet", seed)
    block = model.ode_blocks[0]
    saved = block.rtol, block.atol
    try:
        for tol in SCALING["odenet"]:
            block.rtol = block.atol = tol
            peak, grads = gradient_memory(model, x_tr, y_tr)
            rows.append({"model": "odenet", "setting": f"tol {tol:g}",
                         "evals": grads.nfe_forward, "peak_kib": peak})
    finally:
        block.rtol, block.atol = saved
    return rows


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def summarise(kind, model, hist, peak_kib):
    """One row of the table (a dict) from a model, its history and its measured memory."""
    n = len(hist["loss"])
    ode = bool(model.ode_blocks)
    return {"model": kind, "label": LABELS[kind], "epochs": n,
            "interrupted": hist["interrupted"],
            "test_error": hist["test_error"][-1] if n else float("nan"),
            "params": model.n_params, "peak_kib": peak_kib,
            "epoch_s": float(np.mean(hist["epoch_s"])) if n else float("nan"),
            "nfe_forward": hist["nfe_forward"][-1] if ode and n else None,
            "nfe_backward": hist["nfe_backward"][-1] if ode and n else None,
            "recon_warnings": hist["recon_warnings"] if ode else None,
            "batches": hist["batches"]}


def format_table(rows, scaling, n_train, n_test):
    """The two tables as text."""
    head = ("model", "test error", "params", "peak memory", "time/epoch", "NFE-F", "NFE-B",
            "recon. warnings", "| paper (MNIST):", "error", "params", "memory")
    lines = []
    for r in rows:
        paper = PAPER[r["model"]]
        nfe = (lambda v: "-" if v is None else f"{v:.1f}")
        warn = ("-" if r["recon_warnings"] is None
                else f"{r['recon_warnings']}/{r['batches']} batches")
        stopped = f" (stopped after epoch {r['epochs']})" if r["interrupted"] else ""
        label = r["label"] + stopped
        lines.append((label, f"{100 * r['test_error']:.2f} %", f"{r['params']:,}",
                      f"{r['peak_kib']:,.0f} KiB", f"{r['epoch_s']:.2f} s",
                      nfe(r["nfe_forward"]), nfe(r["nfe_backward"]), warn, "|", *paper))
    if not lines:
        return "(no model finished an epoch)"
    widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if k in (0, 7, 8) else f"{{:>{w}}}"
                    for k, w in enumerate(widths))
    out = [f"Chen et al. (2018), Table 1, on sklearn digits ({n_train} train / {n_test} test, "
           "8x8); the paper's MNIST numbers on the right",
           fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    out += [fmt.format(*line).rstrip() for line in lines]
    out += [f"peak memory: tracemalloc peak (Python + NumPy allocations) of forward + loss + "
            f"backward on one batch of {BATCH}, on the path the model trains on. NFE: field "
            "evaluations per sample, mean of the last epoch."]
    for r in rows:
        if "peak_kib_numpy_path" in r:
            out += [f"{r['label']}: tracemalloc misses the scratch of the Numba backsolve "
                    "kernel (one sample's [z, a, a_θ, a_t] and stages per thread); on the NumPy "
                    f"path (all {BATCH} samples at once, every allocation seen) the pass peaks "
                    f"at {r['peak_kib_numpy_path']:,.0f} KiB."]
        if "backsolve_error" in r:
            out += [f"{r['label']}: the backsolve dL/dθ differs from the checkpointed "
                    f"adjoint's by {r['backsolve_error']:.1e} (relative norm, one training "
                    "batch, the trained model)."]
    if scaling:
        out += ["", "Peak memory of the gradient pass against depth (evaluations of the "
                "residual function / field in the forward pass)",
                f"{'model':<8}  {'setting':<22}  {'evals':>6}  {'peak memory':>12}"]
        out += [f"{LABELS[s['model']]:<8}  {s['setting']:<22}  {s['evals']:>6.1f}  "
                f"{s['peak_kib']:>8,.0f} KiB" for s in scaling]
    return "\n".join(out)


def plot(path, histories, scaling):
    """Training loss and test error per epoch; peak memory against depth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"mlp": "tab:gray", "resnet": "tab:blue", "rknet": "tab:green",
              "odenet": "tab:red"}
    fig, (ax_l, ax_e, ax_m) = plt.subplots(1, 3, figsize=(15, 4.3), constrained_layout=True)
    for kind, hist in histories.items():
        epochs = np.arange(1, len(hist["loss"]) + 1)
        ax_l.plot(epochs, hist["loss"], "o-", ms=3, color=colors[kind], label=LABELS[kind])
        ax_e.plot(epochs, 100 * np.array(hist["test_error"]), "o-", ms=3, color=colors[kind],
                  label=LABELS[kind])
    ax_l.set(title="Training loss (mean over the epoch's batches)", xlabel="epoch",
             ylabel="cross-entropy", yscale="log")
    ax_e.set(title="Test error", xlabel="epoch", ylabel="test error (%)", ylim=(0, 10))
    ax_e.axhline(3.0, color="k", lw=0.6, ls=":")
    for ax in (ax_l, ax_e):
        ax.legend(fontsize=8)
    for kind in ("resnet", "rknet", "odenet"):
        pts = [(s["evals"], s["peak_kib"]) for s in scaling if s["model"] == kind]
        if pts:
            ev, kib = zip(*pts)
            ax_m.plot(ev, np.array(kib) / 1024, "o-", color=colors[kind], label=LABELS[kind])
    ax_m.set(title="Peak memory of a gradient pass (tracemalloc)", xlim=(0, None), ylim=(0, None),
             xlabel="evaluations of r / f in the forward pass (ResNet: blocks)",
             ylabel="MiB")
    if scaling:
        ax_m.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    """The options, checked (one line and status 2 for a mistake); creates ``args.out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=_cli.positive_int, default=DEFAULT_EPOCHS,
                        help=f"training epochs of each model (default {DEFAULT_EPOCHS})")
    parser.add_argument("--seed", type=_cli.nonnegative_int, default=DEFAULT_SEED,
                        help=f"seed of the initialisation, batches and noise (default "
                             f"{DEFAULT_SEED}; the train/test split is fixed)")
    parser.add_argument("--out", type=Path, default=Path("out"),
                        help="output directory, created if missing (default out/)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="which models to train (default all four)")
    parser.add_argument("--subset", type=int, default=None,
                        help="train on the first N training images only (smoke runs)")
    parser.add_argument("--no-scaling", action="store_true",
                        help="skip the memory-against-depth table")
    args = parser.parse_args(argv)
    if args.subset is not None and args.subset < 10:
        parser.error(f"argument --subset: must be at least 10 images; got {args.subset}")
    require_packages(parser)
    args.out = _cli.output_dir(parser, args.out)
    return args


def require_packages(parser):
    """Refuse to start without scikit-learn (the data) or matplotlib (the figure)."""
    _cli.require(parser, "sklearn", "examples", "the digits data set (scikit-learn)")
    _cli.require_matplotlib(parser)


def measure(kind, model, hist, xb, yb):
    """The table row of a trained (or interrupted) model, measured on the batch ``(xb, yb)``.

    After an interrupt the measurement may fail — a Ctrl-C during the first solve can leave
    Numba half-imported — and the row then has NaN memory (the error is logged).
    """
    try:
        peak, _ = gradient_memory(model, xb, yb)
    except Exception as exc:
        if not hist["interrupted"]:
            raise
        LOG.warning("%s: could not measure the memory of the interrupted model (%s: %s)",
                    LABELS[kind], type(exc).__name__, exc)
        peak = float("nan")
    return summarise(kind, model, hist, peak)


def main(argv=None, on_epoch=None):
    """Run the script; ``argv`` as on the command line (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
    on_epoch : callable, optional
        Called as ``on_epoch(model_name, epoch)`` after each completed epoch; a
        ``KeyboardInterrupt`` raised from it acts like Ctrl-C.

    Returns
    -------
    dict
        ``rows`` (one dict per model), ``scaling`` and the paths written (``table``,
        ``json``, ``figure``).

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
    data = load_data(args.subset)
    paths = {"table": args.out / f"{NAME}.txt", "json": args.out / f"{NAME}.json",
             "figure": args.out / f"{NAME}.png"}
    LOG.info("digits: %d training / %d test images, %d epochs, models %s", len(data[1]),
             len(data[3]), args.epochs, ", ".join(args.models))
    rows, histories, trained, scaling, interrupted = [], {}, {}, [], False
    xb, yb = data[0][:BATCH], data[1][:BATCH]
    kind = args.models[0]
    try:
        for kind in args.models:
            model = build_model(kind, args.seed)
            LOG.info("%s: %s", LABELS[kind], model)
            hist = train(kind, model, data, args.epochs, args.seed, on_epoch)
            histories[kind], trained[kind] = hist, model
            interrupted = hist["interrupted"]
            rows.append(measure(kind, model, hist, xb, yb))
            if kind == "odenet" and not interrupted:
                rows[-1]["peak_kib_numpy_path"] = gradient_memory(model, xb, yb,
                                                                  numpy_path=True)[0]
                rows[-1]["backsolve_error"] = backsolve_error(model, xb, yb)
            r = rows[-1]
            LOG.info("%s: test error %.2f %%, %d parameters, peak memory %.0f KiB, %.2f "
                     "s/epoch", LABELS[kind], 100 * r["test_error"], r["params"],
                     r["peak_kib"], r["epoch_s"])
            if interrupted:
                break
        if not (args.no_scaling or interrupted):
            scaling = memory_scaling(trained, data, args.seed)
    except KeyboardInterrupt:           # Ctrl-C outside a training loop (a measurement)
        interrupted = True
    with interrupt.shielded():          # a Ctrl-C now waits until the files are written
        text = format_table(rows, scaling, len(data[1]), len(data[3]))
        paths["table"].write_text(text + "\n", encoding="utf-8")
        paths["json"].write_text(json.dumps({"rows": rows, "scaling": scaling,
                                             "history": histories, "args": {
                                                 "epochs": args.epochs, "seed": args.seed,
                                                 "subset": args.subset}}, indent=1),
                                 encoding="utf-8")
        figure = (lambda: plot(paths["figure"], histories, scaling))
        print(text)
        if interrupted:
            note = _cli.attempt(figure, f"the figure {paths['figure']}")
            done = "no epoch completed" if not any(h["loss"] for h in histories.values()) \
                else "wrote the table of the models so far"
            _cli.exit_interrupted(
                f"{NAME}: interrupted{_cli.interrupted_by()} during {LABELS[kind]}; {done}: "
                f"{paths['table']}, {paths['json']}"
                + ("" if note else f" and {paths['figure']}") + note)
        figure()
    for key in ("table", "json", "figure"):
        print(paths[key])
    return {"rows": rows, "scaling": scaling, **paths}


if __name__ == "__main__":
    _cli.run(NAME, main)
