"""Solves from several Python threads at once, on every thread count of the CPU back end.

The Numba CPU kernels are serial and release the GIL; ``pyode.backends.numba_cpu.run_kernel``
runs the row chunks of a batch on the calling thread and a pool of helper threads, and uses no
Numba threading layer at all (so none of them can abort, spin-wait or serialise). Python threads
that solve different problems at once must get the results of a serial run, bit for bit, and
those results must not depend on the thread count (``NUMBA_NUM_THREADS``), which is read when
numba is imported: each count runs in a subprocess. ``NUMBA_THREADING_LAYER=workqueue``, the
layer that is not thread-safe (it aborted the process when the kernels were ``prange`` loops),
is set in one of them to show that the layer no longer matters.
"""
import os
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent("""
    import hashlib
    import threading

    import numba
    import numpy as np

    from pyode import nn, odeint, odeint_adjoint

    T = np.linspace(0.0, 1.0, 5)
    # Different problems per thread: fields, batch sizes (1 runs in the calling thread), dtypes.
    PROBLEMS = [(nn.MLP([2, 8, 2], seed=k, dtype=dtype),
                 np.random.default_rng(k).normal(size=(B, 2)).astype(dtype))
                for k, (B, dtype) in enumerate([(16, np.float64), (1, np.float64),
                                                (7, np.float32), (32, np.float64)])]

    def job(k):
        f, y0 = PROBLEMS[k]
        ys = odeint(f, y0, T, rtol=1e-7, atol=1e-9)
        ys_a, vjp = odeint_adjoint(f, y0, T, rtol=1e-7, atol=1e-9)
        g = vjp(np.ones_like(ys_a))
        ys_c, vjp_c = odeint_adjoint(f, y0, T, rtol=1e-7, atol=1e-9,
                                     adjoint_method="checkpoint")
        g_c = vjp_c(np.ones_like(ys_c))
        return [ys, ys_a, g.y0, g.params, g.t, ys_c, g_c.y0, g_c.params, g_c.t]

    serial = [job(k) for k in range(len(PROBLEMS))]
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
    assert not numba.np.ufunc.parallel._is_initialized, "a Numba threading layer was started"
    digest = hashlib.sha256()
    for arrays in serial:
        for a in arrays:
            digest.update(np.ascontiguousarray(a).tobytes())
    print("OK", numba.config.NUMBA_NUM_THREADS, digest.hexdigest())
""")


def test_threads_solve_bit_identically_to_serial_on_every_thread_count():
    runs = {}
    for threads, layer in [("1", None), ("2", "workqueue"), ("3", None)]:
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        env.pop("NUMBA_THREADING_LAYER", None)
        if layer:
            env["NUMBA_THREADING_LAYER"] = layer
        run = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, (threads, run.returncode, run.stdout[-2000:],
                                     run.stderr[-4000:])
        ok, count, digest = run.stdout.split()
        assert (ok, count) == ("OK", threads)
        runs[threads] = digest
    assert len(set(runs.values())) == 1, runs
