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
   not a new one), keeping the stages of its steps — the samples that need a segment at the
   same moment replay theirs together, one field call per replay stage for all of them (each
   from its own checkpoint with its own steps; a segment of fewer steps drops out of the
   lockstep when it ends), and
2. y(t) is their dense output (``tab.P``; for the fixed-step methods, which have none, the
   cubic Hermite interpolant through the step ends, HNW I §II.6, eq. (6.7)), evaluated for
   all the samples at once.

Each sample keeps its replayed segments while its adjoint solve may still need them and drops
them once its accepted time has passed their start, so each is replayed once and only the
segments under one backward step are held (in a pool of slots shared by the batch). A
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
(s + 1)·D), plus the stages of the replayed segments under one backward step; cost one extra
forward solve (the replay, plus one evaluation per segment to restart it) on top of a backward
solve of [a, a_θ, a_t] (or [a, a_t] and the quadrature) — the backsolve adjoint's, without the
D components of z. Larger k stores less and holds longer replayed segments. Replays happen
when a sample's solve reaches a segment, so in a batch they come in many small groups: each
replay stage is one field call for the samples that reached a new segment at that moment.

Kernel hook: a kernel module (``pyode.solvers.kernel_module``) may provide
``checkpoint_forward_nn(f, yb, t, tab, rtol, atol, opts, every) -> (ys, stats, record)`` with a
``record.sample(b) -> SampleSteps`` and ``checkpoint_nn(f, ys, gs, t, tab, record, rtol, atol,
opts, n_norm) -> (a, a_theta, dLdt, stats)`` (``n_norm``: leading components of [a, a_θ, a_t]
in the error norm, None for all); ``odeint_adjoint`` uses them when present and runs this
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
from .solvers import batch_field, dense_output, rk_step


def checkpoint_pass(f, ys, gs, t_out, tab, record, rtol, atol, opts, norm_mask=None,
                    squeeze=True, time_gradients=True, args=()):
    """Backward pass of the checkpointed adjoint: one backward solve of the whole batch.

    One solve from t_{T-1} to t_0 in which every row keeps its own step control and crosses
    the output times on its own (as ``pyode.adjoint.backward_pass``); each evaluation of the
    adjoint dynamics calls the field's vjp once for all the rows being stepped, and each
    replay stage calls the field once for all the rows replaying a segment at that moment. Fields with ``vjp_per_sample`` carry a_θ per sample in the state
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
    norm_mask : ndarray of bool, shape (D + P + 1,), optional
        Components of [a, a_θ, a_t] in the backward error norm (all by default; the seminorm
        keeps a only).
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
    ev = batch_field(f, squeeze, None, row_args(args, None if squeeze else B))
    replays = _Replays(ev, tab, _BatchSteps(record, B, D, ys.dtype, direction), direction,
                       ys.dtype)
    source = _ForwardSolution(replays, B, D, tab.n_stages + 1, ys.dtype)
    a, a_theta, dLdt, stats, _ = adjoint_solve(f, ys, gs, t_out, tab, rtol, atol, opts,
                                               squeeze, norm_mask, time_gradients, source,
                                               args)
    return a, a_theta, dLdt, stats


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

    A replayed segment lives in a slot of a pool shared by the batch: ``Y`` (S, k + 1, D) the
    states at its step starts and end, ``K`` (S, k, s, D) the stages of its steps, ``F``
    (S, k, D) f at each step end (the Hermite slope; methods without dense output only).
    ``slot[b, j]`` is the slot of segment j of row b (−1: not replayed); ``top[b]`` bounds the
    segments row b holds from above. ``nfev`` (B,) counts the replays' evaluations per row.
    """

    def __init__(self, ev, tab, steps, direction, dtype):
        self.ev, self.tab, self.steps, self.d, self.dtype = ev, tab, steps, direction, dtype
        B, M, D = steps.y.shape
        self.slot = np.full((B, M), -1, dtype=np.int64)
        self.top = np.full(B, -1, dtype=np.int64)
        self.nfev = np.zeros(B, dtype=np.int64)
        self.D, self.k = D, steps.every
        self.Y = self.K = self.F = None
        self.free = np.zeros(0, dtype=np.int64)       # a stack of free slots
        self._grow(2 * B)

    def _grow(self, n):
        """Add n slots to the pool."""
        S = 0 if self.Y is None else self.Y.shape[0]
        k, s, D = self.k, self.tab.n_stages, self.D

        def more(old, shape):
            new = np.empty((S + n,) + shape, dtype=self.dtype)
            if old is not None:
                new[:S] = old
            return new

        self.Y = more(self.Y, (k + 1, D))
        self.K = more(self.K, (k, s, D))
        if self.tab.P is None:
            self.F = more(self.F, (k, D))
        self.free = np.concatenate([np.arange(S + n - 1, S - 1, -1), self.free])

    def _take(self, n):
        if self.free.size < n:
            self._grow(max(n, self.Y.shape[0]))
        slots, self.free = self.free[-n:], self.free[:-n]
        return slots

    def z(self, t, rows):
        """The forward y of each row ``rows`` (n,) at its own time ``t`` (n,), shape (n, D).

        The segment is the last one starting at or before t (the first for a t before the
        row's first step); rows whose segment is not replayed yet are replayed together. In
        it, the step is the first one ending at or after t (its last step for a t beyond).
        """
        st, k, tab = self.steps, self.k, self.tab
        x = self.d * t
        # At most n_seg[b] segments start at or before t (the padding is +inf): j < n_seg[b].
        j = np.maximum(st.segment(x, rows, True) - 1, 0)
        slot = self.slot[rows, j]
        need = slot < 0
        if need.any():
            # Each (row, segment) once: the quadrature asks for several stages of a row.
            _, once = np.unique(rows[need] * self.slot.shape[1] + j[need], return_index=True)
            self._replay(rows[need][once], j[need][once])
            slot = self.slot[rows, j]
        first = j * k
        if k == 1:
            m, n = 0, first
        else:
            n_in = np.minimum(k, st.n_steps[rows] - first)
            m = np.minimum(_count(st.ends, rows * st.W_e + first, x, st.W_k, False), n_in - 1)
            n = first + m
        at = rows * st.N + n
        h = st.h.take(at)
        theta = np.minimum(np.maximum((t - st.t.take(at)) / h, 0.0), 1.0)
        y0, K = self.Y[slot, m], self.K[slot, m]                  # (n, D), (n, s, D)
        if tab.P is not None:
            return dense_output(tab, y0, h, np.swapaxes(K, 0, 1), theta)
        # Cubic Hermite through (y0, f0) and (y1, f1) (HNW I, §II.6, eq. (6.7)).
        f0, y1, f1 = K[:, 0], self.Y[slot, m + 1], self.F[slot, m]
        th = theta[:, None]
        hh = h[:, None]
        return ((1 - th) ** 2 * (1 + 2 * th) * y0 + th * (1 - th) ** 2 * hh * f0
                + th ** 2 * (3 - 2 * th) * y1
                - th ** 2 * (1 - th) * hh * f1).astype(self.dtype, copy=False)

    def _replay(self, rows, j):
        """Re-take the forward steps of segment j[i] of row rows[i] from its checkpoint, with
        the recorded step sizes, all in lockstep: one field call per stage for the segments
        that still have a step there. Keeps their states and stages in new slots. (A row may
        come twice, with two segments.)"""
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
            r, sl, n = rows[on], slots[on], first[on] + m
            ya, k1a = (y, k1) if every_row else (y[on], k1[on])
            Ka = K if every_row else np.empty((tab.n_stages,) + ya.shape, dtype=y.dtype)
            t_new = st.t_new[r, n]
            y_new = rk_step(ev, st.t[r, n], ya, st.h[r, n], t_new, k1a, tab, Ka, r)
            evals[on] += tab.n_stages - 1
            if tab.fsal:
                k_end = Ka[-1]
            else:                            # f at the step end: next k1 and Hermite's slope
                k_end = ev(t_new, y_new, r)
                evals[on] += 1
                self.F[sl, m] = k_end
            self.Y[sl, m] = ya
            self.K[sl, m] = np.swapaxes(Ka, 0, 1)
            if every_row:
                y, k1 = y_new, k_end.copy()
            else:
                y[on], k1[on] = y_new, k_end
        self.Y[slots, count] = y
        np.add.at(self.nfev, rows, evals)

    def forget(self, rows, t, h, t_new, y, K):
        """``on_step`` of the adjoint solve: drop the segments of the accepted rows that start
        at or after their new time (it has passed them)."""
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
