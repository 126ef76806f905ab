"""Backward steps of the adjoint under each error norm, on initial and on trained spiral weights.

Issue 8 ("numerics defects"): one RMS over all 2D + P + 1 components of the backward state
[z, a, a_θ, a_t] let the P parameter quadratures dilute the control of z and a, and made the
seminorm (which leaves a_θ and a_t out) *stricter* than the plain norm on trained weights.
pyode now controls each part by its own RMS and takes the maximum (``kernels.step.scaled_norm``).
This script counts what that does, with the pyode of this checkout and, with ``--before
PATH``, with another checkout (e.g. ``git worktree add /tmp/pyode-head 3b841e1``, the commit
before the change) in a subprocess, side by side.

The workload is the spiral of ``examples/spiral.py``: the MLP 2-50-2 (cube input, tanh) with
its initial weights (seed 0) and with the weights that ``examples/spiral.py`` trains
(``--model``, default ``out/spiral_best.npz``, written by the README's quick-start command 1),
20 windows of 10 points of the true trajectory as the batch (fixed seed), dopri5 at rtol 1e-7,
atol 1e-9 (the README's defaults), grad_ys = pred − true (the gradient of ½‖pred − true‖²).
For each weight set, adjoint method (backsolve, checkpoint) and norm (rms, seminorm) it
reports the backward evaluations summed over the batch and the gradient's relative
difference from the discrete adjoint's (the exact derivative of the computed forward
solution), so that fewer steps are seen together with what they cost in accuracy.

Usage::

    python examples/spiral.py                       # once: trains, writes out/spiral_best.npz
    python examples/benchmarks/adjoint_norms.py --before /tmp/pyode-head > norms.json

Run it with a Python where pyode is *not* installed (plain numpy + numba), so that each
process imports the checkout it is given. This is a benchmark: it prints JSON.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
A_TRUE = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0_TRUE = np.array([2.0, 0.0])
T_END, N_TIMES, BATCH_TIME, BATCH_SIZE = 25.0, 1000, 10, 20
RTOL, ATOL = 1e-7, 1e-9


def _batch(pyode):
    """The spiral's true trajectory and one batch of windows (as examples/spiral.py draws)."""
    class Spiral:
        params = np.zeros(0)

        def __call__(self, t, y):
            return (y ** 3) @ A_TRUE

    t = np.linspace(0.0, T_END, N_TIMES)
    true_y = pyode.odeint(Spiral(), Y0_TRUE, t, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(0)
    starts = rng.choice(N_TIMES - BATCH_TIME, size=BATCH_SIZE, replace=False)
    batch_y = true_y[starts[None, :] + np.arange(BATCH_TIME)[:, None]]
    return true_y[starts], t[:BATCH_TIME], batch_y


def measure(pyode_path, model_path):
    """Run in a worker: the counts for the pyode imported from ``pyode_path``."""
    sys.path.insert(0, str(pyode_path))
    import pyode
    from pyode import nn
    y0, t, batch_y = _batch(pyode)
    fields = {"initial": nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=0)}
    if model_path is not None and Path(model_path).exists():
        fields["trained"] = nn.load(model_path)
    out = {"pyode": str(Path(pyode.__file__).parent), "cases": {}}
    for name, f in fields.items():
        ys, vjp = pyode.odeint_adjoint(f, y0, t, rtol=RTOL, atol=ATOL,
                                       adjoint_method="discrete")
        g = ys - batch_y
        ref = vjp(g).params
        case = {}
        for method in ("backsolve", "checkpoint"):
            for norm in ("rms", "seminorm"):
                ys, vjp = pyode.odeint_adjoint(f, y0, t, rtol=RTOL, atol=ATOL,
                                               adjoint_method=method,
                                               adjoint_options={"norm": norm})
                grads = vjp(g)
                case[f"{method}/{norm}"] = {
                    "nfev_backward": int(np.sum(grads.info.nfev)),
                    "n_accepted": int(np.sum(grads.info.n_accepted)),
                    "n_rejected": int(np.sum(grads.info.n_rejected)),
                    "grad_rel_diff_to_discrete":
                        float(np.linalg.norm(grads.params - ref) / np.linalg.norm(ref))}
        out["cases"][name] = case
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "out" / "spiral_best.npz"),
                   help="trained spiral weights (default out/spiral_best.npz)")
    p.add_argument("--before", metavar="PATH", help="another pyode checkout to compare with")
    p.add_argument("--worker", metavar="PATH", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.model)))
        return
    report = {"benchmark": "adjoint_norms", "rtol": RTOL, "atol": ATOL,
              "batch": f"{BATCH_SIZE} windows x {BATCH_TIME} points", "runs": {}}
    paths = {"after": ROOT} | ({"before": Path(args.before)} if args.before else {})
    for label, path in paths.items():
        res = subprocess.run([sys.executable, __file__, "--worker", str(path),
                              "--model", args.model], capture_output=True, text=True)
        if res.returncode:
            report["runs"][label] = {"error": res.stderr.strip().splitlines()[-1:]}
        else:
            report["runs"][label] = json.loads(res.stdout)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
