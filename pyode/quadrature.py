"""dL/dθ as a quadrature beside the backward solve: one ``vjp`` call for the whole batch.

Chen et al. (2018), eq. 5: dL/dθ = a_θ(t_0) with da_θ/dt = −a(t)ᵀ ∂f/∂θ(t, z(t)), integrated
backward. Nothing in the backward solve reads a_θ — the right-hand sides of z, a and a_t do not
depend on it — so a_θ is a *quadrature* along the solve (Kidger, Chen & Lyons 2021,
arXiv:2009.09457, §3). One explicit Runge–Kutta step of the augmented state moves it by

    a_θ ← a_θ + h Σ_j b_j (−a_jᵀ ∂f/∂θ(t_j, z_j)),                      (HNW I, §II.1, eq. 1.8)

where (t_j, z_j, a_j) are the stage inputs of that same step: exactly what integrating a_θ
inside the state would give, stage for stage.

Why beside the state and not in it. A user-written field's ``vjp`` returns vᵀ∂f/∂θ *summed*
over the rows of a batch (the protocol, README). Keeping one a_θ per sample in the state would
need one ``vjp`` call per sample (the cost issue 14 measured: ≈ 29 ms per sample). The vjp is
linear in v, so folding each row's weight b_j h_i into its row of v makes one call return the
summed increment Σ_i h_i Σ_j b_j (−a_ijᵀ ∂f/∂θ): the sum over samples that dL/dθ is. The
stage points are taken after each pass of the integrator over the active rows, for the accepted
steps only (the ``on_step`` hook), so a rejected attempt adds nothing; since only their sum is
kept, the stage points of many passes are stacked into one call (every ``PENDING_ROWS``).

Design decision (error control of a_θ). With a_θ outside the state its local error does not
limit the step: the seminorm's treatment of a_θ (Kidger et al. 2021), which torchdiffeq offers
as ``adjoint_options=dict(norm="seminorm")`` and which this module makes the rule for fields
without ``vjp_per_sample``. Fields that provide ``vjp_per_sample`` (every ``pyode.nn`` field)
keep a_θ per sample in the state, where ``norm="rms"`` controls it, as the kernels do.
"""
import numpy as np

from .solvers import stage_inputs, stage_time

#: Stage points gathered before one call of the field's vjp (memory: (1 + 2D) floats each).
PENDING_ROWS = 1 << 16


class ParameterQuadrature:
    """``on_step`` hook of a backward solve that accumulates the summed a_θ (module docstring).

    Parameters
    ----------
    vjp : callable
        ``vjp(t (n,), z (n, D), v (n, D), rows (n,)) → (vᵀf_y, vᵀf_θ (P,) summed, vᵀf_t)``
        (``pyode.protocol.vjp_rows(f, squeeze, per_sample=False, args_at)``); ``rows`` are
        the batch rows of the stage points, for the field's per-row extra arguments.
    tab : ButcherTableau
        The method of the backward solve.
    stage_point : callable
        ``stage_point(t (N,), Y (N, W), rows (N,)) → (z (N, D), a (N, D))``: where the
        stages' z and a come from (the state itself for backsolve, the replayed forward
        solution for checkpoint), for N stage points of the given batch rows (a row appears
        once per stage).
    P : int
    dtype : numpy dtype
        The state's; the weights b_j h are cast to it.

    Attributes
    ----------
    total : ndarray, shape (P,)
        Σ over samples and accepted steps so far of h Σ_j b_j (−a_jᵀ ∂f/∂θ).
    n_vjp : ndarray of int, shape (B,) or None
        Per sample, the stage points evaluated (``count(B)`` starts counting).
    """

    def __init__(self, vjp, tab, stage_point, P, dtype):
        self.vjp, self.tab, self.stage_point = vjp, tab, stage_point
        self._total = np.zeros(P, dtype=dtype)
        self.dtype = dtype
        # Stages with b_j = 0 (dopri5's 2nd and FSAL stages) add nothing: skip them.
        self.stages = np.array([j for j in range(tab.n_stages) if tab.b[j] != 0.0])
        self.n_vjp = None
        self._pending = []              # stage points (t, z, v, rows) not yet sent to the vjp
        self._pending_rows = 0

    @property
    def total(self):
        """Σ over samples and accepted steps so far of h Σ_j b_j (−a_jᵀ ∂f/∂θ), shape (P,)."""
        self._flush()
        return self._total

    def count(self, B):
        """Count the stage points evaluated per sample from now on."""
        self.n_vjp = np.zeros(B, dtype=np.int64)

    def __call__(self, rows, t, h, t_new, y, K):
        """One pass of accepted steps (the ``on_step`` contract of ``pyode.solvers``)."""
        tab, js = self.tab, self.stages
        n = rows.size
        Y = stage_inputs(y, h, tab.A[js], K)                        # (m, n, W), m = len(js)
        t_j = np.concatenate([stage_time(t, h, t_new, tab.c[j]) for j in js])
        rows_j = np.tile(rows, len(js))
        z, a = self.stage_point(t_j, Y.reshape(len(js) * n, -1), rows_j)
        # da_θ/dt = −aᵀ∂f/∂θ; row (j, i) of v carries the weight b_j h_i of its stage.
        w = (-tab.b[js][:, None] * h[None, :]).astype(self.dtype).reshape(-1, 1)
        v = w * a
        if n > 1:
            # The sum is all that is kept, so the stage points of many passes can wait and go
            # to the field's vjp together: one call per PENDING_ROWS stage points.
            self._pending.append((t_j, z, v, rows_j))
            self._pending_rows += t_j.size
            if self._pending_rows >= PENDING_ROWS:
                self._flush()
        else:                    # one row: stage by stage, the same sums as a 1-D problem's
            step = np.zeros_like(self._total)
            for m in range(len(js)):
                step += self.vjp(t_j[m:m + 1], z[m:m + 1], v[m:m + 1], rows_j[m:m + 1])[1]
            self._total += step
        if self.n_vjp is not None:
            self.n_vjp[rows] += len(js)

    def _flush(self):
        """Send the pending stage points to the field's vjp in one call; add its θ-part."""
        if self._pending:
            t, z, v, rows = (np.concatenate(parts) for parts in zip(*self._pending))
            self._total += self.vjp(t, z, v, rows)[1]
            self._pending, self._pending_rows = [], 0
