"""Kernel launches from several Python threads, under every threading layer Numba offers.

Numba's workqueue layer is not thread-safe: two Python threads launching parallel kernels at
once abort the process ("Concurrent access has been detected", exit 134). pyode serialises
the launches under such a layer (``pyode.backends.numba_cpu.launch_guard``), so threads that
solve different problems get the results of a serial run, bit for bit, under omp, workqueue
and tbb alike. The layer is chosen once per process, so each runs in a subprocess.
"""
import os
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent("""
    import sys
    import threading

    import numba
    import numpy as np

    from pyode import nn, odeint, odeint_adjoint

    T = np.linspace(0.0, 1.0, 5)
    # Different problems per thread: fields, batch sizes (1 runs on one Numba thread), dtypes.
    PROBLEMS = [(nn.MLP([2, 8, 2], seed=k, dtype=dtype),
                 np.random.default_rng(k).normal(size=(B, 2)).astype(dtype))
                for k, (B, dtype) in enumerate([(16, np.float64), (1, np.float64),
                                                (7, np.float32), (32, np.float64)])]

    def job(k):
        f, y0 = PROBLEMS[k]
        ys = odeint(f, y0, T, rtol=1e-7, atol=1e-9)
        ys_a, vjp = odeint_adjoint(f, y0, T, rtol=1e-7, atol=1e-9)
        g = vjp(np.ones_like(ys_a))
        return [ys, ys_a, g.y0, g.params, g.t]

    try:
        serial = [job(k) for k in range(len(PROBLEMS))]
    except ValueError as exc:                 # the layer is not installed here
        if "threading layer" in str(exc).lower():
            print("UNAVAILABLE", exc)
            sys.exit(0)
        raise
    ROUNDS = 5
    out = {}

    def worker(k):
        out[k] = [job(k) for _ in range(ROUNDS)]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(PROBLEMS))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for k in range(len(PROBLEMS)):
        assert len(out[k]) == ROUNDS
        for got in out[k]:
            for a, b in zip(got, serial[k]):
                assert a.dtype == b.dtype and np.array_equal(a, b), (k, a, b)
    print("OK", numba.threading_layer())
""")


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_threads_solve_bit_identically_to_serial_under_every_layer(layer):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="2")
    run = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (run.returncode, run.stdout[-2000:], run.stderr[-4000:])
    if run.stdout.startswith("UNAVAILABLE"):
        pytest.skip(f"Numba's {layer} threading layer is not installed here")
    assert run.stdout.split() == ["OK", layer]
