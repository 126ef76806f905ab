"""The discrete adjoint: reverse mode through the Runge–Kutta steps the forward solve took.

``odeint_adjoint(..., adjoint_method="discrete")`` returns the exact derivative of the numerical
solution that was computed — discretise-then-optimise, what backpropagation through the solver
gives in an autodiff framework — written out by hand. The forward pass records every accepted
step of every sample (:class:`pyode.trajectory.StepRecorder` with ``stages=True``: the state
at the step start and the s stages, (s + 1)·D floats a step), and the backward pass walks the
steps in reverse, applying the transposed chain rule to one explicit Runge–Kutta step
(HNW I, §II.1, eq. (1.8)):

    Y_j = y + h Σ_{l<j} A_jl K_l,   K_j = f(t + c_j h, Y_j),   y_new = y + h Σ_j b_j K_j.

With cotangents ȳ_new (of y_new) and K̄ (of the stages, from dense outputs inside the step):

    K̄_j += h b_j ȳ_new,   ȳ = ȳ_new,   h̄ = ȳ_new · Σ_j b_j K_j,
    for j = s−1, …, 0:  (Ȳ_j, θ̄_j, τ̄_j) = K̄_jᵀ (∂f/∂y, ∂f/∂θ, ∂f/∂t) at (t + c_j h, Y_j),
                        ȳ += Ȳ_j,  K̄_l += h A_jl Ȳ_j (l < j),  h̄ += Ȳ_j · Σ_l A_jl K_l,
                        θ̄ += θ̄_j,  t̄ += τ̄_j,  h̄ += c_j τ̄_j.

Every stage costs one ``vjp`` of the field; a stage with K̄_j = 0 (the FSAL stage of a step
without dense output) is skipped. The error estimate does not enter y, so it has no cotangent.

Design decisions
----------------
* Step sizes are constants. An adaptive solver chooses h from the error estimate, which
  depends on y0 and θ; differentiating through the controller (torchdiffeq's backprop through
  ``odeint`` does, unless told otherwise) adds terms that vanish as the tolerance goes to
  zero and that make the gradient jump with the accepted-step pattern. We treat every h as a
  constant, as the issue asks and as diffrax's ``RecursiveCheckpointAdjoint`` does for the
  controller, so the result is the derivative of the solution on the *frozen* step sequence.
* Dependence on the output times t. The integrators place the steps as follows, and we
  differentiate exactly that map:

  - adaptive methods: step n starts at t_n = t_0 + Σ_{m<n} h_m with every h_m a constant
    except the last one, which is clipped to land on the final time: h_L = t_N − t_L. So
    moving t_0 moves every step (∂t_n/∂t_0 = 1, ∂h_L/∂t_0 = −1) and t_N acts through h_L.
    An intermediate output is the dense output of the step that passed it,
    y(t_i) = y_n + h_n Σ_j b_j(ϑ) K_j with ϑ = (t_i − t_n)/h_n (``tab.P``), whose partials are
    ∂/∂t_i = Σ_j b_j'(ϑ) K_j,  ∂/∂t_n = −Σ_j b_j'(ϑ) K_j,  ∂/∂h_n = Σ_j (b_j − ϑ b_j')(ϑ) K_j.
    (At ϑ = 1 the dense output equals y_new, and the same formula serves the final time.)
  - fixed-step methods: the interval [t_{i−1}, t_i] is split into m equal steps
    h = (t_i − t_{i−1})/m, step k starting at t_{i−1} + k h, so ∂h/∂t_i = 1/m,
    ∂h/∂t_{i−1} = −1/m, ∂t_k/∂t_{i−1} = 1 − k/m, ∂t_k/∂t_i = k/m; outputs are step ends.

  For fixed-step methods this is the derivative of the map ``odeint`` computes, and central
  differences of ``odeint`` agree with it to their own truncation error.

Memory and cost: (s + 1)·D floats per accepted step and sample (it grows with the number of
steps, unlike the backsolve adjoint's); one vjp per stage with a nonzero cotangent.

References
----------
Hairer, Nørsett & Wanner, Solving ODEs I (1993), §II.1 (explicit RK), §II.6 (dense output).
Hager, "Runge–Kutta methods in optimal control and the transformed adjoint system", Numer.
Math. 87 (2000) 247–282 (the adjoint of an RK step).
Ma, Dixit, Innes, Rackauckas et al. (2018), "A Comparison of Automatic Differentiation and
Continuous Sensitivity Analysis for Derivatives of Differential Equation Solutions",
arXiv:1812.01892 (discrete vs continuous gradients).
"""
import numpy as np

from .protocol import n_params, vjp_rows


def discrete_pass(f, ys, gs, t_out, tab, record, squeeze=True):
    """Backward pass of the discrete adjoint, one sample at a time.

    Parameters
    ----------
    f : vector field
        With ``vjp`` (README, "The vector-field protocol").
    ys, gs : ndarray, shape (T, B, D)
        Forward outputs and dL/dy at the output times.
    t_out : ndarray, shape (T,)
    tab : ButcherTableau
        The method of the forward solve.
    record : pyode.trajectory.StepRecorder
        The forward solve's accepted steps, recorded with ``stages=True``.

    Returns
    -------
    a : ndarray, shape (B, D)            dL/dy0 per sample
    a_theta : ndarray, shape (B, P)      dL/dθ per sample
    dLdt : ndarray, shape (T,)           dL/dt_i, summed over the samples
    stats : dict of ndarray (B,)         nfev (vjp evaluations), n_accepted (steps reversed),
                                         n_rejected (0)
    """
    T, B, D = ys.shape
    P = n_params(f)
    vjp = vjp_rows(f, True, True)           # one sample at a time: 1-D calls of the field
    a = np.empty((B, D), dtype=ys.dtype)
    a_theta = np.empty((B, P), dtype=ys.dtype)
    dLdt = np.zeros(T)
    stats = {k: np.zeros(B, dtype=np.int64) for k in ("nfev", "n_accepted", "n_rejected")}
    for b in range(B):
        steps = record.sample(b)
        a[b], a_theta[b], dt_b, stats["nfev"][b] = _reverse_sample(vjp, tab, steps, t_out,
                                                                   gs[:, b], P)
        stats["n_accepted"][b] = steps.n_steps
        dLdt += dt_b
    return a, a_theta.sum(axis=0), dLdt, stats


def _reverse_sample(vjp, tab, steps, t_out, g, P):
    """Reverse one sample's steps. Returns (dL/dy0 (D,), dL/dθ (P,), dL/dt (T,), n_vjp)."""
    T = t_out.shape[0]
    N = steps.n_steps
    direction = 1.0 if t_out[-1] > t_out[0] else -1.0
    # Output i ≥ 1 came from the first step whose end reached it (as the integrators decide).
    owner = np.searchsorted(direction * steps.t_new, direction * t_out[1:], side="left")
    fixed = None if tab.adaptive else _fixed_schedule(steps, t_out)
    y_bar = np.zeros_like(g[0])             # cotangent of the state at the end of step n
    theta_bar = np.zeros(P)
    t_bar_out = np.zeros(T)
    n_vjp = 0
    i = T - 1                               # next output (going backward) to account for
    for n in range(N - 1, -1, -1):
        y, h, t, t_new, K = steps.y[n], steps.h[n], steps.t[n], steps.t_new[n], steps.K[n]
        y_new_bar = y_bar
        start_bar = np.zeros_like(y_bar)    # cotangent of y_n, the state at the step start
        K_bar = np.zeros_like(K)            # (s, D)
        t_bar = h_bar = 0.0                 # cotangents of t_n and h_n
        while i >= 1 and owner[i - 1] == n:
            if tab.adaptive:
                tb, hb, t_bar_out[i] = _dense_output_vjp(tab, K, h, t, t_new, t_out[i], g[i],
                                                         start_bar, K_bar)
                t_bar += tb
                h_bar += hb
            else:
                y_new_bar = y_new_bar + g[i]      # fixed steps land on the output time
            i -= 1
        tb, hb, n_vjp_step = _step_vjp(vjp, tab, y, h, t, t_new, K, y_new_bar, start_bar,
                                       K_bar, theta_bar)
        t_bar += tb
        h_bar += hb
        n_vjp += n_vjp_step
        # Map the cotangents of (t_n, h_n) onto the output times (module docstring).
        if tab.adaptive:
            t_bar_out[0] += t_bar
            if n == N - 1:                  # h_L = t_N − t_L, and t_L moves with t_0
                t_bar_out[T - 1] += h_bar
                t_bar_out[0] -= h_bar
        else:
            interval, k, m = fixed[0][n], fixed[1][n], fixed[2][n]
            t_bar_out[interval - 1] += t_bar * (1.0 - k / m) - h_bar / m
            t_bar_out[interval] += t_bar * (k / m) + h_bar / m
        y_bar = start_bar
    return y_bar + g[0], theta_bar, t_bar_out, n_vjp


def _dense_output_vjp(tab, K, h, t, t_new, t_i, g, start_bar, K_bar):
    """Cotangents of y(t_i) = y + h Σ_j b_j(ϑ) K_j, ϑ = (t_i − t)/h, for dL/dy(t_i) = g.

    Adds into ``start_bar`` (D,) and ``K_bar`` (s, D) in place; returns the cotangents of the
    step start t, of h and of the output time t_i.
    """
    theta = 1.0 if t_i == t_new else (t_i - t) / h
    b = tab.P @ np.array([theta, theta ** 2, theta ** 3, theta ** 4])          # b_j(ϑ)
    db = tab.P @ np.array([1.0, 2.0 * theta, 3.0 * theta ** 2, 4.0 * theta ** 3])  # b_j'(ϑ)
    start_bar += g
    K_bar += h * b[:, None] * g[None, :]
    slope = g @ (db @ K)                     # g · Σ_j b_j'(ϑ) K_j
    return -slope, g @ (b @ K) - theta * slope, slope


def _step_vjp(vjp, tab, y, h, t, t_new, K, y_new_bar, start_bar, K_bar, theta_bar):
    """Reverse one explicit RK step (module docstring). Adds into ``start_bar``, ``K_bar`` and
    ``theta_bar`` in place; returns (t̄, h̄, number of vjp evaluations)."""
    c, A, b = tab.c, tab.A, tab.b
    start_bar += y_new_bar
    K_bar += h * b[:, None] * y_new_bar[None, :]
    h_bar = y_new_bar @ (b @ K)
    t_bar = 0.0
    n_vjp = 0
    for j in range(tab.n_stages - 1, -1, -1):
        if not np.any(K_bar[j]):
            continue
        incr = A[j, :j] @ K[:j]                              # Σ_{l<j} A_jl K_l
        Y_j = y + h * incr
        tau = t_new if c[j] == 1.0 else t + c[j] * h         # as rk_step evaluates it
        Y_bar, th_bar, tau_bar = vjp(np.array([tau]), Y_j[None], K_bar[j][None])
        n_vjp += 1
        theta_bar += th_bar[0]
        t_bar += float(tau_bar[0])
        h_bar += c[j] * float(tau_bar[0])
        start_bar += Y_bar[0]
        K_bar[:j] += h * A[j, :j, None] * Y_bar[0][None, :]
        h_bar += Y_bar[0] @ incr
    return t_bar, h_bar, n_vjp


def _fixed_schedule(steps, t_out):
    """For fixed-step solves: per step its interval i, its index k in it and the count m.

    Read off the record: an interval ends with the step whose end is exactly t_out[i].
    """
    N = steps.n_steps
    interval = np.empty(N, dtype=np.int64)
    index = np.empty(N, dtype=np.int64)
    count = np.empty(N, dtype=np.int64)
    i, k, first = 1, 0, 0
    for n in range(N):
        interval[n], index[n] = i, k
        k += 1
        if steps.t_new[n] == t_out[i]:
            count[first:n + 1] = k
            i, k, first = i + 1, 0, n + 1
    return interval, index, count
