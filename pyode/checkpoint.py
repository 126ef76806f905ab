"""The checkpointed adjoint: the adjoint ODE integrated against a stored-and-replayed y(t).

``odeint_adjoint(..., adjoint_method="checkpoint")`` computes the same continuous gradient as
the backsolve adjoint of Chen et al. (2018) (optimise-then-discretise),

    da/dt = −aᵀ ∂f/∂y,   da_θ/dt = −aᵀ ∂f/∂θ,   da_t/dt = −aᵀ ∂f/∂t   (backward in time),

but it never integrates y backward. The forward pass stores, per sample, the start, size and
end of every accepted step (three floats a step) and the state at the start of every k-th
step (``adjoint_options={"checkpoint_every": k}``, default 1). The backward pass integrates
the adjoint state ``[a, a_θ, a_t]`` backward over each output interval with the same method
and its own step-size control, exactly as the backsolve adjoint does, except that y(t) at its
stage times comes from the forward solution:

1. the segment of k forward steps that contains the stage time is replayed from its
   checkpoint with the recorded step sizes (so the replay recomputes the forward solution,
   not a new one), keeping the stages of its steps, and
2. y(t) is their dense output (``tab.P``; for the fixed-step methods, which have none, the
   cubic Hermite interpolant through the step ends, HNW I §II.6, eq. (6.7)).

Replayed segments are kept while the adjoint solve may still need them and dropped once its
accepted time has passed their start, so each is replayed once and only the segments under
one backward step are held. At each output time dL/dy(t_i) is added to a. Time gradients as
the backsolve adjoint: dL/dt_i = g_i · f(t_i, y_i) for i ≥ 1 and dL/dt_0 = a_t(t_0)
(``pyode.adjoint``, "Time gradients").

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
solve of [a, a_θ, a_t] — the backsolve adjoint's, without the D components of z. Larger k
stores less and holds longer replayed segments.

Kernel hook: a kernel module (``pyode.solvers.kernel_module``) may provide
``checkpoint_forward_nn(f, yb, t, tab, rtol, atol, opts, every) -> (ys, stats, record)`` with a
``record.sample(b) -> SampleSteps`` and ``checkpoint_nn(f, ys, gs, t, tab, record, rtol, atol,
opts, n_norm) -> (a, a_theta, dLdt, stats)`` (``n_norm``: leading components of [a, a_θ, a_t]
in the error norm, None for all); ``odeint_adjoint`` uses them when present and runs this
module's NumPy path otherwise. The Numba CPU back end (``pyode.backends.numba_cpu``, over
``pyode.kernels.rk``'s section "Checkpointed adjoint") provides them: the same steps, replays and counts as this module.

References
----------
Chen, Rubanova, Bettencourt & Duvenaud (2018), arXiv:1806.07366, Alg. 1 and App. C.
Ma, Dixit, Innes, Rackauckas et al. (2018), arXiv:1812.01892, §2 (interpolating and
checkpointed adjoints, and the instability of backsolve).
Kim, Ji, Deng, Ma & Rackauckas (2021), "Stiff Neural Ordinary Differential Equations",
arXiv:2103.15341, §3 (why backsolve fails on stiff and dissipative systems).
"""
import numpy as np

from .protocol import n_params, vjp_rows
from .solvers import batch_field, dense_output, integrate_adaptive, integrate_fixed, rk_step


def checkpoint_pass(f, ys, gs, t_out, tab, record, rtol, atol, opts, norm_mask=None,
                    squeeze=True):
    """Backward pass of the checkpointed adjoint, one sample at a time.

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
        The forward solve's accepted steps and checkpoints.
    rtol, atol : float (atol may be an array (D + P + 1,))
        Tolerances of the backward solve of [a, a_θ, a_t] (module docstring of
        ``pyode.solvers`` for their meaning).
    opts : dict
        The forward method's options (``check_options``): ``first_step`` and ``max_num_steps``
        for the adaptive backward solve, ``step_size`` for a fixed-step one.
    norm_mask : ndarray of bool, shape (D + P + 1,), optional
        Components of [a, a_θ, a_t] in the backward error norm (all by default; the seminorm
        keeps a only).

    Returns
    -------
    a : ndarray, shape (B, D)            dL/dy0 per sample
    a_theta : ndarray, shape (B, P)      dL/dθ per sample
    dLdt : ndarray, shape (T,)           dL/dt_i, summed over the samples
    stats : dict of ndarray (B,)         backward nfev (replay, adjoint and g·f evaluations),
                                         n_accepted and n_rejected steps of the adjoint solve

    Raises
    ------
    SolverError
        When the backward integration fails.
    """
    T, B, D = ys.shape
    P = n_params(f)
    ev = batch_field(f, True, None)          # one sample at a time: 1-D calls of the field
    vjp = vjp_rows(f, True, True)
    a = np.empty((B, D), dtype=ys.dtype)
    a_theta = np.empty((B, P), dtype=ys.dtype)
    dLdt = np.zeros(T)
    stats = {k: np.zeros(B, dtype=np.int64) for k in ("nfev", "n_accepted", "n_rejected")}
    for b in range(B):
        backward = _SampleBackward(ev, vjp, P, tab, record.sample(b), t_out, ys[:, b],
                                   gs[:, b], rtol, atol, opts, norm_mask)
        a[b], a_theta[b], dt_b = backward.run()
        dLdt += dt_b
        for k in stats:
            stats[k][b] = backward.stats[k]
    return a, a_theta.sum(axis=0), dLdt, stats


class _SampleBackward:
    """The backward pass of one sample (module docstring, steps 1–2)."""

    def __init__(self, ev, vjp, P, tab, steps, t_out, ys, gs, rtol, atol, opts, norm_mask):
        self.ev, self.vjp, self.P, self.tab, self.steps = ev, vjp, P, tab, steps
        self.t_out, self.ys, self.gs = t_out, ys, gs
        self.rtol, self.atol, self.opts, self.norm_mask = rtol, atol, opts, norm_mask
        self.h = opts.get("first_step")      # the adjoint solve's step size, carried along
        self.stats = dict(nfev=0, n_accepted=0, n_rejected=0)
        self.direction = 1.0 if t_out[-1] > t_out[0] else -1.0
        self.segment_start = steps.t[::steps.every]      # (n_segments,)
        self.replayed = {}                   # segment index → _Interpolant

    def run(self):
        """Returns (dL/dy0 (D,), dL/dθ (P,), dL/dt (T,))."""
        T, D = self.ys.shape
        t_out, gs = self.t_out, self.gs
        dLdt = np.zeros(T)
        gf = self._g_dot_f(T - 1)
        dLdt[T - 1] = gf
        # Augmented state of the backward solve, layout [a | a_θ | a_t] (a_t = −aᵀf, App. C).
        state = np.concatenate([gs[T - 1], np.zeros(self.P, dtype=self.ys.dtype),
                                np.array([-gf], dtype=self.ys.dtype)])
        for i in range(T - 1, 0, -1):
            state = self._adjoint(state, t_out[i], t_out[i - 1])
            if i - 1 > 0:
                gf = self._g_dot_f(i - 1)
                dLdt[i - 1] = gf
                state[-1] -= gf              # keeps a_t = −aᵀf across the jump a → a + g_i
            state[:D] += gs[i - 1]
        dLdt[0] = state[-1]
        return state[:D], state[D:-1], dLdt

    def _g_dot_f(self, i):
        self.stats["nfev"] += 1
        return float(self.gs[i] @ self.ev(np.array([self.t_out[i]]), self.ys[i][None])[0])

    def _adjoint(self, state, t_from, t_to):
        """Integrate [a, a_θ, a_t] from t_from to t_to against the forward y(t)."""
        D = state.shape[0] - self.P - 1
        vjp, z = self.vjp, self._z

        def ev_adj(t, s, rows):
            vy, vth, vt = vjp(t, z(t), s[:, :D])
            return np.concatenate([-vy, -vth, -vt[:, None]], axis=1)

        span = np.array([t_from, t_to])
        if self.tab.adaptive:
            out, st, self.h = integrate_adaptive(ev_adj, state[None], span, self.tab, self.rtol,
                                                 self.atol, self.h, self.opts["max_num_steps"],
                                                 self.norm_mask, self._forget)
        else:
            out, st = integrate_fixed(ev_adj, state[None], span, self.tab,
                                      self.opts["step_size"], self._forget)
        for k in self.stats:
            self.stats[k] += int(st[k][0])
        return out[-1, 0].copy()

    def _z(self, t):
        """The forward y at the time ``t`` (1,), shape (1, D)."""
        d = self.direction
        j = int(np.clip(np.searchsorted(d * self.segment_start, d * t[0], side="right") - 1,
                        0, self.segment_start.size - 1))
        if j not in self.replayed:
            self.replayed[j] = self._replay(j)
        return self.replayed[j](t)

    def _forget(self, rows, t, h, t_new, y, K):
        """``on_step`` of the adjoint solve: drop the segments its accepted time has passed."""
        d = self.direction
        for j in [j for j in self.replayed if d * (self.segment_start[j] - t_new[0]) >= 0.0]:
            del self.replayed[j]

    def _replay(self, j):
        """Re-take the forward steps of segment j from its checkpoint; their interpolant."""
        steps, tab, ev = self.steps, self.tab, self.ev
        first = j * steps.every
        last = min(first + steps.every, steps.n_steps)
        y = steps.y[j][None]
        k1 = ev(np.array([steps.t[first]]), y)
        self.stats["nfev"] += 1
        starts, stages, ends = [], [], []
        for n in range(first, last):
            K = np.empty((tab.n_stages,) + y.shape, dtype=y.dtype)
            t, h, t_new = (np.array([v]) for v in (steps.t[n], steps.h[n], steps.t_new[n]))
            y_new = rk_step(ev, t, y, h, t_new, k1, tab, K, np.zeros(1, dtype=np.int64))
            self.stats["nfev"] += tab.n_stages - 1
            if tab.fsal:
                k1 = K[-1]
            else:                            # f at the step end: next k1 and Hermite's slope
                k1 = ev(t_new, y_new)
                self.stats["nfev"] += 1
            starts.append(y[0])
            stages.append(K[:, 0])
            ends.append(k1[0])
            y = y_new
        starts.append(y[0])
        return _Interpolant(tab, steps.t[first:last], steps.h[first:last],
                            steps.t_new[first:last], np.array(starts), np.array(stages),
                            np.array(ends))


class _Interpolant:
    """y(t) on the replayed steps of one segment, by the method's dense output.

    Parameters: step starts ``t``, sizes ``h``, ends ``t_new`` (n,); states ``y`` (n + 1, D) at
    the step ends and starts; stages ``K`` (n, s, D); ``f_end`` (n, D) f at each step end (the
    Hermite interpolant's slope for methods without a continuous extension).
    """

    def __init__(self, tab, t, h, t_new, y, K, f_end):
        self.tab, self.t, self.h, self.t_new = tab, t, h, t_new
        self.y, self.K, self.f_end = y, K, f_end
        self.D = y.shape[1]
        self.direction = 1.0 if (t_new[-1] - t[0]) > 0 else -1.0

    def __call__(self, tau):
        """y at the times ``tau`` (n,) inside the segment; shape (n, D)."""
        d = self.direction
        n = np.clip(np.searchsorted(d * self.t_new, d * tau, side="left"), 0, self.t.size - 1)
        theta = np.clip((tau - self.t[n]) / self.h[n], 0.0, 1.0)
        y0, h = self.y[n], self.h[n]
        if self.tab.P is not None:
            return dense_output(self.tab, y0, h, np.swapaxes(self.K[n], 0, 1), theta)
        # Cubic Hermite through (y0, f0) and (y1, f1) (HNW I, §II.6, eq. (6.7)).
        f0, y1, f1 = self.K[n, 0], self.y[n + 1], self.f_end[n]
        th = theta[:, None]
        hh = h[:, None]
        return ((1 - th) ** 2 * (1 + 2 * th) * y0 + th * (1 - th) ** 2 * hh * f0
                + th ** 2 * (3 - 2 * th) * y1 - th ** 2 * (1 - th) * hh * f1)
