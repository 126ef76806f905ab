"""The backward solve of the adjoint method, written once (Chen et al. 2018, Alg. 1 and App. C).

For a loss L(y(t_0), …, y(t_{T−1})) the adjoint a(t) = dL/dy(t) and its companions obey,
backward in time between the output times,

    da/dt   = −a(t)ᵀ ∂f/∂y(t, z(t)),                              (Chen et al., eq. 4)
    da_θ/dt = −a(t)ᵀ ∂f/∂θ,     dL/dθ = a_θ(t_0),                 (eq. 5)
    da_t/dt = −a(t)ᵀ ∂f/∂t,     dL/dt_0 = a_t(t_0),               (App. C)

and at each output time t_i the state jumps: a → a + g_i with g_i = ∂L/∂y(t_i), and
a_t → a_t − g_i · f(t_i, y_i), which keeps a_t = −aᵀf across the jump; dL/dt_i = g_i · f(t_i,
y_i) for i ≥ 1. :func:`adjoint_solve` is that loop, for the whole batch in one backward solve
(each row with its own step control, crossing the output times on its own through the
integrators' ``jump`` hook). The two continuous gradient methods differ only in where z(t)
comes from:

* ``adjoint_method="backsolve"`` (Alg. 1): z is integrated backward with the adjoint,
  dz/dt = f(t, z), restarting from the stored forward y_i at every output time — state
  ``[z, a, a_θ, a_t]`` (``pyode.adjoint``);
* ``adjoint_method="checkpoint"``: z(t) is the forward solution, replayed from checkpoints
  (a ``z_source``, ``pyode.checkpoint``) — state ``[a, a_θ, a_t]``.

a_θ is in the state only for fields with ``vjp_per_sample`` (one a_θ per sample, its error
controlled); for the others it is the summed quadrature of ``pyode.quadrature`` beside the
state. a_t is there only with ``time_gradients``.
"""
import numpy as np

from .errors import SolverError, in_backward_solve
from .kernels.numbers import adjoint_parts
from .protocol import has_per_sample_vjp, n_params, row_args, vjp_rows
from .quadrature import ParameterQuadrature
from .kernels.rows import jump_rows
from .solvers import StepNumbers, _as_rows, batch_field, integrate_adaptive, integrate_fixed

#: Added to a failure of a backward solve that carries a_t: a ∂f/∂t that is infinite or huge
#: somewhere (y' = p·√t at t = 0) spoils only the time gradient.
TIME_GRADIENT_NOTE = ("if only the time gradient dL/dt is affected (e.g. ∂f/∂t infinite at "
                      "t0), odeint_adjoint(..., time_gradients=False) still computes the others")


class Layout:
    """Where the parts of the backward state sit: ``[z] a [a_θ] [a_t]`` (README layout).

    Parameters
    ----------
    D, P : int
    with_z, with_theta, with_time : bool
        Whether the state carries z (backsolve), a_θ per sample (``vjp_per_sample``) and a_t
        (``time_gradients``).

    Attributes
    ----------
    z, a, theta : slice
        The columns of each part in the state (an empty slice when absent).
    width : int
    keep : ndarray of int
        The state's columns in the full layout ``[z] a a_θ a_t`` that tolerances and norm
        masks are given in (z present there only ``with_z``).
    """

    def __init__(self, D, P, with_z, with_theta, with_time):
        Z = D if with_z else 0
        self.with_z, self.with_theta, self.with_time = with_z, with_theta, with_time
        self.z = slice(0, Z)
        self.a = slice(Z, Z + D)
        self.theta = slice(Z + D, Z + D + (P if with_theta else 0))
        self.width = self.theta.stop + (1 if with_time else 0)
        full = np.arange(Z + D + P + 1)
        self.keep = np.concatenate([full[:Z + D]] + ([full[Z + D:Z + D + P]] if with_theta
                                                     else [])
                                   + ([full[-1:]] if with_time else []))

    def norm_parts(self, seminorm):
        """The error norm's parts [z], [a], [a_θ], [a_t] (``kernels.numbers.adjoint_parts``)."""
        Z, D = self.z.stop, self.a.stop - self.a.start
        return adjoint_parts(Z, D, self.theta.stop - self.theta.start, self.with_time, seminorm)

    def select(self, x):
        """A tolerance (scalar or array in the full layout) or mask, for the state."""
        return x if x is None or np.ndim(x) == 0 else np.asarray(x)[self.keep]


def adjoint_dynamics(f, squeeze, layout, z_source=None, args_at=None):
    """Right-hand side of the backward state: ``ev(t (n,), s (n, W), rows (n,)) → ds/dt``.

        dz/dt = f(t, z) (backsolve),  da/dt = −aᵀ∂f/∂z,  da_θ/dt = −aᵀ∂f/∂θ,  da_t/dt = −aᵀ∂f/∂t,

    with z read from the state, or from ``z_source.z(t, rows)``. One call of the field's vjp
    (and, for backsolve, of the field) for all n rows, with the field's extra arguments of
    those rows (``args_at``, ``pyode.protocol.row_args``; None: none).
    """
    ev = batch_field(f, squeeze, None, args_at)
    vjp = vjp_rows(f, squeeze, layout.with_theta, args_at)

    def ev_adjoint(t, s, rows):
        z = s[:, layout.z] if z_source is None else z_source.z(t, rows)
        vy, vth, vt = vjp(t, z, s[:, layout.a], rows)
        parts = [ev(t, z, rows)] if layout.with_z else []
        parts.append(-vy)
        if layout.with_theta:
            parts.append(-vth)
        if layout.with_time:
            parts.append(-vt[:, None])
        return np.concatenate(parts, axis=1)

    return ev_adjoint


def adjoint_solve(f, ys, gs, t_out, tab, rtol, atol, opts, squeeze, seminorm=False,
                  time_gradients=True, z_source=None, args=()):
    """Integrate the backward state over all output intervals at once (module docstring).

    Parameters
    ----------
    f : vector field
        With ``vjp`` (README, "The vector-field protocol").
    ys, gs : ndarray, shape (T, B, D)
        Forward outputs and dL/dy at the output times.
    t_out : ndarray, shape (T,)
    tab : ButcherTableau
        The method of the forward solve; the backward solve uses it too.
    rtol : float
    atol : float or ndarray
        In the full layout ``[z] a a_θ a_t`` (z only for backsolve; the a_θ entries are unused
        without ``vjp_per_sample``).
    opts : dict
        ``check_options``'s: ``first_step``, ``max_num_steps`` or ``step_size``.
    squeeze : bool
        A 1-D problem (B = 1): the field is called with 1-D arguments.
    seminorm : bool
        The error norm controls z and a only (Kidger, Chen & Lyons 2021); by default each
        part of the state by its own RMS norm, the largest of them (``Layout.norm_parts``).
    time_gradients : bool
        Carry a_t and return dL/dt, or neither (``dLdt`` is None).
    z_source : object, optional
        None for backsolve (z in the state). Otherwise where z(t) comes from: ``z(t (n,),
        rows (n,)) → (n, D)`` for the adjoint's stages, ``stage_z(t, rows)`` for the
        quadrature's (the same points, possibly remembered), ``on_step`` (the integrators'
        hook, after the quadrature's) and ``nfev`` (B,), the evaluations it made.
    args : tuple
        Extra arguments of ``f(t, y, *args)`` and of its vjp (``pyode.protocol.row_args``:
        arrays with one entry per row are sliced to the rows of each call).

    Returns
    -------
    a : ndarray (B, D)             dL/dy0 per sample
    a_theta : ndarray (P,)         dL/dθ summed over the samples
    dLdt : ndarray (T,) or None    dL/dt_i summed over the samples
    stats : dict of ndarray (B,)   nfev (g·f, backward and z_source evaluations; not the
                                   quadrature's vjp calls), n_accepted, n_rejected
    states : ndarray (T, B, W)     the backward state at t_{T-1}, …, t_0, before each jump

    Raises
    ------
    SolverError
        When the backward integration fails; its message says it comes from the backward
        (adjoint) solve.
    """
    T, B, D = ys.shape
    P = n_params(f)
    dtype = ys.dtype
    layout = Layout(D, P, z_source is None, has_per_sample_vjp(f), time_gradients)
    args_at = row_args(args, None if squeeze else B)
    ev = batch_field(f, squeeze, None, args_at)
    stats = {k: np.zeros(B, dtype=np.int64) for k in ("nfev", "n_accepted", "n_rejected")}

    # The jumps at the output times, kernels.step.adjoint_jump (Alg. 1, App. C): z restarts
    # from y_i (backsolve), a → a + g_i and, with a_t, dL/dt_i = g_i·f(t_i, y_i) for i ≥ 1 and
    # a_t → a_t − dL/dt_i. f(t_i, y_i) is evaluated here, once per output time for the batch.
    cst = StepNumbers(tab, dtype).cst
    a0 = layout.a.start
    i_t = layout.width - 1 if time_gradients else -1
    f_at = np.zeros_like(ys) if time_gradients else ys       # (not read without a_t)
    every_row = np.arange(B)
    for i in range(1, T if time_gradients else 1):
        f_at[i] = ev(np.full(B, t_out[i]), ys[i], every_row)
        stats["nfev"] += 1
    gf = np.zeros((T, B))

    def apply_jump(i, rows, s, i_t):
        g_f = np.empty(rows.size, dtype=dtype)
        jump_rows(s, a0, i_t, _as_rows(ys[i, rows]), _as_rows(gs[i, rows]),
                  _as_rows(f_at[i, rows]), cst, g_f)
        gf[i, rows] = g_f

    state = np.zeros((B, layout.width), dtype=dtype)      # a_θ(t_{T-1}) = 0
    apply_jump(T - 1, every_row, state, i_t)              # the start: a = g_{T-1}, ...

    def jump(k, rows, s):
        """At t_i, i = T − 1 − k (backward), the jump of :func:`kernels.step.adjoint_jump`."""
        s = _as_rows(s).copy()
        apply_jump(T - 1 - k, rows, s, i_t)
        return s

    quadrature = None
    on_step = None if z_source is None else z_source.on_step
    if not layout.with_theta:
        if z_source is None:
            def stage_point(t_j, Y_j, rows):
                return Y_j[:, layout.z], Y_j[:, layout.a]
        else:
            def stage_point(t_j, Y_j, rows):
                return z_source.stage_z(t_j, rows), Y_j[:, layout.a]
        quadrature = ParameterQuadrature(vjp_rows(f, squeeze, False, args_at), tab, stage_point,
                                         P, dtype)
        on_step = quadrature if z_source is None else _chain(quadrature, z_source.on_step)

    ev_adjoint = adjoint_dynamics(f, squeeze, layout, z_source, args_at)
    t_back = t_out[::-1].copy()
    try:
        if tab.adaptive:
            out, st, _ = integrate_adaptive(ev_adjoint, state, t_back, tab, rtol,
                                            layout.select(atol), opts.get("first_step"),
                                            opts["max_num_steps"], layout.norm_parts(seminorm),
                                            on_step, jump)
        else:
            out, st = integrate_fixed(ev_adjoint, state, t_back, tab, opts["step_size"],
                                      on_step, jump)
    except SolverError as exc:
        raise in_backward_solve(exc, TIME_GRADIENT_NOTE if time_gradients else "") from exc
    for k in stats:
        stats[k] += st[k]
    if z_source is not None:
        stats["nfev"] += z_source.nfev
    end = out[-1].copy()
    apply_jump(0, every_row, end, -1)                     # dL/dy_0 = a(t_0) + g_0
    a = end[:, layout.a]
    a_theta = end[:, layout.theta].sum(axis=0) if layout.with_theta else quadrature.total
    dLdt = None
    if time_gradients:
        dLdt = gf.sum(axis=1)
        dLdt[0] = end[:, -1].astype(np.float64).sum()
    return a, a_theta, dLdt, stats, out


def _chain(first, second):
    """An ``on_step`` hook calling ``first`` then ``second``."""
    def on_step(rows, t, h, t_new, y, K):
        first(rows, t, h, t_new, y, K)
        second(rows, t, h, t_new, y, K)
    return on_step
