"""Per-trajectory Runge–Kutta integration and adjoint, shared by the CPU and CUDA kernels.

The per-sample routines (``register_jitable``: compiled into whichever kernel calls them) mirror
``pyode.solvers.integrate_adaptive`` / ``integrate_fixed`` and ``pyode.adjoint.backward_pass``
step for step — same stage loop, error norm, controller, dense output and failure checks — so
the tests can hold them to the readable NumPy path at 1e-10. The CPU batch kernels below run one
sample per ``prange`` iteration; ``kernels.cuda`` runs one sample per GPU thread. Samples share
nothing but the read-only parameters: that is per-sample step control.

Kernels never validate and never raise: a failing sample stores a status code and
(t, dt, nfev) in ``fail`` and the wrapper raises the matching ``pyode.errors`` exception.

Argument groups
---------------
net : ``ops, opf, theta`` — the op table of ``kernels.mlp`` and the flat parameters (P,).
tab : (s, s + 7) array, the Butcher tableau packed by columns: ``c | A | b | b_err | P``
      (P is the (s, 4) dense-output matrix of ``pyode.tableaus``).
cst : 1-D array of the working dtype holding every number the hot loop uses (indices C_*
      below): tolerances, controller constants, and plain 0, 1, 3. Taking them from a typed
      array instead of Python literals keeps float32 kernels in float32 arithmetic.
atol : (W,) absolute tolerance per state component.
"""
import math

import numpy as np
from numba import njit, prange
from numba.core.extending import register_jitable

from pyode.errors import NonFiniteError, StepSizeUnderflowError, TooManyStepsError
from pyode.solvers import _UNDERFLOW_ULPS, MAX_FACTOR, MIN_FACTOR, SAFETY

from .mlp import C_ONE, C_ZERO, max_width, mlp_forward, mlp_vjp, op_table

OK, UNDERFLOW, NONFINITE, TOO_MANY = 0, 1, 2, 3
FORWARD, AUGMENTED = 0, 1       # rhs modes: f(t, y) or the adjoint's [z, a, a_θ, a_t] system

# Layout of ``cst`` (C_ZERO = 0, C_ONE = 1, C_THREE = 2 are kernels.mlp's).
(C_RTOL, C_FIRST_STEP, C_MAX_STEPS, C_EXPONENT, C_INV_ORDER, C_N_NORM, C_FSAL, C_STEP_SIZE,
 C_SAFETY, C_MIN_FACTOR, C_MAX_FACTOR, C_ERR_FLOOR, C_ULP_EPS, C_ULP_TINY, C_H_SMALL, C_H_DEFAULT,
 C_CENTI, C_HUNDRED, C_D_TINY, C_MILLI, C_FIXED_SHRINK) = range(3, 24)
N_CONSTANTS = 24


def constants(dtype, tab, rtol, opts, n_norm):
    """The ``cst`` array for one call (module docstring)."""
    info = np.finfo(dtype)
    q = tab.error_order or 1
    cst = np.zeros(N_CONSTANTS, dtype=dtype)
    cst[C_ZERO], cst[C_ONE], cst[2] = 0.0, 1.0, 3.0
    cst[C_RTOL] = rtol
    cst[C_FIRST_STEP] = opts.get("first_step") or 0.0
    cst[C_MAX_STEPS] = opts.get("max_num_steps", 0)
    cst[C_EXPONENT] = -1.0 / (q + 1)              # step factor ∝ ‖err‖^(−1/(q+1))
    cst[C_INV_ORDER] = 1.0 / (q + 1)
    cst[C_N_NORM] = n_norm
    cst[C_FSAL] = 1.0 if tab.fsal else 0.0
    cst[C_STEP_SIZE] = opts.get("step_size", 0.0)
    cst[C_SAFETY], cst[C_MIN_FACTOR], cst[C_MAX_FACTOR] = SAFETY, MIN_FACTOR, MAX_FACTOR
    # As pyode.solvers: the error floor of step_factor and min_step = 10(ε|t| + tiny).
    cst[C_ERR_FLOOR] = 1e-300 if dtype == np.float64 else info.tiny
    cst[C_ULP_EPS] = _UNDERFLOW_ULPS * info.eps
    cst[C_ULP_TINY] = _UNDERFLOW_ULPS * info.tiny
    # Hairer's initial step (pyode.solvers.initial_step).
    cst[C_H_SMALL], cst[C_H_DEFAULT], cst[C_CENTI] = 1e-5, 1e-6, 0.01
    cst[C_HUNDRED], cst[C_D_TINY], cst[C_MILLI] = 100.0, 1e-15, 1e-3
    cst[C_FIXED_SHRINK] = 1.0 - 1e-12 if dtype == np.float64 else 1.0 - 4 * info.eps
    return cst


def pack_tableau(tab, dtype):
    """(s, s + 7) array ``c | A | b | b_err | P`` of the working dtype."""
    s = tab.n_stages
    b_err = tab.b_err if tab.b_err is not None else np.zeros(s)
    P = tab.P if tab.P is not None else np.zeros((s, 4))
    return np.ascontiguousarray(np.column_stack([tab.c, tab.A, tab.b, b_err, P]), dtype=dtype)


@register_jitable
def rhs(mode, ops, opf, theta, D, t, s, out, acts, gbuf, cst):
    """Evaluate the field (mode FORWARD) or the augmented adjoint system (mode AUGMENTED).

    AUGMENTED, on s = [z, a, a_θ, a_t] (Chen et al. 2018, Alg. 1):
    dz/dt = f, da/dt = −aᵀ∂f/∂z, da_θ/dt = −aᵀ∂f/∂θ, da_t/dt = −aᵀ∂f/∂t.
    """
    n_ops = ops.shape[0]
    mlp_forward(ops, opf, theta, t, s, acts, cst)
    for i in range(D):
        out[i] = acts[n_ops, i]
    if mode == AUGMENTED:
        P = theta.shape[0]
        g_theta = out[2 * D:2 * D + P]
        for p in range(P):
            g_theta[p] = cst[C_ZERO]
        g_t, cur = mlp_vjp(ops, opf, theta, acts, s[D:2 * D], gbuf, g_theta, cst)
        for i in range(D):
            out[D + i] = -gbuf[cur, i]
        for p in range(P):
            g_theta[p] = -g_theta[p]
        out[2 * D + P] = -g_t


@register_jitable
def _n_dynamic(mode, D, W):
    """Leading state components that the right-hand side reads (the rest are quadratures)."""
    return 2 * D if mode == AUGMENTED else W


@register_jitable
def _all_finite(x):
    for v in x:
        if not math.isfinite(v):
            return False
    return True


@register_jitable
def _sq_scaled(x, scale, cst):
    """(x / scale)², 0 where scale is 0 (as ``pyode.solvers._scaled``)."""
    if scale > cst[C_ZERO]:
        r = x / scale
        return r * r
    return cst[C_ZERO]


@register_jitable
def _rms_scaled(x, y, atol, cst, n):
    """sqrt(mean((x / (atol + rtol|y|))²)) over the first n components."""
    acc = cst[C_ZERO]
    for j in range(n):
        acc += _sq_scaled(x[j], atol[j] + cst[C_RTOL] * abs(y[j]), cst)
    return math.sqrt(acc / cst[C_N_NORM])


@register_jitable
def initial_step(mode, ops, opf, theta, D, t0, t_end, y, f0, tmp, ftmp, atol, acts, gbuf, cst):
    """Hairer's starting step (HNW I, §II.4), as ``pyode.solvers.initial_step``."""
    n = int(cst[C_N_NORM])
    one = cst[C_ONE]
    span = abs(t_end - t0)
    direction = one if t_end > t0 else -one
    d0 = _rms_scaled(y, y, atol, cst, n)
    d1 = _rms_scaled(f0, y, atol, cst, n)
    if d0 < cst[C_H_SMALL] or d1 < cst[C_H_SMALL]:
        h0 = cst[C_H_DEFAULT]
    else:
        h0 = cst[C_CENTI] * d0 / d1
    h0 = min(h0, span)
    for j in range(y.shape[0]):
        tmp[j] = y[j] + direction * h0 * f0[j]
    rhs(mode, ops, opf, theta, D, t0 + direction * h0, tmp, ftmp, acts, gbuf, cst)
    acc = cst[C_ZERO]
    for j in range(n):
        acc += _sq_scaled(ftmp[j] - f0[j], atol[j] + cst[C_RTOL] * abs(y[j]), cst)
    d2 = math.sqrt(acc / cst[C_N_NORM]) / h0
    dmax = max(d1, d2)
    if dmax <= cst[C_D_TINY]:
        h1 = max(cst[C_H_DEFAULT], h0 * cst[C_MILLI])
    else:
        h1 = (cst[C_CENTI] / dmax) ** cst[C_INV_ORDER]
    h = min(min(cst[C_HUNDRED] * h0, h1), span)
    if not (math.isfinite(h) and h > cst[C_ZERO]):
        h = h0
    if not (math.isfinite(h) and h > cst[C_ZERO]):
        h = min(cst[C_H_DEFAULT], span)
    return h


@register_jitable
def solve_adaptive(mode, ops, opf, theta, D, y0, t_out, tab, first_step, atol, ys, work, acts,
                   gbuf, stats, fail, cst):
    """One sample, adaptive: ``pyode.solvers.integrate_adaptive`` for a single row.

    Parameters
    ----------
    y0 : (W,) initial state; t_out : (T,) output times; first_step : magnitude, 0 for Hairer's
    choice; ys : (T, W) output, written in place; work : (s + 3, W) scratch;
    stats : (3,) int64 nfev, accepted, rejected (added to); fail : (3,) set to (t, dt, nfev).

    Returns
    -------
    status : int (OK, UNDERFLOW, NONFINITE, TOO_MANY); h : the last step magnitude.
    """
    zero, one = cst[C_ZERO], cst[C_ONE]
    n_norm = int(cst[C_N_NORM])
    max_steps = int(cst[C_MAX_STEPS])
    fsal = cst[C_FSAL] != zero
    W = y0.shape[0]
    T = t_out.shape[0]
    s = tab.shape[0]
    c, A, b_err, P = tab[:, 0], tab[:, 1:s + 1], tab[:, s + 2], tab[:, s + 3:s + 7]
    n_dyn = _n_dynamic(mode, D, W)
    K = work[:s]
    y = work[s]
    y_new = work[s + 1]
    tmp = work[s + 2]
    t0, t_end = t_out[0], t_out[T - 1]
    direction = one if t_end > t0 else -one
    for j in range(W):
        y[j] = y0[j]
        ys[0, j] = y0[j]
    t = t0
    nfev = 0
    rhs(mode, ops, opf, theta, D, t, y, K[0], acts, gbuf, cst)
    nfev += 1
    if not _all_finite(K[0]):
        stats[0] += nfev
        fail[0], fail[1], fail[2] = t, zero, stats[0]
        return NONFINITE, zero
    if first_step > zero:
        h = min(first_step, abs(t_end - t0))
    else:
        h = initial_step(mode, ops, opf, theta, D, t0, t_end, y, K[0], tmp, K[1], atol, acts,
                         gbuf, cst)
        nfev += 1
    h = direction * h
    nxt = 1
    n_acc = 0
    n_rej = 0
    status = OK
    nonfinite = False
    while nxt < T:
        last = direction * h >= direction * (t_end - t)
        # Any step but the last below a few ulps of t cannot move t (accepted or not): give up.
        if not last and abs(h) < cst[C_ULP_EPS] * abs(t) + cst[C_ULP_TINY]:
            status = NONFINITE if nonfinite else UNDERFLOW
            fail[0], fail[1], fail[2] = t, h, stats[0] + nfev
            break
        ha = t_end - t if last else h
        t_new = t_end if last else t + ha
        # The stage loop (HNW I, eq. (1.8)); with FSAL the last stage input is y_new. Only the
        # first n_dyn components feed back into the field (for the adjoint: z and a; a_θ and
        # a_t are quadratures), so intermediate stage inputs skip the rest.
        for i in range(1, s):
            n_j = W if (fsal and i == s - 1) else n_dyn
            for j in range(n_j):
                acc = zero
                for m in range(i):
                    acc += A[i, m] * K[m, j]
                y_new[j] = y[j] + ha * acc
            t_i = t_new if c[i] == one else t + c[i] * ha
            rhs(mode, ops, opf, theta, D, t_i, y_new, K[i], acts, gbuf, cst)
        nfev += s - 1
        # Scaled RMS error norm over the first n_norm components.
        err_acc = zero
        for j in range(n_norm):
            e = zero
            for m in range(s):
                e += b_err[m] * K[m, j]
            e = ha * e
            err_acc += _sq_scaled(e, atol[j] + cst[C_RTOL] * max(abs(y[j]), abs(y_new[j])), cst)
        err = math.sqrt(err_acc / cst[C_N_NORM])
        finite = math.isfinite(err) and _all_finite(y_new) and _all_finite(K[s - 1])
        accept = finite and err <= one
        if not finite:
            factor = cst[C_MIN_FACTOR]
        else:
            factor = cst[C_SAFETY] * max(err, cst[C_ERR_FLOOR]) ** cst[C_EXPONENT]
            factor = min(max(factor, cst[C_MIN_FACTOR]), cst[C_MAX_FACTOR])
            if not accept:
                factor = min(factor, one)
        h_next = ha * factor
        nonfinite = not finite
        if not accept:
            n_rej += 1
        else:
            n_acc += 1
            while nxt < T and direction * (t_out[nxt] - t_new) <= zero:
                if t_out[nxt] == t_new:
                    for j in range(W):
                        ys[nxt, j] = y_new[j]
                else:      # dense output y + h Σ_m b_m(θ) K_m, b_m(θ) = Σ_k P[m, k] θ^(k+1)
                    th = (t_out[nxt] - t) / ha
                    for j in range(W):
                        acc = zero
                        for m in range(s):
                            bm = th * (P[m, 0] + th * (P[m, 1] + th * (P[m, 2] + th * P[m, 3])))
                            acc += bm * K[m, j]
                        ys[nxt, j] = y[j] + ha * acc
                nxt += 1
            t = t_new
            for j in range(W):
                y[j] = y_new[j]
                K[0, j] = K[s - 1, j]
            if last:
                h_next = direction * max(abs(h_next), abs(h))
        h = h_next
        if n_acc + n_rej >= max_steps and nxt < T:
            status = TOO_MANY
            fail[0], fail[1], fail[2] = t, h, stats[0] + nfev
            break
    stats[0] += nfev
    stats[1] += n_acc
    stats[2] += n_rej
    return status, abs(h)


@register_jitable
def solve_fixed(mode, ops, opf, theta, D, y0, t_out, tab, ys, work, acts, gbuf, stats, fail,
                cst):
    """One sample, fixed steps: ``pyode.solvers.integrate_fixed`` for a single row."""
    zero, one = cst[C_ZERO], cst[C_ONE]
    step_size = cst[C_STEP_SIZE]
    W = y0.shape[0]
    T = t_out.shape[0]
    s = tab.shape[0]
    c, A, b = tab[:, 0], tab[:, 1:s + 1], tab[:, s + 1]
    n_dyn = _n_dynamic(mode, D, W)
    K = work[:s]
    y = work[s]
    y_new = work[s + 1]
    for j in range(W):
        y[j] = y0[j]
        ys[0, j] = y0[j]
    n_steps = 0
    for i in range(1, T):
        span = t_out[i] - t_out[i - 1]
        # n = ceil(|Δt| / step_size), as a float of the working dtype: ceil(x) = −(−x // 1).
        n_f = max(one, -((-abs(span) / step_size * cst[C_FIXED_SHRINK]) // one))
        n = int(n_f)
        h = span / n_f
        k_f = zero
        for k in range(n):
            t = t_out[i - 1] + k_f * h
            t_new = t_out[i] if k == n - 1 else t + h
            k_f += one
            rhs(mode, ops, opf, theta, D, t, y, K[0], acts, gbuf, cst)
            for st in range(1, s):
                for j in range(n_dyn):
                    acc = zero
                    for m in range(st):
                        acc += A[st, m] * K[m, j]
                    y_new[j] = y[j] + h * acc
                t_i = t_new if c[st] == one else t + c[st] * h
                rhs(mode, ops, opf, theta, D, t_i, y_new, K[st], acts, gbuf, cst)
            for j in range(W):
                acc = zero
                for m in range(s):
                    acc += b[m] * K[m, j]
                y[j] = y[j] + h * acc
            n_steps += 1
            ok = _all_finite(y)
            for m in range(s):
                ok = ok and _all_finite(K[m])
            if not ok:
                stats[0] += s * n_steps
                fail[0], fail[1], fail[2] = t, h, stats[0]
                return NONFINITE, zero
        for j in range(W):
            ys[i, j] = y[j]
    stats[0] += s * n_steps
    stats[1] += n_steps
    return OK, zero


@register_jitable
def solve(mode, ops, opf, theta, D, y0, t_out, tab, first_step, atol, ys, work, acts, gbuf,
          stats, fail, cst):
    """Adaptive or fixed steps (a positive ``cst[C_STEP_SIZE]`` means fixed)."""
    if cst[C_STEP_SIZE] > cst[C_ZERO]:
        return solve_fixed(mode, ops, opf, theta, D, y0, t_out, tab, ys, work, acts, gbuf,
                           stats, fail, cst)
    return solve_adaptive(mode, ops, opf, theta, D, y0, t_out, tab, first_step, atol, ys, work,
                          acts, gbuf, stats, fail, cst)


@register_jitable
def _g_dot_f(ops, opf, theta, D, t, y, g, fbuf, acts, gbuf, cst):
    """g · f(t, y) for one sample (one field evaluation)."""
    rhs(FORWARD, ops, opf, theta, D, t, y, fbuf, acts, gbuf, cst)
    acc = cst[C_ZERO]
    for j in range(D):
        acc += g[j] * fbuf[j]
    return acc


@register_jitable
def adjoint_one(ops, opf, theta, D, ys, gs, t_out, tab, atol, gf, work, acts, gbuf, vec, span,
                stats, fail, cst):
    """``pyode.adjoint.backward_pass`` for one sample.

    The augmented state [z, a, a_θ, a_t] is integrated backward over each output interval; at
    t_i, dL/dy(t_i) is added to a and z restarts from the stored y(t_i) (Chen et al. 2018,
    Alg. 1, App. C).

    Parameters
    ----------
    ys, gs : (T, D) forward outputs and dL/dys of this sample; gf : (T,) output, per-sample
    dL/dt_i (gf[0] is a_t(t0)); vec : (3, W) scratch whose row 0 ends as the final state
    [z, a(t0), a_θ(t0), a_t(t0)]; span : (2,) scratch.

    Returns
    -------
    status : int; recon : the largest reconstruction error max |z(t_i) − y(t_i)| /
    (atol + rtol·|y(t_i)|) over the output times.
    """
    T = t_out.shape[0]
    P = theta.shape[0]
    W = 2 * D + P + 1
    zero = cst[C_ZERO]
    state = vec[0]
    seg = vec[1:3]
    g_f = _g_dot_f(ops, opf, theta, D, t_out[T - 1], ys[T - 1], gs[T - 1], seg[0], acts, gbuf,
                   cst)
    stats[0] += 1
    gf[T - 1] = g_f
    for j in range(D):
        state[D + j] = gs[T - 1, j]
    for p in range(P):
        state[2 * D + p] = zero
    state[W - 1] = -g_f
    code = OK
    recon = zero
    h = cst[C_FIRST_STEP]
    for i in range(T - 1, 0, -1):
        for j in range(D):
            state[j] = ys[i, j]
        span[0] = t_out[i]
        span[1] = t_out[i - 1]
        code, h = solve(AUGMENTED, ops, opf, theta, D, state, span, tab, h, atol, seg, work,
                        acts, gbuf, stats, fail, cst)   # h: continue with the last step size
        if code != OK:
            break
        for j in range(W):
            state[j] = seg[1, j]
        for j in range(D):
            y_j = ys[i - 1, j]
            recon = max(recon, abs(state[j] - y_j) / (atol[j] + cst[C_RTOL] * abs(y_j)))
        if i - 1 > 0:
            g_f = _g_dot_f(ops, opf, theta, D, t_out[i - 1], ys[i - 1], gs[i - 1], seg[0], acts,
                           gbuf, cst)
            stats[0] += 1
            gf[i - 1] = g_f
            state[W - 1] = state[W - 1] - g_f   # keeps a_t = −aᵀf across a → a + g_i
        for j in range(D):
            state[D + j] = state[D + j] + gs[i - 1, j]
    gf[0] = state[W - 1]
    return code, recon


# ---------------------------------------------------------------------------------------------
# CPU batch kernels: one sample per prange iteration, scratch allocated per sample.
# ---------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def forward_batch(ops, opf, theta, y0, t_out, tab, atol, ys, stats, status, fail, mw, cst):
    """Integrate every row of y0 (B, D) on its own; ys (T, B, D) is written in place."""
    B, D = y0.shape
    s = tab.shape[0]
    n_ops = ops.shape[0]
    for bi in prange(B):
        work = np.empty((s + 3, D), dtype=y0.dtype)
        acts = np.empty((n_ops + 1, mw), dtype=y0.dtype)
        gbuf = np.empty((2, mw), dtype=y0.dtype)
        status[bi], _ = solve(FORWARD, ops, opf, theta, D, y0[bi], t_out, tab,
                              cst[C_FIRST_STEP], atol, ys[:, bi, :], work, acts, gbuf,
                              stats[bi], fail[bi], cst)


@njit(cache=True, parallel=True)
def adjoint_batch(ops, opf, theta, ys, gs, t_out, tab, atol, a_out, a_theta, gf, recon, stats,
                  status, fail, mw, cst):
    """``adjoint_one`` for every sample. ys, gs : (T, B, D). Outputs: a_out (B, D) dL/dy0,
    a_theta (B, P), gf (B, T) per-sample dL/dt_i, recon (B,)."""
    T, B, D = ys.shape
    P = theta.shape[0]
    W = 2 * D + P + 1
    s = tab.shape[0]
    n_ops = ops.shape[0]
    for bi in prange(B):
        work = np.empty((s + 3, W), dtype=ys.dtype)
        acts = np.empty((n_ops + 1, mw), dtype=ys.dtype)
        gbuf = np.empty((2, mw), dtype=ys.dtype)
        vec = np.empty((3, W), dtype=ys.dtype)
        span = np.empty(2, dtype=ys.dtype)
        status[bi], recon[bi] = adjoint_one(ops, opf, theta, D, ys[:, bi, :], gs[:, bi, :],
                                            t_out, tab, atol, gf[bi], work, acts, gbuf, vec,
                                            span, stats[bi], fail[bi], cst)
        for j in range(D):
            a_out[bi, j] = vec[0, D + j]
        for p in range(P):
            a_theta[bi, p] = vec[0, 2 * D + p]


# ---------------------------------------------------------------------------------------------
# Thin wrappers: convert, allocate, call, raise.
# ---------------------------------------------------------------------------------------------

class Packed:
    """Everything a kernel needs for one call, converted to the working dtype."""

    def __init__(self, f, tab, rtol, atol, opts, W, n_norm, dtype):
        self.ops, self.opf = op_table(f, dtype)
        self.theta = np.ascontiguousarray(f.params, dtype=dtype)
        self.tab = pack_tableau(tab, dtype)
        self.cst = constants(dtype, tab, rtol, opts, n_norm or W)
        self.atol = np.ascontiguousarray(np.broadcast_to(atol, (W,)), dtype=dtype)
        self.mw = max_width(self.ops)


def raise_failure(status, fail, stats, what="", max_num_steps=None):
    """Raise the ``pyode.errors`` exception of the first failed sample, if any."""
    bad = np.nonzero(status != OK)[0]
    if bad.size == 0:
        return
    i = int(bad[0])
    sample = None if status.shape[0] == 1 else i
    t, dt, nfev = (float(x) for x in fail[i])
    code = status[i]
    if code == UNDERFLOW:
        raise StepSizeUnderflowError(f"Step size underflow{what}", t, dt, nfev, sample)
    if code == NONFINITE:
        raise NonFiniteError(f"Non-finite state or derivative{what}", t, dt, nfev, sample)
    raise TooManyStepsError(f"Reached max_num_steps={max_num_steps}{what}", t, dt, nfev, sample)


def stats_dict(stats):
    """(B, 3) int64 → dict of (B,) arrays nfev, n_accepted, n_rejected."""
    return dict(nfev=stats[:, 0].copy(), n_accepted=stats[:, 1].copy(),
                n_rejected=stats[:, 2].copy())


def odeint_nn(f, yb, t_arr, tab, rtol, atol, opts, n_norm=None):
    """Forward solve of an nn field on the CPU kernels; returns ys (T, B, D) and stats."""
    B, D = yb.shape
    y0 = np.ascontiguousarray(yb)
    k = Packed(f, tab, rtol, atol, opts, D, n_norm, y0.dtype)
    t_out = np.ascontiguousarray(t_arr, dtype=y0.dtype)
    ys = np.empty((t_out.shape[0], B, D), dtype=y0.dtype)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3), dtype=y0.dtype)
    forward_batch(k.ops, k.opf, k.theta, y0, t_out, k.tab, k.atol, ys, stats, status, fail, k.mw,
                  k.cst)
    raise_failure(status, fail, stats, max_num_steps=opts.get("max_num_steps"))
    return ys, stats_dict(stats)


def adjoint_nn(f, yb, gb, t_arr, tab, rtol, atol, opts, n_norm=None):
    """Adjoint backward pass of an nn field on the CPU kernels (``adjoint.backward_pass``).

    Returns (a (B, D), a_theta (B, P), dLdt (T,), stats, recon (B,)); ``n_norm`` limits the
    backward error norm to the first n_norm components ([z, a] for the seminorm).
    """
    T, B, D = yb.shape
    P = f.params.size
    W = 2 * D + P + 1
    ys = np.ascontiguousarray(yb)
    gs = np.ascontiguousarray(gb, dtype=ys.dtype)
    k = Packed(f, tab, rtol, atol, opts, W, n_norm, ys.dtype)
    t_out = np.ascontiguousarray(t_arr, dtype=ys.dtype)
    a = np.empty((B, D), dtype=ys.dtype)
    a_theta = np.empty((B, P), dtype=ys.dtype)
    gf = np.zeros((B, T), dtype=ys.dtype)
    recon = np.zeros(B, dtype=ys.dtype)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3), dtype=ys.dtype)
    adjoint_batch(k.ops, k.opf, k.theta, ys, gs, t_out, k.tab, k.atol, a, a_theta, gf, recon,
                  stats, status, fail, k.mw, k.cst)
    raise_failure(status, fail, stats, " in the adjoint (backward) solve",
                  opts.get("max_num_steps"))
    return a, a_theta, gf.sum(axis=0, dtype=np.float64), stats_dict(stats), recon
