"""GPU check: the CUDA kernels against the CPU kernels, then throughput, as JSON.

Run on a machine with an NVIDIA GPU and ``pip install '.[cuda]'``::

    python examples/benchmarks/gpu_check.py            # ≲ 5 minutes on one GPU

1. Agreement: forward solves and adjoint gradients of random MLP fields on ``backend="cuda"``
   against ``backend="numba"`` (CPU kernels), float64 to 1e-12 and float32 to 1e-5 (relative
   to the largest value), forward and backward in time, several output times. The script
   exits with status 1 on any disagreement.
2. Throughput of the spiral model (MLP 2-50-2 with cube input; dopri5, rtol 1e-7, atol 1e-9 in
   float64, rtol 1e-5, atol 1e-7 in float32; windows of 10 points of t = linspace(0, 25, 1000))
   at B = 10⁴, 10⁵, 10⁶ trajectories: wall time of the forward solve and of the adjoint
   gradient (host arrays in and out, so transfers are included), trajectories·steps per second
   and an estimate of the arithmetic FLOP/s (the operation count model is in
   :func:`flops_per_step`).

Without a GPU it can run on the numba-cuda simulator with tiny sizes, to check the script:
``NUMBA_ENABLE_CUDASIM=1 python examples/benchmarks/gpu_check.py --sizes 4 --agree-batch 3``.
"""
import argparse
import json
import platform
import sys
import time

import numpy as np

from pyode import nn, odeint, odeint_adjoint
from pyode.tableaus import METHODS

TOLS = {"float64": 1e-12, "float32": 1e-5}
SOLVER_TOLS = {"float64": dict(rtol=1e-7, atol=1e-9), "float32": dict(rtol=1e-5, atol=1e-7)}


def _max_rel(a, b):
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)))
                 / max(float(np.max(np.abs(b))), 1.0))


def agreement(batch, seed):
    """Compare 'cuda' with 'numba' on a few fields; returns a list of result dicts."""
    rng = np.random.default_rng(seed)
    cases = [
        ("spiral", dict(sizes=[2, 50, 2], activation="tanh", input_activation="cube"), False),
        ("softplus_time", dict(sizes=[3, 16, 16, 3], activation="softplus", time_input=True),
         True),
    ]
    results = []
    for precision, dtype in (("float64", np.float64), ("float32", np.float32)):
        for name, kw, backward in cases:
            f = nn.MLP(seed=int(rng.integers(1 << 16)), dtype=dtype, **kw)
            D = kw["sizes"][0]
            y0 = rng.uniform(-1.0, 1.0, size=(batch, D)).astype(dtype)
            t = np.array([0.0, 0.2, 0.5, 1.0])
            if backward:
                t = t[::-1].copy()
            tol = SOLVER_TOLS[precision]
            errs = {}
            yc, ic = odeint(f, y0, t, backend="cuda", full_output=True, **tol)
            yn, i_n = odeint(f, y0, t, backend="numba", full_output=True, **tol)
            errs["ys"] = _max_rel(yc, yn)
            g = rng.normal(size=yn.shape).astype(dtype)
            gc = odeint_adjoint(f, y0, t, backend="cuda", **tol)[1](g)
            gn = odeint_adjoint(f, y0, t, backend="numba", **tol)[1](g)
            for key in ("y0", "params", "t"):
                errs["grad_" + key] = _max_rel(getattr(gc, key), getattr(gn, key))
            worst = max(errs.values())
            results.append(dict(case=name, precision=precision, batch=batch,
                                backward_in_time=backward, max_rel_err=errs, tol=TOLS[precision],
                                nfev_equal=bool(np.array_equal(ic.nfev, i_n.nfev)),
                                ok=bool(worst <= TOLS[precision])))
    return results


def flops_per_step(f, n_stages, adjoint):
    """Estimated arithmetic operations of one accepted-or-rejected step of one trajectory.

    Model: a Linear layer costs 2·n_in·n_out + n_out, an activation 1 per element (a
    transcendental counted as 1), its VJP 4·n_in·n_out (input and parameter cotangents) and 2
    per activation element; the stage combinations cost s(s−1)·W and the error estimate 2·s·W
    for a state of W components (W = D forward, 2D + P + 1 for the adjoint).
    """
    fwd = vjp = 0
    width = f.n_in
    for layer in f.layers:
        if isinstance(layer, nn.Linear):
            fwd += 2 * layer.n_in * layer.n_out + layer.n_out
            vjp += 4 * layer.n_in * layer.n_out + layer.n_out
            width = layer.n_out
        else:
            fwd += width
            vjp += 2 * width
    D, P = f.n_in, f.params.size
    W = 2 * D + P + 1 if adjoint else D
    per_eval = fwd + (vjp if adjoint else 0)
    return (n_stages - 1) * per_eval + n_stages * (n_stages - 1) * W + 2 * n_stages * W


def throughput(sizes, seed):
    """Time the spiral forward solve and adjoint gradient at each batch size."""
    from numba import cuda
    t = np.linspace(0.0, 25.0, 1000)[:10]
    s = METHODS["dopri5"].n_stages
    rows = []
    for precision, dtype in (("float32", np.float32), ("float64", np.float64)):
        f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=seed,
                   dtype=dtype)
        tol = SOLVER_TOLS[precision]
        warm = np.random.default_rng(seed).uniform(-2, 2, size=(4, 2)).astype(dtype)
        ys, vjp = odeint_adjoint(f, warm, t, backend="cuda", **tol)   # compile outside timing
        vjp(np.ones_like(ys))
        for B in sizes:
            y0 = np.random.default_rng(seed + B).uniform(-2, 2, size=(B, 2)).astype(dtype)
            cuda.synchronize()
            t0 = time.perf_counter()
            ys, info = odeint(f, y0, t, backend="cuda", full_output=True, **tol)
            cuda.synchronize()
            t_fwd = time.perf_counter() - t0
            ys, vjp = odeint_adjoint(f, y0, t, backend="cuda", **tol)
            g_ys = np.ones_like(ys) / ys.size
            cuda.synchronize()
            t0 = time.perf_counter()
            g = vjp(g_ys)
            cuda.synchronize()
            t_adj = time.perf_counter() - t0
            steps_fwd = int(np.sum(info.n_accepted + info.n_rejected))
            steps_adj = int(np.sum(g.info.n_accepted + g.info.n_rejected))
            rows.append(dict(
                precision=precision, batch=B,
                forward=dict(wall_s=t_fwd, traj_steps_per_s=steps_fwd / t_fwd,
                             flop_per_s=steps_fwd * flops_per_step(f, s, False) / t_fwd,
                             mean_nfev=float(np.mean(info.nfev))),
                adjoint=dict(wall_s=t_adj, traj_steps_per_s=steps_adj / t_adj,
                             flop_per_s=steps_adj * flops_per_step(f, s, True) / t_adj,
                             mean_nfev=float(np.mean(g.info.nfev)))))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6],
                        help="batch sizes for the throughput runs")
    parser.add_argument("--agree-batch", type=int, default=257,
                        help="trajectories per agreement case (several blocks)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from numba import cuda
    from pyode.backends import cuda as kc
    kc.check_device()
    dev = cuda.get_current_device()
    device = str(getattr(dev, "name", "numba-cuda simulator"))
    report = dict(device=device, python=platform.python_version(),
                  threads_per_block=kc.device.THREADS_PER_BLOCK)
    report["agreement"] = agreement(args.agree_batch, args.seed)
    ok = all(r["ok"] for r in report["agreement"])
    report["agreement_ok"] = ok
    report["throughput"] = throughput([int(b) for b in args.sizes], args.seed) if ok else []
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
