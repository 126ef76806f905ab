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

The batch is reversed in lockstep (issue 14): at reverse round r every sample that still has
steps reverses its own step N_b − 1 − r (the samples have their own step counts N_b and sizes;
those with fewer steps drop out first), and stage j of a round is *one* ``vjp`` call for all
the rows of the round whose K̄_j is not zero, each row at its own (t + c_j h, Y_j, K̄_j). The
field's θ-part comes back summed over those rows, which is all dL/dθ needs: K̄_j already
carries the weights h b_j, so θ̄ = Σ over the calls of their θ-parts, with no per-sample split.
The rest (dense-output cotangents, the map of t̄ and h̄ onto the output times) is per row,
vectorised over the rows of a round, with sums over stages written out elementwise (not as
matrix products, whose rounding may depend on the number of rows), so a row's arithmetic is
what it would be alone; only the sums over the samples (θ̄, t̄) and the field's own rounding
differ. The stage inputs Y_j are formed in float64 and given to the field in the state's dtype,
as the forward solve evaluated them.

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
steps, unlike the backsolve adjoint's; the backward pass gathers the record into one array,
so it holds it twice while it runs); per sample, one vjp evaluation per stage with a nonzero
cotangent, and for the batch at most s·max_b N_b calls of the field's vjp.

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

from .protocol import n_params, row_args, vjp_rows
from .solvers import stage_time


def discrete_pass(f, ys, gs, t_out, tab, record, squeeze=True, time_gradients=True, args=()):
    """Backward pass of the discrete adjoint, all samples in lockstep (module docstring).

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
    squeeze : bool
        Call the field with 1-D arguments (a float t, (D,) arrays), as for a 1-D problem;
        only for B = 1 (ignored otherwise). Without it: t (n,) and (n, D) arrays.
    time_gradients : bool
        Compute dL/dt (True), or skip the cotangents of the step times and sizes and return
        ``dLdt`` None; the vjp's t-part is then not read, so a ∂f/∂t that is infinite at a
        stage (y' = p·√t at t = 0) does not matter.
    args : tuple
        Extra arguments of the field's vjp, ``f.vjp(t, y, v, *args)`` (``pyode.protocol.
        row_args``: arrays with one entry per row are sliced to the rows of each call).

    Returns
    -------
    a : ndarray, shape (B, D)            dL/dy0 per sample
    a_theta : ndarray, shape (P,)        dL/dθ, summed over the samples
    dLdt : ndarray, shape (T,) or None   dL/dt_i, summed over the samples
    stats : dict of ndarray (B,)         nfev (vjp evaluations: stage points of the sample),
                                         n_accepted (steps reversed), n_rejected (0)
    """
    T, B, D = ys.shape
    P = n_params(f)
    squeeze = squeeze and B == 1
    # θ-part summed over the rows of a call
    vjp = vjp_rows(f, squeeze, False, row_args(args, None if squeeze else B))
    st = _Steps(record, B, t_out, tab)
    c, A, b = tab.c, tab.A, tab.b
    y_bar = np.zeros((B, D), dtype=gs.dtype)    # cotangent of each sample's current step end
    theta_bar = np.zeros(P)
    t_bar_out = np.zeros((B, T))                # per sample, summed over the samples at the end
    nfev = np.zeros(B, dtype=np.int64)
    for r in range(st.rounds):
        rows = np.flatnonzero(st.N > r)         # samples with a step left; ascending
        n_rows = rows.size
        step = st.off[rows] + st.N[rows] - 1 - r   # each row's step N_b − 1 − r (flat index)
        y, h, t, t_new = st.y[step], st.h[step], st.t[step], st.t_new[step]
        K = st.K[:, step]                       # (s, n, D)
        y_new_bar = y_bar[rows]
        start_bar = np.zeros_like(y_new_bar)    # cotangent of y_n, the state at the step start
        K_bar = np.zeros_like(K)
        t_bar = np.zeros(n_rows)                # cotangents of t_n and h_n per row
        h_bar = np.zeros(n_rows)
        lo, hi = st.out_bounds[r], st.out_bounds[r + 1]
        if hi > lo:                             # outputs owned by the steps of this round
            out_row, out_i = st.out_row[lo:hi], st.out_i[lo:hi]
            pos = np.searchsorted(rows, out_row)
            g = gs[out_i, out_row]
            if tab.adaptive:
                tb, hb, ti_bar = _dense_output_vjp(tab, K, h, t, t_new, t_out[out_i], g, pos,
                                                   start_bar, K_bar)
                if time_gradients:
                    t_bar_out[out_row, out_i] = ti_bar
                    np.add.at(t_bar, pos, tb)
                    np.add.at(h_bar, pos, hb)
            else:
                np.add.at(y_new_bar, pos, g)    # fixed steps land on the output time
        # Reverse the step (module docstring): K̄_j += h b_j ȳ_new, ȳ = ȳ_new,
        # h̄ = ȳ_new · Σ_j b_j K_j; then the stages, last to first. (Without time_gradients
        # t̄ and h̄ are left at zero: nothing else reads them.)
        start_bar += y_new_bar
        K_bar += (h[None, :] * b[:, None])[:, :, None] * y_new_bar[None]
        step_h_bar = np.zeros(n_rows)
        step_t_bar = np.zeros(n_rows)
        if time_gradients:
            step_h_bar = np.sum(y_new_bar * _combine(b, K), axis=1)
        for j in range(tab.n_stages - 1, -1, -1):
            used = np.any(K_bar[j] != 0, axis=1)
            if not np.any(used):
                continue
            sel = slice(None) if np.all(used) else np.flatnonzero(used)
            h_s = h[sel]
            incr = _combine(A[j, :j], K[:j, sel])                 # Σ_{l<j} A_jl K_l
            Y_j = (y[sel] + h_s[:, None] * incr).astype(K.dtype, copy=False)
            tau = stage_time(t[sel], h_s, t_new[sel], c[j])
            Y_bar, th_bar, tau_bar = vjp(tau, Y_j, K_bar[j, sel], rows[sel])
            nfev[rows[sel]] += 1
            theta_bar += th_bar
            start_bar[sel] += Y_bar
            K_bar[:j, sel] += (h_s[None, :] * A[j, :j, None])[:, :, None] * Y_bar[None]
            if time_gradients:
                step_t_bar[sel] += tau_bar
                step_h_bar[sel] += c[j] * tau_bar
                step_h_bar[sel] += np.sum(Y_bar * incr, axis=1)
        y_bar[rows] = start_bar
        if not time_gradients:
            continue
        t_bar += step_t_bar
        h_bar += step_h_bar
        # Map the cotangents of (t_n, h_n) onto the output times (module docstring).
        if tab.adaptive:
            t_bar_out[rows, 0] += t_bar
            if r == 0:                          # every sample's last step: h_L = t_N − t_L,
                t_bar_out[rows, T - 1] += h_bar     # and t_L moves with t_0
                t_bar_out[rows, 0] -= h_bar
        else:
            interval, k, m = st.interval[step], st.index[step], st.count[step]
            t_bar_out[rows, interval - 1] += t_bar * (1.0 - k / m) - h_bar / m
            t_bar_out[rows, interval] += t_bar * (k / m) + h_bar / m
    stats = {"nfev": nfev, "n_accepted": st.N.copy(),
             "n_rejected": np.zeros(B, dtype=np.int64)}
    a = (y_bar + gs[0]).astype(ys.dtype, copy=False)
    dLdt = t_bar_out.sum(axis=0) if time_gradients else None
    return a, theta_bar.astype(ys.dtype), dLdt, stats


class _Steps:
    """The recorded steps of all samples, concatenated sample after sample (flat index
    ``off[b] + n`` for step n of sample b), and per reverse round the outputs its steps own.

    Attributes
    ----------
    N, off : ndarray of int, shape (B,)
        Steps per sample and the flat index of each sample's first step.
    rounds : int
        max N: the number of reverse rounds.
    t, h, t_new : ndarray, shape (M,)       M = Σ N
    y : ndarray, shape (M, D)
    K : ndarray, shape (s, M, D)
    out_row, out_i : ndarray of int, shape (B·(T − 1),)
        (sample, output index i ≥ 1) pairs, ordered by the reverse round of the step that owns
        the output, then by sample, then by i descending (the order a lone sample takes them).
    out_bounds : ndarray of int, shape (rounds + 1,)
        Round r's pairs are ``out_row[out_bounds[r]:out_bounds[r + 1]]``.
    interval, index, count : ndarray of int, shape (M,)
        Fixed-step methods only: per step its output interval i, its index k in it and the
        number m of steps in it (:func:`_fixed_schedule`).
    """

    def __init__(self, record, B, t_out, tab):
        T = t_out.shape[0]
        self.t, self.h, self.t_new, starts, self.y, K = record.joined()
        self.N = np.diff(starts)
        self.off = starts[:-1]
        self.rounds = int(self.N.max()) if B else 0
        self.K = K.transpose(1, 0, 2).copy()
        # Output i ≥ 1 came from the first step whose end reached it (as the integrators
        # decide): the number of the sample's steps that end before t_i (searchsorted's
        # "left" on each sample's t_new, for all samples at once by a running count). It is
        # handled in the round that reverses that step.
        direction = 1.0 if t_out[-1] > t_out[0] else -1.0
        x_new = direction * self.t_new
        owner = np.empty((B, T - 1), dtype=np.int64)
        for i in range(1, T):
            before = np.concatenate([[0], np.cumsum(x_new < direction * t_out[i])])
            owner[:, i - 1] = before[starts[1:]] - before[starts[:-1]]
        rnd = (self.N[:, None] - 1 - owner).ravel()
        row = np.repeat(np.arange(B), T - 1)
        i = np.tile(np.arange(1, T), B)
        order = np.lexsort((-i, row, rnd))
        self.out_row, self.out_i = row[order], i[order]
        self.out_bounds = np.searchsorted(rnd[order], np.arange(self.rounds + 1))
        if not tab.adaptive:
            parts, last = [], None
            for s in (record.sample(b) for b in range(B)):               # the samples of a fixed-step solve share the grid
                if last is None or not np.array_equal(s.t_new, last[0]):
                    last = (s.t_new, _fixed_schedule(s, t_out))
                parts.append(last[1])
            self.interval, self.index, self.count = (np.concatenate(p) for p in zip(*parts))


def _dense_output_vjp(tab, K, h, t, t_new, t_i, g, pos, start_bar, K_bar):
    """Cotangents of y(t_i) = y + h Σ_j b_j(ϑ) K_j, ϑ = (t_i − t)/h, for dL/dy(t_i) = g.

    For m outputs at once: output q belongs to row ``pos[q]`` of the round's steps (``K``
    (s, n, D), ``h``, ``t``, ``t_new`` (n,)), at time ``t_i[q]`` with ``g[q]`` (D,). Adds into
    ``start_bar`` (n, D) and ``K_bar`` (s, n, D) in place (in the order of the outputs);
    returns the cotangents (m,) of the step start t, of h and of the output time t_i.
    """
    h, t, t_new = h[pos], t[pos], t_new[pos]
    theta = np.where(t_i == t_new, 1.0, (t_i - t) / h)
    th = theta[:, None]
    P = tab.P
    b = th * P[:, 0] + th ** 2 * P[:, 1] + th ** 3 * P[:, 2] + th ** 4 * P[:, 3]     # b_j(ϑ)
    db = P[:, 0] + 2.0 * th * P[:, 1] + 3.0 * th ** 2 * P[:, 2] + 4.0 * th ** 3 * P[:, 3]
    np.add.at(start_bar, pos, g)
    np.add.at(K_bar, (slice(None), pos), (h[:, None] * b).T[:, :, None] * g[None])
    Kq = K[:, pos]                                                   # (s, m, D)
    slope = np.sum(g * _combine(db, Kq), axis=1)                    # g · Σ_j b_j'(ϑ) K_j
    return -slope, np.sum(g * _combine(b, Kq), axis=1) - theta * slope, slope


def _combine(w, K):
    """Σ_j w_j K_j for stages K (k, n, D) and weights w (k,) or per row (n, k), in float64
    or wider: elementwise products summed in stage order, so that a row's result does not
    depend on the other rows (a matrix product's rounding may depend on the shape)."""
    acc = np.zeros(K.shape[1:], dtype=np.result_type(K.dtype, np.float64))
    for j in range(K.shape[0]):
        acc += (w[j] if w.ndim == 1 else w[:, j, None]) * K[j]
    return acc


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
