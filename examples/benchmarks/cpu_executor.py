"""Time the Numba CPU back end's call floor, its floor beside a busy process, its throughput
at B = 1000 and (``--compile``) its cold compile, and print the figures as JSON.

* ``floor_us``: one sample (MLP 2-4-2, tanh, float64, t = [0, 1e-6], dopri5), warm:
  ``odeint`` and ``odeint_adjoint`` + ``vjp``, µs per call. This is the fixed cost of a
  call: validation, packing and the kernel launch, with almost no solving.
* ``busy_floor_us``: the same while one other CPU-bound process (``while True: pass``, started
  and killed by this script) runs. A back end whose worker threads spin-wait for a core that
  the scheduler gave to the neighbour shows it here.
* ``throughput_ms``, ``busy_throughput_ms``: ms per call at B = 1000 for the spiral example's field
  (``nn.MLP([2, 50, 2], activation="tanh", input_activation="cube")``, dopri5 at rtol 1e-7 /
  atol 1e-9, 10 output times over 0.225 time units, float64): ``odeint`` and
  ``odeint_adjoint`` + ``vjp``; quiet, and beside the busy process.
* ``compile_s`` (``--compile``): each measured in a fresh process with an empty
  ``NUMBA_CACHE_DIR``, as the spiral example meets them: the first ``odeint``
  (``forward_batch``), then the first ``odeint_adjoint`` + ``vjp`` (``adjoint_batch``), then
  the first checkpointed pair (``record_batch``, ``checkpoint_batch``); ``import_s`` is
  ``import pyode``.

Every figure is the median over ``--rounds`` rounds; within a round the measurements
alternate, so a neighbour's load falls on all of them alike. With ``--against DIR`` each
round runs twice in fresh processes, once on the ``pyode`` that ``import pyode`` finds and
once on the ``pyode`` package in ``DIR`` (put first on ``PYTHONPATH``; a directory holding
``pyode/`` with its kernels at ``pyode/kernels``, e.g. ``pip install --no-deps --target DIR``
of another version), alternating, and the JSON holds both sides and their ratios.

The thread count is the back end's (``NUMBA_NUM_THREADS``; README, section "Performance").

Usage::

    python examples/benchmarks/cpu_executor.py [--rounds 7] [--batch 1000] [--compile]
                                               [--compile-rounds 1] [--no-busy]
                                               [--against DIR]

This is a benchmark, not a test: it asserts nothing.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

#: Output times of the throughput problem: one spiral window (10 of the 1000 points on [0, 25]).
WINDOW = np.linspace(0.0, 25.0 / 999 * 9, 10)
RTOL, ATOL = 1e-7, 1e-9

_COMPILE_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import pyode
from pyode import nn
out = {"import_s": time.perf_counter() - t0}
f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=0)
y0 = np.random.default_rng(0).uniform(-2.0, 2.0, size=(20, 2))
t = np.linspace(0.0, 25.0 / 999 * 9, 10)
kw = dict(method="dopri5", rtol=1e-7, atol=1e-9, backend="numba")
t0 = time.perf_counter()
pyode.odeint(f, y0, t, **kw)
out["forward_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
ys, vjp = pyode.odeint_adjoint(f, y0, t, **kw)
vjp(np.ones_like(ys))
out["adjoint_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
ys, vjp = pyode.odeint_adjoint(f, y0, t, adjoint_method="checkpoint", **kw)
vjp(np.ones_like(ys))
out["checkpoint_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def _per_call(fn, min_time, min_calls=20):
    """Mean seconds per call of ``fn`` over at least ``min_calls`` calls and ``min_time`` s."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(min_calls):
            fn()
        n += min_calls
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n


def _problems(batch):
    """The four timed functions: floor forward/gradient, throughput forward/gradient."""
    import pyode
    from pyode import nn

    small = nn.MLP([2, 4, 2], activation="tanh", seed=0)
    y1, t1 = np.array([1.0, 0.5]), np.array([0.0, 1e-6])
    big = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=0)
    yb = np.random.default_rng(0).uniform(-2.0, 2.0, size=(batch, 2))
    kw = dict(method="dopri5", rtol=RTOL, atol=ATOL)

    def floor_fwd():
        pyode.odeint(small, y1, t1)

    def floor_grad():
        ys, vjp = pyode.odeint_adjoint(small, y1, t1)
        vjp(np.ones_like(ys))

    def big_fwd():
        pyode.odeint(big, yb, WINDOW, **kw)

    def big_grad():
        ys, vjp = pyode.odeint_adjoint(big, yb, WINDOW, **kw)
        vjp(np.ones_like(ys))

    return floor_fwd, floor_grad, big_fwd, big_grad


class _BusyNeighbour:
    """``with _BusyNeighbour():`` one other CPU-bound process runs (killed on exit)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)                       # let it get going
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def measure_rounds(rounds, batch, busy=True, floor_time=0.15, big_time=0.5):
    """Per round: floor, throughput, then both beside a busy process. Returns the lists of
    values per figure (µs for the floors, ms for the throughputs)."""
    floor_fwd, floor_grad, big_fwd, big_grad = _problems(batch)
    for fn in (floor_fwd, floor_grad):          # warm-up: compile or load, caches, branch
        for _ in range(200):
            fn()
    for fn in (big_fwd, big_grad):
        for _ in range(3):
            fn()
    res = {k: [] for k in ("floor_fwd", "floor_grad", "busy_fwd", "busy_grad", "big_fwd",
                           "big_grad", "busy_big_fwd", "busy_big_grad")}
    for _ in range(rounds):
        res["floor_fwd"].append(_per_call(floor_fwd, floor_time) * 1e6)
        res["floor_grad"].append(_per_call(floor_grad, floor_time) * 1e6)
        res["big_fwd"].append(_per_call(big_fwd, big_time, 3) * 1e3)
        res["big_grad"].append(_per_call(big_grad, big_time, 2) * 1e3)
        if busy:
            with _BusyNeighbour():
                res["busy_fwd"].append(_per_call(floor_fwd, floor_time) * 1e6)
                res["busy_grad"].append(_per_call(floor_grad, floor_time) * 1e6)
                res["busy_big_fwd"].append(_per_call(big_fwd, big_time, 3) * 1e3)
                res["busy_big_grad"].append(_per_call(big_grad, big_time, 2) * 1e3)
    return {k: v for k, v in res.items() if v}


def _median(values, digits=1):
    return round(float(np.median(values)), digits)


def summarize(res, batch):
    """The JSON figures of ``measure_rounds``' lists (medians)."""
    out = {"floor_us": {"odeint": _median(res["floor_fwd"]),
                        "odeint_adjoint_vjp": _median(res["floor_grad"])},
           "throughput_ms": {"batch": batch, "odeint": _median(res["big_fwd"], 2),
                             "odeint_adjoint_vjp": _median(res["big_grad"], 2)}}
    if "busy_fwd" in res:
        out["busy_floor_us"] = {"odeint": _median(res["busy_fwd"]),
                                "odeint_adjoint_vjp": _median(res["busy_grad"])}
        out["busy_throughput_ms"] = {"batch": batch, "odeint": _median(res["busy_big_fwd"], 2),
                                     "odeint_adjoint_vjp": _median(res["busy_big_grad"], 2)}
    return out


def cold_compile(env=None):
    """Seconds of import and of each first call, in a fresh process with an empty cache."""
    with tempfile.TemporaryDirectory(prefix="pyode-nbcache-") as cache, \
            tempfile.TemporaryDirectory(prefix="pyode-cwd-") as cwd:
        env = dict(os.environ if env is None else env, NUMBA_CACHE_DIR=cache)
        run = subprocess.run([sys.executable, "-c", _COMPILE_CHILD], env=env, cwd=cwd,
                             capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-3000:])
    return {k: round(v, 2) for k, v in json.loads(run.stdout.splitlines()[-1]).items()}


def machine_info():
    import numba

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:        # not on Linux
        affinity = None
    return {"cpu_count": os.cpu_count(), "cpus_available": affinity,
            "machine": platform.machine(), "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
            "numba_disable_jit": bool(numba.config.DISABLE_JIT),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__}


def _child_round(args):
    """One round in this process (``--against``'s children): raw lists as JSON."""
    res = measure_rounds(1, args.batch, busy=not args.no_busy)
    import pyode
    print(json.dumps({"res": res, "pyode": os.path.dirname(pyode.__file__)}))


def _run_side(args, against):
    env = dict(os.environ)
    if against:
        env["PYTHONPATH"] = os.pathsep.join([against] + [p for p in [env.get("PYTHONPATH")]
                                                         if p])
    with tempfile.TemporaryDirectory(prefix="pyode-cwd-") as cwd:   # no checkout on sys.path
        cmd = [sys.executable, os.path.abspath(__file__), "--child-round", "--batch",
               str(args.batch)] + (["--no-busy"] if args.no_busy else [])
        run = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                             timeout=1800)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-3000:])
    return json.loads(run.stdout.splitlines()[-1]), env


def _ratios(new, old):
    """new / old for every figure the two summaries share."""
    out = {}
    for key, figures in new.items():
        out[key] = {k: round(v / old[key][k], 3) for k, v in figures.items()
                    if k != "batch" and old.get(key, {}).get(k)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--compile", action="store_true",
                        help="also time cold compiles, each in a fresh process and cache")
    parser.add_argument("--compile-rounds", type=int, default=1)
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-neighbour floor")
    parser.add_argument("--against", metavar="DIR",
                        help="alternate rounds with the pyode package in DIR")
    parser.add_argument("--child-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_round:
        _child_round(args)
        return 0
    report = {"machine": machine_info(), "rounds": args.rounds}
    if not args.against:
        report.update(summarize(measure_rounds(args.rounds, args.batch, not args.no_busy),
                                args.batch))
        if args.compile:
            runs = [cold_compile() for _ in range(args.compile_rounds)]
            report["compile_s"] = {k: _median([r[k] for r in runs], 2) for k in runs[0]}
        print(json.dumps(report, indent=2))
        return 0
    against = os.path.abspath(args.against)
    sides = {"this": None, "against": against}
    raw = {name: {} for name in sides}
    paths = {}
    compiles = {name: [] for name in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            got, env = _run_side(args, sides[name])
            paths[name] = got["pyode"]
            for k, v in got["res"].items():
                raw[name].setdefault(k, []).extend(v)
            if args.compile and r < args.compile_rounds:
                compiles[name].append(cold_compile(env))
    for name in sides:
        report[name] = {"pyode": paths[name], **summarize(raw[name], args.batch)}
        if compiles[name]:
            report[name]["compile_s"] = {k: _median([c[k] for c in compiles[name]], 2)
                                         for k in compiles[name][0]}
    report["ratio_this_over_against"] = _ratios(
        {k: v for k, v in report["this"].items() if k != "pyode"},
        {k: v for k, v in report["against"].items() if k != "pyode"})
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
