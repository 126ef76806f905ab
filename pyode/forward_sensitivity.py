"""Forward sensitivity: integrate S = ∂y/∂(y0, θ) alongside y.

``odeint_adjoint(..., adjoint_method="forward")`` differentiates the ODE in forward mode. With
the sensitivity matrix S(t) = [∂y(t)/∂y0 | ∂y(t)/∂θ] of shape (D, D + P) per sample, the
variational equations (HNW I, §I.14, Theorem 14.1 and eq. (14.5)) are

    dS/dt = ∂f/∂y · S + [0 | ∂f/∂θ],     S(t_0) = [I | 0],

integrated together with y as one augmented state [y, S] of D·(1 + D + P) components per
sample, by the same method and step-size control. ∂f/∂y · S is one batched ``jvp`` (a row per
column of S) and ∂f/∂θ one ``jvp_params(t, y, e_p)`` per parameter p, so a step costs
O(D + P) field derivatives — the right choice for few parameters and few states, whereas the
adjoint methods cost O(1) vector-Jacobian products per step whatever P is.

The forward pass does all the work; the vjp only contracts the stored S(t_i) with the loss's
cotangents:

    dL/dy0 = Σ_i S_y0(t_i)ᵀ g_i,   dL/dθ = Σ_i S_θ(t_i)ᵀ g_i,
    dL/dt_i = g_i · f(t_i, y_i) (i ≥ 1),   dL/dt_0 = −(Σ_{i≥1} S_y0(t_i)ᵀ g_i) · f(t_0, y_0)

(moving t_0 shifts the initial condition along the flow: ∂y(t_i)/∂t_0 = −S_y0(t_i) f(t_0, y_0)).

Design decision (error control of S): CVODES lets the user include the sensitivities in the
local error test or not (``CVodeSetSensErrCon``); with S excluded the steps are those of y alone
and S is then the exact derivative of the discrete map (internal differentiation, Bock 1981),
i.e. the discrete adjoint's answer. We include S, in the same scaled RMS norm per sample as y
(the RMS over all D·(1 + D + P) components, with atol per row of S that of the matching
component of y), so S is accurate to the tolerance like the adjoint methods' gradients.
Consequently the steps, and the returned ys, differ from ``odeint``'s by O(tolerance). For the
fixed-step methods there is no error control and S is exactly the discrete derivative.

Memory: S at the output times, T·D·(D + P) floats per sample, independent of the number of
steps. Cost: D + P field JVPs per stage.

References
----------
Hairer, Nørsett & Wanner, Solving ODEs I (1993), §I.14 (the variational equation).
Ma, Dixit, Innes, Rackauckas et al. (2018), arXiv:1812.01892, §2.1 (forward sensitivity,
and when it beats the adjoint).
Hindmarsh et al., "SUNDIALS", ACM TOMS 31 (2005) 363–396, §4 (CVODES sensitivity error
control).
"""
import numpy as np

from .protocol import n_params, row_args
from .solvers import batch_field, integrate


def sensitivity_solve(f, yb, t_out, tab, rtol, atol, opts, squeeze, args=()):
    """Integrate y and S = ∂y/∂(y0, θ) (module docstring).

    Parameters
    ----------
    f : vector field
        With ``jvp`` and ``jvp_params`` (README, "The vector-field protocol").
    yb : ndarray, shape (B, D)
        Initial states.
    t_out : ndarray, shape (T,)
    tab : ButcherTableau
    rtol, atol : float (atol may be an array (D,))
        Tolerances of y; the rows of S get those of the matching component of y.
    opts : dict
        ``check_options``'s dict for the method.
    squeeze : bool
        The problem is 1-D (the field is called with 1-D arguments for f itself).
    args : tuple
        Extra arguments of ``f(t, y, *args)``, ``f.jvp(t, y, u, *args)`` and
        ``f.jvp_params(t, y, w, *args)`` (``pyode.protocol.row_args``: arrays with one entry
        per row are sliced to the rows of each call; the batched jvp repeats each row once
        per column of S, and so its arguments).

    Returns
    -------
    ys : ndarray, shape (T, B, D)
    S : ndarray, shape (T, B, D, D + P)
        [∂y(t_i)/∂y0 | ∂y(t_i)/∂θ] per output time and sample.
    stats : dict of ndarray (B,)
        nfev (evaluations of the augmented system: each is one f, one batched jvp and P
        jvp_params), n_accepted, n_rejected.
    """
    B, D = yb.shape
    P = n_params(f)
    C = D + P
    args_at = row_args(args, None if squeeze else B)
    ev = batch_field(f, squeeze, None, args_at)
    eye_p = np.eye(P)

    def ev_sensitivity(t, s, rows):
        n = s.shape[0]
        y = s[:, :D]
        S = s[:, D:].reshape(n, D, C)                  # layout [y | S row-major (D, D + P)]
        args_jvp = args_rows = ()
        if args_at is not None:
            args_jvp, args_rows = args_at(np.repeat(rows, C)), args_at(rows)
        # ∂f/∂y · S: one jvp with a row per (sample, column of S).
        columns = np.swapaxes(S, 1, 2).reshape(n * C, D)
        JS = np.asarray(f.jvp(np.repeat(t, C), np.repeat(y, C, axis=0), columns, *args_jvp))
        dS = np.swapaxes(JS.reshape(n, C, D), 1, 2).copy()
        for p in range(P):                             # + ∂f/∂θ, column by column
            dS[:, :, D + p] += np.asarray(f.jvp_params(t, y, eye_p[p], *args_rows))
        return np.concatenate([ev(t, y, rows), dS.reshape(n, D * C).astype(s.dtype)], axis=1)

    S0 = np.zeros((B, D, C), dtype=yb.dtype)
    S0[:, :, :D] = np.eye(D)
    state = np.concatenate([yb, S0.reshape(B, D * C)], axis=1)
    atol_a = np.asarray(atol, dtype=np.float64)
    atol_aug = float(atol_a) if atol_a.ndim == 0 else np.concatenate([atol_a,
                                                                      np.repeat(atol_a, C)])
    out, stats = integrate(ev_sensitivity, state, t_out, tab, rtol, atol_aug, opts)
    T = t_out.shape[0]
    return out[:, :, :D], out[:, :, D:].reshape(T, B, D, C), stats


def sensitivity_vjp(f, ys, S, gs, t_out, squeeze, args=(), time_gradients=True):
    """Contract the stored sensitivities with dL/dys (module docstring).

    Parameters
    ----------
    ys : ndarray, shape (T, B, D)
    S : ndarray, shape (T, B, D, D + P)
    gs : ndarray, shape (T, B, D)
        dL/dy at the output times.
    t_out : ndarray, shape (T,)
    args : tuple
        Extra arguments of ``f(t, y, *args)``, as for :func:`sensitivity_solve`.
    time_gradients : bool
        Compute dL/dt (True), or skip its T evaluations of f and return ``dLdt`` None.

    Returns
    -------
    a : ndarray (B, D), a_theta : ndarray (B, P), dLdt : ndarray (T,) or None, stats : dict
        As the other backward passes; nfev counts the T evaluations of f for dL/dt (0
        without ``time_gradients``).
    """
    T, B, D = ys.shape
    ev = batch_field(f, squeeze, None, row_args(args, None if squeeze else B))
    per_time = np.einsum("tbd,tbdc->tbc", gs, S)       # g_iᵀ S(t_i), shape (T, B, D + P)
    a = per_time[:, :, :D].sum(axis=0)
    a_theta = per_time[:, :, D:].sum(axis=0)
    dLdt = None
    if time_gradients:
        dLdt = np.zeros(T)
        every_row = np.arange(B)
        for i in range(1, T):
            dLdt[i] = np.sum(gs[i] * ev(np.full(B, t_out[i]), ys[i], every_row))
        f0 = ev(np.full(B, t_out[0]), ys[0], every_row)
        dLdt[0] = -np.sum(per_time[1:, :, :D].sum(axis=0) * f0)
    stats = dict(nfev=np.full(B, T if time_gradients else 0, dtype=np.int64),
                 n_accepted=np.zeros(B, dtype=np.int64),
                 n_rejected=np.zeros(B, dtype=np.int64))
    return a.astype(ys.dtype), a_theta.astype(ys.dtype), dLdt, stats
