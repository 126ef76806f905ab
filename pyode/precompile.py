"""Compile pyode's Numba CPU kernels ahead of time: ``python -m pyode.precompile``.

Numba compiles each batch kernel of :mod:`pyode.kernels.rk` (called through
:mod:`pyode.backends.numba_cpu`) on its first call, once per dtype (3–15 s each on 2 cores,
about a minute for the set), and caches the machine code on disk (``cache=True``). This
command makes those first calls now — before a training run, in a Docker build, on a cluster's
login node — by running tiny solves through the public API: ``odeint`` (``forward_batch``),
``odeint_adjoint`` with its ``vjp`` for the backsolve adjoint (``adjoint_batch``) and for
``adjoint_method="checkpoint"`` (``record_batch``, ``checkpoint_batch``). Kernels already in the
disk cache only load (well under a second).

Progress shows as a tqdm bar on a terminal (extra ``progress``), as log lines otherwise; the
last line, on stdout, sums up what was compiled and how long it took. The CUDA kernels are not
compiled here: numba-cuda compiles them per device on first launch.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from .progress import Progress, progress

__all__ = ["DTYPES", "KERNELS", "precompile", "summary", "main"]

#: The working dtypes the kernels are compiled for (one compiled version each).
DTYPES = ("float64", "float32")

#: The CPU batch kernels, in the order the solves below first call them.
KERNELS = ("forward_batch", "adjoint_batch", "record_batch", "checkpoint_batch")

LOG = logging.getLogger("pyode")


def _solves(dtype: str) -> list[tuple[str, Callable[[], object]]]:
    """(kernel, solve) pairs: each solve's first run compiles that kernel for ``dtype``.

    The solves use one tiny nn field (two samples, one short interval); the kernels'
    signature depends only on the dtype, not on the layer widths or the method.
    """
    from . import nn
    from .adjoint import odeint_adjoint
    from .solvers import odeint

    f = nn.MLP([2, 4, 2], activation="tanh", seed=0, dtype=dtype)
    y0 = np.array([[1.0, 0.5], [0.5, -0.5]], dtype=dtype)
    t = np.array([0.0, 0.1], dtype=dtype)
    record = {}

    def backsolve():
        ys, vjp = odeint_adjoint(f, y0, t, backend="numba")
        vjp(np.ones_like(ys))

    def checkpoint_forward():
        record["ys_vjp"] = odeint_adjoint(f, y0, t, backend="numba",
                                          adjoint_method="checkpoint")

    def checkpoint_backward():
        ys, vjp = record.pop("ys_vjp")
        vjp(np.ones_like(ys))

    return [("forward_batch", lambda: odeint(f, y0, t, backend="numba")),
            ("adjoint_batch", backsolve),
            ("record_batch", checkpoint_forward),
            ("checkpoint_batch", checkpoint_backward)]


def precompile(dtypes: Sequence[str] = DTYPES, counter: Progress | None = None) -> dict:
    """Compile (or load from Numba's disk cache) every CPU batch kernel for ``dtypes``.

    Parameters
    ----------
    dtypes : sequence of {"float64", "float32"}, optional
        Default both.
    counter : pyode.progress.Progress, optional
        Advanced by one per kernel and dtype (``len(KERNELS) * len(dtypes)`` in all), e.g. a
        bar from :func:`pyode.progress.progress`. Default: none.

    Returns
    -------
    dict
        ``{"kernels": [FirstCall, ...], "seconds": float}``: one
        :class:`pyode.backends.numba_cpu.FirstCall` per kernel and dtype (its ``source`` says
        whether it was compiled or loaded, ``seconds`` how long its first call took), and the total
        wall time in s.

    Raises
    ------
    ValueError
        An unknown dtype.
    RuntimeError
        ``NUMBA_DISABLE_JIT=1`` is set (nothing to compile), or a solve did not reach its
        kernel.
    """
    import numba

    from .backends import numba_cpu as rk

    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ValueError(f"unknown dtype {bad[0]!r}; pyode's kernels compile for "
                         f"{', '.join(DTYPES)}")
    if numba.config.DISABLE_JIT:
        raise RuntimeError("NUMBA_DISABLE_JIT=1 is set, so Numba compiles nothing; unset it to "
                           "precompile the kernels")
    start = time.perf_counter()
    done = []
    hint, rk.COMPILE_HINT = rk.COMPILE_HINT, ""       # the compile log would advise this command
    try:
        for dtype in dtypes:
            for kernel, solve in _solves(dtype):
                solve()
                done.append(_first_call(rk, kernel, dtype))
                if counter is not None:
                    counter.update(1, kernel=f"{kernel}/{dtype}")
    finally:
        rk.COMPILE_HINT = hint
    return {"kernels": done, "seconds": time.perf_counter() - start}


def _first_call(rk, kernel: str, dtype: str):
    """The FirstCall record of ``kernel`` for ``dtype`` (RuntimeError if it never ran)."""
    for call in rk.FIRST_CALLS.values():
        if call.kernel == kernel and call.dtype == dtype:
            return call
    raise RuntimeError(f"the {dtype} solve meant to compile {kernel} did not call it: the "
                       "solvers' dispatch to pyode.backends.numba_cpu changed (update pyode/precompile.py)")


def summary(result: dict) -> str:
    """The one-line summary of :func:`precompile`'s result: what compiled, how long it took."""
    calls = result["kernels"]
    compiled = [c for c in calls if c.source == "compile"]
    unknown = [c for c in calls if c.source == "unknown"]
    n_loaded = len(calls) - len(compiled) - len(unknown)
    parts = []
    if compiled:
        parts.append(f"{len(compiled)} compiled in {sum(c.seconds for c in compiled):.1f} s")
    if n_loaded:
        parts.append(f"{n_loaded} loaded from Numba's disk cache")
    if unknown:
        parts.append(f"{len(unknown)} compiled or loaded (the cache probe failed)")
    how = ", ".join(parts)
    kernels = ", ".join(dict.fromkeys(c.kernel for c in calls))
    dtypes = ", ".join(dict.fromkeys(c.dtype for c in calls))
    return (f"pyode.precompile: {kernels} for {dtypes} ready in {result['seconds']:.1f} s; "
            f"{how}")


class _AboveBar(logging.Handler):
    """Writes log records above a tqdm bar (``Progress.write``) instead of through it."""

    def __init__(self, counter: Progress):
        super().__init__()
        self._counter = counter

    def emit(self, record):
        try:
            self._counter.write(self.format(record))
        except Exception:                 # logging must never raise
            self.handleError(record)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pyode.precompile [--dtype {float64,float32}]...``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m pyode.precompile",
        description="Compile pyode's Numba CPU kernels ahead of time (Numba caches them on "
                    "disk); without this, each compiles on its first use.")
    parser.add_argument("--dtype", action="append", choices=DTYPES,
                        help="compile for this dtype only (repeat it for both; default: both)")
    parser.add_argument("--no-bar", action="store_true",
                        help="log plain lines even on a terminal")
    args = parser.parse_args(argv)
    dtypes = tuple(dict.fromkeys(args.dtype)) if args.dtype else DTYPES
    counter = progress(len(KERNELS) * len(dtypes), desc="precompile",
                       bar=False if args.no_bar else None)
    # The compile log and, without a bar, the progress lines go to stderr; stdout gets the
    # summary alone.
    handler = _AboveBar(counter) if counter.bar else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = LOG.level, LOG.propagate
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    try:
        with counter:
            result = precompile(dtypes, counter)
    except RuntimeError as exc:
        print(f"pyode.precompile: {exc}", file=sys.stderr)
        return 1
    finally:
        LOG.removeHandler(handler)
        LOG.setLevel(level)
        LOG.propagate = propagate
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
