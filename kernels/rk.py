"""Per-trajectory Runge–Kutta integration and adjoints, shared by the CPU and CUDA kernels.

The per-sample drivers here (``register_jitable``: compiled into whichever kernel calls them)
put together the step formulas of ``kernels.step`` — stage inputs, error norm, controller,
starting step, dense output, bisection toward a failure — which the batch driver for Python
fields (``pyode.solvers.integrate_adaptive``) uses too: each formula is written once. The CPU
batch kernels below are serial loops over a range of samples, run on several Python threads at
once by ``pyode.backends.numba_cpu.run_kernel``; ``kernels.cuda`` runs one
sample per GPU thread. Samples share nothing but the read-only parameters: that is
per-sample step control.

One stage loop (:func:`rk_step`) serves the forward solve, both adjoints and the checkpointed
adjoint's replay. The integrators take two optional hooks, which compile away when absent:
``rec`` records the accepted steps of a forward solve (:func:`record_step`), ``ctx`` makes the
right-hand side the checkpointed adjoint's, with y(t) replayed from the record
(:func:`forward_state`), and drops replayed segments the solve has passed
(:func:`forget_segments`). Section "Checkpointed adjoint" below gives their layouts.

Kernels never validate and never raise: a failing sample stores a status code and
(t, dt, nfev) in ``fail``, and its wrapper (``pyode.backends.numba_cpu`` or
``pyode.backends.cuda``) raises the matching ``pyode.errors`` exception. This package imports
nothing of ``pyode``: the numbers it shares with ``pyode`` live in ``kernels.codes`` and
``kernels.numbers``.

Argument groups
---------------
net : ``ops, opf, theta`` — the op table of ``kernels.mlp`` and the flat parameters (P,).
tab : (s, s + 7) array, the Butcher tableau packed by columns: ``c | A | b | b_err | P``
      (P is the (s, 4) dense-output matrix of ``pyode.tableaus``).
cst : 1-D array of the working dtype holding every number the hot loop uses (named slots C_*
      of ``kernels.numbers``): tolerances, controller constants, the error norm's parts, and
      plain 0, 1, 3. Taking them from a typed array instead of Python literals keeps float32
      kernels in float32 arithmetic.
atol : (W,) absolute tolerance per state component.
"""
import numpy as np
from numba import njit
from numba.core.extending import register_jitable

from .codes import (AUGMENTED, CHECKPOINT, FORWARD, NONFINITE, OK, TOO_MANY,  # noqa: F401
                    UNDERFLOW)
from .mlp import mlp_forward, mlp_vjp
from .numbers import (C_FIRST_STEP, C_FSAL, C_MAX_STEPS, C_ONE, C_RTOL, C_STEP_SIZE,  # noqa: F401
                      C_THREE, C_ZERO, N_CONSTANTS, constants, pack_tableau)
from .step import (adjoint_jump, all_finite, clip_step, combine, dense_point, emit_outputs,
                   fixed_step_count, initial_step_choice, initial_step_probe, judge_step,
                   min_step, reconstruction_gap, stage_time)

#: The mode of a right-hand side that is the field alone, known when Numba compiles (``rhs``):
#: with None, Numba prunes the adjoint's branches, which FORWARD (a number) keeps and skips at
#: run time. The CPU kernels pass it wherever only f is evaluated (their forward solves, g·f,
#: the checkpoint replay): forward_batch then compiles in about 2/3 of the time.
FIELD_ONLY = None


@register_jitable
def rhs(mode, ops, opf, theta, D, t, s, out, acts, gbuf, cst, ctx=None):
    """Evaluate the field (mode FORWARD or FIELD_ONLY) or an adjoint system (AUGMENTED,
    CHECKPOINT).

    AUGMENTED, on s = [z, a, a_θ, a_t] (Chen et al. 2018, Alg. 1):
    dz/dt = f, da/dt = −aᵀ∂f/∂z, da_θ/dt = −aᵀ∂f/∂θ, da_t/dt = −aᵀ∂f/∂t.
    CHECKPOINT (given the replay context ``ctx`` of :func:`forward_state`), on s = [a, a_θ, a_t]:
    the same a, a_θ, a_t equations with z = y(t), the forward solution replayed from its
    checkpoints (``pyode.checkpoint``).

    ``mode`` is a number (``kernels.codes``) tested at run time, or ``FIELD_ONLY`` (None), which
    Numba resolves when it compiles: a kernel that only ever evaluates the field compiles no
    adjoint code (the vector–Jacobian product of ``kernels.mlp``).
    """
    if ctx is not None:
        forward_state(ctx, ops, opf, theta, t, acts, gbuf, cst)        # z = y(t) into ctx[7]
        mlp_forward(ops, opf, theta, t, ctx[7], acts, cst)
        _adjoint_terms(ops, opf, theta, D, s[:D], out, acts, gbuf, cst)
        return
    n_ops = ops.shape[0]
    mlp_forward(ops, opf, theta, t, s, acts, cst)
    for i in range(D):
        out[i] = acts[n_ops, i]
    if mode is not FIELD_ONLY and mode == AUGMENTED:
        _adjoint_terms(ops, opf, theta, D, s[D:2 * D], out[D:], acts, gbuf, cst)


@register_jitable
def _adjoint_terms(ops, opf, theta, D, a, out, acts, gbuf, cst):
    """out[:D + P + 1] = [−aᵀ∂f/∂z, −aᵀ∂f/∂θ, −aᵀ∂f/∂t], after ``mlp_forward`` at (t, z)."""
    P = theta.shape[0]
    g_theta = out[D:D + P]
    for p in range(P):
        g_theta[p] = cst[C_ZERO]
    g_t, cur = mlp_vjp(ops, opf, theta, acts, a, gbuf, g_theta, cst)
    for i in range(D):
        out[i] = -gbuf[cur, i]
    for p in range(P):
        g_theta[p] = -g_theta[p]
    out[D + P] = -g_t


@register_jitable
def _n_dynamic(mode, D, W):
    """Leading state components that the right-hand side reads (the rest are quadratures)."""
    if mode is FIELD_ONLY:
        return W
    if mode == AUGMENTED:
        return 2 * D              # z and a of [z, a, a_θ, a_t]
    if mode == CHECKPOINT:
        return D                  # a of [a, a_θ, a_t]
    return W


@register_jitable
def initial_step(mode, ops, opf, theta, D, t0, t_end, y, f0, tmp, ftmp, atol, acts, gbuf, cst,
                 ctx=None):
    """Hairer's starting step (HNW I, §II.4, p. 169): ``kernels.step``'s two halves around
    the one probe evaluation of the field."""
    span = abs(t_end - t0)
    direction = cst[C_ONE] if t_end > t0 else -cst[C_ONE]
    h0, d1 = initial_step_probe(y, f0, atol, span, direction, tmp, cst)
    rhs(mode, ops, opf, theta, D, t0 + direction * h0, tmp, ftmp, acts, gbuf, cst, ctx)
    return initial_step_choice(y, f0, ftmp, tmp, atol, h0, d1, t0, span, cst)


@register_jitable
def rk_step(mode, ops, opf, theta, D, tab, t, y, h, t_new, K, y_new, n_dyn, fsal, acts, gbuf,
            cst, ctx=None):
    """One explicit Runge–Kutta step (HNW I, §II.1, eq. (1.8)): the stage loop.

    ``K`` (s, W) holds k1 = f(t, y) in row 0 on entry; rows 1 … s−1 receive the stages
    Kᵢ = f(t + cᵢh, y + h Σ_{m<i} A_im K_m) and ``y_new`` (W,) the end of the step: with FSAL
    the last stage input (so that K[s − 1] = f(t_new, y_new)), else y + h Σ_m b_m K_m. Only
    the first ``n_dyn`` components feed back into the field (for the adjoints: not the
    quadratures a_θ, a_t), so intermediate stage inputs skip the rest.
    """
    W = y.shape[0]
    s = tab.shape[0]
    c, A, b = tab[:, 0], tab[:, 1:s + 1], tab[:, s + 1]
    for i in range(1, s):
        combine(A[i], y, h, K, i, y_new, W if (fsal and i == s - 1) else n_dyn)
        rhs(mode, ops, opf, theta, D, stage_time(t, h, t_new, c[i], cst), y_new, K[i], acts,
            gbuf, cst, ctx)
    if not fsal:
        combine(b, y, h, K, s, y_new, W)


@register_jitable
def solve_adaptive(mode, ops, opf, theta, D, y0, t_out, tab, first_step, atol, ys, work, acts,
                   gbuf, stats, fail, cst, rec=None, ctx=None):
    """One sample, adaptive steps with dense output at ``t_out``: the per-trajectory driver.

    Each attempt: the stages (:func:`rk_step`), then ``kernels.step.judge_step`` (error
    estimate, norm, acceptance, next step size); an accepted step writes the output times it
    passed (``emit_outputs``) and advances. ``pyode.solvers.integrate_adaptive`` is the same
    sequence over the active rows of a batch.

    Parameters
    ----------
    y0 : (W,) initial state; t_out : (T,) output times; first_step : magnitude, 0 for Hairer's
    choice; ys : (T, W) output, written in place; work : (s + 3, W) scratch;
    stats : (3,) int64 nfev, accepted, rejected (added to); fail : (3,) set to (t, dt, nfev);
    rec : optional, record the accepted steps (:func:`record_step`); ctx : optional, the
    checkpointed adjoint's replay context (mode CHECKPOINT, :func:`forward_state`).

    Returns
    -------
    status : int (OK, UNDERFLOW, NONFINITE, TOO_MANY); h : the last step magnitude.
    """
    zero, one = cst[C_ZERO], cst[C_ONE]
    max_steps = int(cst[C_MAX_STEPS])
    fsal = cst[C_FSAL] != zero
    W = y0.shape[0]
    T = t_out.shape[0]
    s = tab.shape[0]
    c, b_err, P = tab[:, 0], tab[:, s + 2], tab[:, s + 3:s + 7]
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
    rhs(mode, ops, opf, theta, D, t, y, K[0], acts, gbuf, cst, ctx)
    nfev += 1
    if not all_finite(K[0]):
        stats[0] += nfev
        fail[0], fail[1], fail[2] = t, zero, stats[0]
        return NONFINITE, zero
    if first_step > zero:
        h = min(first_step, abs(t_end - t0))
    else:
        h = initial_step(mode, ops, opf, theta, D, t0, t_end, y, K[0], tmp, K[1], atol, acts,
                         gbuf, cst, ctx)
        nfev += 1
    h = direction * h
    nxt = 1
    n_acc = 0
    n_rej = 0
    status = OK
    nonfinite = False
    rejected = False        # was the last attempt rejected? (caps the next accepted step)
    t_bad = t0              # a time where the field failed, ahead (when bisected ≥ 0)
    bisected = -1
    while nxt < T:
        last, ha, t_new = clip_step(t, h, t_end, direction)
        # Any step but the last below a few ulps of t cannot move t (accepted or not): give up.
        if not last and abs(h) < min_step(t, cst):
            status = NONFINITE if (nonfinite or bisected >= 0) else UNDERFLOW
            fail[0], fail[1], fail[2] = t, h, stats[0] + nfev
            break
        rk_step(mode, ops, opf, theta, D, tab, t, y, ha, t_new, K, y_new, n_dyn, fsal, acts,
                gbuf, cst, ctx)
        nfev += s - 1
        accept, finite, h_next, t_bad, bisected = judge_step(
            y, y_new, K, tmp, c, b_err, t, ha, ha, t_new, atol, rejected, t_bad, bisected,
            direction, last, h, cst)
        rejected = not accept
        nonfinite = not finite
        if not accept:
            n_rej += 1
        else:
            if rec is not None:
                record_step(rec, n_acc, t, ha, t_new, y)
            if ctx is not None:
                forget_segments(ctx, t_new, cst)
            n_acc += 1
            nxt = emit_outputs(t_out, nxt, t, ha, t_new, ha, y, y_new, K, P, ys, direction, cst)
            t = t_new
            for j in range(W):
                y[j] = y_new[j]
                K[0, j] = K[s - 1, j]
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
                cst, rec=None, ctx=None):
    """One sample, fixed steps: each output interval in ``fixed_step_count`` equal steps, the
    last landing exactly on the output time (``rec``, ``ctx`` as in :func:`solve_adaptive`)."""
    zero, one = cst[C_ZERO], cst[C_ONE]
    step_size = cst[C_STEP_SIZE]
    W = y0.shape[0]
    T = t_out.shape[0]
    s = tab.shape[0]
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
        n_f = fixed_step_count(span, step_size, cst)
        n = int(n_f)
        h = span / n_f
        k_f = zero
        for k in range(n):
            t = t_out[i - 1] + k_f * h
            t_new = t_out[i] if k == n - 1 else t + h
            k_f += one
            rhs(mode, ops, opf, theta, D, t, y, K[0], acts, gbuf, cst, ctx)
            # The fixed-step methods are not FSAL: y_new = y + h Σ b_m K_m.
            rk_step(mode, ops, opf, theta, D, tab, t, y, h, t_new, K, y_new, n_dyn, False, acts,
                    gbuf, cst, ctx)
            if rec is not None:
                record_step(rec, n_steps, t, h, t_new, y)
            for j in range(W):
                y[j] = y_new[j]
            n_steps += 1
            ok = all_finite(y)
            for m in range(s):
                ok = ok and all_finite(K[m])
            if not ok:
                stats[0] += s * n_steps
                fail[0], fail[1], fail[2] = t, h, stats[0]
                return NONFINITE, zero
            if ctx is not None:
                forget_segments(ctx, t_new, cst)
        for j in range(W):
            ys[i, j] = y[j]
    stats[0] += s * n_steps
    stats[1] += n_steps
    return OK, zero


@register_jitable
def solve(mode, ops, opf, theta, D, y0, t_out, tab, first_step, atol, ys, work, acts, gbuf,
          stats, fail, cst, rec=None, ctx=None):
    """Adaptive or fixed steps (a positive ``cst[C_STEP_SIZE]`` means fixed); the optional
    hooks ``rec``, ``ctx`` as in :func:`solve_adaptive`."""
    if cst[C_STEP_SIZE] > cst[C_ZERO]:
        return solve_fixed(mode, ops, opf, theta, D, y0, t_out, tab, ys, work, acts, gbuf,
                           stats, fail, cst, rec, ctx)
    return solve_adaptive(mode, ops, opf, theta, D, y0, t_out, tab, first_step, atol, ys, work,
                          acts, gbuf, stats, fail, cst, rec, ctx)


@register_jitable
def adjoint_one(ops, opf, theta, D, ys, gs, t_out, tab, atol, gf, work, acts, gbuf, vec, span,
                stats, fail, cst, ctx=None):
    """The adjoint method for one sample (Chen et al. 2018, Alg. 1 and App. C): the per-trajectory
    form of ``pyode.backward.adjoint_solve``.

    The backward state is integrated over each output interval from t_{T−1} down to t_0, the
    step size carried from one interval to the next; at each t_i it jumps
    (``kernels.step.adjoint_jump``: a → a + dL/dy(t_i), a_t → a_t − dL/dt_i). Where z(t) comes
    from is the only difference between the two methods:

    * ``ctx`` None, backsolve (mode AUGMENTED): the state is [z, a, a_θ, a_t] (W = 2D + P + 1),
      z integrated backward with the adjoint and restarted from the stored y(t_i) at each t_i;
    * ``ctx`` the replay context (mode CHECKPOINT, :func:`forward_state`): the state is
      [a, a_θ, a_t] (W = D + P + 1), z = y(t) replayed from the forward solve's checkpoints.

    Parameters
    ----------
    ys, gs : (T, D) forward outputs and dL/dys of this sample; gf : (T,) output, per-sample
    dL/dt_i (gf[0] is a_t(t0)); vec : (3, W) scratch whose row 0 ends as the final state
    [z, a(t0), a_θ(t0), a_t(t0)] (z absent with ``ctx``); span : (2,) scratch.

    Returns
    -------
    status : int; recon : for backsolve, the largest reconstruction error max |z(t_i) − y(t_i)|
    / (atol + rtol·|y(t_i)|) over the output times (``kernels.step.reconstruction_gap``); 0
    with ``ctx``.
    """
    T = t_out.shape[0]
    P = theta.shape[0]
    a0 = D if ctx is None else 0          # where a starts in the state: after z, or first
    W = a0 + D + P + 1
    i_t = W - 1                           # a_t, last
    zero = cst[C_ZERO]
    state = vec[0]
    seg = vec[1:3]
    f_i = seg[0]                          # f(t_i, y_i), for the jumps (scratch)
    for j in range(W):
        state[j] = zero                   # a_θ(t_{T−1}) = 0
    rhs(FIELD_ONLY, ops, opf, theta, D, t_out[T - 1], ys[T - 1], f_i, acts, gbuf, cst)
    stats[0] += 1
    gf[T - 1] = adjoint_jump(state, a0, i_t, ys[T - 1], gs[T - 1], f_i, D, cst)
    code = OK
    recon = zero
    h = cst[C_FIRST_STEP]
    for i in range(T - 1, 0, -1):
        span[0] = t_out[i]
        span[1] = t_out[i - 1]
        if ctx is None:
            code, h = solve(AUGMENTED, ops, opf, theta, D, state, span, tab, h, atol, seg, work,
                            acts, gbuf, stats, fail, cst)     # h: continue with the last size
        else:
            code, h = solve(CHECKPOINT, ops, opf, theta, D, state, span, tab, h, atol, seg,
                            work, acts, gbuf, stats, fail, cst, None, ctx)
        if code != OK:
            break
        for j in range(W):
            state[j] = seg[1, j]
        if ctx is None:
            recon = max(recon, reconstruction_gap(state[:D], ys[i - 1], atol, cst))
        if i - 1 > 0:
            rhs(FIELD_ONLY, ops, opf, theta, D, t_out[i - 1], ys[i - 1], f_i, acts, gbuf, cst)
            stats[0] += 1
            gf[i - 1] = adjoint_jump(state, a0, i_t, ys[i - 1], gs[i - 1], f_i, D, cst)
        else:                             # t_0: dL/dy_0 = a(t_0) + g_0, dL/dt_0 = a_t(t_0)
            adjoint_jump(state, a0, -1, ys[0], gs[0], f_i, D, cst)
    gf[0] = state[W - 1]
    return code, recon


# ---------------------------------------------------------------------------------------------
# Checkpointed adjoint (pyode.checkpoint), one sample.
#
# The forward solve records, through the hook ``rec = (steps, y_ck, every)`` of the integrators:
#   steps (3, N)  start t, signed size h and end t_new (units of t) of each accepted step;
#   y_ck (M, D)   the state at the start of steps 0, every, 2·every, … (the checkpoints);
# steps past the capacity N are counted (stats) but not stored.
#
# The backward solve of [a, a_θ, a_t] reads y(t) through the replay context
# ``ctx = (steps, y_ck, meta, Y, K, F, slot_seg, z, tab, stats)``:
#   meta (4,) int64     n_steps, every, fsal (1 or 0), dense (1: the tableau's P; 0: Hermite);
#   Y (S, L + 1, D)     S slots, each holding one replayed segment of ≤ L steps: the states at
#   K (S, L, s, D)      its step starts and its end, the stages of its steps and f at each
#   F (S, L, D)         step end;
#   slot_seg (S,) int64 the segment each slot holds, −1 when free;
#   z (D,)              the result of forward_state;
#   tab, stats (3,)     the packed tableau; the sample's counters (replays add to nfev).
# ---------------------------------------------------------------------------------------------

@register_jitable
def record_step(rec, n, t, h, t_new, y):
    """Store accepted step n (0-based), which starts from the state y (``StepRecorder``)."""
    steps, y_ck, every = rec
    if n < steps.shape[1]:
        steps[0, n] = t
        steps[1, n] = h
        steps[2, n] = t_new
        if n % every == 0:
            m = n // every
            for j in range(y_ck.shape[1]):
                y_ck[m, j] = y[j]


@register_jitable
def _forward_direction(steps, cst):
    """+1 or −1: the direction of the recorded forward solve (the sign of its steps)."""
    return cst[C_ONE] if steps[1, 0] > cst[C_ZERO] else -cst[C_ONE]


@register_jitable
def forward_state(ctx, ops, opf, theta, t, acts, gbuf, cst):
    """y(t) of the forward solution, into ``z`` (D,) of ``ctx``.

    As ``pyode.checkpoint._Replays.z`` for one sample: the segment whose steps
    hold t is replayed into a slot unless one holds it already, and y(t) is the dense output
    of its step that ends at or after t (the tableau's P, or the cubic Hermite interpolant
    through the step's ends, HNW I, §II.6, eq. (6.7)).
    """
    steps, y_ck, meta, Y, K, F, slot_seg, z, tab, stats = ctx
    zero, one = cst[C_ZERO], cst[C_ONE]
    n_steps, every = meta[0], meta[1]
    d = _forward_direction(steps, cst)
    n_seg = (n_steps + every - 1) // every
    # The segment: the last j with d·t_{j·every} ≤ d·t (searchsorted side="right", minus 1).
    lo, hi = 0, n_seg
    while lo < hi:
        mid = (lo + hi) // 2
        if d * steps[0, mid * every] <= d * t:
            lo = mid + 1
        else:
            hi = mid
    j = min(max(lo - 1, 0), n_seg - 1)
    slot = _slot_of(ctx, j, ops, opf, theta, acts, gbuf, cst)
    first = j * every
    n_in = min(every, n_steps - first)
    # The step: the first n with d·t_new_n ≥ d·t (searchsorted side="left"), or the last one.
    lo, hi = 0, n_in
    while lo < hi:
        mid = (lo + hi) // 2
        if d * steps[2, first + mid] < d * t:
            lo = mid + 1
        else:
            hi = mid
    n = min(lo, n_in - 1)
    h = steps[1, first + n]
    th = min(max((t - steps[0, first + n]) / h, zero), one)
    y0, Kn = Y[slot, n], K[slot, n]
    if meta[3] != 0:
        s = tab.shape[0]
        dense_point(tab[:, s + 3:s + 7], Kn, y0, h, th, z, z.shape[0])
    else:           # cubic Hermite through (y0, f0) and (y1, f1)
        y1, f1 = Y[slot, n + 1], F[slot, n]
        two = one + one
        u = one - th
        w0 = u * u * (one + two * th)
        w1 = th * (u * u) * h
        w2 = th * th * (cst[C_THREE] - two * th)
        w3 = th * th * u * h
        for i in range(z.shape[0]):
            z[i] = w0 * y0[i] + w1 * Kn[0, i] + w2 * y1[i] - w3 * f1[i]


@register_jitable
def _slot_of(ctx, j, ops, opf, theta, acts, gbuf, cst):
    """The slot holding segment j, replayed into a free slot first if none does.

    With every slot taken, the earliest segment is evicted: the adjoint runs backward in time
    and needs it last. An evicted segment is replayed again when needed (the same values, more
    evaluations than the NumPy path, which keeps every segment it has not passed).
    """
    slot_seg = ctx[6]
    free = -1
    for k in range(slot_seg.shape[0]):
        if slot_seg[k] == j:
            return k
        if slot_seg[k] < 0 and free < 0:
            free = k
    if free < 0:
        free = 0
        for k in range(1, slot_seg.shape[0]):
            if slot_seg[k] < slot_seg[free]:
                free = k
    _replay(ctx, free, j, ops, opf, theta, acts, gbuf, cst)
    slot_seg[free] = j
    return free


@register_jitable
def _replay(ctx, slot, j, ops, opf, theta, acts, gbuf, cst):
    """Re-take the forward steps of segment j from its checkpoint with the recorded step sizes
    (``pyode.checkpoint._Replays._replay``), keeping the states, stages and f at the
    step ends in ``slot``: 1 + (s − 1) evaluations a step, one more a step without FSAL."""
    steps, y_ck, meta, Y, K, F, slot_seg, z, tab, stats = ctx
    n_steps, every, fsal = meta[0], meta[1], meta[2] != 0
    D = y_ck.shape[1]
    s = tab.shape[0]
    first = j * every
    n_in = min(every, n_steps - first)
    Ys, Ks, Fs = Y[slot], K[slot], F[slot]
    for i in range(D):
        Ys[0, i] = y_ck[j, i]
    rhs(FIELD_ONLY, ops, opf, theta, D, steps[0, first], Ys[0], Ks[0, 0], acts, gbuf, cst)
    nfev = 1
    for n in range(n_in):
        t, h, t_new = steps[0, first + n], steps[1, first + n], steps[2, first + n]
        Kn = Ks[n]
        if n > 0:
            for i in range(D):
                Kn[0, i] = Fs[n - 1, i]
        rk_step(FIELD_ONLY, ops, opf, theta, D, tab, t, Ys[n], h, t_new, Kn, Ys[n + 1], D,
                fsal,
                acts, gbuf, cst)
        nfev += s - 1
        if fsal:
            for i in range(D):
                Fs[n, i] = Kn[s - 1, i]
        else:       # f at the step end: the next step's k1 and the Hermite slope
            rhs(FIELD_ONLY, ops, opf, theta, D, t_new, Ys[n + 1], Fs[n], acts, gbuf,
                cst)
            nfev += 1
    stats[0] += nfev


@register_jitable
def forget_segments(ctx, t_new, cst):
    """Free the slots of the segments that the adjoint's accepted time t_new has passed (those
    starting at or after it): ``pyode.checkpoint._Replays.forget``."""
    steps, meta, slot_seg = ctx[0], ctx[2], ctx[6]
    d = _forward_direction(steps, cst)
    for k in range(slot_seg.shape[0]):
        j = slot_seg[k]
        if j >= 0 and d * (steps[0, j * meta[1]] - t_new) >= cst[C_ZERO]:
            slot_seg[k] = -1


# ---------------------------------------------------------------------------------------------
# CPU batch kernels: rows lo … hi − 1 of the batch, one after the other, on the calling thread.
#
# They are serial and release the GIL (nogil): ``pyode.backends.numba_cpu.run_kernel`` runs
# disjoint row ranges of one batch on several Python threads at once. Each writes the rows of
# its own samples only (no reduction across samples: the wrapper sums dL/dt afterwards), so a
# sample's result does not depend on how the batch is split. Scratch is allocated once per
# call and reused by its rows (every row writes its scratch before reading it).
#
# error_model="numpy" (inherited by every routine they call): a float division by zero gives
# inf or nan, which the solver's finiteness checks turn into a status, instead of raising
# ZeroDivisionError, and no division carries a zero test. It is the model Numba compiled the
# former prange bodies with, so the results are those of the parallel kernels, bit for bit;
# Numba's default ("python") made these kernels 1.5x slower.
# ---------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, error_model="numpy")
def forward_batch(ops, opf, theta, y0, t_out, tab, atol, ys, stats, status, fail, mw, cst, lo,
                  hi):
    """Integrate rows lo … hi − 1 of y0 (B, D), each on its own; ys (T, B, D) is written in
    place."""
    D = y0.shape[1]
    s = tab.shape[0]
    n_ops = ops.shape[0]
    work = np.empty((s + 3, D), dtype=y0.dtype)
    acts = np.empty((n_ops + 1, mw), dtype=y0.dtype)
    gbuf = np.empty((2, mw), dtype=y0.dtype)
    for bi in range(lo, hi):
        status[bi], _ = solve(FIELD_ONLY, ops, opf, theta, D, y0[bi], t_out, tab,
                              cst[C_FIRST_STEP], atol, ys[:, bi, :], work, acts, gbuf,
                              stats[bi], fail[bi], cst)


@njit(cache=True, nogil=True, error_model="numpy")
def adjoint_batch(ops, opf, theta, ys, gs, t_out, tab, atol, a_out, a_theta, gf, recon, stats,
                  status, fail, mw, cst, lo, hi):
    """``adjoint_one`` for samples lo … hi − 1. ys, gs : (T, B, D). Outputs: a_out (B, D)
    dL/dy0, a_theta (B, P), gf (B, T) per-sample dL/dt_i, recon (B,)."""
    D = ys.shape[2]
    P = theta.shape[0]
    W = 2 * D + P + 1
    s = tab.shape[0]
    n_ops = ops.shape[0]
    work = np.empty((s + 3, W), dtype=ys.dtype)
    acts = np.empty((n_ops + 1, mw), dtype=ys.dtype)
    gbuf = np.empty((2, mw), dtype=ys.dtype)
    vec = np.empty((3, W), dtype=ys.dtype)
    span = np.empty(2, dtype=ys.dtype)
    for bi in range(lo, hi):
        status[bi], recon[bi] = adjoint_one(ops, opf, theta, D, ys[:, bi, :], gs[:, bi, :],
                                            t_out, tab, atol, gf[bi], work, acts, gbuf, vec,
                                            span, stats[bi], fail[bi], cst)
        for j in range(D):
            a_out[bi, j] = vec[0, D + j]
        for p in range(P):
            a_theta[bi, p] = vec[0, 2 * D + p]


@njit(cache=True, nogil=True, error_model="numpy")
def record_batch(ops, opf, theta, y0, t_out, tab, atol, ys, steps, y_ck, every, stats, status,
                 fail, mw, cst, lo, hi):
    """``forward_batch`` that also records row b's accepted steps in steps[b] (3, N) and its
    checkpoints in y_ck[b] (⌈N / every⌉, D) (section "Checkpointed adjoint")."""
    D = y0.shape[1]
    s = tab.shape[0]
    n_ops = ops.shape[0]
    work = np.empty((s + 3, D), dtype=y0.dtype)
    acts = np.empty((n_ops + 1, mw), dtype=y0.dtype)
    gbuf = np.empty((2, mw), dtype=y0.dtype)
    for bi in range(lo, hi):
        status[bi], _ = solve(FIELD_ONLY, ops, opf, theta, D, y0[bi], t_out, tab,
                              cst[C_FIRST_STEP], atol, ys[:, bi, :], work, acts, gbuf,
                              stats[bi], fail[bi], cst, (steps[bi], y_ck[bi], every))


@njit(cache=True, nogil=True, error_model="numpy")
def checkpoint_batch(ops, opf, theta, ys, gs, t_out, tab, atol, steps, y_ck, meta, n_slots,
                     a_out, a_theta, gf, stats, status, fail, mw, cst, lo, hi):
    """``adjoint_one`` with the replay context, for samples lo … hi − 1. ys, gs : (T, B, D);
    the record steps (B, 3, N), y_ck (B, M, D) and meta (B, 4) (section "Checkpointed
    adjoint"); n_slots replay slots per sample. Outputs: a_out (B, D) dL/dy0, a_theta (B, P),
    gf (B, T) per-sample dL/dt_i."""
    D = ys.shape[2]
    P = theta.shape[0]
    W = D + P + 1
    s = tab.shape[0]
    n_ops = ops.shape[0]
    L = min(meta[0, 1], steps.shape[2])        # steps a segment holds at most
    work = np.empty((s + 3, W), dtype=ys.dtype)
    acts = np.empty((n_ops + 1, mw), dtype=ys.dtype)
    gbuf = np.empty((2, mw), dtype=ys.dtype)
    vec = np.empty((3, W), dtype=ys.dtype)
    span = np.empty(2, dtype=ys.dtype)
    Y = np.empty((n_slots, L + 1, D), dtype=ys.dtype)
    K = np.empty((n_slots, L, s, D), dtype=ys.dtype)
    F = np.empty((n_slots, L, D), dtype=ys.dtype)
    slot_seg = np.empty(n_slots, dtype=np.int64)
    z = np.empty(D, dtype=ys.dtype)
    for bi in range(lo, hi):
        for k in range(n_slots):
            slot_seg[k] = -1
        ctx = (steps[bi], y_ck[bi], meta[bi], Y, K, F, slot_seg, z, tab, stats[bi])
        status[bi], _ = adjoint_one(ops, opf, theta, D, ys[:, bi, :], gs[:, bi, :], t_out, tab,
                                    atol, gf[bi], work, acts, gbuf, vec, span, stats[bi],
                                    fail[bi], cst, ctx)
        for j in range(D):
            a_out[bi, j] = vec[0, j]
        for p in range(P):
            a_theta[bi, p] = vec[0, D + p]
