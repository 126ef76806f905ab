"""The CPU back end: thin wrappers around the Numba batch kernels of ``kernels.rk``.

Each wrapper converts and allocates (:class:`~pyode.backends.program.Packed`), runs one serial
``@njit(nogil=True)`` batch kernel over the batch's rows on a few threads (:func:`run_kernel`),
and raises the ``pyode.errors`` exception of the first failed sample (:func:`raise_failure`).
The module also holds the checkpointed adjoint's hook (record, then replay) that
``pyode.checkpoint`` calls.
"""
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

from ..errors import (Float32TimeResolutionError, NonFiniteError, StepSizeUnderflowError,
                      TooManyStepsError)
from ..kernels.codes import NONFINITE, OK, UNDERFLOW, UNDERFLOW_ULPS
from ..kernels.numbers import adjoint_parts, forward_parts
from ..kernels.rk import adjoint_batch, checkpoint_batch, forward_batch, record_batch
from ..solvers import fixed_step_counts
from ..trajectory import SampleSteps
from .program import packed

# ---------------------------------------------------------------------------------------------
# The compile log: the first call of a batch kernel in a process says whether Numba compiles it.
# ---------------------------------------------------------------------------------------------

LOG = logging.getLogger("pyode")

#: Seconds a cold compile of each batch kernel takes for one dtype, as the log words it. Measured
#: on a 2-core x86-64 machine (numba 0.68, empty NUMBA_CACHE_DIR), float64 and float32 alike:
#: forward 5 s, adjoint 9 s, checkpoint 13-15 s; record 3-4 s after forward_batch (whose
#: compiled routines it reuses) and 6 s as the first kernel of a process. The set: about 60 s.
COMPILE_SECONDS = {"forward_batch": "5", "adjoint_batch": "9", "record_batch": "3-6",
                   "checkpoint_batch": "15"}

#: The advice that ends the compile log's line (``python -m pyode.precompile`` blanks it).
COMPILE_HINT = "; 'python -m pyode.precompile' compiles all kernels ahead of time"

#: A first call slower than this (s) is logged at INFO with its duration, whatever the cache probe
#: said; loading a kernel from the disk cache takes well under a second.
SLOW_FIRST_CALL_S = 1.0

# Where the machine code of a first call comes from (FirstCall.source), as the log words it.
_SOURCES = {"compile": "compiled", "disk cache": "loaded from Numba's disk cache",
            "process": "compiled earlier in this process", "unknown": "compiled or loaded",
            "no JIT": "NUMBA_DISABLE_JIT=1: run as Python"}


@dataclass
class FirstCall:
    """What the first call of a batch kernel in this process did (values of ``FIRST_CALLS``).

    Attributes
    ----------
    kernel : str
        The kernel's name (``forward_batch``, ...).
    dtype : str
        The working dtype, ``"float64"`` or ``"float32"``.
    source : str
        Where its machine code came from: ``"compile"`` (Numba compiled it), ``"disk cache"``,
        ``"process"`` (compiled earlier in this process, outside ``call_with_compile_log``),
        ``"unknown"`` (the cache probe failed) or ``"no JIT"`` (``NUMBA_DISABLE_JIT=1``).
    seconds : float
        Wall time of the first call, the compile or the cache load (:func:`run_kernel` makes it
        on an empty range of rows, so no solving is included).
    """

    kernel: str
    dtype: str
    source: str
    seconds: float


#: (kernel, dtype) → FirstCall for every kernel called through ``call_with_compile_log``.
FIRST_CALLS = {}


def call_with_compile_log(kernel, dtype, *args):
    """Call a batch kernel; its first call in the process, per dtype, logs any compile.

    Numba compiles a kernel for each dtype on its first call (3–15 s each, ``COMPILE_SECONDS``)
    unless its disk cache (``cache=True``) already holds it. Through the ``pyode`` logger, the
    first call logs at INFO before it compiles (which kernel, about how long) and after it
    returns if it took over ``SLOW_FIRST_CALL_S`` (how long it took); otherwise at DEBUG.
    Later calls cost one dict lookup.

    Parameters
    ----------
    kernel : numba dispatcher
        One of the ``@njit`` batch kernels above (any dispatcher works; a plain Python function,
        as under ``NUMBA_DISABLE_JIT=1``, is just called).
    dtype : numpy.dtype
        The working dtype of the call: Numba compiles one version per dtype.
    *args
        The kernel's arguments.

    Returns
    -------
    The kernel's return value.
    """
    if (kernel, dtype) in FIRST_CALLS:
        return kernel(*args)
    return _first_call(kernel, dtype, args)


def _first_call(kernel, dtype, args):
    """``kernel(*args)`` as its first call in the process: log and time it (see above)."""
    name = getattr(kernel, "__name__", repr(kernel))
    dname = np.dtype(dtype).name
    source = _code_source(kernel, args) if hasattr(kernel, "py_func") else "no JIT"
    if source == "compile":
        about = COMPILE_SECONDS.get(name)
        LOG.info("compiling the Numba kernel %s for %s (first use%s; then cached on disk%s)",
                 name, dname, f", about {about} s on 2 cores" if about else "", COMPILE_HINT)
    else:
        LOG.debug("first call of the Numba kernel %s for %s: %s", name, dname, _SOURCES[source])
    start = time.perf_counter()
    result = kernel(*args)
    seconds = time.perf_counter() - start
    FIRST_CALLS[kernel, dtype] = FirstCall(name, dname, source, seconds)
    level = logging.INFO if seconds > SLOW_FIRST_CALL_S and source != "no JIT" else logging.DEBUG
    LOG.log(level, "first call of the Numba kernel %s for %s took %.1f s (%s)", name, dname,
            seconds, _SOURCES[source])
    return result


def _code_source(kernel, args):
    """Where Numba will take the machine code of ``kernel(*args)`` from (``FirstCall.source``).

    Numba has no public API for this, so we ask its dispatcher what it is about to look up (as
    ``Dispatcher.compile`` does in numba 0.68): the signature of these arguments among the
    overloads compiled in this process, then that signature's key in the index of the disk
    cache. On any surprise we fall back on whether the cache index file exists at all.
    """
    try:
        sig = tuple(kernel.typeof_pyval(a) for a in args)
        if sig in kernel.overloads:
            return "process"
        cache = kernel._cache
        key = cache._index_key(sig, kernel.targetctx.codegen())
        return "disk cache" if key in cache._cache_file._load_index() else "compile"
    except Exception:                     # numba internals changed: the coarse probe below
        pass
    try:
        return "unknown" if os.path.isfile(kernel._cache._cache_file._index_path) else "compile"
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# The executor: a batch's rows in chunks, on the calling thread and a pool of helper threads.
# ---------------------------------------------------------------------------------------------

#: Chunks per thread that a batch is cut into. Samples take different numbers of steps, so the
#: threads take chunks one after another from a shared counter until none is left: a thread
#: that drew easy samples takes more chunks (dynamic scheduling).
CHUNKS_PER_THREAD = 4

_POOL = None                    # the helper threads (ThreadPoolExecutor), made on first use
_POOL_LOCK = threading.Lock()


def num_threads():
    """Threads that a batch of several samples runs on, counting the calling thread.

    Design decision: pyode has no setting of its own; it takes Numba's. ``NUMBA_NUM_THREADS``
    (the environment variable, read when numba is imported; default: the CPUs this process may
    use) sets the number, and ``numba.set_num_threads(n)`` lowers it for the calling Python
    thread, as it does for Numba's own parallel code. Reading the count through
    ``numba.get_num_threads`` would start Numba's threading layer (OpenMP or TBB threads that
    pyode never uses), so it is read there only once the layer has been started — which
    ``numba.set_num_threads`` does.
    """
    if numba.config.DISABLE_JIT:
        return 1                          # plain Python kernels hold the GIL: nothing to gain
    # numba internals: if the flag is gone, a numba.set_num_threads is missed (the env holds)
    started = getattr(_numba_parallel, "_is_initialized", False)
    return numba.get_num_threads() if started else numba.config.NUMBA_NUM_THREADS


def _pool():
    """The helper threads: at most NUMBA_NUM_THREADS − 1 (the caller works too), started as
    they are first needed and shared by every Python thread that calls pyode."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix="pyode-cpu")
        return _POOL


def _forget_pool():
    """After a fork, the child holds no threads of the pool: make it a new one on first use."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run_kernel(kernel, dtype, batch, *args):
    """Run a batch kernel on the rows 0 … batch − 1: ``kernel(*args, lo, hi)`` over chunks.

    Design decision: the kernels are serial loops over a row range that release the GIL
    (``@njit(nogil=True)``), and the threads are Python's. One sample, or one thread
    (:func:`num_threads`), runs in the calling thread with no hand-over at all. A larger batch
    is cut into ``CHUNKS_PER_THREAD`` chunks per thread that the calling thread and
    ``num_threads() − 1`` helper threads of a shared pool take in turn; the call returns when
    all are done. Compared with Numba's ``parallel=True`` (``prange``) this needs no threading
    layer: nothing spin-waits for a core that another process holds (OpenMP's threads did: a
    one-sample call cost 12–20× more beside one busy process), any number of Python threads
    may call at once under any configuration, and the kernels compile in half the time.

    Every sample is solved by the same serial code whichever chunk it falls in, and the kernels
    write only the rows of their own samples, so the results are bit-identical to a serial run
    for every thread count and split. The first call of a kernel per dtype runs it on an empty
    range through :func:`call_with_compile_log`, which compiles (or loads) it and logs so.
    """
    if (kernel, dtype) not in FIRST_CALLS:
        call_with_compile_log(kernel, dtype, *args, 0, 0)
    if batch <= 1:
        return kernel(*args, 0, batch)
    threads = min(num_threads(), batch)
    if threads <= 1:
        return kernel(*args, 0, batch)
    n_chunks = min(batch, threads * CHUNKS_PER_THREAD)
    bounds = [batch * i // n_chunks for i in range(n_chunks + 1)]
    claimed = [0]
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                i = claimed[0]
                claimed[0] = i + 1
            if i >= n_chunks:
                return
            kernel(*args, bounds[i], bounds[i + 1])

    pool = _pool()
    helpers = [pool.submit(work) for _ in range(threads - 1)]
    errors = []
    try:
        work()
    finally:
        with lock:                    # after an exception here (Ctrl-C): no chunk starts now
            claimed[0] = n_chunks
        # A helper still queued (its thread busy with another caller's chunks) would find
        # nothing left: cancel it rather than wait for it. The others are waited for: they
        # write into this call's arrays.
        for helper in helpers:
            if not helper.cancel():
                try:
                    helper.result()
                except BaseException as exc:      # raised below, once every helper is done
                    errors.append(exc)
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------------------------
# Thin wrappers: convert, allocate, call, raise.
# ---------------------------------------------------------------------------------------------

def raise_failure(status, fail, stats, what="", max_num_steps=None):
    """Raise the ``pyode.errors`` exception of the first failed sample, if any."""
    if OK == 0 and not status.any():      # every sample OK: the common case, fast
        return
    bad = np.nonzero(status != OK)[0]
    i = int(bad[0])
    sample = None if status.shape[0] == 1 else i
    t, dt, nfev = (float(x) for x in fail[i])
    code = status[i]
    if code == UNDERFLOW:
        # float32 kernels keep t in float32: name its resolution when that is what stopped
        # the step (not the tiny floor near t = 0) and a float64 t would move by dt.
        eps32, f64 = np.finfo(np.float32).eps, np.finfo(np.float64)
        coarse = (fail.dtype == np.float32 and abs(dt) < UNDERFLOW_ULPS * eps32 * abs(t)
                  and abs(dt) >= UNDERFLOW_ULPS * (f64.eps * abs(t) + f64.tiny))
        kind = Float32TimeResolutionError if coarse else StepSizeUnderflowError
        raise kind(f"Step size underflow{what}", t, dt, nfev, sample)
    if code == NONFINITE:
        raise NonFiniteError(f"Non-finite state or derivative{what}", t, dt, nfev, sample)
    raise TooManyStepsError(f"Reached max_num_steps={max_num_steps}{what}", t, dt, nfev, sample)


def stats_dict(stats):
    """(B, 3) int64 → dict of (B,) arrays nfev, n_accepted, n_rejected."""
    return dict(nfev=stats[:, 0].copy(), n_accepted=stats[:, 1].copy(),
                n_rejected=stats[:, 2].copy())


def odeint_nn(f, yb, t_arr, tab, rtol, atol, opts):
    """Forward solve of an nn field on the CPU kernels; returns ys (T, B, D) and stats."""
    B, D = yb.shape
    y0 = np.ascontiguousarray(yb)
    k = packed(f, tab, rtol, atol, opts, D, forward_parts(D), y0.dtype)
    t_out = np.ascontiguousarray(t_arr, dtype=y0.dtype)
    ys = np.empty((t_out.shape[0], B, D), dtype=y0.dtype)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3), dtype=y0.dtype)
    run_kernel(forward_batch, y0.dtype, B, k.ops, k.opf, k.theta, y0, t_out, k.tab, k.atol, ys,
               stats, status, fail, k.mw, k.cst)
    raise_failure(status, fail, stats, max_num_steps=opts.get("max_num_steps"))
    return ys, stats_dict(stats)


def adjoint_nn(f, yb, gb, t_arr, tab, rtol, atol, opts, seminorm=False, time_gradients=True):
    """Adjoint backward pass of an nn field on the CPU kernels (``adjoint.backward_pass``).

    Returns (a (B, D), a_theta (B, P), dLdt (T,) or None, stats, recon (B,)). The backward
    error norm is the largest of the RMS norms of z, a, a_θ and a_t (``kernels.numbers``), of
    z and a only with ``seminorm``. Without ``time_gradients`` a_t leaves the norm, so the
    steps are those of the NumPy path, which does not carry it; the kernel's state keeps its
    a_t slot (and its T − 1 evaluations of g_i · f, counted in nfev), and dLdt is None.
    """
    T, B, D = yb.shape
    P = f.params.size
    W = 2 * D + P + 1
    ys = np.ascontiguousarray(yb)
    gs = np.ascontiguousarray(gb, dtype=ys.dtype)
    k = packed(f, tab, rtol, atol, opts, W, adjoint_parts(D, D, P, time_gradients, seminorm),
               ys.dtype)
    t_out = np.ascontiguousarray(t_arr, dtype=ys.dtype)
    a = np.empty((B, D), dtype=ys.dtype)
    a_theta = np.empty((B, P), dtype=ys.dtype)
    gf = np.zeros((B, T), dtype=ys.dtype)
    recon = np.zeros(B, dtype=ys.dtype)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3), dtype=ys.dtype)
    run_kernel(adjoint_batch, ys.dtype, B, k.ops, k.opf, k.theta, ys, gs, t_out, k.tab, k.atol,
               a, a_theta, gf, recon, stats, status, fail, k.mw, k.cst)
    raise_failure(status, fail, stats, " in the adjoint (backward) solve",
                  opts.get("max_num_steps"))
    dLdt = gf.sum(axis=0, dtype=np.float64) if time_gradients else None
    return a, a_theta, dLdt, stats_dict(stats), recon


# ---------------------------------------------------------------------------------------------
# The checkpointed adjoint's hook (pyode.checkpoint): record, then replay.
# ---------------------------------------------------------------------------------------------

#: Accepted steps per sample that the first recording pass makes room for (adaptive methods;
#: a fixed-step solve's count is known). Samples that take more are recorded again.
RECORD_STEPS = 64

#: Replay slots per sample: REPLAY_SLOTS_PER_STAGE · s + 2 (s stages). One attempted step of
#: the adjoint reads y(t) at ≤ s stage times, so ≤ s segments; a rejected attempt leaves up to s
#: more, further back, held until the solve passes them (measured: ≤ 6 on the test problems).
#: With too few slots a segment is replayed again: the same gradient, more evaluations.
REPLAY_SLOTS_PER_STAGE = 2


class StepRecord:
    """The accepted steps of a kernel forward solve, per sample, padded to one array.

    What ``pyode.trajectory.StepRecorder(B, every)`` keeps for the NumPy path, in the layout
    of the kernels (section "Checkpointed adjoint").

    Attributes
    ----------
    steps : ndarray, shape (B, 3, N)
        Start t, signed size h and end t_new (units of t) of every accepted step; N is the
        largest step count of the batch, and row b holds ``n_steps[b]`` steps (padded with
        zeros: (3 + D/every)·N floats a sample, where the NumPy recorder keeps its own count).
    y : ndarray, shape (B, M, D)
        The state at the start of steps 0, every, 2·every, … (M = ⌈N / every⌉).
    n_steps : ndarray of int64, shape (B,)
    every : int
    """

    def __init__(self, steps, y, n_steps, every):
        self.steps, self.y, self.n_steps, self.every = steps, y, n_steps, int(every)

    def sample(self, b):
        """The :class:`pyode.trajectory.SampleSteps` of sample ``b``."""
        n = int(self.n_steps[b])
        t, h, t_new = (self.steps[b, r, :n].copy() for r in range(3))
        m = -(-n // self.every)
        return SampleSteps(t=t, h=h, t_new=t_new, y=self.y[b, :m].copy(), K=None,
                           every=self.every)


def checkpoint_forward_nn(f, yb, t_arr, tab, rtol, atol, opts, every):
    """Forward solve of an nn field that records its accepted steps (``pyode.checkpoint``).

    Design decision (the record's size): the step count of a sample is known only after its
    solve. We record into room for ``RECORD_STEPS`` steps per sample (a fixed-step solve: its
    exact count), keep solving past it without storing, and record the samples that overflowed
    once more with room for all their steps. The alternative, a counting solve and then a
    recording one, always solves twice; this solves once where the guess holds (training loops
    repeat one problem) and at worst twice for the samples that need more.

    Returns
    -------
    ys : ndarray, shape (T, B, D)
    stats : dict of ndarray (B,)
        nfev, n_accepted, n_rejected of the solve (as ``odeint_nn``).
    record : StepRecord
    """
    B, D = yb.shape
    y0 = np.ascontiguousarray(yb)
    k = packed(f, tab, rtol, atol, opts, D, forward_parts(D), y0.dtype)
    t_out = np.ascontiguousarray(t_arr, dtype=y0.dtype)
    room = _record_room(t_arr, tab, opts)
    ys, stats, steps, y_ck = _record(k, y0, t_out, every, room, opts)
    n_steps = stats[:, 1].copy()
    N = int(n_steps.max())
    over = np.nonzero(n_steps > room)[0]
    if over.size:                # again, with room for every step of these samples
        _, _, steps_o, y_ck_o = _record(k, y0[over], t_out, every, N, opts)
        steps, y_ck = _resized(steps, N, 2), _resized(y_ck, -(-N // every), 1)
        steps[over], y_ck[over] = steps_o, y_ck_o
    elif N < room:
        steps, y_ck = _resized(steps, N, 2), _resized(y_ck, -(-N // every), 1)
    return ys, stats_dict(stats), StepRecord(steps, y_ck, n_steps, every)


def _record_room(t_arr, tab, opts):
    """Steps per sample the first recording pass stores (``checkpoint_forward_nn``)."""
    if tab.adaptive:
        return max(1, min(RECORD_STEPS, opts["max_num_steps"]))
    # The step count of pyode.solvers.integrate_fixed (in float64); the kernel counts in its
    # own dtype, so a float32 solve may take one more (then recorded again).
    return int(fixed_step_counts(t_arr, opts["step_size"]).sum())


def _record(k, y0, t_out, every, room, opts):
    """One recording solve of the rows of y0, with room for ``room`` steps each."""
    B, D = y0.shape
    dtype = y0.dtype
    ys = np.empty((t_out.shape[0], B, D), dtype=dtype)
    steps = np.zeros((B, 3, room), dtype=dtype)
    y_ck = np.zeros((B, -(-room // every), D), dtype=dtype)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3), dtype=dtype)
    run_kernel(record_batch, dtype, B, k.ops, k.opf, k.theta, y0, t_out, k.tab, k.atol, ys,
               steps, y_ck, every, stats, status, fail, k.mw, k.cst)
    raise_failure(status, fail, stats, max_num_steps=opts.get("max_num_steps"))
    return ys, stats, steps, y_ck


def _resized(x, n, axis):
    """A contiguous copy of x with length n along ``axis``, cut or padded with zeros."""
    shape = list(x.shape)
    shape[axis] = n
    out = np.zeros(shape, dtype=x.dtype)
    keep = min(n, x.shape[axis])
    index = tuple(slice(0, keep) if a == axis else slice(None) for a in range(x.ndim))
    out[index] = x[index]
    return out


def checkpoint_nn(f, yb, gb, t_arr, tab, record, rtol, atol, opts, seminorm=False, n_slots=None,
                  time_gradients=True):
    """Backward pass of the checkpointed adjoint of an nn field on the CPU kernels.

    ``pyode.checkpoint.checkpoint_pass`` for every sample: the same steps, replays and
    evaluation counts (unless a sample needs more than ``n_slots`` replayed segments at once,
    which then cost a replay more).

    Parameters
    ----------
    yb, gb : ndarray, shape (T, B, D)
        Forward outputs and dL/dy at the output times.
    t_arr : ndarray, shape (T,)
    tab : ButcherTableau
    record : StepRecord
        Of :func:`checkpoint_forward_nn`.
    rtol, atol : float (atol may be an array (D + P + 1,))
        Tolerances of the backward solve of [a, a_θ, a_t].
    opts : dict
        The method's options (``pyode.solvers.check_options``).
    seminorm : bool
        The backward error norm controls a only (default: the largest of the RMS norms of a,
        a_θ and a_t).
    n_slots : int, optional
        Replayed segments a sample holds at once (``REPLAY_SLOTS_PER_STAGE`` · s + 2 by
        default; never more than its segments). Scratch per sample: n_slots · L · (s + 2) · D
        floats, L = min(every, N) the steps of a segment.
    time_gradients : bool
        Return dL/dt (default True). With False a_t leaves the error norm (as
        :func:`adjoint_nn`), so the steps are those of the NumPy path, and dLdt is None.

    Returns
    -------
    a : ndarray (B, D)           dL/dy0 per sample
    a_theta : ndarray (B, P)     dL/dθ per sample
    dLdt : ndarray (T,) or None  dL/dt_i, summed over the samples
    stats : dict of ndarray (B,) backward nfev (replays, adjoint and g·f evaluations),
                                 n_accepted and n_rejected steps of the adjoint solve
    """
    T, B, D = yb.shape
    P = f.params.size
    W = D + P + 1
    ys = np.ascontiguousarray(yb)
    gs = np.ascontiguousarray(gb, dtype=ys.dtype)
    k = packed(f, tab, rtol, atol, opts, W, adjoint_parts(0, D, P, time_gradients, seminorm),
               ys.dtype)
    t_out = np.ascontiguousarray(t_arr, dtype=ys.dtype)
    every = record.every
    n_segments = int(-(-record.n_steps.max() // every))
    if n_slots is None:
        n_slots = REPLAY_SLOTS_PER_STAGE * tab.n_stages + 2
    n_slots = max(1, min(int(n_slots), n_segments))
    meta = np.empty((B, 4), dtype=np.int64)
    meta[:, 0] = record.n_steps
    meta[:, 1] = every
    meta[:, 2] = tab.fsal
    meta[:, 3] = tab.P is not None
    steps = np.ascontiguousarray(record.steps, dtype=ys.dtype)
    y_ck = np.ascontiguousarray(record.y, dtype=ys.dtype)
    a = np.empty((B, D), dtype=ys.dtype)
    a_theta = np.empty((B, P), dtype=ys.dtype)
    gf = np.zeros((B, T), dtype=ys.dtype)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3), dtype=ys.dtype)
    run_kernel(checkpoint_batch, ys.dtype, B, k.ops, k.opf, k.theta, ys, gs, t_out, k.tab,
               k.atol, steps, y_ck, meta, n_slots, a, a_theta, gf, stats, status, fail, k.mw,
               k.cst)
    raise_failure(status, fail, stats, " in the checkpointed adjoint (backward) solve",
                  max_num_steps=opts.get("max_num_steps"))
    dLdt = gf.sum(axis=0, dtype=np.float64) if time_gradients else None
    return a, a_theta, dLdt, stats_dict(stats)
