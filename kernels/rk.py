"""Numba CPU kernels: batch integration and the adjoint of built-in MLP fields.

The per-sample routines mirror ``pyode.solvers.integrate_adaptive`` / ``integrate_fixed`` and
``pyode.adjoint.backward_pass`` step for step (same stage loop, error norm, controller, dense
output and failure checks), so the tests can hold them to the readable NumPy path at 1e-10.
The batch kernels run one sample per ``prange`` iteration; samples share nothing but the
read-only parameters, which is what per-sample step control means.

Kernels never validate and never raise: a failing sample stores a status code and (t, dt, nfev)
and the wrapper raises the matching ``pyode.errors`` exception.

Argument groups: the tableau is ``(c, A, b, b_err, P)``; ``ctrl`` (float64, 6) is
``[rtol, first_step (0: Hairer), max_num_steps, error_order, n_norm, fsal]``; ``atol`` is an
array over the state's components.
"""
import math

import numpy as np
from numba import njit, prange

from pyode.errors import NonFiniteError, StepSizeUnderflowError, TooManyStepsError
from pyode.solvers import MAX_FACTOR, MIN_FACTOR, SAFETY, _UNDERFLOW_ULPS

from .mlp import max_width, mlp_forward, mlp_vjp, op_table

OK, UNDERFLOW, NONFINITE, TOO_MANY = 0, 1, 2, 3
FORWARD, AUGMENTED = 0, 1       # rhs modes: f(t, y) or the adjoint's [z, a, a_θ, a_t] system


@njit(cache=True)
def rhs(mode, ops, opf, theta, D, t, s, out, acts, gbuf):
    """Evaluate the field (mode FORWARD) or the augmented adjoint system (mode AUGMENTED).

    AUGMENTED, on s = [z, a, a_θ, a_t] (Chen et al. 2018, Alg. 1):
    dz/dt = f, da/dt = −aᵀ∂f/∂z, da_θ/dt = −aᵀ∂f/∂θ, da_t/dt = −aᵀ∂f/∂t.
    """
    n_ops = ops.shape[0]
    mlp_forward(ops, opf, theta, t, s, acts)
    for i in range(D):
        out[i] = acts[n_ops, i]
    if mode == AUGMENTED:
        P = theta.shape[0]
        g_theta = out[2 * D:2 * D + P]
        for p in range(P):
            g_theta[p] = 0.0
        g_t, cur = mlp_vjp(ops, opf, theta, acts, s[D:2 * D], gbuf, g_theta)
        for i in range(D):
            out[D + i] = -gbuf[cur, i]
        for p in range(P):
            g_theta[p] = -g_theta[p]
        out[2 * D + P] = -g_t


@njit(cache=True)
def _n_dynamic(mode, D, W):
    """Leading state components that the right-hand side reads (the rest are quadratures)."""
    return 2 * D if mode == AUGMENTED else W


@njit(cache=True)
def _all_finite(x):
    for v in x:
        if not math.isfinite(v):
            return False
    return True


@njit(cache=True)
def _sq_scaled(x, scale):
    """(x / scale)², 0 where scale is 0 (as ``pyode.solvers._scaled``)."""
    if scale > 0:
        r = x / scale
        return r * r
    return 0.0 * x


@njit(cache=True)
def _rms_scaled(x, y, atol, rtol, n):
    """sqrt(mean((x / (atol + rtol|y|))²)) over the first n components."""
    acc = 0.0
    for j in range(n):
        acc += _sq_scaled(x[j], atol[j] + rtol * abs(y[j]))
    return math.sqrt(acc / n)


@njit(cache=True)
def initial_step(mode, net, D, t0, t_end, y, f0, tmp, ftmp, atol, rtol, error_order, n,
                 acts, gbuf):
    """Hairer's starting step (HNW I, §II.4), as ``pyode.solvers.initial_step``."""
    ops, opf, theta = net
    span = abs(t_end - t0)
    direction = 1.0 if t_end > t0 else -1.0
    d0 = _rms_scaled(y, y, atol, rtol, n)
    d1 = _rms_scaled(f0, y, atol, rtol, n)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    for j in range(y.shape[0]):
        tmp[j] = y[j] + direction * h0 * f0[j]
    rhs(mode, ops, opf, theta, D, t0 + direction * h0, tmp, ftmp, acts, gbuf)
    acc = 0.0
    for j in range(n):
        acc += _sq_scaled(ftmp[j] - f0[j], atol[j] + rtol * abs(y[j]))
    d2 = math.sqrt(acc / n) / h0
    dmax = max(d1, d2)
    if dmax <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / dmax) ** (1.0 / (error_order + 1))
    h = min(min(100.0 * h0, h1), span)
    if not (math.isfinite(h) and h > 0):
        h = h0
    if not (math.isfinite(h) and h > 0):
        h = min(1e-6, span)
    return h


@njit(cache=True)
def solve_adaptive(mode, net, D, y0, t_out, tab, ctrl, atol, ys, work, acts, gbuf, stats,
                   fail):
    """One sample, adaptive: ``pyode.solvers.integrate_adaptive`` for a single row.

    Parameters
    ----------
    y0 : (W,) initial state; t_out : (T,) output times; ys : (T, W) output, written in place;
    work : (s + 3, W) scratch; stats : (3,) int64 nfev, accepted, rejected (added to);
    fail : (3,) float64, set to (t, dt, nfev) on failure.

    Returns
    -------
    status : int (OK, UNDERFLOW, NONFINITE, TOO_MANY); h : float, the last step magnitude.
    """
    ops, opf, theta = net
    c, A, b, b_err, P = tab
    n_dyn = _n_dynamic(mode, D, y0.shape[0])
    rtol, first_step, max_steps = ctrl[0], ctrl[1], ctrl[2]
    error_order, n_norm, fsal = ctrl[3], int(ctrl[4]), ctrl[5] != 0.0
    W = y0.shape[0]
    T = t_out.shape[0]
    s = c.shape[0]
    K = work[:s]
    y = work[s]
    y_new = work[s + 1]
    tmp = work[s + 2]
    t0, t_end = t_out[0], t_out[T - 1]
    direction = 1.0 if t_end > t0 else -1.0
    exponent = -1.0 / (error_order + 1.0)
    for j in range(W):
        y[j] = y0[j]
        ys[0, j] = y0[j]
    t = t0
    nfev = 0
    rhs(mode, ops, opf, theta, D, t, y, K[0], acts, gbuf)
    nfev += 1
    if not _all_finite(K[0]):
        fail[0], fail[1], fail[2] = t, 0.0, stats[0] + nfev
        stats[0] += nfev
        return NONFINITE, 0.0
    if first_step > 0:
        h = min(first_step, abs(t_end - t0))
    else:
        h = initial_step(mode, net, D, t0, t_end, y, K[0], tmp, K[1], atol, rtol, error_order,
                         n_norm, acts, gbuf)
        nfev += 1
    h = direction * h
    nxt = 1
    n_acc = 0
    n_rej = 0
    status = OK
    nonfinite = False
    while nxt < T:
        # A step below a few ulps of t cannot move t (accepted or not): give up.
        if abs(h) < _UNDERFLOW_ULPS * abs(np.spacing(t)):
            status = NONFINITE if nonfinite else UNDERFLOW
            fail[0], fail[1], fail[2] = t, h, stats[0] + nfev
            break
        last = direction * h >= direction * (t_end - t)
        ha = t_end - t if last else h
        t_new = t_end if last else t + ha
        # The stage loop (HNW I, eq. (1.8)); with FSAL the last stage input is y_new. Only the
        # first n_dyn components feed back into the field (for the adjoint: z and a; a_θ and
        # a_t are quadratures), so intermediate stage inputs skip the rest.
        for i in range(1, s):
            n_j = W if (fsal and i == s - 1) else n_dyn
            for j in range(n_j):
                acc = 0.0
                for m in range(i):
                    acc += A[i, m] * K[m, j]
                y_new[j] = y[j] + ha * acc
            t_i = t_new if c[i] == 1.0 else t + c[i] * ha
            rhs(mode, ops, opf, theta, D, t_i, y_new, K[i], acts, gbuf)
        if not fsal:
            for j in range(W):
                acc = 0.0
                for m in range(s):
                    acc += b[m] * K[m, j]
                y_new[j] = y[j] + ha * acc
        nfev += s - 1
        # Scaled RMS error norm over the first n_norm components.
        err_acc = 0.0
        for j in range(n_norm):
            e = 0.0
            for m in range(s):
                e += b_err[m] * K[m, j]
            e = ha * e
            err_acc += _sq_scaled(e, atol[j] + rtol * max(abs(y[j]), abs(y_new[j])))
        err = math.sqrt(err_acc / n_norm)
        finite = math.isfinite(err) and _all_finite(y_new) and _all_finite(K[s - 1])
        accept = finite and err <= 1.0
        if not finite:
            factor = MIN_FACTOR
        else:
            factor = SAFETY * max(err, 1e-300) ** exponent
            factor = min(max(factor, MIN_FACTOR), MAX_FACTOR)
            if not accept:
                factor = min(factor, 1.0)
        h_next = ha * factor
        nonfinite = not finite
        if not accept:
            n_rej += 1
        else:
            n_acc += 1
            while nxt < T and direction * (t_out[nxt] - t_new) <= 0.0:
                if t_out[nxt] == t_new:
                    for j in range(W):
                        ys[nxt, j] = y_new[j]
                else:
                    th = (t_out[nxt] - t) / ha
                    for j in range(W):
                        acc = 0.0
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


@njit(cache=True)
def solve_fixed(mode, net, D, y0, t_out, tab, step_size, ys, work, acts, gbuf, stats, fail):
    """One sample, fixed steps: ``pyode.solvers.integrate_fixed`` for a single row."""
    ops, opf, theta = net
    c, A, b, b_err, P = tab
    n_dyn = _n_dynamic(mode, D, y0.shape[0])
    W = y0.shape[0]
    T = t_out.shape[0]
    s = c.shape[0]
    K = work[:s]
    y = work[s]
    y_new = work[s + 1]
    for j in range(W):
        y[j] = y0[j]
        ys[0, j] = y0[j]
    n_steps = 0
    for i in range(1, T):
        span = t_out[i] - t_out[i - 1]
        n = max(1, int(math.ceil(abs(span) / step_size * (1.0 - 1e-12))))
        h = span / n
        for k in range(n):
            t = t_out[i - 1] + k * h
            t_new = t_out[i] if k == n - 1 else t + h
            rhs(mode, ops, opf, theta, D, t, y, K[0], acts, gbuf)
            for st in range(1, s):
                for j in range(n_dyn):
                    acc = 0.0
                    for m in range(st):
                        acc += A[st, m] * K[m, j]
                    y_new[j] = y[j] + h * acc
                t_i = t_new if c[st] == 1.0 else t + c[st] * h
                rhs(mode, ops, opf, theta, D, t_i, y_new, K[st], acts, gbuf)
            for j in range(W):
                acc = 0.0
                for m in range(s):
                    acc += b[m] * K[m, j]
                y[j] = y[j] + h * acc
            n_steps += 1
            ok = _all_finite(y)
            for m in range(s):
                ok = ok and _all_finite(K[m])
            if not ok:
                fail[0], fail[1], fail[2] = t, h, stats[0] + s * n_steps
                stats[0] += s * n_steps
                return NONFINITE, 0.0
        for j in range(W):
            ys[i, j] = y[j]
    stats[0] += s * n_steps
    stats[1] += n_steps
    return OK, 0.0


@njit(cache=True)
def _solve(mode, net, D, y0, t_out, tab, ctrl, atol, ys, work, acts, gbuf, stats, fail):
    """Adaptive or fixed (ctrl[6] > 0 is the fixed step size)."""
    if ctrl[6] > 0:
        return solve_fixed(mode, net, D, y0, t_out, tab, ctrl[6], ys, work, acts, gbuf, stats,
                           fail)
    return solve_adaptive(mode, net, D, y0, t_out, tab, ctrl, atol, ys, work, acts, gbuf,
                          stats, fail)


@njit(cache=True, parallel=True)
def forward_batch(net, y0, t_out, tab, ctrl, atol, ys, stats, status, fail, mw):
    """Integrate every row of y0 (B, D) on its own; ys (T, B, D) is written in place."""
    B, D = y0.shape
    T = t_out.shape[0]
    s = tab[0].shape[0]
    n_ops = net[0].shape[0]
    for bi in prange(B):
        work = np.empty((s + 3, D), dtype=y0.dtype)
        acts = np.empty((n_ops + 1, mw), dtype=y0.dtype)
        gbuf = np.empty((2, mw), dtype=y0.dtype)
        out = np.empty((T, D), dtype=y0.dtype)
        st, _ = _solve(FORWARD, net, D, y0[bi], t_out, tab, ctrl, atol, out, work, acts, gbuf,
                       stats[bi], fail[bi])
        status[bi] = st
        for i in range(T):
            for j in range(D):
                ys[i, bi, j] = out[i, j]


@njit(cache=True)
def _g_dot_f(net, D, t, y, g, fbuf, acts, gbuf):
    """g · f(t, y) for one sample (one field evaluation)."""
    ops, opf, theta = net
    rhs(FORWARD, ops, opf, theta, D, t, y, fbuf, acts, gbuf)
    acc = 0.0
    for j in range(D):
        acc += g[j] * fbuf[j]
    return acc


@njit(cache=True, parallel=True)
def adjoint_batch(net, ys, gs, t_out, tab, ctrl, atol, a_out, a_theta, gf, recon, stats,
                  status, fail, mw):
    """``pyode.adjoint.backward_pass`` per sample: the augmented state [z, a, a_θ, a_t] is
    integrated backward over each output interval, with dL/dy(t_i) added to a at t_i.

    ys, gs : (T, B, D) forward outputs and dL/dys. Outputs: a_out (B, D) dL/dy0, a_theta (B, P),
    gf (B, T) per-sample dL/dt_i (gf[:, 0] is a_t(t0)); recon (B,) the largest
    reconstruction error max |z(t_i) − y(t_i)| / (atol + rtol·|y(t_i)|).
    """
    T, B, D = ys.shape
    P = net[2].shape[0]
    W = 2 * D + P + 1
    s = tab[0].shape[0]
    n_ops = net[0].shape[0]
    for bi in prange(B):
        work = np.empty((s + 3, W), dtype=ys.dtype)
        acts = np.empty((n_ops + 1, mw), dtype=ys.dtype)
        gbuf = np.empty((2, mw), dtype=ys.dtype)
        state = np.empty(W, dtype=ys.dtype)
        seg = np.empty((2, W), dtype=ys.dtype)
        span = np.empty(2)
        ctrl_b = ctrl.copy()
        st = stats[bi]
        g_f = _g_dot_f(net, D, t_out[T - 1], ys[T - 1, bi], gs[T - 1, bi], seg[0], acts, gbuf)
        st[0] += 1
        gf[bi, T - 1] = g_f
        for j in range(D):
            state[D + j] = gs[T - 1, bi, j]
        for p in range(P):
            state[2 * D + p] = 0.0
        state[W - 1] = -g_f
        code = OK
        for i in range(T - 1, 0, -1):
            for j in range(D):
                state[j] = ys[i, bi, j]
            span[0] = t_out[i]
            span[1] = t_out[i - 1]
            code, h = _solve(AUGMENTED, net, D, state, span, tab, ctrl_b, atol, seg, work,
                             acts, gbuf, st, fail[bi])
            if code != OK:
                break
            ctrl_b[1] = h                  # continue with the last step size
            for j in range(W):
                state[j] = seg[1, j]
            for j in range(D):
                y_j = ys[i - 1, bi, j]
                gap = abs(state[j] - y_j) / (atol[j] + ctrl[0] * abs(y_j))
                recon[bi] = max(recon[bi], gap)
            if i - 1 > 0:
                g_f = _g_dot_f(net, D, t_out[i - 1], ys[i - 1, bi], gs[i - 1, bi], seg[0],
                               acts, gbuf)
                st[0] += 1
                gf[bi, i - 1] = g_f
                state[W - 1] = state[W - 1] - g_f
            for j in range(D):
                state[D + j] = state[D + j] + gs[i - 1, bi, j]
        status[bi] = code
        for j in range(D):
            a_out[bi, j] = state[D + j]
        for p in range(P):
            a_theta[bi, p] = state[2 * D + p]
        gf[bi, 0] = state[W - 1]


# ---------------------------------------------------------------------------------------------
# Thin wrappers: convert, allocate, call, raise.
# ---------------------------------------------------------------------------------------------

def _pack(f, tab, rtol, opts, n_norm, dtype):
    ops, opf = op_table(f)
    theta = np.ascontiguousarray(f.params, dtype=dtype)
    net = (ops, opf, theta)
    P = tab.P if tab.P is not None else np.zeros((tab.n_stages, 4))
    b_err = tab.b_err if tab.b_err is not None else np.zeros(tab.n_stages)
    tab_arrays = (tab.c, tab.A, tab.b, b_err, P)
    first = opts.get("first_step") or 0.0
    ctrl = np.array([rtol, first, opts.get("max_num_steps", 0), tab.error_order or 0, n_norm,
                     1.0 if tab.fsal else 0.0, opts.get("step_size", 0.0)], dtype=np.float64)
    return net, tab_arrays, ctrl, max_width(ops)


def _raise(status, fail, what):
    bad = np.nonzero(status != OK)[0]
    if bad.size == 0:
        return
    i = bad[0]
    t, dt, nfev = fail[i]
    code = status[i]
    if code == UNDERFLOW:
        raise StepSizeUnderflowError(f"Step size underflow{what}", t, dt, nfev)
    if code == NONFINITE:
        raise NonFiniteError(f"Non-finite state or derivative{what}", t, dt, nfev)
    raise TooManyStepsError(f"Reached max_num_steps{what}", t, dt, nfev)


def _stats_dict(stats):
    return dict(nfev=stats[:, 0].copy(), n_accepted=stats[:, 1].copy(),
                n_rejected=stats[:, 2].copy())


def odeint_nn(f, yb, t_arr, tab, rtol, atol, opts, n_norm=None):
    """Forward solve of an nn field on the kernels; returns ys (T, B, D) and stats."""
    B, D = yb.shape
    y0 = np.ascontiguousarray(yb, dtype=f.params.dtype if yb.dtype == f.params.dtype
                              else yb.dtype)
    net, tab_arrays, ctrl, mw = _pack(f, tab, rtol, opts, n_norm or D, y0.dtype)
    atol_v = np.ascontiguousarray(np.broadcast_to(atol, (D,)), dtype=np.float64)
    T = t_arr.shape[0]
    ys = np.empty((T, B, D), dtype=y0.dtype)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3))
    forward_batch(net, y0, t_arr, tab_arrays, ctrl, atol_v, ys, stats, status, fail, mw)
    _raise(status, fail, "")
    return ys, _stats_dict(stats)


def adjoint_nn(f, yb, gb, t_arr, tab, rtol, atol, opts, n_norm=None):
    """Adjoint backward pass of an nn field on the kernels (``adjoint.backward_pass``).

    Returns (a (B, D), a_theta (B, P), dLdt (T,), stats, recon (B,)); ``n_norm`` limits the
    backward error norm to the first n_norm components ([z, a] for the seminorm).
    """
    T, B, D = yb.shape
    P = f.params.size
    W = 2 * D + P + 1
    ys = np.ascontiguousarray(yb)
    gs = np.ascontiguousarray(gb, dtype=ys.dtype)
    net, tab_arrays, ctrl, mw = _pack(f, tab, rtol, opts, n_norm or W, ys.dtype)
    atol_v = np.ascontiguousarray(np.broadcast_to(atol, (W,)), dtype=np.float64)
    a = np.empty((B, D), dtype=ys.dtype)
    a_theta = np.empty((B, P), dtype=ys.dtype)
    gf = np.zeros((B, T))
    recon = np.zeros(B)
    stats = np.zeros((B, 3), dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    fail = np.zeros((B, 3))
    adjoint_batch(net, ys, gs, t_arr, tab_arrays, ctrl, atol_v, a, a_theta, gf, recon, stats,
                  status, fail, mw)
    _raise(status, fail, " in the adjoint (backward) solve")
    return a, a_theta, gf.sum(axis=0), _stats_dict(stats), recon
