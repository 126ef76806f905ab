"""The step formulas of ``kernels.step`` mapped over the rows of a batch.

The batch driver for Python fields (``pyode.solvers.integrate_adaptive``) must call the field
once per stage for all active rows, so it cannot run inside a compiled per-trajectory loop.
Between those calls it hands the rows to these maps: each is a plain loop ``for r in rows``
around one routine of ``kernels.step``, compiled once (``cache=True``) and never a formula of
its own. A row's result is therefore the same as the per-trajectory driver's for that row, and
does not depend on the rows beside it.

Layouts (the NumPy driver's): states y (n, W); stages K (s, n, W); per-row times and steps
(n,); outputs ys (T, B, W). ``rows`` maps the n rows handed in to batch rows where per-sample
controller state (B,) is read and written. Under ``NUMBA_DISABLE_JIT=1`` these are Python
loops: slow, the same numbers.
"""
from numba import njit

from .step import (adjoint_jump, clip_step, combine, dense_point, emit_outputs,
                   initial_step_choice, initial_step_probe, interpolant, judge_step,
                   reconstruction_gap)

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def combine_rows(w, y, h_w, K, n_stages, out):
    """out[r] = y[r] + h_w[r] Σ_{m < n_stages} w_m K[m, r] (``step.combine``) for every row."""
    W = y.shape[1]
    for r in range(y.shape[0]):
        combine(w, y[r], h_w[r], K[:, r], n_stages, out[r], W)


@njit(**_JIT)
def clip_rows(t, h, t_stop, direction, last, h_step, t_new):
    """``step.clip_step`` for every row: last (n,) bool, h_step and t_new (n,) are written."""
    for r in range(t.shape[0]):
        last[r], h_step[r], t_new[r] = clip_step(t[r], h[r], t_stop[r], direction)


@njit(**_JIT)
def judge_rows(rows, y, y_new, K, err, c, b_err, t, h_w, h, t_new, atol, rejected, t_bad,
               bisected, direction, last, h_proposed, cst, accept, finite, h_next):
    """``step.judge_step`` for every attempted row; the controller state rejected, t_bad,
    bisected (B,) of batch row rows[r] is read and updated; accept, finite, h_next (n,) are
    written."""
    for r in range(y.shape[0]):
        b = rows[r]
        ok, fin, hn, tb, bi = judge_step(y[r], y_new[r], K[:, r], err[r], c, b_err, t[r],
                                         h_w[r], h[r], t_new[r], atol, rejected[b], t_bad[b],
                                         bisected[b], direction, last[r], h_proposed[r], cst)
        accept[r], finite[r], h_next[r] = ok, fin, hn
        rejected[b], t_bad[b], bisected[b] = not ok, tb, bi


@njit(**_JIT)
def emit_rows(sel, rows, t_out, nxt, t, h, t_new, h_w, y, y_new, K, P, ys, direction, cst):
    """``step.emit_outputs`` for the accepted attempts ``sel`` (indices into the n attempted
    rows) of batch rows ``rows``: writes ys[:, b] and advances nxt[b] (B,)."""
    for q in range(sel.shape[0]):
        r, b = sel[q], rows[q]
        nxt[b] = emit_outputs(t_out, nxt[b], t[r], h[r], t_new[r], h_w[r], y[r], y_new[r],
                              K[:, r], P, ys[:, b], direction, cst)


@njit(**_JIT)
def initial_probe_rows(y0, f0, atol, span, direction, probe, cst, h0, d1):
    """``step.initial_step_probe`` for every row: h0, d1 (n,) and the probe points (n, W)."""
    for r in range(y0.shape[0]):
        h0[r], d1[r] = initial_step_probe(y0[r], f0[r], atol, span[r], direction, probe[r], cst)


@njit(**_JIT)
def initial_choice_rows(y0, f0, f1, diff, atol, h0, d1, t0, span, cst, h):
    """``step.initial_step_choice`` for every row: the starting step magnitudes h (n,)."""
    for r in range(y0.shape[0]):
        h[r] = initial_step_choice(y0[r], f0[r], f1[r], diff[r], atol, h0[r], d1[r], t0[r],
                                   span[r], cst)


@njit(**_JIT)
def interpolant_rows(P, K, h_w, Q):
    """Q[:, r, j] = ``step.interpolant`` of row r, component j: Q (4, n, W)."""
    for r in range(K.shape[1]):
        for j in range(K.shape[2]):
            Q[0, r, j], Q[1, r, j], Q[2, r, j], Q[3, r, j] = interpolant(P, K[:, r], h_w[r], j)


@njit(**_JIT)
def dense_rows(P, K, y, h_w, theta, out):
    """out[r] = ``step.dense_point`` of row r at its θ[r]."""
    for r in range(y.shape[0]):
        dense_point(P, K[:, r], y[r], h_w[r], theta[r], out[r], y.shape[1])


@njit(**_JIT)
def jump_rows(state, a0, i_t, y_i, g_i, f_i, cst, g_f):
    """``step.adjoint_jump`` for every row of the backward state (n, W), in place; the time
    gradients g_f (n,) are written."""
    D = y_i.shape[1]
    for r in range(state.shape[0]):
        g_f[r] = adjoint_jump(state[r], a0, i_t, y_i[r], g_i[r], f_i[r], D, cst)


@njit(**_JIT)
def gap_rows(z, y, atol, cst, gap):
    """gap[r] = max(gap[r], ``step.reconstruction_gap`` of row r): z, y (n, D)."""
    for r in range(z.shape[0]):
        gap[r] = max(gap[r], reconstruction_gap(z[r], y[r], atol, cst))
