"""The adjoint method: gradients of a loss on ``odeint``'s output, by integrating backward.

Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural Ordinary Differential Equations",
arXiv:1806.07366, Algorithm 1 and Appendix C (gradients with respect to the times).

For a loss L(y(t_0), …, y(t_N)) the adjoint a(t) = dL/dy(t) obeys, between output times,

    da/dt = −a(t)ᵀ ∂f/∂y,                                    (Chen et al., eq. 4)

and the parameter and time gradients are integrals along the same backward solve:

    a_θ(t) : da_θ/dt = −a(t)ᵀ ∂f/∂θ,   dL/dθ = a_θ(t_0)        (eq. 5)
    a_t(t) : da_t/dt = −a(t)ᵀ ∂f/∂t                             (App. C)

The state z(t) is not stored: it is re-integrated backward together with a, a_θ, a_t as one
augmented state ``[z, a, a_θ, a_t]`` (Algorithm 1). At each output time t_i the loss's own
gradient dL/dy(t_i) is added to a, and z is restarted from the stored forward value y(t_i).

Design decision (optimise-then-discretise): this is the gradient of the *continuous* solution,
computed to the adjoint tolerances; it differs from the exact derivative of the numerical
forward solution (discretise-then-optimise, as backprop through the solver computes) by an
amount of the order of the tolerances. torchdiffeq's ``odeint_adjoint`` and diffrax's
``BacksolveAdjoint`` make the same choice.

Time gradients. With g_i = ∂L/∂y(t_i): dL/dt_i = g_i · f(t_i, y(t_i)) for i ≥ 1 (moving an
output time moves only that output). For t_0 the whole trajectory moves:
dL/dt_0 = −a(t_0⁺) · f(t_0, y_0), with a(t_0⁺) the adjoint before g_0 is added. Along the
backward solve a_t(t) = −a(t)ᵀ f(t, z(t)) is carried as the integral of App. C: it starts at
−g_N · f(t_N, y_N), jumps by −g_i · f(t_i, y_i) when g_i is added, and a_t(t_0) = dL/dt_0.
"""
from dataclasses import dataclass

import numpy as np

from .solvers import (SolveInfo, _odeint, batch_field, check_options, check_tolerances,
                      integrate_adaptive, integrate_fixed, kernel_module)
from .tableaus import get_tableau


@dataclass
class AdjointGradients:
    """Gradients returned by the ``vjp`` of :func:`odeint_adjoint`.

    Attributes
    ----------
    y0 : ndarray, shape of y0
        dL/dy0.
    params : ndarray, shape (P,)
        dL/dθ, summed over the samples of a batch.
    t : ndarray, shape (T,)
        dL/dt_i for every output time (units: loss per unit of t), summed over the samples.
    info : SolveInfo
        Statistics of the backward solve (nfev and steps per sample, summed over intervals).
    """

    y0: np.ndarray
    params: np.ndarray
    t: np.ndarray
    info: SolveInfo


def _vjp_rows(f, squeeze):
    """Per-sample VJP ``(t (n,), y (n, D), v (n, D)) → (vᵀf_y (n, D), vᵀf_θ (n, P), vᵀf_t (n,))``.

    Uses the field's optional ``vjp_per_sample``; otherwise calls ``vjp`` one sample at a time
    (the θ-part of ``vjp`` is summed over a batch, and the adjoint needs one a_θ per sample).
    """
    P = _n_params(f)

    def vjp_rows(t, y, v):
        n = y.shape[0]
        if squeeze:
            vy, vth, vt = f.vjp(float(t[0]), y[0], v[0])
            return (np.asarray(vy)[None], np.asarray(vth, dtype=y.dtype).reshape(1, P),
                    np.asarray(vt, dtype=y.dtype).reshape(1))
        if hasattr(f, "vjp_per_sample"):
            vy, vth, vt = f.vjp_per_sample(t, y, v)
            return (np.asarray(vy), np.asarray(vth, dtype=y.dtype).reshape(n, P),
                    np.broadcast_to(np.asarray(vt, dtype=y.dtype), (n,)))
        vy = np.empty_like(y)
        vth = np.empty((n, P), dtype=y.dtype)
        vt = np.empty(n, dtype=y.dtype)
        for b in range(n):
            vy[b], vth[b], vt[b] = f.vjp(float(t[b]), y[b], v[b])
        return vy, vth, vt

    return vjp_rows


def _n_params(f):
    return int(np.asarray(getattr(f, "params", np.zeros(0))).size)


def augmented_dynamics(f, squeeze, D):
    """The backward system of Chen et al. Alg. 1 / App. C on the state ``[z, a, a_θ, a_t]``.

    Returns ``ev(t (n,), s (n, 2D + P + 1)) → ds/dt`` with

        dz/dt = f(t, z),  da/dt = −aᵀ∂f/∂z,  da_θ/dt = −aᵀ∂f/∂θ,  da_t/dt = −aᵀ∂f/∂t.
    """
    ev = batch_field(f, squeeze, None)
    vjp_rows = _vjp_rows(f, squeeze)

    def ev_aug(t, s):
        z, a = s[:, :D], s[:, D:2 * D]          # layout: [z | a | a_θ | a_t]
        vy, vth, vt = vjp_rows(t, z, a)
        return np.concatenate([ev(t, z), -vy, -vth, -vt[:, None]], axis=1)

    return ev_aug


def odeint_adjoint(f, y0, t, method="dopri5", rtol=1e-7, atol=1e-9, adjoint_rtol=None,
                   adjoint_atol=None, options=None, backend="auto"):
    """Solve like :func:`pyode.odeint` and return a function computing gradients by the adjoint.

    Parameters
    ----------
    f : vector field
        Must provide ``__call__``, ``params`` and ``vjp`` (README, "vector-field protocol").
    y0, t, method, rtol, atol, options, backend
        As in :func:`pyode.odeint`.
    adjoint_rtol, adjoint_atol : float, optional
        Tolerances of the backward solve of the augmented state [z, a, a_θ, a_t] (default:
        ``rtol`` and ``atol``; an array ``atol`` defaults to its smallest entry). The error norm
        of the backward solve is the RMS over all 2D + P + 1 components of a sample.

    Returns
    -------
    ys : ndarray, shape (T, *y0.shape)
    vjp : callable
        ``vjp(grad_ys)`` with ``grad_ys = dL/dys`` (shape of ys) returns
        :class:`AdjointGradients` with ``y0`` (shape of y0), ``params`` (P,) and ``t`` (T,).

    Raises
    ------
    ValueError, TypeError
        Bad arguments (as ``odeint``), a field without ``vjp``, or ``grad_ys`` of the wrong
        shape or with NaN/inf.
    SolverError
        When the forward or the backward integration fails.

    References
    ----------
    Chen et al. (2018), arXiv:1806.07366, Algorithm 1 and Appendix C.
    """
    if not hasattr(f, "vjp"):
        raise TypeError(f"odeint_adjoint needs a field with a vjp(t, y, v) method; "
                        f"{type(f).__name__} has none (see the vector-field protocol)")
    ys, info = _odeint(f, y0, t, method, rtol, atol, options, backend)
    tab = get_tableau(method)
    t_arr = np.asarray(t, dtype=np.float64)
    squeeze = ys.ndim == 2
    yb = ys[:, None] if squeeze else ys                 # (T, B, D)
    B, D = yb.shape[1:]
    P = _n_params(f)
    a_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    a_atol = adjoint_atol
    if a_atol is None:
        a_atol = float(np.min(atol))
    a_rtol, a_atol = check_tolerances(a_rtol, a_atol, 2 * D + P + 1, "adjoint_rtol/adjoint_atol")
    opts = check_options(options, tab)

    def vjp(grad_ys):
        g = np.asarray(grad_ys, dtype=ys.dtype)
        if g.shape != ys.shape:
            raise ValueError(f"grad_ys must have the shape of ys {ys.shape}, got {g.shape}")
        if not np.all(np.isfinite(g)):
            raise ValueError("grad_ys contains NaN or inf")
        gb = g[:, None] if squeeze else g
        kernels = kernel_module(f, backend)
        if kernels is not None:
            a, a_theta, dLdt, stats, recon = kernels.adjoint_nn(f, yb, gb, t_arr, tab, a_rtol,
                                                                a_atol, opts)
        else:
            a, a_theta, dLdt, stats, recon = backward_pass(f, yb, gb, t_arr, tab, a_rtol, a_atol,
                                                           opts, squeeze)
        if squeeze:
            a = a[0]
            stats = {k: int(v[0]) for k, v in stats.items()}
        return AdjointGradients(y0=a, params=a_theta.sum(axis=0), t=dLdt,
                                info=SolveInfo(method=tab.name, **stats))

    return ys, vjp


def backward_pass(f, yb, gb, t, tab, rtol, atol, opts, squeeze, norm_mask=None):
    """Integrate the augmented state backward over each output interval (the NumPy reference).

    Parameters
    ----------
    yb, gb : ndarray, shape (T, B, D)
        Forward outputs and dL/dy at the output times.
    t : ndarray, shape (T,)

    Returns
    -------
    a : ndarray (B, D)           dL/dy0 per sample
    a_theta : ndarray (B, P)     dL/dθ per sample
    dLdt : ndarray (T,)          dL/dt_i summed over samples
    stats : dict of ndarray (B,) backward nfev and step counts, summed over the intervals
    recon : ndarray (B,)         largest reconstruction error of z at the output times,
                                 max |z(t_i) − y(t_i)| / (atol + rtol·|y(t_i)|)
    """
    T, B, D = yb.shape
    P = _n_params(f)
    ev = batch_field(f, squeeze, None)
    ev_aug = augmented_dynamics(f, squeeze, D)
    dtype = yb.dtype

    def g_dot_f(i):
        """g_i · f(t_i, y_i) per sample, shape (B,)."""
        return np.sum(gb[i] * ev(np.full(B, t[i]), yb[i]), axis=1)

    stats = {k: np.zeros(B, dtype=np.int64) for k in ("nfev", "n_accepted", "n_rejected")}
    dLdt = np.zeros(T)
    gf = g_dot_f(T - 1)
    stats["nfev"] += 1
    dLdt[-1] = gf.sum()
    a = gb[-1].copy()
    a_theta = np.zeros((B, P), dtype=dtype)
    a_t = -gf
    h = opts.get("first_step")
    recon = np.zeros(B)
    for i in range(T - 1, 0, -1):
        state = np.concatenate([yb[i], a, a_theta, a_t[:, None].astype(dtype)], axis=1)
        span = np.array([t[i], t[i - 1]])
        if tab.adaptive:
            out, st, h = integrate_adaptive(ev_aug, state, span, tab, rtol, atol, h,
                                            opts["max_num_steps"], norm_mask)
        else:
            out, st = integrate_fixed(ev_aug, state, span, tab, opts["step_size"])
        for k in stats:
            stats[k] += st[k]
        end = out[-1]
        gap = np.abs(end[:, :D] - yb[i - 1]) / (atol + rtol * np.abs(yb[i - 1]))
        recon = np.maximum(recon, gap.max(axis=1))
        a, a_theta, a_t = end[:, D:2 * D], end[:, 2 * D:2 * D + P], end[:, -1].astype(np.float64)
        if i - 1 > 0:
            gf = g_dot_f(i - 1)
            stats["nfev"] += 1
            dLdt[i - 1] = gf.sum()
            a_t = a_t - gf                   # keeps a_t = −aᵀf across the jump a → a + g_i
        a = a + gb[i - 1]
    dLdt[0] = a_t.sum()
    return a, a_theta, dLdt, stats, recon
