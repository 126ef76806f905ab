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
summed increment Σ_i h_i Σ_j b_j (−a_ijᵀ ∂f/∂θ): the sum over samples that dL/dθ is. It is
taken after each pass of the integrator over the active rows, for the accepted steps only (the
``on_step`` hook), so a rejected attempt adds nothing; the stages of all accepted rows are
stacked into one call.

Design decision (error control of a_θ). With a_θ outside the state its local error does not
limit the step: the seminorm's treatment of a_θ (Kidger et al. 2021), which torchdiffeq offers
as ``adjoint_options=dict(norm="seminorm")`` and which this module makes the rule for fields
without ``vjp_per_sample``. Fields that provide ``vjp_per_sample`` (every ``pyode.nn`` field)
keep a_θ per sample in the state, where ``norm="rms"`` controls it, as the kernels do.
"""
import numpy as np

from .solvers import stage_input, stage_time


class ParameterQuadrature:
    """``on_step`` hook of a backward solve that accumulates the summed a_θ (module docstring).

    Parameters
    ----------
    vjp : callable
        ``vjp(t (n,), z (n, D), v (n, D)) → (vᵀf_y, vᵀf_θ (P,) summed, vᵀf_t)``
        (``pyode.protocol.vjp_rows(f, squeeze, per_sample=False)``).
    tab : ButcherTableau
        The method of the backward solve.
    stage_point : callable
        ``stage_point(t_j (n,), Y_j (n, W), rows (n,)) → (z_j (n, D), a_j (n, D))``: where a
        stage's z and a come from (the state itself for backsolve, the replayed forward
        solution for checkpoint).
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
        self.total = np.zeros(P, dtype=dtype)
        self.dtype = dtype
        # Stages with b_j = 0 (dopri5's 2nd and FSAL stages) add nothing: skip them.
        self.stages = [j for j in range(tab.n_stages) if tab.b[j] != 0.0]
        self.n_vjp = None

    def count(self, B):
        """Count the stage points evaluated per sample from now on."""
        self.n_vjp = np.zeros(B, dtype=np.int64)

    def __call__(self, rows, t, h, t_new, y, K):
        """One pass of accepted steps (the ``on_step`` contract of ``pyode.solvers``)."""
        tab = self.tab
        ts, zs, vs = [], [], []
        for j in self.stages:
            Y_j = y if j == 0 else stage_input(y, h, tab.A[j, :j], K[:j])
            t_j = stage_time(t, h, t_new, tab.c[j])
            z_j, a_j = self.stage_point(t_j, Y_j, rows)
            w = (-tab.b[j] * h).astype(self.dtype)[:, None]   # da_θ/dt = −aᵀ∂f/∂θ, times b_j h
            ts.append(t_j)
            zs.append(z_j)
            vs.append(w * a_j)
        if rows.size > 1:        # all stages of all rows in one call of the field's vjp
            _, vth, _ = self.vjp(np.concatenate(ts), np.concatenate(zs), np.concatenate(vs))
            self.total += vth
        else:                    # one row: stage by stage, the same sums as a 1-D problem's
            step = np.zeros_like(self.total)
            for t_j, z_j, v_j in zip(ts, zs, vs):
                step += self.vjp(t_j, z_j, v_j)[1]
            self.total += step
        if self.n_vjp is not None:
            self.n_vjp[rows] += len(self.stages)
