"""Time one training iteration of the spiral Neural ODE and print the figures as JSON.

The workload is one iteration of ``examples/spiral.py``: a batch of 20 windows × 10 points of
the cubic spiral, the model ``MLP 2-50-2`` with the cube input activation and tanh, float64,
dopri5 with rtol 1e-7 and atol 1e-9, forward solve by :func:`pyode.odeint_adjoint`, the L1
loss, the adjoint gradient and an Adam step. The script measures

* ``step_ms``: wall time of the whole iteration (forward + loss + adjoint + optimiser step);
* ``forward_ms``: the forward solve alone (:func:`pyode.odeint` on the same batch);
* ``nfev_forward`` / ``nfev_backward``: field evaluations per window (one sample of the batch),
  averaged over the windows and the repeats;

the times as a median with the minimum and the 10th and 90th percentiles. Both are measured
at two model states, because the number of steps the solver needs changes as the field is
trained: at initialisation and after ``--warm-iters`` training iterations. Within one state
the parameters are restored after every timed iteration, so every repeat sees the same field
and a fresh random batch. The same figures are measured for the NumPy back end (the readable
reference path) with fewer repeats.

On a machine shared with other busy processes the Numba figures can rise several-fold: the
parallel kernels wait at the end of each batch for a thread the scheduler has preempted.
Compare the minimum with the median, or rerun with ``--threads 1``.

``first_call_s`` is the wall time of the very first training iteration of the process: it
includes importing the kernels and either compiling them or loading them from Numba's on-disk
cache; ``first_call_kind`` says which, from the dispatchers' cache statistics.

Usage::

    python examples/benchmarks/spiral_step.py [--repeats 50] [--seed 0] [--threads 2]
                                              [--warm-iters 200]

This is a benchmark, not a test: it asserts nothing. The ``reference`` field quotes figures
of other libraries on a 2-core machine for context; they are not run here.

References
----------
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366; the workload is torchdiffeq's
``examples/ode_demo.py`` (https://github.com/rtqichen/torchdiffeq).
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

from pyode import nn, odeint, optim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import spiral  # noqa: E402  (examples/spiral.py: data, batches and the training step)

REFERENCE = {
    "machine": "2-core CPU; quoted for context, not run by this script",
    "torchdiffeq_odeint_adjoint_ms_per_iter": 180.0,
    "diffrax_checkpointed_ms_per_iter": 1.9,
    "diffrax_backsolve_ms_per_iter": 4.7,
}


def make_model(seed, backend):
    return nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=seed,
                  backend=backend)


def summarize(values, scale=1.0):
    """Median, minimum and 10th / 90th percentiles of ``values`` times ``scale``, rounded.

    The minimum is the figure least disturbed by other processes on the machine.
    """
    q0, q10, q50, q90 = np.percentile(np.asarray(values) * scale, [0, 10, 50, 90])
    return {"median": round(float(q50), 4), "min": round(float(q0), 4),
            "p10": round(float(q10), 4), "p90": round(float(q90), 4)}


def measure(f, rng, t, true_y, repeats):
    """Time ``repeats`` iterations at the current parameters of ``f`` (restored each time).

    Returns a dict with ``step_ms``, ``forward_ms`` (median, min, p10, p90), mean ``nfev_forward``
    and ``nfev_backward`` per window, and ``repeats``.
    """
    saved = f.params.copy()
    opt = optim.Adam(f.params, lr=spiral.DEFAULT_LR)
    step_s, forward_s, nfev_f, nfev_b = [], [], [], []
    for _ in range(repeats):
        batch_y0, batch_t, batch_y = spiral.get_batch(rng, t, true_y)
        start = time.perf_counter()
        _, info = odeint(f, batch_y0, batch_t, method="dopri5", rtol=spiral.RTOL,
                         atol=spiral.ATOL, full_output=True)
        forward_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        _, nfev_backward = spiral.train_step(f, opt, batch_y0, batch_t, batch_y)
        step_s.append(time.perf_counter() - start)
        nfev_f.append(float(np.mean(info.nfev)))
        nfev_b.append(nfev_backward)
        f.params[...] = saved
    return {"step_ms": summarize(step_s, 1e3), "forward_ms": summarize(forward_s, 1e3),
            "nfev_forward": round(float(np.mean(nfev_f)), 2),
            "nfev_backward": round(float(np.mean(nfev_b)), 2), "repeats": repeats}


def first_call_kind():
    """'compile', 'cache load' or 'no JIT' for the batch kernels, from their cache stats."""
    if numba.config.DISABLE_JIT:
        return "no JIT (NUMBA_DISABLE_JIT=1)"
    from pyode.kernels import rk
    misses = hits = 0
    for kernel in (rk.forward_batch, rk.adjoint_batch):
        stats = kernel.stats
        misses += sum(stats.cache_misses.values())
        hits += sum(stats.cache_hits.values())
    if misses:
        return f"compile ({misses} cache misses)"
    return f"cache load ({hits} cache hits)" if hits else "unknown"


def machine_info():
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:        # not on Linux
        affinity = None
    try:
        layer = numba.threading_layer()
    except ValueError:            # no parallel kernel has run (e.g. NUMBA_DISABLE_JIT=1)
        layer = None
    return {
        "cpu_count": os.cpu_count(), "cpus_available": affinity,
        "machine": platform.machine(), "processor": platform.processor() or None,
        "numba_threads": numba.get_num_threads(), "numba_threading_layer": layer,
        "numba_disable_jit": bool(numba.config.DISABLE_JIT),
        "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50,
                        help="timed iterations per model state, Numba back end (default 50); "
                             "the NumPy back end uses a tenth (at least 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="numba.set_num_threads (default: Numba's default)")
    parser.add_argument("--warm-iters", type=int, default=200,
                        help="training iterations before the second measurement (default 200)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warm_iters < 0:
        parser.error("--repeats must be >= 1 and --warm-iters >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t, true_y = spiral.make_data()
    f = make_model(args.seed, "numba")
    f_np = make_model(args.seed, "numpy")
    np_repeats = max(3, args.repeats // 10)

    # The first iteration of the process: kernel import plus compilation or cache load.
    saved = f.params.copy()
    start = time.perf_counter()
    spiral.train_step(f, optim.Adam(f.params, lr=spiral.DEFAULT_LR),
                      *spiral.get_batch(rng, t, true_y))
    first_call_s = time.perf_counter() - start
    f.params[...] = saved

    results = {"numba": {}, "numpy": {}}
    results["numba"]["init"] = measure(f, rng, t, true_y, args.repeats)
    results["numpy"]["init"] = measure(f_np, rng, t, true_y, np_repeats)

    opt = optim.Adam(f.params, lr=spiral.DEFAULT_LR)
    start = time.perf_counter()
    for _ in range(args.warm_iters):
        spiral.train_step(f, opt, *spiral.get_batch(rng, t, true_y))
    warm_s = time.perf_counter() - start
    f_np.params[...] = f.params
    key = f"after_{args.warm_iters}_iters"
    results["numba"][key] = measure(f, rng, t, true_y, args.repeats)
    results["numpy"][key] = measure(f_np, rng, t, true_y, np_repeats)

    report = {
        "benchmark": "spiral training iteration (forward + L1 loss + adjoint + Adam step)",
        "workload": {
            "batch_windows": spiral.BATCH_SIZE, "points_per_window": spiral.BATCH_TIME,
            "model": "MLP 2-50-2, cube input, tanh", "n_params": f.n_params,
            "method": "dopri5", "rtol": spiral.RTOL, "atol": spiral.ATOL, "dtype": "float64",
            "warm_iters": args.warm_iters, "warm_optimizer": f"Adam lr {spiral.DEFAULT_LR}",
            "seed": args.seed,
        },
        "first_call_s": round(first_call_s, 3),
        "first_call_kind": first_call_kind(),
        "warm_training_s": round(warm_s, 3),
        "results": results,
        "machine": machine_info(),
        "reference": REFERENCE,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
