"""The readable NumPy integrator: explicit Runge–Kutta steps, step-size control, dense output.

Every sample of a batch ``y`` of shape (B, D) is its own initial value problem: it carries its
own time ``t[b]``, step size ``h[b]`` and step counts, and nothing it computes depends on the
other samples (per-sample step control). The field is evaluated on the still-active samples at
their own times, so fields receive ``t`` as an array (B,) of per-sample times.

Tolerances
----------
Adaptive methods keep the local error estimate ``err`` (from the embedded pair, ``b_err``) of
every step below 1 in the scaled root-mean-square norm (HNW I, §II.4, eq. (4.11))

    ‖err‖ = sqrt( mean_i ( err_i / (atol + rtol · max(|y_i|, |y_new_i|)) )² ),

taken over the D components of one sample. ``rtol`` is a relative tolerance (dimensionless),
``atol`` an absolute one in the units of ``y`` (a float, or an array (D,) per component).
Design decision: torchdiffeq, scipy and diffrax all use this mixed scaling with the max of old
and new |y|; torchdiffeq (by default) and diffrax take the RMS over the whole state, scipy the
RMS too — we take it per sample, which is what makes samples independent.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union, overload

import numpy as np

from numpy.typing import ArrayLike

from .errors import NonFiniteError, StepSizeUnderflowError, TooManyStepsError
# The step-size controller's constants (HNW I, §II.4, eq. (4.13)), shared with the kernels.
from .kernels.codes import (BISECT_STEPS, DEFAULT_MAX_NUM_STEPS, MAX_FACTOR,  # noqa: F401
                            MIN_FACTOR, SAFETY, UNDERFLOW_ULPS)
from .kernels.numbers import constants, forward_parts, pack_tableau
from .kernels.rows import (clip_rows, combine_rows, dense_rows, emit_rows, initial_choice_rows,
                           initial_probe_rows, interpolant_rows, judge_rows)
from .kernels.step import fixed_step_count, horner, min_step
from .kernels.step import stage_time as _stage_time
from .protocol import VectorField, row_args
from .suggest import option_hint, unknown_keywords_error
from .tableaus import get_tableau

#: Constants in float64 for the time arithmetic of the batch driver (its t is float64): the
#: step floor ``kernels.step.min_step`` and the fixed step count.
_FLOAT64_NUMBERS = constants(np.float64, get_tableau("dopri5"), 0.0, {}, forward_parts(1))

@dataclass
class SolveInfo:
    """Statistics of one :func:`odeint` call.

    Attributes
    ----------
    nfev : int or ndarray of int, shape (B,)
        Evaluations of the field per sample. Adaptive methods (all FSAL, see ``pyode.tableaus``):
        ``nfev = 1 + n_init + (s − 1)·(n_accepted + n_rejected)`` where s is the number of
        stages (7 for dopri5, 4 for bosh3) and ``n_init`` is 1 when the first step is chosen by
        Hairer's algorithm (one probe evaluation) and 0 when ``options['first_step']`` is given.
        Fixed-step methods: ``nfev = s · n_accepted``.
    n_accepted, n_rejected : int or ndarray of int, shape (B,)
        Accepted and rejected steps per sample (ints for a 1-D ``y0``).
    method : str
    """

    nfev: object
    n_accepted: object
    n_rejected: object
    method: str

    def __getitem__(self, key):
        return getattr(self, key)


# ---------------------------------------------------------------------------------------------
# The numbers of a solve, as the step formulas take them
# ---------------------------------------------------------------------------------------------

class StepNumbers:
    """What the step formulas of ``kernels.step`` need for one batch solve, in the working dtype.

    The same arrays a compiled kernel gets (``kernels.numbers``): the packed tableau ``c | A |
    b | b_err | P`` and the constants ``cst``, so that a row solved here computes with the
    numbers of the per-trajectory kernels. Time stays in float64 (t, h and the nodes ``c``).

    Attributes
    ----------
    dtype : numpy dtype of the state
    cst : ndarray, the constants (``kernels.numbers.constants``; the step floor of float64 t)
    A, b, b_err, P : the tableau's arrays in the working dtype (P: (s, 4))
    c : ndarray (s,), float64, the nodes (time arithmetic)
    atol : ndarray (W,), the working dtype
    """

    def __init__(self, tab, dtype, rtol=0.0, atol=0.0, W=1, parts=None, opts=None):
        self.dtype = np.dtype(dtype)
        self.A, self.b, self.b_err, self.P = _packed_tableau(tab, dtype)
        self.c = tab.c
        self.cst = constants(dtype, tab, rtol, opts or {}, parts or forward_parts(W),
                             t_dtype=np.float64)
        with np.errstate(over="ignore"):           # an atol beyond float32's range: inf
            self.atol = np.ascontiguousarray(np.broadcast_to(atol, (W,)), dtype=dtype)


_PACKED = {}


def _packed_tableau(tab, dtype):
    """(A, b, b_err, P) of ``kernels.numbers.pack_tableau`` as contiguous arrays of ``dtype``,
    kept per (tableau, dtype)."""
    key = (id(tab), np.dtype(dtype).str)
    hit = _PACKED.get(key)
    if hit is None or hit[0] is not tab:
        s = tab.n_stages
        packed = pack_tableau(tab, dtype)
        arrays = tuple(np.ascontiguousarray(x) for x in (packed[:, 1:s + 1], packed[:, s + 1],
                                                         packed[:, s + 2], packed[:, s + 3:]))
        hit = _PACKED[key] = (tab, arrays)
    return hit[1]


def _as_rows(x):
    """A C-contiguous copy or view of ``x`` (the compiled row maps take any layout, but each
    layout is one more compilation)."""
    return np.ascontiguousarray(x)


# ---------------------------------------------------------------------------------------------
# One step, for the rows of a batch (the formulas are kernels.step's)
# ---------------------------------------------------------------------------------------------

def stage_time(t, h, t_new, c_i):
    """Time of stage i, t + cᵢh, or ``t_new`` exactly when cᵢ = 1 (``kernels.step.stage_time``,
    with float64 time); ``t``, ``h``, ``t_new`` scalars or arrays."""
    return _stage_time(t, h, t_new, c_i, _FLOAT64_NUMBERS)


def stage_inputs(y, h, A_rows, K):
    """Stage inputs ``Y_i = y + h Σ_j A_ij K_j`` (HNW I, §II.1, eq. (1.8)) for rows of A.

    Parameters
    ----------
    y : ndarray, shape (n, W)
    h : ndarray, shape (n,)
    A_rows : ndarray, shape (m, k)
        m rows of the tableau's A, over the first k stages (k = i for row i alone).
    K : ndarray, shape (k, n, W)
        The first k stages.

    Returns
    -------
    ndarray, shape (m, n, W)
    """
    A_rows = np.ascontiguousarray(A_rows, dtype=y.dtype)
    h_w = h.astype(y.dtype)
    out = np.empty((A_rows.shape[0],) + y.shape, dtype=y.dtype)
    for q in range(A_rows.shape[0]):
        combine_rows(A_rows[q], y, h_w, K, A_rows.shape[1], out[q])
    return out


def rk_step(ev, t, y, h, t_new, k1, tab, K, rows):
    """Take one explicit Runge–Kutta step of every row (HNW I, §II.1, eq. (1.8)).

    Stage i is ``K[i] = f(t + c_i h, y + h Σ_{j<i} A_ij K[j])`` with ``K[0] = k1 = f(t, y)``:
    the field is called once per stage for all rows; the stage inputs between the calls are
    ``kernels.step.combine`` per row.

    Parameters
    ----------
    ev : callable
        ``ev(t, y, rows)`` with ``t`` (n,), ``y`` (n, D) and ``rows`` (n,) the batch rows they
        belong to → (n, D).
    t, h, t_new : ndarray, shape (n,)
        Step start, signed step size and step end (``t_new`` is ``t + h`` except when the step
        was clipped to land exactly on an output time).
    y, k1 : ndarray, shape (n, D)
    tab : ButcherTableau
    K : ndarray, shape (s, n, D)
        Stage buffer, filled in place.
    rows : ndarray of int, shape (n,)
        The batch rows being stepped (handed to ``ev``).

    Returns
    -------
    y_new : ndarray, shape (n, D)
    """
    A, b, _, _ = _packed_tableau(tab, y.dtype)
    h_w = h.astype(y.dtype)
    y = _as_rows(y)
    K[0] = k1
    y_new = None
    for i in range(1, tab.n_stages):
        y_i = np.empty_like(y)             # a new array: the field may keep what it is given
        combine_rows(A[i], y, h_w, K, i, y_i)
        K[i] = ev(stage_time(t, h, t_new, tab.c[i]), y_i, rows)
        y_new = y_i
    if not tab.fsal:
        y_new = np.empty_like(y)
        combine_rows(b, y, h_w, K, tab.n_stages, y_new)
    # FSAL: the last stage input y + h Σ A_sj K_j equals y + h Σ b_j K_j, and K[-1] = f(t_new,
    # y_new) becomes the next step's k1.
    return y_new


def initial_step(ev, t0, y0, f0, t_end, num, rows=None):
    """Hairer's starting step size (HNW I, §II.4, p. 169), per row, as a magnitude.

    ``kernels.step.initial_step_probe`` and ``initial_step_choice`` per row around one field
    call for all rows at the Euler probe points (the formulas and their design notes are
    there). ``num`` is the solve's :class:`StepNumbers`; ``rows`` (n,) the batch rows of
    ``y0`` (handed to ``ev``; default all).

    Returns
    -------
    h : ndarray, shape (n,)
        Positive step magnitudes, in the units of t.
    """
    n = y0.shape[0]
    span = np.abs(t_end - t0).astype(np.float64)
    direction = 1.0 if np.all(t_end >= t0) else -1.0
    y0, f0 = _as_rows(y0), _as_rows(f0)
    probe = np.empty_like(y0)
    h0, d1 = np.empty(n), np.empty(n)
    # (errstate: under NUMBA_DISABLE_JIT=1 the row maps are NumPy scalar code)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        initial_probe_rows(y0, f0, num.atol, span, direction, probe, num.cst, h0, d1)
        f1 = _as_rows(ev(t0 + direction * h0, probe, np.arange(n) if rows is None else rows))
        h = np.empty(n)
        initial_choice_rows(y0, f0, f1, np.empty_like(f1), num.atol, h0, d1,
                            np.asarray(t0, dtype=np.float64), span, num.cst, h)
    return h


def interpolant(tab, h, K):
    """Coefficients of the continuous extension (``tab.P``, HNW I, §II.6) in powers of θ, per
    row: y(t + θh) = y + Σ_p θ^(p+1) Q_p (``kernels.step.interpolant``).

    Parameters
    ----------
    h : ndarray, shape (n,)
    K : ndarray, shape (s, n, D)

    Returns
    -------
    Q : ndarray, shape (4, n, D), the dtype of K
    """
    P = _packed_tableau(tab, K.dtype)[3]
    Q = np.empty((4,) + K.shape[1:], dtype=K.dtype)
    interpolant_rows(P, K, h.astype(K.dtype), Q)
    return Q


def eval_interpolant(y, Q, theta):
    """y + Σ_p θ^(p+1) Q_p by Horner's rule (``kernels.step.horner``, elementwise).

    ``y`` (any shape X), ``Q`` (4,) + X, ``theta`` broadcastable against X (e.g. (n, 1) for
    y of shape (n, D)).
    """
    return horner(y, Q[0], Q[1], Q[2], Q[3], theta)


def dense_output(tab, y, h, K, theta):
    """Continuous extension y(t + θh) = y + h Σᵢ bᵢ(θ) Kᵢ (``tab.P``, HNW I, §II.6), per row
    (``kernels.step.dense_point``).

    Parameters
    ----------
    y : ndarray, shape (n, D)
    h, theta : ndarray, shape (n,)
    K : ndarray, shape (s, n, D)
    """
    P = _packed_tableau(tab, y.dtype)[3]
    out = np.empty(y.shape, dtype=y.dtype)
    dense_rows(P, K, _as_rows(y), h.astype(y.dtype), np.asarray(theta, dtype=np.float64),
               out)
    return out


# ---------------------------------------------------------------------------------------------
# Integration loops: the batch driver
# ---------------------------------------------------------------------------------------------

def _sample(b, B):
    """The batch row to name in an error: None for a single sample."""
    return None if B == 1 else int(b)


def _raise_if_nonfinite(values, t, h, nfev):
    """Raise NonFiniteError for the first sample (row) of ``values`` (B, n) that is not finite."""
    bad = ~np.all(np.isfinite(values), axis=1)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise NonFiniteError("Non-finite state or derivative", t[i], h[i], nfev[i],
                             _sample(i, values.shape[0]))


def fixed_step_counts(t_out, step_size):
    """Steps per output interval of the fixed-step methods (``kernels.step.fixed_step_count``:
    ⌈|Δt| / step_size⌉, at least 1), with float64 time."""
    cst = _FLOAT64_NUMBERS
    return np.array([int(fixed_step_count(float(span), float(step_size), cst))
                     for span in np.diff(np.asarray(t_out, dtype=np.float64))], dtype=np.int64)


def integrate_fixed(ev, y0, t_out, tab, step_size, on_step=None, jump=None):
    """Fixed-step integration; each output interval is split into equal steps ≤ step_size.

    Design decision: torchdiffeq steps on the grid t0 + k·h and interpolates the outputs; we
    split every interval [t_{i-1}, t_i] into n = ceil(|Δt| / step_size) equal steps so the last
    step lands exactly on each output time and nothing is interpolated. When step_size divides
    the interval the steps are exactly step_size. ``on_step`` and ``jump``: see
    :func:`integrate_adaptive`.

    Returns
    -------
    ys : ndarray, shape (T, B, D)
    stats : dict of ndarray (B,) — nfev, n_accepted, n_rejected
    """
    T = t_out.shape[0]
    B, D = y0.shape
    ys = np.empty((T,) + y0.shape, dtype=y0.dtype)
    ys[0] = y0
    y = y0.copy()
    K = np.empty((tab.n_stages, B, D), dtype=y0.dtype)
    n_steps = fixed_step_counts(t_out, step_size)
    n_done = 0
    every_row = np.arange(B)
    for i in range(1, T):
        span = t_out[i] - t_out[i - 1]
        n = int(n_steps[i - 1])
        h = span / n
        for k in range(n):
            t = t_out[i - 1] + k * h
            t_new = t_out[i] if k == n - 1 else t + h
            tt, hh, tn = np.full(B, t), np.full(B, h), np.full(B, t_new)
            k1 = ev(tt, y, every_row)
            with np.errstate(over="ignore", invalid="ignore"):   # detected just below
                y_start, y = y, rk_step(ev, tt, y, hh, tn, k1, tab, K, every_row)
            n_done += 1
            nfev = np.full(B, tab.n_stages * n_done)
            _raise_if_nonfinite(np.concatenate([y, K.transpose(1, 0, 2).reshape(B, -1)], 1),
                                tt, hh, nfev)
            if on_step is not None:
                on_step(every_row, tt, hh, tn, y_start, K)
        ys[i] = y
        if jump is not None and i < T - 1:
            y = jump(np.full(B, i), every_row, y)
    stats = dict(nfev=np.full(B, tab.n_stages * n_done), n_accepted=np.full(B, n_done),
                 n_rejected=np.zeros(B, dtype=np.int64))
    return ys, stats


#: dtypes whose row maps (``kernels.rows``) this process has announced (``_log_row_maps``).
_ROW_MAPS_SEEN = set()
#: About how long the row maps take to compile on 2 cores, per dtype (measured 4.0–4.3 s).
ROW_MAPS_COMPILE_SECONDS = "4"


def _log_row_maps(dtype):
    """Log at INFO, once per dtype and process, when Numba is about to compile the row maps of
    a Python field's first solve (not when its disk cache holds them), as the kernels' compile
    log does (``pyode.backends.numba_cpu.call_with_compile_log``)."""
    key = np.dtype(dtype).name
    if key in _ROW_MAPS_SEEN or not hasattr(judge_rows, "py_func"):
        return
    _ROW_MAPS_SEEN.add(key)
    from .backends.numba_cpu import LOG, _code_source
    f64, fw = np.zeros(1), np.zeros(1, dtype=dtype)
    i64, flag = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
    yw, Kw = np.zeros((1, 1), dtype=dtype), np.zeros((1, 1, 1), dtype=dtype)
    probe = (i64, yw, yw, Kw, yw, f64, fw, f64, fw, f64, f64, fw, flag, f64, i64, 1.0, flag,
             f64, fw, flag, flag, f64)
    if _code_source(judge_rows, probe) == "compile":
        LOG.info("compiling pyode's step formulas for Python fields (kernels/rows.py) for %s "
                 "(first use, about %s s on 2 cores; then cached on disk)", key,
                 ROW_MAPS_COMPILE_SECONDS)


def integrate_adaptive(ev, y0, t_out, tab, rtol, atol, first_step=None,
                       max_num_steps=DEFAULT_MAX_NUM_STEPS, norm_parts=None, on_step=None,
                       jump=None):
    """Adaptive integration with per-sample step control and dense output at ``t_out``.

    The batch driver: the same sequence as the per-trajectory kernel
    (``kernels.rk.solve_adaptive``) — stages, ``kernels.step.judge_step``, dense output,
    advance — over the rows still integrating, with the field called once per stage for all
    of them. Each row keeps its own t, h and controller state.

    Parameters
    ----------
    ev : callable
        ``ev(t, y, rows)``, ``t`` (n,), ``y`` (n, D), ``rows`` (n,) the batch rows → (n, D).
    y0 : ndarray, shape (B, D)
    t_out : ndarray, shape (T,)
        Strictly monotonic output times; the integration runs from t_out[0] to t_out[-1] and is
        never evaluated outside that interval.
    tab : ButcherTableau
        An embedded FSAL pair.
    rtol, atol : see the module docstring.
    first_step : float or ndarray (B,), optional
        Magnitude of the first step (units of t); default: :func:`initial_step`.
    max_num_steps : int
        Attempted steps allowed per sample.
    norm_parts : (bounds, n_parts), optional
        The parts of the state in the error norm (``kernels.numbers``): one part, all of y, by
        default; the adjoint's [z, a, a_θ, a_t] gives its parts.
    on_step : callable, optional
        ``on_step(rows, t, h, t_new, y, K)``, called after the accepted steps of every pass
        over the active samples: ``rows`` (n,) the sample indices, ``t``, ``h``, ``t_new`` (n,)
        step start, signed size and end, ``y`` (n, D) the state at the step start and ``K``
        (s, n, D) the stages (``pyode.trajectory`` records them for the discrete and the
        checkpointed adjoints). The arrays may be reused afterwards: copy what you keep.
    jump : callable, optional
        ``jump(i (n,), rows (n,), y (n, D)) → y (n, D)``: the state jumps at the output times
        t_out[1:-1] (the adjoint adds dL/dy(t_i) there, Chen et al. Alg. 1). With it, every
        output time is a step end (steps are clipped to land on it, as on the final time),
        ``ys[i]`` is the state before the jump, and each row restarts after its jump with
        f evaluated at the new state (one evaluation) and its step size carried on — exactly
        a new solve per interval, except that a row never waits for the others: each crosses
        the output times on its own. ``max_num_steps`` then counts per interval.

    Returns
    -------
    ys : ndarray, shape (T, B, D)
    stats : dict of ndarray (B,) — nfev, n_accepted, n_rejected
    h_last : ndarray, shape (B,)
        The step size proposed after the last step (magnitude), to start a continuation.

    Raises
    ------
    StepSizeUnderflowError, NonFiniteError, TooManyStepsError
    """
    T = t_out.shape[0]
    B, D = y0.shape
    s = tab.n_stages
    dtype = y0.dtype
    _log_row_maps(dtype)
    num = StepNumbers(tab, dtype, rtol, atol, D, norm_parts)
    t_end = t_out[-1]
    direction = 1.0 if t_end > t_out[0] else -1.0
    ys = np.empty((T, B, D), dtype=dtype)
    ys[0] = y0
    t = np.full(B, t_out[0])
    y = np.ascontiguousarray(y0).copy()
    nfev = np.zeros(B, dtype=np.int64)
    n_acc = np.zeros(B, dtype=np.int64)
    n_rej = np.zeros(B, dtype=np.int64)

    k1 = ev(t, y, np.arange(B))
    nfev += 1
    _raise_if_nonfinite(k1, t, np.zeros(B), nfev)
    t_first = t_out[1] if jump is not None else t_end     # where the first step may end
    if first_step is None:
        h = initial_step(ev, t, y, k1, np.full(B, t_first), num)
        nfev += 1
    else:
        h = np.minimum(np.broadcast_to(np.abs(first_step), (B,)).astype(np.float64),
                       abs(t_first - t_out[0]))
    h = direction * h
    nxt = np.ones(B, dtype=np.int64)          # index of the next output time per sample
    active = np.arange(B)
    # The controller state per sample (kernels.step.judge_step): was its last attempt rejected,
    # did it give NaN/inf, and a time where the field failed ahead (bisected ≥ 0) or none (−1).
    rejected = np.zeros(B, dtype=bool)
    nonfinite = np.zeros(B, dtype=bool)
    t_bad = np.full(B, t_out[0])
    bisected = np.full(B, -1, dtype=np.int64)

    attempts = np.zeros(B, dtype=np.int64)  # attempted steps since the last restart
    restarted = None                        # rows that jumped in this pass
    while active.size:
        n = active.size
        ta, ya, ha, k1a = t[active], y[active], h[active], k1[active]
        # Clip the step so it lands exactly on t_end, or with jumps on the next output time
        # (never evaluate f beyond it).
        t_stop = t_out[np.minimum(nxt[active], T - 1)] if jump is not None else np.full(n, t_end)
        last, h_step, t_new = np.empty(n, dtype=bool), np.empty(n), np.empty(n)
        clip_rows(ta, ha, t_stop, direction, last, h_step, t_new)
        # Any other step below a few ulps of t cannot move t (accepted or not): give up.
        under = ~last & (np.abs(ha) < min_step(ta, _FLOAT64_NUMBERS))
        if np.any(under):
            i = int(np.argmax(under))
            b = _sample(active[i], B)
            if nonfinite[active[i]] or bisected[active[i]] >= 0:
                raise NonFiniteError("Non-finite state or derivative (the step size shrank to "
                                     "zero around it)", ta[i], ha[i], nfev[active[i]], b)
            raise StepSizeUnderflowError("Step size underflow", ta[i], ha[i], nfev[active[i]], b)
        h_w = h_step.astype(dtype)
        K = np.empty((s, n, D), dtype=dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            y_new = rk_step(ev, ta, ya, h_step, t_new, k1a, tab, K, active)
        nfev[active] += s - 1
        accept, finite, h_next = np.empty(n, dtype=bool), np.empty(n, dtype=bool), np.empty(n)
        with np.errstate(over="ignore", invalid="ignore"):   # NUMBA_DISABLE_JIT=1: the
            judge_rows(active, ya, y_new, K, np.empty_like(ya), tab.c, num.b_err, ta, h_w,
                       h_step, t_new, num.atol, rejected, t_bad, bisected, direction, last, ha,
                       num.cst, accept, finite, h_next)         # squares may overflow
        n_rej[active[~accept]] += 1
        nonfinite[active] = ~finite

        # Accepted steps: dense output at every output time the step passed, then advance.
        acc = np.nonzero(accept)[0]
        if acc.size:
            rows = active[acc]
            n_acc[rows] += 1
            if on_step is not None:
                on_step(rows, ta[acc], h_step[acc], t_new[acc], ya[acc], K[:, acc])
            emit_rows(acc, rows, t_out, nxt, ta, h_step, t_new, h_w, ya, y_new, K, num.P, ys,
                      direction, num.cst)
            t[rows] = t_new[acc]
            y[rows] = y_new[acc]
            k1[rows] = K[-1, acc]
            if jump is not None:             # rows that landed on t_out[1:-1]: jump, restart
                landed = last[acc] & (nxt[rows] < T)
                if np.any(landed):
                    r = rows[landed]
                    y[r] = jump(nxt[r] - 1, r, y[r])
                    k1[r] = ev(t[r], y[r], r)
                    nfev[r] += 1
                    attempts[r] = -1             # the += 1 below makes it 0
                    bisected[r] = -1             # as a new solve per interval
                    restarted = r
        h[active] = h_next
        if restarted is not None:        # a restart's first step fits its interval, as a new
            span = np.abs(t_out[nxt[restarted]] - t[restarted])          # solve's would
            h[restarted] = direction * np.minimum(np.abs(h[restarted]), span)
            restarted = None

        attempts[active] += 1
        too_many = attempts[active] >= max_num_steps
        done = nxt[active] >= T
        if np.any(too_many & ~done):
            i = int(np.argmax(too_many & ~done))
            raise TooManyStepsError(f"Reached max_num_steps={max_num_steps}", t[active[i]],
                                    h[active[i]], nfev[active[i]], _sample(active[i], B))
        active = active[~done]

    stats = dict(nfev=nfev, n_accepted=n_acc, n_rejected=n_rej)
    return ys, stats, np.abs(h)


def integrate(ev, y0, t_out, tab, rtol, atol, opts, norm_parts=None, on_step=None):
    """Run :func:`integrate_adaptive` or :func:`integrate_fixed`, whichever ``tab`` needs.

    ``opts`` is the dict of :func:`check_options`. Returns ``(ys (T, B, D), stats)``.
    """
    if tab.adaptive:
        ys, stats, _ = integrate_adaptive(ev, y0, t_out, tab, rtol, atol, opts["first_step"],
                                          opts["max_num_steps"], norm_parts, on_step)
        return ys, stats
    return integrate_fixed(ev, y0, t_out, tab, opts["step_size"], on_step)


# ---------------------------------------------------------------------------------------------
# Argument checking (the API boundary)
# ---------------------------------------------------------------------------------------------

_FIXED_OPTIONS = {"step_size", "max_num_steps"}
_ADAPTIVE_OPTIONS = {"first_step", "max_num_steps"}


def check_times(t):
    """Validate the output times: real numbers, 1-D, ≥ 2 entries, finite, strictly monotonic.

    Raises
    ------
    TypeError
        Complex, boolean or non-numeric times.
    ValueError
        A ragged list, a shape other than (T,) with T ≥ 2, NaN/inf, or times that are not
        strictly monotonic.
    """
    try:
        raw = np.asarray(t)
    except ValueError:                        # numpy's "inhomogeneous shape"
        raise ValueError("t must be a 1-D array of times, got a ragged (nested) sequence, e.g. "
                         "t=[0.0, 0.5, 1.0]") from None
    if raw.dtype.kind == "c":
        raise TypeError(f"t must hold real numbers (times), got complex values {raw!r}; pass "
                        "t.real if the imaginary parts are zero")
    try:
        if raw.dtype.kind not in "iufO":
            raise TypeError
        t_arr = raw.astype(np.float64)        # objects: Fraction, Decimal, ... convert
    except (TypeError, ValueError):
        raise TypeError(f"t must hold real numbers (times), got dtype {raw.dtype} "
                        f"({_shorten(repr(t))})") from None
    if t_arr.ndim != 1 or t_arr.shape[0] < 2:
        raise ValueError(f"t must be a 1-D array of at least two times, got shape {t_arr.shape}"
                         " (give the start time and the output times, e.g. t=[0.0, 1.0])")
    if not np.all(np.isfinite(t_arr)):
        raise ValueError(f"t must be finite, got {t_arr}")
    with np.errstate(over="ignore"):
        dt = np.diff(t_arr)
    if not np.all(np.isfinite(dt)):
        raise ValueError(f"t spans more than the largest float (t[0]={t_arr[0]!r}, "
                         f"t[-1]={t_arr[-1]!r}); rescale time")
    if not (np.all(dt > 0) or np.all(dt < 0)):
        raise ValueError("t must be strictly increasing or strictly decreasing (no repeated "
                         f"times, no change of direction); got t={t_arr}")
    return t_arr


def check_y0(y0):
    """Validate the initial state: shape (D,) or (B, D), floating dtype, finite."""
    try:
        y = np.asarray(y0)
    except ValueError:                        # numpy's "inhomogeneous shape"
        lengths = _row_lengths(y0)
        raise ValueError(
            "y0 must be a rectangular array of shape (D,) or (B, D): its rows must have equal "
            f"length{f', got rows of lengths {lengths}' if lengths else ''} (pad them, or "
            "solve rows of different widths separately)") from None
    if y.dtype.kind in "biu":
        y = y.astype(np.float64)
    if y.dtype not in (np.float32, np.float64):
        raise TypeError(f"y0 must be a float32 or float64 array, got dtype {y.dtype}")
    if y.ndim not in (1, 2) or y.size == 0:
        raise ValueError(f"y0 must have shape (D,) or (B, D) with D >= 1, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y0 contains NaN or inf; the initial state must be finite")
    return np.ascontiguousarray(y)


def _row_lengths(y0):
    """The lengths of the rows of a ragged y0 (for the message), or None."""
    try:
        return [len(row) if hasattr(row, "__len__") else "a scalar" for row in y0][:8]
    except TypeError:
        return None


def _shorten(text, width=60):
    return text if len(text) <= width else text[:width - 3] + "..."


def check_field_width(f, D):
    """For a built-in nn field, check that it maps states of width D to width D.

    The kernels read the state with the field's own widths, so a mismatch must be caught here.

    Raises
    ------
    ValueError
        Naming the field's widths and the state's.
    """
    from . import nn
    if not isinstance(f, nn.Sequential):
        return
    if f.n_in is not None and f.n_in != D:
        raise ValueError(f"y0 has {D} components per sample but the field takes states of "
                         f"width {f.n_in}; give y0 of shape ({f.n_in},) or (B, {f.n_in})")
    if f.n_out is not None and f.n_out != f.n_in:
        raise ValueError(f"the field maps width {f.n_in} to width {f.n_out}; a vector field "
                         f"dy/dt = f(t, y) must return the width of y (sizes[-1] == sizes[0])")


def is_device_array(x):
    """True for a CUDA device array (numba-cuda's, its simulator's, or anything exposing
    ``__cuda_array_interface__``)."""
    return not isinstance(x, np.ndarray) and (hasattr(x, "__cuda_array_interface__")
                                              or hasattr(x, "copy_to_host"))


def check_device_y0(y0, backend):
    """Validate a CUDA device array y0: backend='cuda', shape (B, D), float32 or float64.

    Its values stay on the device and are not inspected (no NaN check).
    """
    if backend != "cuda":
        raise TypeError("y0 is a CUDA device array: pass backend='cuda', or copy it to the host "
                        "(y0.copy_to_host())")
    if len(y0.shape) != 2:
        raise ValueError(f"a device array y0 must have shape (B, D), got shape {y0.shape}")
    if np.dtype(y0.dtype) not in (np.float32, np.float64):
        raise TypeError(f"y0 must be float32 or float64, got dtype {y0.dtype}")
    return y0


def check_tolerances(rtol, atol, D, name="rtol/atol"):
    """Validate rtol (float ≥ 0) and atol (float or (D,) ≥ 0), not both zero.

    An rtol ≥ 1 is accepted with a ``UserWarning`` (it makes the error test meaningless).
    """
    rtol_f = _real_number(rtol, "rtol" if name == "rtol/atol" else "adjoint_rtol")
    atol_name = "atol" if name == "rtol/atol" else "adjoint_atol"
    if isinstance(atol, (list, tuple, np.ndarray)):
        atol_a = _real_array(atol, atol_name, f"a float or an array of shape ({D},)")
    else:
        atol_a = np.asarray(_real_number(atol, atol_name))
    if atol_a.ndim > 1 or (atol_a.ndim == 1 and atol_a.shape[0] != D):
        raise ValueError(f"{atol_name} must be a float or an array of shape ({D},), "
                         f"got shape {atol_a.shape}")
    if not np.isfinite(rtol_f) or rtol_f < 0 or np.any(~np.isfinite(atol_a)) \
            or np.any(atol_a < 0):
        raise ValueError(f"{name} must be finite and non-negative, got rtol={rtol!r}, "
                         f"atol={atol!r}")
    if rtol_f == 0 and np.any(atol_a == 0):
        raise ValueError(f"{name}: rtol=0 needs atol > 0 in every component, got atol={atol!r}")
    if rtol_f >= 1:
        # Relative errors of 100 % pass the error test: rtol = atol = 1 gives y(10) = 2.85 for
        # y' = −y, y(0) = 1 (exact: 4.5e-5), with no error.
        which = "rtol" if name == "rtol/atol" else "adjoint_rtol"
        warnings.warn(f"{which}={rtol!r} is >= 1: the solver accepts steps whose error is as "
                      "large as the solution itself, so the result can be wrong in every digit "
                      f"(even in sign); use {which} < 1, e.g. 1e-3 for about 3 digits (the "
                      "default is 1e-7)", UserWarning, stacklevel=_user_stacklevel())
    return rtol_f, (float(atol_a) if atol_a.ndim == 0 else atol_a)


#: A tolerance below this fraction of the rounding error of y0 (ε·|y0|) is refused: the error
#: estimate of a step is itself rounded at about ε·|f|·h, so steps shrink until they no longer
#: move t in any reasonable number (y0 = [1e150, 0], y' = [0, y₀], rtol = 0, atol = 1e-9 took
#: steps of 3e-142 until max_num_steps, a minute on the NumPy path).
ROUNDING_FRACTION = 0.01


def check_attainable(rtol, atol, y):
    """Refuse tolerances that ask for errors far below the rounding error of y0.

    Raises
    ------
    ValueError
        If ``atol + rtol·|y0|`` is below ``ROUNDING_FRACTION · ε · |y0|`` in some component
        (ε of y0's dtype); the message names the component and the smallest usable atol.
    """
    eps = np.finfo(y.dtype).eps
    y_abs = np.abs(y.astype(np.float64))
    with np.errstate(over="ignore"):          # rtol ≥ 1 with |y0| near the largest float
        short = np.broadcast_to(atol, y.shape) + rtol * y_abs < ROUNDING_FRACTION * eps * y_abs
    if np.any(short):
        b, i = np.unravel_index(int(np.argmax(short)), y.shape)
        where = f"y0[{b}, {i}]" if y.shape[0] > 1 else f"component {i} of y0"
        raise ValueError(
            f"rtol/atol: rtol={rtol!r} and atol={atol!r} ask for errors far below the rounding "
            f"error of {where} = {y[b, i].item()!r} (ε·|y0| = {eps * y_abs[b, i]:.3g} in "
            f"{y.dtype}), "
            f"which no step size can meet (refused when atol + rtol·|y0| < {ROUNDING_FRACTION}"
            f"·ε·|y0| = {ROUNDING_FRACTION * eps * y_abs[b, i]:.3g} there); use rtol >= "
            f"{100 * eps:.1e} (relative control, errors of about 100 ulp) or "
            f"atol >= {eps * y_abs[b, i]:.3g} there")


def _user_stacklevel():
    """The ``stacklevel`` for a warning issued by the caller of this function that names the
    first frame outside the pyode package (the user's call)."""
    import os
    import sys
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def check_options(options, tab):
    """Validate ``options`` for the method; returns a dict with every key filled in."""
    if not isinstance(options, (dict, type(None))):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    opts = {} if options is None else dict(options)
    valid = _ADAPTIVE_OPTIONS if tab.adaptive else _FIXED_OPTIONS
    for key in opts:
        if key not in valid:
            hint = ""
            if key == "step_size":
                hint = f" ({tab.name} is adaptive: use 'first_step' for its first step)"
            elif key == "first_step":
                hint = f" ({tab.name} is a fixed-step method: give 'step_size')"
            elif key in ("norm", "checkpoint_every"):
                hint = (f" ({key!r} is an option of the adjoint: pass it to odeint_adjoint as "
                        f"adjoint_options={{{key!r}: ...}})")
            else:
                near = option_hint(key, valid)
                hint = f" ({near})" if near else ""
            raise ValueError(f"Unknown option {key!r} for method {tab.name!r}{hint}; valid "
                             f"options: {', '.join(sorted(valid))}")
    if not tab.adaptive:
        if "step_size" not in opts:
            raise ValueError(f"method={tab.name!r} is a fixed-step method and needs "
                             "options={'step_size': h} (h > 0, in the units of t)")
    max_steps = opts.get("max_num_steps", DEFAULT_MAX_NUM_STEPS)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) \
            or max_steps < 1:
        raise ValueError(f"options['max_num_steps'] must be a positive int, got {max_steps!r}")
    if not tab.adaptive:
        h = _real_number(opts["step_size"], "options['step_size']")
        if not (np.isfinite(h) and h > 0):
            raise ValueError(f"options['step_size'] must be a positive finite float (units of "
                             f"t), got {opts['step_size']!r}")
        return {"step_size": h, "max_num_steps": int(max_steps)}
    first = opts.get("first_step")
    if first is not None:
        first = _real_number(first, "options['first_step']")
        if not (np.isfinite(first) and first != 0):
            raise ValueError("options['first_step'] must be a non-zero finite float (its "
                             "magnitude is used; the sign follows the direction of t), got "
                             f"{opts['first_step']!r}")
    return {"first_step": None if first is None else abs(first), "max_num_steps": int(max_steps)}


def _real_number(value, name):
    """``float(value)`` for a real scalar; TypeError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r} "
                        f"({type(value).__name__})")
    return float(value)


def _real_array(value, name, want):
    """``value`` (a list, tuple or ndarray) as a float64 array; ValueError for a ragged
    sequence and TypeError for values that are not real numbers, both naming ``name``."""
    try:
        raw = np.asarray(value)
    except ValueError:                        # numpy's "inhomogeneous shape"
        raise ValueError(f"{name} must be {want}, got a ragged (nested) sequence "
                         f"{_shorten(repr(value))}") from None
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be {want} of real numbers, got dtype {raw.dtype} "
                        f"({_shorten(repr(value))})")
    return raw.astype(np.float64)


def check_step_count(t_out, opts):
    """Fixed-step methods: refuse up front a step count above ``max_num_steps``.

    Raises
    ------
    TooManyStepsError
        At t = t_out[0] with dt = the step size and nfev = 0, saying how many steps it needs.
    """
    if "step_size" not in opts:
        return
    n = int(fixed_step_counts(t_out, opts["step_size"]).sum())
    if n > opts["max_num_steps"]:
        raise TooManyStepsError(
            f"step_size={opts['step_size']!r} needs {n} steps over t, more than "
            f"max_num_steps={opts['max_num_steps']}", t_out[0], opts["step_size"], 0)


def field_name(f):
    """How messages name a vector field: its function name, or its class name."""
    name = getattr(f, "__name__", None)
    return f"{name!r}" if isinstance(name, str) else f"of type {type(f).__name__}"


def _read_only(y):
    """A read-only view of ``y``: a field that writes into its input fails at the write."""
    view = y.view()
    view.flags.writeable = False
    return view


def check_field_output(f, out, y, t, n_rows=None, args=()):
    """Return ``f``'s result ``out`` for the state ``y`` as an array of y's shape and dtype.

    The boundary between the solver and a user-written field (README, "The vector-field
    protocol", item 1), checked on every call: the result must be an ndarray of real
    floating-point values with exactly the shape of ``y`` (no broadcasting). Floats of another
    precision are cast to y's dtype. A result that shares memory with ``y`` (``lambda t, y:
    y``) is copied, so the solver's stage buffers never alias its state.

    Coerced, because they cannot mean anything else: for a 1-D state, a list or tuple of D
    numbers (``[y[1], -y[0]]``); for a state of shape (1,), a scalar (``-y[0]``). A list for a
    batch y (n, D) is refused: a list of D columns and a list of n rows look alike, and
    silently transposing one into the other would integrate the wrong field.

    Parameters
    ----------
    f : vector field
        Named in the messages.
    out : object
        What ``f(t, y)`` returned.
    y : ndarray, shape (D,) or (n, D)
        The state f was called with.
    t : float or ndarray, shape (n,)
        The time(s) f was called with (for the messages).
    n_rows : int, optional
        Rows of the whole batch when ``y`` holds only the ``n`` rows still integrating.
    args : tuple
        The extra arguments f was called with (for the messages).

    Raises
    ------
    TypeError
        None, a list or tuple for a batch y, another non-array; a dtype that is not real
        floating point (numbers of a list, tuple or scalar may be ints).
    ValueError
        A shape other than y's; a ragged list.
    """
    if isinstance(out, np.ndarray) and out.shape == y.shape and out.dtype.kind == "f":
        if out.dtype == y.dtype and not np.may_share_memory(out, y):
            return out                                        # the common case, checked fast
    want = f"an ndarray of shape {y.shape} and dtype {y.dtype} (the shape of y)"
    if out is None:
        raise TypeError(
            f"the vector field {field_name(f)} returned None (a missing return statement?); "
            f"f(t, y) must return {want}")
    returned = "" if isinstance(out, np.ndarray) else f"a {type(out).__name__} of "
    if isinstance(out, (list, tuple)) and y.ndim != 1:
        raise TypeError(
            f"the vector field {field_name(f)} returned a {type(out).__name__} for a batch y of "
            f"shape {y.shape}; f(t, y) must return {want}: build it with "
            "np.stack([...], axis=-1) from columns (a list is refused for a batch: a list of "
            "columns and a list of rows look alike)")
    if not isinstance(out, np.ndarray):
        try:
            out = np.asarray(out)
        except ValueError:                    # numpy's "inhomogeneous shape"
            raise ValueError(
                f"the vector field {field_name(f)} returned a ragged {type(out).__name__} "
                f"(items of different lengths); f(t, y) must return {want}") from None
        if out.dtype.kind == "O":
            raise TypeError(
                f"the vector field {field_name(f)} returned {returned}objects that are not "
                f"numbers; f(t, y) must return {want}")
        if out.dtype.kind in "iu":            # [0, 1] or 0: plain Python numbers
            out = out.astype(y.dtype)
    if out.ndim == 0 and y.shape == (1,):     # a scalar for a state of one component
        out = out.reshape(1)
    if out.dtype.kind == "f" and out.dtype.itemsize < y.dtype.itemsize:
        raise TypeError(
            f"the vector field {field_name(f)} returned {out.dtype} values for a {y.dtype} "
            f"state: the solver cannot meet its tolerances with derivatives rounded to "
            f"{out.dtype}; f(t, y) must return {want} (compute in y's dtype, or solve in "
            f"{out.dtype} by passing y0 of that dtype)")
    if out.dtype.kind != "f":
        fix = ("return the real part only if that is intended" if out.dtype.kind == "c"
               else "compute in floats, e.g. start from np.zeros_like(y)")
        raise TypeError(
            f"the vector field {field_name(f)} returned values of dtype {out.dtype}; f(t, y) "
            f"must return {want}: {fix}")
    if out.shape != y.shape:
        rows = ""
        if n_rows is not None and y.ndim == 2 and y.shape[0] < n_rows:
            rows = (f" pyode calls f with only the {y.shape[0]} of {n_rows} rows still "
                    "integrating (each row has its own steps), so a field must not hold one "
                    f"value per row of the full batch: {_per_row_hint(args, n_rows)}.")
        raise ValueError(
            f"the vector field {field_name(f)} returned {returned}shape {out.shape} for a state "
            f"of shape {y.shape} at t={_t_repr(t)}; f(t, y) must return {want}, not a "
            f"broadcastable shape.{rows}")
    if np.may_share_memory(out, y):
        return np.array(out, dtype=y.dtype)
    return out.astype(y.dtype, copy=False)


def _t_repr(t):
    t = np.asarray(t)
    if t.ndim == 0:
        return f"{float(t):.6g}"
    return f"array of shape {t.shape} (one time per row; first {float(t.flat[0]):.6g})"


def call_field(f, t, y, n_rows=None, first=False, args=()):
    """``f(t, y, *args)`` with the field boundary checked; returns dy/dt of y's shape and dtype.

    ``y`` is handed over as a read-only view, so a field that writes into its input (``y *=
    0.999``) fails at the write instead of corrupting the solver's state; on the ``first``
    call the state is also compared with a copy afterwards, which catches a field that makes
    its input writable again. Both raise ValueError saying so. With an array ``t`` a broadcast
    error from inside the field gets a hint about the per-sample time contract and ``args=``.
    ``args`` are handed over after ``y`` as they are (already sliced to y's rows).
    """
    before = y.copy() if first else None
    try:
        out = f(t, _read_only(y), *args)
    except ValueError as exc:
        if "read-only" in str(exc):
            raise ValueError(
                f"the vector field {field_name(f)} wrote into its input y ({exc}); f(t, y) must "
                "not modify y, which is the solver's own state: compute a new array instead "
                "(e.g. y = y * 0.999 rather than y *= 0.999)") from exc
        if "broadcast" in str(exc) and np.ndim(t) == 1:
            rows = (f" ({y.shape[0]} of the batch's {n_rows} rows: those still integrating)"
                    if n_rows is not None and y.shape[0] < n_rows else "")
            raise ValueError(
                f"{exc} — raised inside the vector field {field_name(f)}, which pyode calls with "
                f"y of shape {y.shape}{rows} and t of shape {np.shape(t)}, one time per row: "
                "broadcast t against y with t[:, None] (README, 'A time-dependent field'); and "
                "a field must not hold values that belong to rows of the batch: "
                f"{_per_row_hint(args, n_rows)}") from exc
        raise
    if first and not np.array_equal(before, y, equal_nan=True):
        raise ValueError(
            f"the vector field {field_name(f)} changed its input y; f(t, y) must not modify y, "
            "which is the solver's own state: compute a new array instead")
    return check_field_output(f, out, y, t, n_rows, args)


def _per_row_hint(args, n_rows):
    """How to hand a field values that belong to rows of the batch (for the messages)."""
    hint = ("hand such values to the field as odeint(f, y0, t, args=(k,)) with f(t, y, k): an "
            "ndarray k with one entry per row of y0 (leading axis of length B) is handed over "
            "sliced to the rows being evaluated, like y (README, 'The vector-field protocol')")
    lengths = [len(a) for a in args if isinstance(a, (list, tuple))]
    if n_rows is not None and n_rows in lengths:
        hint += ("; a list or tuple in args passes unchanged: give np.asarray(k) to have it "
                 "sliced")
    return hint


def batch_field(f, squeeze, y_shape, args_at=None):
    """Wrap ``f`` as ``ev(t (n,), y (n, D), rows (n,))``; a 1-D problem calls ``f(float, (D,))``.

    Every call goes through :func:`call_field` (result type, dtype and shape checked; the
    input passed read-only). ``y_shape``, when given, is the shape of the whole batch (for
    the message about rows that are still integrating). ``args_at`` (``pyode.protocol.
    row_args``; None: none) gives the extra arguments of ``f(t, y, *args)`` for the batch
    rows ``rows``; without it ``rows`` is not read.
    """
    n_rows = None if y_shape is None or squeeze else y_shape[0]
    calls = [0]

    def ev(t, y, rows):
        first = calls[0] == 0
        calls[0] += 1
        args = () if args_at is None else args_at(rows)
        if squeeze:
            return call_field(f, float(t[0]), y[0], first=first, args=args)[None]
        return call_field(f, t, y, n_rows, first=first, args=args)

    return ev


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

BACKENDS = ("auto", "numpy", "numba", "cuda")


def kernel_module(f, backend):
    """The kernel module that runs this call, or None for the NumPy path.

    Built-in nn fields run on ``pyode.backends.numba_cpu`` (the Numba CPU kernels) unless the
    field or the call asks for ``backend="numpy"``; ``backend="cuda"`` runs them on
    ``pyode.backends.cuda``. A back end provides ``odeint_nn`` and ``adjoint_nn``.
    """
    if backend == "cuda":
        from . import nn
        if not isinstance(f, nn.Sequential) or f.n_in is None:
            raise ValueError("backend='cuda' runs built-in pyode.nn fields with a Linear layer; "
                             f"this field is a {type(f).__name__}: use backend='numpy' (or "
                             "'auto')")
        from .backends.program import kernel_reason
        reason = kernel_reason(f)
        if reason is not None:
            raise ValueError(f"backend='cuda': {reason}; use backend='numpy' (or 'auto')")
        from .backends import cuda
        cuda.check_device()
        return cuda
    if _use_kernels(f, backend):
        from .backends import numba_cpu
        return numba_cpu
    return None


def _use_kernels(f, backend):
    """Decide whether the Numba kernels run this call (built-in nn fields only)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not known; valid backends: "
                         f"{', '.join(BACKENDS)}")
    if backend == "numpy":
        return False
    from . import nn
    is_nn = isinstance(f, nn.Sequential)
    if backend == "numba" and not is_nn:
        raise ValueError("backend='numba' runs built-in pyode.nn fields only; this field is a "
                         f"{type(f).__name__}: use backend='numpy' (or 'auto')")
    if not is_nn:
        return False
    if f.n_in is None:            # no Linear layer: the width comes from y, the kernels need it
        if backend == "numba":
            raise ValueError("this nn field has no Linear layer, so its width is set by y; the "
                             "kernels need fixed widths: use backend='numpy' (or 'auto')")
        return False
    if backend == "auto" and getattr(f, "backend", "numba") != "numba":
        return False
    from .backends.program import kernel_reason
    reason = kernel_reason(f)
    if reason is None:
        return True
    if backend == "numba":
        raise ValueError(f"backend='numba': {reason}; use backend='numpy' (or 'auto', which "
                         "runs such fields on the NumPy path)")
    return False                  # "auto": a user subclass runs on the NumPy path


#: What ``odeint`` integrates: a :class:`pyode.VectorField`, or for ``odeint`` alone any
#: callable ``f(t, y)`` (the gradient methods need the field's derivatives too).
Field = Union[VectorField, Callable[..., np.ndarray]]


@overload
def odeint(f: Field, y0: ArrayLike, t: ArrayLike, method: str = ..., rtol: float = ...,
           atol: ArrayLike = ..., options: dict[str, Any] | None = ...,
           full_output: Literal[False] = ..., backend: str = ..., args: tuple = ...,
           **unknown: Any) -> np.ndarray: ...


@overload
def odeint(f: Field, y0: ArrayLike, t: ArrayLike, method: str = ..., rtol: float = ...,
           atol: ArrayLike = ..., options: dict[str, Any] | None = ..., *,
           full_output: Literal[True], backend: str = ..., args: tuple = ...,
           **unknown: Any) -> tuple[np.ndarray, SolveInfo]: ...


def odeint(f: Field, y0: ArrayLike, t: ArrayLike, method: str = "dopri5", rtol: float = 1e-7,
           atol: ArrayLike = 1e-9, options: dict[str, Any] | None = None,
           full_output: bool = False, backend: str = "auto", args: tuple = (),
           **unknown: Any) -> np.ndarray | tuple[np.ndarray, SolveInfo]:
    """Integrate dy/dt = f(t, y) and return the solution at the times ``t``.

    Parameters
    ----------
    f : vector field
        ``f(t, y)``, or ``f(t, y, *args)`` with ``args`` (see the vector-field protocol in the
        README); ``y`` (D,) or (B, D).
    y0 : array_like, shape (D,) or (B, D), float32 or float64
        Initial state at ``t[0]``. Each row of a batch is an independent problem with its own
        step sizes (per-sample step control).
    t : array_like, shape (T,), T >= 2
        Strictly increasing or strictly decreasing output times; ``t[0]`` is the initial time.
    method : str
        One of ``pyode.METHODS``: adaptive ``"dopri5"`` (default), ``"tsit5"``,
        ``"fehlberg45"``, ``"bosh3"``, ``"heun_euler"``; fixed-step ``"euler"``,
        ``"midpoint"``, ``"ralston"``, ``"heun3"``, ``"ssprk3"``, ``"rk4"`` (these need
        ``options={"step_size": h}``; each
        interval between output times is split into ⌈|Δt| / h⌉ equal steps, so every output
        time is a step end and no step is longer than h).
    rtol, atol : float (atol may be an array (D,))
        Relative and absolute tolerances of the adaptive methods (see ``pyode.solvers``).
    options : dict, optional
        Fixed-step: ``step_size`` (units of t). Adaptive: ``first_step`` (magnitude, units of
        t; default Hairer's selection). Both: ``max_num_steps`` (default 100000 attempted steps
        per sample; a fixed-step solve that would need more is refused before it starts).
    full_output : bool
        Also return a :class:`SolveInfo`.
    backend : {"auto", "numpy", "numba", "cuda"}
        "auto" runs built-in ``nn`` fields on the Numba kernels (unless the field was built
        with ``backend="numpy"``) and every other field on the NumPy path; "cuda" runs ``nn``
        fields on the GPU (``y0`` may then be a numba-cuda device array of shape (B, D), and
        ``ys`` comes back as one). README, "Backends".
    args : tuple, optional
        Extra arguments handed to the field after ``y``: ``f(t, y, *args)`` (default ``()``,
        none; as scipy's ``solve_ivp(args=)``, but a tuple is required: ``args=(k,)`` for
        one). For a batch ``y0`` (B, D), an ndarray whose leading axis has length B holds one
        entry per row and is handed over sliced to the rows being evaluated, as ``y`` is
        (pyode calls ``f`` on the rows still integrating); every other argument (a scalar, a
        list, an array of another leading length) passes unchanged, and so do all of them
        for a 1-D ``y0``. Not for ``nn`` fields, which take no extra arguments.

    Returns
    -------
    ys : ndarray, shape (T, *y0.shape), dtype of y0
    info : SolveInfo, only with ``full_output=True``

    Raises
    ------
    ValueError, TypeError
        Bad ``t``, ``y0``, tolerances, method, options or backend, or an nn field whose widths
        do not match ``y0`` (the message names the argument and the fix); ``args`` that is not
        a tuple, or ``args`` for an nn field (TypeError); a keyword pyode does
        not take (TypeError; for the names of scipy, torchdiffeq and diffrax, such as
        ``t_eval`` or ``adjoint_params``, it says what pyode calls them); a field that returns
        None, a list or tuple for a batch ``y`` (for a single sample, a list, tuple or, with
        D = 1, a scalar is converted), a non-float dtype or a shape other than y's, or writes
        into ``y``.
    StepSizeUnderflowError, NonFiniteError, TooManyStepsError
        When the integration fails (all subclasses of ``pyode.SolverError``; for a batch,
        ``err.sample`` is the failing row).
    CudaUnavailableError
        ``backend="cuda"`` without a usable CUDA device.

    References
    ----------
    Hairer, Nørsett & Wanner, Solving Ordinary Differential Equations I (1993), §II.1–II.6.
    """
    if unknown:
        raise unknown_keywords_error("odeint", unknown, keyword_names(odeint))
    check_args(args, f)
    ys, info = _odeint(f, y0, t, method, rtol, atol, options, backend, args=args)
    return (ys, info) if full_output else ys


def check_args(args, f):
    """Validate ``args`` of ``odeint``/``odeint_adjoint``: a tuple, and none for nn fields.

    Design decision: scipy's ``solve_ivp`` unpacks any iterable given as ``args``, so
    ``args=k`` with an array k hands the field one argument per row of k; we take a tuple
    only (as scipy documents it) and refuse anything else rather than guess.

    Raises
    ------
    TypeError
        ``args`` is not a tuple (the message says to wrap it: ``args=(k,)``), or it is not
        empty and ``f`` is a ``pyode.nn`` field, which is called as ``f(t, y)`` on every path.
    """
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of the extra arguments of f(t, y, *args), got "
                        f"type {type(args).__name__}; wrap a single argument in a tuple: "
                        "args=(k,)")
    if args:
        from . import nn
        if isinstance(f, nn.Sequential):
            raise TypeError(f"args= hands extra arguments to f(t, y, *args), but the nn field "
                            f"{field_name(f)} is called as f(t, y) and takes none (on the "
                            "kernels and on the NumPy path alike): leave args out, or write "
                            "the field as a Python class whose __call__, vjp and jvp take "
                            "them (README, 'A user-written field')")


def keyword_names(fn):
    """The keyword parameters of ``fn`` (for the unknown-keyword messages)."""
    import inspect
    return [name for name, p in inspect.signature(fn).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD]


def _odeint(f, y0, t, method, rtol, atol, options, backend, args=()):
    if not callable(f):
        raise TypeError(f"f must be a vector field (callable as f(t, y)), got {type(f).__name__}")
    tab = get_tableau(method)
    t_arr = check_times(t)
    on_device = is_device_array(y0)
    y = check_device_y0(y0, backend) if on_device else check_y0(y0)
    squeeze = y.ndim == 1
    yb = y[None] if squeeze else y
    rtol, atol = check_tolerances(rtol, atol, yb.shape[1])
    if not on_device:
        check_attainable(rtol, atol, yb)
    opts = check_options(options, tab)
    check_field_width(f, yb.shape[1])
    check_step_count(t_arr, opts)
    kernels = kernel_module(f, backend)
    if on_device:
        ys, stats = kernels.odeint_nn(f, yb, t_arr, tab, rtol, atol, opts, on_device=True)
    elif kernels is not None:
        ys, stats = kernels.odeint_nn(f, yb, t_arr, tab, rtol, atol, opts)
    else:
        ev = batch_field(f, squeeze, yb.shape, row_args(args, None if squeeze else yb.shape[0]))
        if tab.adaptive:
            ys, stats, _ = integrate_adaptive(ev, yb, t_arr, tab, rtol, atol, opts["first_step"],
                                              opts["max_num_steps"])
        else:
            ys, stats = integrate_fixed(ev, yb, t_arr, tab, opts["step_size"])
    if squeeze:
        ys = ys[:, 0]
        stats = {k: int(v[0]) for k, v in stats.items()}
    return ys, SolveInfo(method=tab.name, **stats)
