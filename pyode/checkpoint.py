"""The checkpointed adjoint: the adjoint ODE integrated against a stored-and-replayed y(t).

``odeint_adjoint(..., adjoint_method="checkpoint")`` computes the same continuous gradient as
the backsolve adjoint of Chen et al. (2018) (optimise-then-discretise),

    da/dt = −aᵀ ∂f/∂y,   da_θ/dt = −aᵀ ∂f/∂θ,   da_t/dt = −aᵀ ∂f/∂t   (backward in time),

but it never integrates y backward. The forward pass stores, per sample, the start, size and
end of every accepted step (three floats a step) and the state at the start of every k-th
step (``adjoint_options={"checkpoint_every": k}``, default 1). The backward pass integrates
the adjoint state from t_N back to t_0 with the same method, as the backsolve adjoint does
(``pyode.adjoint.backward_pass``): one solve for the whole batch, each sample with its own
step-size control, the field's vjp called once per stage for all the samples being stepped.
Each sample crosses the output times on its own: it lands on t_i, its state jumps there
(a → a + dL/dy(t_i)) and it restarts as a new solve of the next interval would (the ``jump``
hook of ``pyode.solvers.integrate_adaptive``). The state is ``[a, a_θ, a_t]`` for fields with
``vjp_per_sample``; the others carry ``[a, a_t]`` and sum a_θ over the batch beside it, from
the accepted stages (``pyode.quadrature``; a_θ then stays out of the error norm, as under the
seminorm). The difference from backsolve: y(t) at each sample's stage times comes from the
forward solution of that sample,

1. the segment of k forward steps that contains the stage time is replayed from its
   checkpoint with the recorded step sizes (so the replay recomputes the forward solution,
   not a new one), keeping the interpolant of each of its steps — when a sample needs a
   segment it does not hold, every sample of that call replays the segments of its next few
   backward steps (the prefetch), all together, one field call per replay stage for all of
   them (each from its own checkpoint with its own steps; a segment of fewer steps drops out
   of the lockstep when it ends), and
2. y(t) is their dense output (``tab.P``; for the fixed-step methods, which have none, the
   cubic Hermite interpolant through the step ends, HNW I §II.6, eq. (6.7)), kept as the
   coefficients of a polynomial in θ and evaluated for all the samples at once.

Each sample keeps its replayed segments while its adjoint solve may still need them and drops
them once its accepted time has passed their start, so each is replayed once and only the
segments of a few backward steps are held (in a pool of slots shared by the batch). A
sample's evaluations, steps and replays are those of the same sample solved alone. Time
gradients as the backsolve adjoint: dL/dt_i = g_i · f(t_i, y_i) for i ≥ 1 and
dL/dt_0 = a_t(t_0) (``pyode.adjoint``, "Time gradients").

Why: re-integrating y backward amplifies the forward error by exp(∫ |λ| dt) on contracting
(dissipative) dynamics — the backsolve adjoint's failure mode, which
:class:`pyode.AdjointReconstructionWarning` reports. Here y(t) is the forward solution itself,
replayed forward from a stored state, which is stable whenever the forward pass is.

Design decision (interpolate or re-integrate): SciMLSensitivity's
``InterpolatingAdjoint(checkpointing=true)`` re-solves between checkpoints and interpolates,
as we do; ANODE (Gholami et al. 2019) and ACA (Zhuang et al. 2020) instead backpropagate
through the replayed steps (a discrete adjoint per segment). We keep the continuous adjoint
and its own error control, so the gradient is the one of the backsolve adjoint, only stable.

Trade-off: memory (3 + D/k) floats per accepted step and sample (backsolve: none; discrete:
(s + 1)·D), plus 5·D + 2 floats a step for the replayed segments of a few backward steps;
cost one extra forward solve (the replay, plus one evaluation per segment to restart it) on
top of a backward solve of [a, a_θ, a_t] (or [a, a_t] and the quadrature) — the backsolve
adjoint's, without the D components of z. Larger k stores less and holds longer replayed
segments. Replays happen when a sample's solve reaches a segment it does not hold; the
prefetch then tops up every sample of that call, so in a batch they come in few large groups
(each replay stage one field call for all of them) rather than one small group whenever some
sample reaches a new segment.

Kernel hook: a kernel module (``pyode.solvers.kernel_module``) may provide
``checkpoint_forward_nn(f, yb, t, tab, rtol, atol, opts, every) -> (ys, stats, record)`` with a
``record.sample(b) -> SampleSteps`` and ``checkpoint_nn(f, ys, gs, t, tab, record, rtol, atol,
opts, seminorm, time_gradients=...) -> (a, a_theta, dLdt, stats)`` (dLdt None without
``time_gradients``); ``odeint_adjoint`` uses them when present and runs this
module's NumPy path otherwise. The Numba CPU back end (``pyode.backends.numba_cpu``, over
``pyode.kernels.rk``'s section "Checkpointed adjoint") provides them: the same steps, replays
and counts as this module.

References
----------
Chen, Rubanova, Bettencourt & Duvenaud (2018), arXiv:1806.07366, Alg. 1 and App. C.
Ma, Dixit, Innes, Rackauckas et al. (2018), arXiv:1812.01892, §2 (interpolating and
checkpointed adjoints, and the instability of backsolve).
Kim, Ji, Deng, Ma & Rackauckas (2021), "Stiff Neural Ordinary Differential Equations",
arXiv:2103.15341, §3 (why backsolve fails on stiff and dissipative systems).
"""
import numpy as np

from .backward import adjoint_solve
from .protocol import row_args
from .solvers import batch_field, eval_interpolant, interpolant, rk_step


def checkpoint_pass(f, ys, gs, t_out, tab, record, rtol, atol, opts, seminorm=False,
                    squeeze=True, time_gradients=True, args=()):
    """Backward pass of the checkpointed adjoint: one backward solve of the whole batch.

    One solve from t_{T-1} to t_0 in which every row keeps its own step control and crosses
    the output times on its own (as ``pyode.adjoint.backward_pass``); each evaluation of the
    adjoint dynamics calls the field's vjp once for all the rows being stepped, and each
    replay stage calls the field once for all the rows replaying segments at that moment
    (the prefetch). Fields with ``vjp_per_sample`` carry a_θ per sample in the state
    ``[a, a_θ, a_t]``; the others carry ``[a, a_t]`` and sum a_θ over the batch beside it
    (:class:`pyode.quadrature.ParameterQuadrature`, on the accepted stages).

    Parameters
    ----------
    f : vector field
        With ``vjp`` (README, "The vector-field protocol").
    ys, gs : ndarray, shape (T, B, D)
        Forward outputs and dL/dy at the output times.
    t_out : ndarray, shape (T,)
    tab : ButcherTableau
        The method of the forward solve; the backward solve uses it too.
    record : pyode.trajectory.StepRecorder
        The forward solve's accepted steps and checkpoints (anything with ``sample(b) →
        SampleSteps``, such as the kernels' record).
    rtol, atol : float (atol may be an array (D + P + 1,))
        Tolerances of the backward solve, in the layout [a, a_θ, a_t] (module docstring of
        ``pyode.solvers`` for their meaning; the a_θ entries are unused without
        ``vjp_per_sample``).
    opts : dict
        The forward method's options (``check_options``): ``first_step`` and ``max_num_steps``
        for the adaptive backward solve, ``step_size`` for a fixed-step one.
    seminorm : bool
        The backward error norm controls a only (default: each of a, a_θ, a_t by its own RMS
        norm, the largest of them).
    squeeze : bool
        A 1-D problem: call the field with 1-D arguments and a float t. Applies to B = 1 only
        (a batch of B > 1 rows is always called as a batch).
    time_gradients : bool
        Carry a_t and return dL/dt (True), or neither (``dLdt`` is None).
    args : tuple
        Extra arguments of ``f(t, y, *args)`` and of its vjp, for the replays and the adjoint
        solve alike (``pyode.protocol.row_args``: arrays with one entry per row are sliced to
        the rows of each call).

    Returns
    -------
    a : ndarray, shape (B, D)            dL/dy0 per sample
    a_theta : ndarray, shape (P,)        dL/dθ summed over the samples
    dLdt : ndarray, shape (T,) or None   dL/dt_i, summed over the samples
    stats : dict of ndarray (B,)         backward nfev (replay, adjoint and g·f evaluations;
                                         not the quadrature's vjp calls, as in backsolve),
                                         n_accepted and n_rejected steps of the adjoint solve

    Raises
    ------
    SolverError
        When the backward integration fails.
    """
    T, B, D = ys.shape
    squeeze = bool(squeeze) and B == 1
    direction = 1.0 if t_out[-1] > t_out[0] else -1.0
    replays = _Replays(_replay_field(f, squeeze, B, args), tab,
                       _BatchSteps(record, B, D, ys.dtype, direction), direction, ys.dtype,
                       t_out[-1])
    source = _ForwardSolution(replays, B, D, tab.n_stages + 1, ys.dtype)
    a, a_theta, dLdt, stats, _ = adjoint_solve(f, ys, gs, t_out, tab, rtol, atol, opts,
                                               squeeze, seminorm, time_gradients, source,
                                               args)
    return a, a_theta, dLdt, stats


def _replay_field(f, squeeze, B, args):
    """The field of the replays, ``ev(t (n,), y (n, D), rows (n,)) → (n, D)``.

    The prefetch (:meth:`_Replays._prefetch`) replays several segments of a row in one
    lockstep, so n may exceed the number of rows. With one row (B = 1) each segment gets its
    own call instead, the calls of the segments replayed one by one: a 1-D problem
    (``squeeze``) hands the field one state (1-D arguments, ``batch_field``), and a batch of
    one row must make the same calls on the same numbers to stay bit-identical to it (a
    field's matmul over n > 1 rows may round differently from the same one over a single row).
    """
    ev = batch_field(f, squeeze, None, row_args(args, None if squeeze else B))
    if B > 1:
        return ev

    def each_segment(t, y, rows):
        return np.concatenate([ev(t[i:i + 1], y[i:i + 1], rows[i:i + 1])
                               for i in range(y.shape[0])])

    return each_segment


class _ForwardSolution:
    """z(t) for the adjoint solve: the replayed forward solution (``adjoint_solve``'s
    ``z_source``). The quadrature's stage points are stages the adjoint solve has just
    evaluated, so their z is remembered (the last L evaluations of every row) rather than
    interpolated again."""

    def __init__(self, replays, B, D, L, dtype):
        self.replays = replays
        self.recent = _RecentZ(B, D, L, dtype)
        self.on_step = replays.forget          # drop the segments the solve has passed

    def z(self, t, rows):
        z = self.replays.z(t, rows)
        self.recent.put(t, rows, z)
        return z

    def stage_z(self, t, rows):
        return self.recent.get(t, rows, self.replays.z)

    @property
    def nfev(self):
        return self.replays.nfev


def _count(flat, base, x, width, right):
    """Per row i: how many of the sorted entries ``flat[base_i : base_i + width − 1]`` are
    ≤ x_i (``right``) or < x_i — ``np.searchsorted`` of each row's slice, side "right" or
    "left" — by one branch-free binary search over all rows at once (exact comparisons).
    ``width`` is a power of two; a row's entries past its own end must be +inf."""
    pos = np.zeros(np.shape(x), dtype=np.int64)
    step = width >> 1
    while step:
        v = flat[base + pos + (step - 1)]
        pos += step * ((v <= x) if right else (v < x))
        step >>= 1
    return pos


def _power_of_two_above(n):
    """The smallest power of two > n."""
    return 1 << int(n).bit_length()


class _BatchSteps:
    """The record of every row, padded to arrays of the batch (from ``record.sample(b)``).

    Attributes: ``t``, ``h``, ``t_new`` (B, N) the accepted steps (row b holds n_steps[b]);
    ``y`` (B, M, D) the checkpoints; ``n_steps``, ``n_seg`` (B,); ``every`` = k. For the
    searches, flat and padded with +inf past each row's end: ``starts`` (B·W_s) the segment
    starts and ``ends`` (B·W_e) the step ends, both times the direction of the solve.
    """

    def __init__(self, record, B, D, dtype, direction):
        samples = [record.sample(b) for b in range(B)]
        self.every = k = int(samples[0].every)
        self.n_steps = np.array([s.n_steps for s in samples], dtype=np.int64)
        self.n_seg = -(-self.n_steps // k)
        self.N = N = int(self.n_steps.max())
        M = int(self.n_seg.max())
        self.t, self.h, self.t_new = (np.zeros((B, N)) for _ in range(3))
        self.y = np.zeros((B, M, D), dtype=dtype)
        for b, s in enumerate(samples):
            n = s.n_steps
            self.t[b, :n], self.h[b, :n], self.t_new[b, :n] = s.t, s.h, s.t_new
            self.y[b, :self.n_seg[b]] = s.y
        self.W_s = _power_of_two_above(M)
        starts = np.full((B, self.W_s), np.inf)
        starts[:, :M] = np.where(np.arange(M) < self.n_seg[:, None],
                                 direction * self.t[:, ::k], np.inf)
        self.starts = starts.ravel()
        self.W_k = _power_of_two_above(k - 1)      # a search window of ≥ k step ends
        self.W_e = N + self.W_k
        ends = np.full((B, self.W_e), np.inf)
        ends[:, :N] = np.where(np.arange(N) < self.n_steps[:, None], direction * self.t_new,
                               np.inf)
        self.ends = ends.ravel()

    def segment(self, x, rows, right):
        """Per row: the number of its segments starting before x (at or before: ``right``)."""
        return _count(self.starts, rows * self.W_s, x, self.W_s, right)


class _RecentZ:
    """The z of the last L adjoint evaluations of every row, by time: the quadrature's stage
    points are stages the adjoint solve has just evaluated (z read again only on a miss)."""

    def __init__(self, B, D, L, dtype):
        self.t = np.full((B, L), np.nan)
        self.z = np.zeros((B, L, D), dtype=dtype)
        self.next = np.zeros(B, dtype=np.int64)
        self.L = L

    def put(self, t, rows, z):
        """Remember z (n, D) of the rows ``rows`` (n,) at their times t (n,)."""
        p = self.next[rows]
        self.t[rows, p] = t
        self.z[rows, p] = z
        self.next[rows] = (p + 1) % self.L

    def get(self, t, rows, z):
        """z of the rows at their times t: remembered, or ``z(t, rows)`` where it is not."""
        same = self.t[rows] == t[:, None]
        at = same.argmax(axis=1)
        out = self.z[rows, at]
        miss = ~same[np.arange(rows.size), at]
        if miss.any():
            out[miss] = z(t[miss], rows[miss])
        return out


class _Replays:
    """The replayed segments of every row, and y(t) from them (module docstring, steps 1–2).

    A replayed segment lives in a slot of a pool shared by the batch. Its step m is column
    σ·k + m (σ the slot) of ``T`` (2, S·k), the step's start t and size h, and of ``C`` (5, D,
    S·k), the state y at the step start and the coefficients Q_0..Q_3 of the step's
    interpolant, y(t + θh) = y + Σ_p θ^(p+1) Q_p (:meth:`_interpolant`); columns, so that one
    ``take`` reads them for the whole call and the arithmetic runs along the rows. ``cost``
    (S,) holds the evaluations each replay made and ``used`` (S,) whether its row has read it
    yet. ``slot[b, j]`` is the slot of segment j of row b (−1: not replayed); ``top[b]``
    bounds the segments row b holds from above. ``nfev`` (B,) counts the replays' evaluations
    per row (:meth:`_count_use`). ``x_now`` and ``h_last`` (B,) are each row's accepted time
    (times the direction) and last accepted step size (magnitude), for the prefetch window.
    """

    #: The prefetch window, in backward steps (of the row's last accepted size) below its time.
    PREFETCH_STEPS = 3.0

    def __init__(self, ev, tab, steps, direction, dtype, t_start):
        self.ev, self.tab, self.steps, self.d, self.dtype = ev, tab, steps, direction, dtype
        B, M, D = steps.y.shape
        self.slot = np.full((B, M), -1, dtype=np.int64)
        self.top = np.full(B, -1, dtype=np.int64)
        self.nfev = np.zeros(B, dtype=np.int64)
        self.x_now = np.full(B, direction * t_start)
        self.h_last = np.zeros(B)
        self.D, self.k = D, steps.every
        self.S = 0
        self.T = np.zeros((2, 0))
        self.C = np.zeros((5, D, 0), dtype=dtype)
        self.cost = np.zeros(0, dtype=np.int64)
        self.used = np.zeros(0, dtype=bool)
        self.free = np.zeros(0, dtype=np.int64)       # a stack of free slots
        self._grow(2 * B)

    def _grow(self, n):
        """Add n slots to the pool."""
        S, k = self.S, self.k

        def more(old, size):                     # the last axis grows to size
            new = np.empty(old.shape[:-1] + (size,), dtype=old.dtype)
            new[..., :old.shape[-1]] = old
            return new

        self.T, self.C = more(self.T, (S + n) * k), more(self.C, (S + n) * k)
        self.cost, self.used = more(self.cost, S + n), more(self.used, S + n)
        self.free = np.concatenate([np.arange(S + n - 1, S - 1, -1), self.free])
        self.S = S + n

    def _take(self, n):
        if self.free.size < n:
            self._grow(max(n, self.S))
        slots, self.free = self.free[-n:], self.free[:-n]
        return slots

    def z(self, t, rows):
        """The forward y of each row ``rows`` (n,) at its own time ``t`` (n,), shape (n, D).

        The segment is the last one starting at or before t (the first for a t before the
        row's first step); rows whose segment is not replayed yet are replayed together, with
        the window of every row of the call (:meth:`_prefetch`). In it, the step is the first
        one ending at or after t (its last step for a t beyond).
        """
        st, k = self.steps, self.k
        x = self.d * t
        # At most n_seg[b] segments start at or before t (the padding is +inf): j < n_seg[b].
        j = np.maximum(st.segment(x, rows, True) - 1, 0)
        slot = self.slot[rows, j]
        if (slot < 0).any():
            self._prefetch(x, rows)
            slot = self.slot[rows, j]
        self._count_use(rows, slot)
        m = 0
        if k > 1:
            first = j * k
            n_in = np.minimum(k, st.n_steps[rows] - first)
            m = np.minimum(_count(st.ends, rows * st.W_e + first, x, st.W_k, False), n_in - 1)
        e = slot * k + m
        t0, h = np.take(self.T, e, axis=1)
        theta = np.minimum(np.maximum((t - t0) / h, 0.0), 1.0)
        G = np.take(self.C, e, axis=2)                                   # (5, D, n)
        z = eval_interpolant(G[0], G[1:], theta)
        return np.ascontiguousarray(z.T, dtype=self.dtype)

    def _interpolant(self, y, h, K, y_new, k_end):
        """The coefficients Q (4, D, n) of the steps' interpolants, y(t + θh) = y + Σ_p θ^(p+1)
        Q_p: the method's dense output (``tab.P``, b_i(θ) = Σ_p P_ip θ^(p+1), so Q_p = h Σ_i
        P_ip K_i) or, without one, the cubic Hermite through (y, K_0) and (y_new, k_end) (HNW
        I, §II.6, eq. (6.7), in powers of θ).

        Why coefficients: y(t) is read at every stage of the adjoint solve, for every row, so
        it is cheaper to form the polynomial once per replayed step than at each read."""
        if self.tab.P is not None:
            return interpolant(self.tab, h, K).transpose(0, 2, 1)
        f0, dy = K[0].T, (y_new - y).T
        f1 = k_end.T
        return np.stack([h * f0, 3 * dy - h * (2 * f0 + f1), -2 * dy + h * (f0 + f1),
                         np.zeros_like(dy)])

    def _count_use(self, rows, slot):
        """Count a replay's evaluations when its row first reads it, not when it is replayed:
        a row then counts the replays it would have made alone, whatever was prefetched (a
        prefetched segment the row never reads is never counted)."""
        fresh = ~self.used[slot]
        if fresh.any():
            # A slot belongs to one row; the quadrature may read it for several stages at once.
            sl, once = np.unique(slot[fresh], return_index=True)
            np.add.at(self.nfev, rows[fresh][once], self.cost[sl])
            self.used[sl] = True

    def _prefetch(self, x, rows):
        """Replay, for every row of the call, the segments not held yet that overlap its
        window [x_now − PREFETCH_STEPS·h_last, x_now] (widened to x, the time it asks for),
        all in one lockstep.

        Why: rows reach new segments at different stage calls, so replaying only what a call
        needs makes many small groups, each a Python-level loop of field calls. Topping up
        every row's window whenever one row runs out replays in few large groups. The window
        follows the row's own step size, so a row holds the segments of a few backward steps.
        """
        st, M = self.steps, self.slot.shape[1]
        # The fixed-step solve's step start may lie an ulp above the previous step's end.
        x_now = np.maximum(x, self.x_now[rows])
        x_low = np.minimum(x, x_now - self.PREFETCH_STEPS * self.h_last[rows])
        both = np.concatenate([x_now, x_low])
        j_hi, j_lo = np.split(np.maximum(st.segment(both, np.tile(rows, 2), True) - 1, 0), 2)
        n = j_hi - j_lo + 1
        r = np.repeat(rows, n)
        j = np.repeat(j_lo - (np.cumsum(n) - n), n) + np.arange(r.size)
        need = self.slot[r, j] < 0
        # Each (row, segment) once: a row may come several times in one call.
        key = np.unique(r[need] * M + j[need])
        self._replay(key // M, key % M)

    def _replay(self, rows, j):
        """Re-take the forward steps of segment j[i] of row rows[i] from its checkpoint, with
        the recorded step sizes, all in lockstep: one field call per stage for the segments
        that still have a step there. Keeps their step starts and interpolants in new slots,
        with the evaluations each made (counted at first use). (A row may come with several
        segments.)
        """
        st, tab, ev = self.steps, self.tab, self.ev
        slots = self._take(rows.size)
        self.slot[rows, j] = slots
        np.maximum.at(self.top, rows, j)
        first = j * self.k
        count = np.minimum(first + self.k, st.n_steps[rows]) - first      # steps, ≥ 1
        y = st.y[rows, j]
        k1 = ev(st.t[rows, first], y, rows)
        evals = np.ones(rows.size, dtype=np.int64)
        K = np.empty((tab.n_stages,) + y.shape, dtype=y.dtype)
        for m in range(int(count.max())):
            on = np.nonzero(count > m)[0]
            every_row = on.size == rows.size
            r, n, e = rows[on], first[on] + m, slots[on] * self.k + m
            ya, k1a = (y, k1) if every_row else (y[on], k1[on])
            Ka = K if every_row else np.empty((tab.n_stages,) + ya.shape, dtype=y.dtype)
            t_new, h = st.t_new[r, n], st.h[r, n]
            y_new = rk_step(ev, st.t[r, n], ya, h, t_new, k1a, tab, Ka, r)
            evals[on] += tab.n_stages - 1
            if tab.fsal:
                k_end = Ka[-1]
            else:                            # f at the step end: next k1 and Hermite's slope
                k_end = ev(t_new, y_new, r)
                evals[on] += 1
            self.T[:, e] = st.t[r, n], h
            self.C[0, :, e] = ya                  # (this index puts e first: (n, D))
            self.C[1:, :, e] = self._interpolant(ya, h, Ka, y_new, k_end)
            if every_row:
                y, k1 = y_new, k_end.copy()
            else:
                y[on], k1[on] = y_new, k_end
        self.cost[slots] = evals
        self.used[slots] = False

    def forget(self, rows, t, h, t_new, y, K):
        """``on_step`` of the adjoint solve: drop the segments of the accepted rows that start
        at or after their new time (it has passed them); note the time and step size."""
        self.x_now[rows] = self.d * t_new
        self.h_last[rows] = np.abs(h)
        gone = self.steps.segment(self.d * t_new, rows, False)   # first segment to drop
        top = self.top[rows]
        for o in range(int(np.max(top - gone, initial=-1)) + 1):
            j = gone + o
            on = j <= top
            r, j = rows[on], j[on]
            sl = self.slot[r, j]
            held = sl >= 0
            self.free = np.concatenate([self.free, sl[held]])
            self.slot[r[held], j[held]] = -1
        self.top[rows] = np.minimum(top, gone - 1)
