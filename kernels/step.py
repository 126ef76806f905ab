"""The formulas of one explicit Runge–Kutta step, for one sample: written once, used everywhere.

Every routine here takes one sample (1-D arrays of its W state components, the stage buffer
``K`` of shape (s, W)) and loops explicitly. They are ``register_jitable``: Numba compiles them
into whichever kernel calls them, and called from Python they are plain Python. Two drivers
put them together in the same order — stages → error → accept → dense output → advance:

* ``kernels.rk.solve_adaptive`` / ``solve_fixed``: one trajectory, the whole solve compiled
  (the CPU threads and the CUDA threads run it; the field is a compiled ``nn`` program);
* ``pyode.solvers.integrate_adaptive`` / ``integrate_fixed``: a batch of rows for a Python
  field, which must be called once per stage for every active row. Between those calls it
  maps these same routines over the active rows (``kernels.rows``).

So a formula — stage input, error estimate, error norm, step factor, bisection toward a
failure, Hairer's initial step, dense output, fixed step count — has exactly one place, and
the two drivers differ only in how they loop (one row, or the rows still integrating).

Arithmetic is in the dtype of the arrays handed in; every constant comes from ``cst``
(``kernels.numbers``), so a float32 kernel computes in float32. Time arithmetic (t + c·h, the
clip to an output time, θ) is in the dtype of ``t``.

References: HNW I = Hairer, Nørsett & Wanner, *Solving Ordinary Differential Equations I*,
2nd ed. (1993): §II.1 eq. (1.8) (the stages), §II.4 eqs. (4.11)–(4.13) and p. 169 (error norm,
step control, starting step), §II.6 (continuous extensions).
"""
import math

from numba.core.extending import register_jitable

from .codes import BISECT_STEPS
from .numbers import (C_CENTI, C_D_TINY, C_ERR_FLOOR, C_EXPONENT, C_FIXED_SHRINK, C_HALF,
                      C_H_DEFAULT, C_H_SMALL, C_HUNDRED, C_INV_ORDER, C_MAX_FACTOR,
                      C_MIN_FACTOR, C_MILLI, C_N_PARTS, C_ONE, C_PARTS, C_RTOL, C_SAFETY, C_ULP_EPS,
                      C_ULP_TINY, C_ZERO)


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------

@register_jitable
def weighted_stages(w, K, n_stages, j):
    """Σ_{m < n_stages} w_m K[m, j]: the stage sum behind every Runge–Kutta combination.

    An explicit sum in stage order (never a BLAS product, whose rounding would change with the
    batch): a sample's result does not depend on the samples beside it.
    """
    acc = w[0] * K[0, j]                  # n_stages ≥ 1
    for m in range(1, n_stages):
        acc += w[m] * K[m, j]
    return acc


@register_jitable
def combine(w, y, h, K, n_stages, out, n):
    """out[j] = y[j] + h Σ_{m < n_stages} w_m K[m, j] for j < n (HNW I, §II.1, eq. (1.8)).

    With w = A[i] and n_stages = i this is stage i's input Yᵢ; with w = b and all stages, the
    step's end y_new.
    """
    for j in range(n):
        out[j] = y[j] + h * weighted_stages(w, K, n_stages, j)


@register_jitable
def stage_time(t, h, t_new, c_i, cst):
    """Time of stage i, t + cᵢh; a stage with cᵢ = 1 is evaluated at ``t_new`` itself (the
    step's end, exactly, where the driver clipped the step to land on an output time)."""
    return t_new if c_i == cst[C_ONE] else t + c_i * h


@register_jitable
def error_estimate(b_err, h, K, n_stages, out, n):
    """out[j] = h Σ_m b_err_m K[m, j]: the difference of the embedded pair's two solutions."""
    for j in range(n):
        out[j] = h * weighted_stages(b_err, K, n_stages, j)


@register_jitable
def all_finite(x):
    """No NaN or ±inf among the entries of the 1-D array ``x``."""
    for v in x:
        if not math.isfinite(v):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Error norm
# ---------------------------------------------------------------------------------------------

@register_jitable
def _ratio(x, y, y_new, atol, j, cst):
    """x_j / (atol_j + rtol·max(|y_j|, |y_new_j|)), with 0 where that scale is 0 (atol = 0 on
    a zero component: nothing to control there; HNW I, §II.4, eq. (4.10))."""
    scale = atol[j] + cst[C_RTOL] * max(abs(y[j]), abs(y_new[j]))
    if scale > cst[C_ZERO]:
        return x[j] / scale
    return cst[C_ZERO]


@register_jitable
def _rms_part(x, y, y_new, atol, lo, hi, cst):
    """sqrt(mean over lo ≤ j < hi of ratio_j²), without overflow.

    A huge component against a small atol (y0 = [1e150, 0], atol = 1e-9: ratios of 1e159)
    overflows the squares although the norm is finite: such a part is summed again scaled by
    its largest ratio. A NaN or infinite ratio gives a non-finite norm (a failed step).
    """
    zero = cst[C_ZERO]
    acc = zero
    n = zero                    # the count in the working dtype (int / float32 is float64)
    for j in range(lo, hi):
        r = _ratio(x, y, y_new, atol, j, cst)
        acc += r * r
        n += cst[C_ONE]
    rms = math.sqrt(acc / n)
    if math.isfinite(rms):
        return rms
    big = zero
    for j in range(lo, hi):
        r = abs(_ratio(x, y, y_new, atol, j, cst))
        if not math.isfinite(r):
            return rms
        big = max(big, r)
    acc = zero
    for j in range(lo, hi):
        r = _ratio(x, y, y_new, atol, j, cst) / big
        acc += r * r
    return big * math.sqrt(acc / n)


@register_jitable
def scaled_norm(x, y, y_new, atol, cst):
    """The error norm ‖x‖ of one sample (HNW I, §II.4, eq. (4.11)), part by part.

    The state is split into parts by the boundaries in ``cst`` (``kernels.numbers``: part p
    holds components cst[C_PARTS + p] … cst[C_PARTS + p + 1] − 1); each of the first
    ``cst[C_N_PARTS]`` parts gets its own scaled RMS and the norm is their maximum (empty
    parts are skipped). A forward solve has one part (all of y). The adjoint's
    [z, a, a_θ, a_t] has four: each is controlled on its own scale, so the P parameter
    quadratures cannot dilute the control of z and a (in one RMS over all 2D + P + 1
    components they did, 8–18× on the spiral MLP). The seminorm (Kidger, Chen & Lyons 2021)
    takes the first two parts only. Design decision: torchdiffeq also takes the max over its
    tensors' RMS norms; scipy and diffrax take one RMS over the whole state.
    """
    norm = cst[C_ZERO]
    for p in range(int(cst[C_N_PARTS])):
        lo, hi = int(cst[C_PARTS + p]), int(cst[C_PARTS + p + 1])
        if hi > lo:
            r = _rms_part(x, y, y_new, atol, lo, hi, cst)
            if not r <= norm:           # also takes a NaN
                norm = r
    return norm


# ---------------------------------------------------------------------------------------------
# Step control
# ---------------------------------------------------------------------------------------------

@register_jitable
def min_step(t, cst):
    """Smallest usable step at time t: 10·(ε|t| + tiny), ε and tiny of t's dtype.

    Any step but the last below it cannot move t reliably (an underflow). Called from Python
    it works on arrays of t too.
    """
    return cst[C_ULP_EPS] * abs(t) + cst[C_ULP_TINY]


@register_jitable
def step_factor(err, accept, after_rejection, cst):
    """Multiplier of the step size: SAFETY·‖err‖^(−1/(q+1)), bounded to [MIN, MAX] (HNW I,
    §II.4, eq. (4.13)); q is the order of the embedded solution.

    A rejected step never grows, and neither does the step accepted right after a rejection
    (``after_rejection``): that is Hairer's DOPRI5 and scipy's RK45 (facmax = 1 after a
    rejection); without it a sample grows straight back into the rejected size (Arenstorf
    orbit, dopri5: 590 or 1322 evaluations where scipy takes 644 and 1310; with it, the same).
    An error of zero gives MAX_FACTOR (the floor ``C_ERR_FLOOR`` stands in for it: 1e-300 in
    float64, the smallest normal number in float32, where 1e-300 would be 0), a non-finite
    error MIN_FACTOR.
    """
    if not math.isfinite(err):
        return cst[C_MIN_FACTOR]
    factor = cst[C_SAFETY] * max(err, cst[C_ERR_FLOOR]) ** cst[C_EXPONENT]
    factor = min(max(factor, cst[C_MIN_FACTOR]), cst[C_MAX_FACTOR])
    if not accept or after_rejection:
        factor = min(factor, cst[C_ONE])
    return factor


@register_jitable
def first_nonfinite_stage_time(K, c, t, h, t_new, cst):
    """The time of the first stage holding a NaN/inf (the field was finite before it in the
    step), or ``t_new`` when every stage is finite (the step failed in its combination)."""
    for i in range(K.shape[0]):
        if not all_finite(K[i]):
            return stage_time(t, h, t_new, c[i], cst)
    return t_new


@register_jitable
def toward_failure(finite, accept, t_fail, t, h, t_new, h_next, t_bad, bisected, direction,
                   cst):
    """The next step after an attempt, bisecting towards a time where the field failed.

    Design decision (non-finite stages). scipy's RK45 and torchdiffeq treat NaN/inf like a
    huge error: shrink by MIN_FACTOR and let the controller grow again. Where the field fails
    from a time τ on (NaN for t ≥ 0.5), that regrowth crosses τ again and again before the
    step floor is reached: 506 evaluations on y' = −y, NaN from t = 0.5 (rtol 1e-7; scipy 410
    to 626 by tolerance). We keep the earliest stage time where the field failed, t_bad
    (``t_fail`` of a failed attempt: :func:`first_nonfinite_stage_time`), and bisect: a failed
    step shrinks to at most half the distance to t_bad, an accepted one proposes at most half
    the remaining distance. The floor is then reached in about one attempt per halving: 326
    evaluations on the same case, 0.46 to 0.94 of scipy's over rtol 1e-3 to 1e-10. A step
    that was non-finite only because it was too large for the state (an overflowing first
    step) must not pin the solve to t_bad: after a few bisecting accepted steps in
    a row (``BISECT_STEPS``), or once a step passes t_bad, it is forgotten.

    ``bisected`` is the count of bisecting accepted steps in a row, −1 when no failure time
    lies ahead (then ``t_bad`` is unused). Returns (h_next, t_bad, bisected).
    """
    zero, half = cst[C_ZERO], cst[C_HALF]
    if not finite:
        if bisected < 0 or direction * t_fail < direction * t_bad:
            t_bad = t_fail
        to_half = half * (t_bad - t)
        if abs(to_half) < abs(h_next):
            h_next = to_half
        return h_next, t_bad, 0
    if accept and bisected >= 0:
        if direction * (t_new - t_bad) >= zero or bisected >= BISECT_STEPS:
            return h_next, t_bad, -1
        to_half = half * (t_bad - t_new)
        if abs(to_half) < abs(h_next):
            return to_half, t_bad, bisected + 1
    return h_next, t_bad, bisected


@register_jitable
def clip_step(t, h, t_stop, direction):
    """The attempt from t with the proposed (signed) step h: clipped to land exactly on
    ``t_stop`` (the final time, or the next output time where the state jumps) when it would
    reach or pass it, or when t + h rounds onto it (t = [..., 0.96875, 0.96975] backward with
    h = −0.001: 0.96975 − 0.001 is 0.96875 exactly, though the interval is
    0.0010000000000000009; unflagged, the adjoint's jump at 0.96875 was skipped). The field is
    never evaluated beyond t_stop.

    Returns (last, h_step, t_new): whether the attempt ends on t_stop, its signed size and its
    end, in t's dtype.
    """
    last = direction * h >= direction * (t_stop - t) or direction * (t + h) >= direction * t_stop
    if last:
        return True, t_stop - t, t_stop
    return False, h, t + h


@register_jitable
def judge_step(y, y_new, K, err, c, b_err, t, h_w, h, t_new, atol, rejected, t_bad,
               bisected, direction, last, h_proposed, cst):
    """Everything after the stages of one attempted adaptive step.

    Error estimate (into the scratch ``err``) and its norm, finiteness, acceptance
    (‖err‖ ≤ 1), the step factor and the bisection toward a failure. ``h_w`` is the step in
    the state's dtype, ``h`` in t's. ``rejected``, ``t_bad``, ``bisected``: the sample's
    controller state before the attempt. ``last``, ``h_proposed``: the attempt was clipped
    to land on its stop time (:func:`clip_step`), from the proposal h_proposed; accepted, such
    a step says nothing about the step the problem allows, so the next proposal is at least
    |h_proposed| (it starts the next output interval of a jumping solve).

    Returns
    -------
    accept, finite : bool
    h_next : the proposed next step (signed, t's dtype)
    t_bad, bisected : the controller state after it (:func:`toward_failure`)
    """
    W = y.shape[0]
    s = K.shape[0]
    error_estimate(b_err, h_w, K, s, err, W)
    norm = scaled_norm(err, y, y_new, atol, cst)
    finite = math.isfinite(norm) and all_finite(y_new) and all_finite(K[s - 1])
    accept = finite and norm <= cst[C_ONE]
    factor = step_factor(norm, accept, rejected, cst) if finite else cst[C_MIN_FACTOR]
    h_next = h * factor
    t_fail = t_new
    if not finite:
        t_fail = first_nonfinite_stage_time(K, c, t, h, t_new, cst)
    h_next, t_bad, bisected = toward_failure(finite, accept, t_fail, t, h, t_new, h_next, t_bad,
                                             bisected, direction, cst)
    if accept and last:
        h_next = direction * max(abs(h_next), abs(h_proposed))
    return accept, finite, h_next, t_bad, bisected


# ---------------------------------------------------------------------------------------------
# Starting step (HNW I, §II.4, p. 169)
# ---------------------------------------------------------------------------------------------

@register_jitable
def initial_step_probe(y0, f0, atol, span, direction, probe, cst):
    """First half of Hairer's starting step: d0 = ‖y0‖, d1 = ‖f0‖ (scaled by
    atol + rtol|y0|), h0 = 0.01·d0/d1 (1e-6 if either is below 1e-5), clipped to the span.

    Writes the explicit Euler probe point y0 + direction·h0·f0 into ``probe``, where the driver
    evaluates f1 = f(t0 + direction·h0, probe). Returns (h0, d1).
    """
    d0 = scaled_norm(y0, y0, y0, atol, cst)
    d1 = scaled_norm(f0, y0, y0, atol, cst)
    if d0 < cst[C_H_SMALL] or d1 < cst[C_H_SMALL]:
        h0 = cst[C_H_DEFAULT]
    else:
        h0 = cst[C_CENTI] * d0 / d1
    if not h0 > cst[C_ZERO]:              # d1 = inf (an overflowing ratio)
        h0 = cst[C_H_DEFAULT]
    h0 = min(h0, span)
    for j in range(y0.shape[0]):
        probe[j] = y0[j] + direction * h0 * f0[j]
    return h0, d1


@register_jitable
def initial_step_choice(y0, f0, f1, diff, atol, h0, d1, t0, span, cst):
    """Second half: d2 = ‖f1 − f0‖ / h0, h1 = (0.01 / max(d1, d2))^(1/(q+1)) and
    h = min(100·h0, h1), clipped to the span (``diff`` is scratch).

    A non-finite probe (the field failed near t0) says nothing: h0 is kept and rejections
    shrink it. A guess below the step floor :func:`min_step` (a tiny atol far from t = 0:
    y0 = [0, 1], f = [1, −y₁], atol = 1e-20 from t0 = 1000 guesses 1e-13, below 10 ulps of
    t0) is raised to the floor, as scipy's RK45 raises every step to 10·spacing(t); the error
    control then decides. Returns the positive step magnitude.
    """
    for j in range(f0.shape[0]):
        diff[j] = f1[j] - f0[j]
    d2 = scaled_norm(diff, y0, y0, atol, cst) / h0
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
    return min(max(h, min_step(t0, cst)), span)


# ---------------------------------------------------------------------------------------------
# Dense output and output times
# ---------------------------------------------------------------------------------------------

@register_jitable
def interpolant(P, K, h, j):
    """Coefficients (Q₀, Q₁, Q₂, Q₃) of component j of the continuous extension (HNW I, §II.6):
    y(t + θh) = y + h Σ_m b_m(θ) K_m with b_m(θ) = Σ_p P[m, p] θ^(p+1), so
    y(t + θh) = y + Σ_p θ^(p+1) Q_p with Q_p = h Σ_m P[m, p] K[m, j]."""
    s = K.shape[0]
    return (h * weighted_stages(P[:, 0], K, s, j), h * weighted_stages(P[:, 1], K, s, j),
            h * weighted_stages(P[:, 2], K, s, j), h * weighted_stages(P[:, 3], K, s, j))


@register_jitable
def horner(y_j, q0, q1, q2, q3, theta):
    """y + Σ_p θ^(p+1) Q_p by Horner's rule: y + θ(Q₀ + θ(Q₁ + θ(Q₂ + θQ₃)))."""
    return y_j + theta * (q0 + theta * (q1 + theta * (q2 + theta * q3)))


@register_jitable
def dense_point(P, K, y, h, theta, out, n):
    """out[j] = y(t + θh), j < n, from the step's stages (:func:`interpolant`, :func:`horner`)."""
    for j in range(n):
        q0, q1, q2, q3 = interpolant(P, K, h, j)
        out[j] = horner(y[j], q0, q1, q2, q3, theta)


@register_jitable
def emit_outputs(t_out, nxt, t, h, t_new, h_w, y, y_new, K, P, ys, direction, cst):
    """Write every output time an accepted step passed, from ``nxt`` on, into ``ys`` (T, W).

    An output time equal to the step's end takes y_new itself; the others the dense output at
    θ = (t_i − t)/h. Returns the index of the next output time still ahead.
    """
    T = t_out.shape[0]
    W = y.shape[0]
    while nxt < T and direction * (t_out[nxt] - t_new) <= cst[C_ZERO]:
        if t_out[nxt] == t_new:
            for j in range(W):
                ys[nxt, j] = y_new[j]
        else:
            dense_point(P, K, y, h_w, (t_out[nxt] - t) / h, ys[nxt], W)
        nxt += 1
    return nxt


@register_jitable
def fixed_step_count(span, step_size, cst):
    """Steps of a fixed-step method over an output interval: ⌈|Δt| / step_size⌉, at least 1,
    as a float (shrunk by a few ulps first, so that a step size that divides the interval up
    to rounding gives the exact count). Each step is then Δt / n: the last lands on t_i."""
    x = abs(span) / step_size * cst[C_FIXED_SHRINK]
    return max(cst[C_ONE], -((-x) // cst[C_ONE]))          # ceil(x) = −(−x // 1)


# ---------------------------------------------------------------------------------------------
# The adjoint at the output times (Chen et al. 2018, Alg. 1 and App. C)
# ---------------------------------------------------------------------------------------------

@register_jitable
def adjoint_jump(state, a0, i_t, y_i, g_i, f_i, D, cst):
    """The backward state of one sample at an output time t_i (Chen et al. 2018, Alg. 1, App. C).

    ``state`` (W,) is laid out [z, a, a_θ, a_t] with a from index ``a0``: with z in the state
    (a0 = D, the backsolve adjoint) z restarts from the stored forward y_i; then
    a → a + g_i, g_i = ∂L/∂y(t_i). With ``i_t`` ≥ 0, the index of a_t, the time gradient
    dL/dt_i = g_i · f(t_i, y_i) (``f_i`` (D,), evaluated by the caller) is returned and
    a_t → a_t − dL/dt_i, which keeps a_t = −aᵀf across the jump; with i_t < 0 (no a_t, or
    t_0, where dL/dt_0 = a_t(t_0) is read off instead) f_i is not read and 0 is returned.

    Applied to a zero state at t_{T−1} it gives the start of the backward solve,
    [y_{T−1}, g_{T−1}, 0, −g_{T−1}·f]; at t_0 it gives dL/dy_0 = a(t_0) + g_0.
    """
    if a0 > 0:
        for j in range(D):
            state[j] = y_i[j]
    for j in range(D):
        state[a0 + j] = state[a0 + j] + g_i[j]
    g_f = cst[C_ZERO]
    if i_t >= 0:
        for j in range(D):
            g_f += g_i[j] * f_i[j]
        state[i_t] = state[i_t] - g_f
    return g_f


@register_jitable
def reconstruction_gap(z, y, atol, cst):
    """max_j |z_j − y_j| / (atol_j + rtol·|y_j|): how far the backsolve adjoint's z,
    integrated backward, lands from the stored forward y (Chen et al. 2018, Alg. 1 re-integrates
    y backward; on contracting dynamics that is unstable). A component with atol + rtol·|y| = 0
    has nothing to measure against and counts 0, as in the error norm."""
    gap = cst[C_ZERO]
    for j in range(y.shape[0]):
        scale = atol[j] + cst[C_RTOL] * abs(y[j])
        if scale > cst[C_ZERO]:
            gap = max(gap, abs(z[j] - y[j]) / scale)
    return gap
