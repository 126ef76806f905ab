"""Gradients of a loss on ``odeint``'s output: ``odeint_adjoint`` and its four methods.

``odeint_adjoint(f, y0, t, ..., adjoint_method=...)`` solves like ``odeint`` and returns a
``vjp(grad_ys)`` closure. The method decides how the gradient is computed (README, "Gradient
methods"; Ma et al. 2018, arXiv:1812.01892, compare them):

================  ======================================================  ================
adjoint_method    what                                                    memory (steps N)
================  ======================================================  ================
``"backsolve"``   Chen et al. (2018), Alg. 1: re-integrate y backward      O(1)
                  with the adjoint (this module). Unstable on contracting
                  dynamics: warns (:class:`AdjointReconstructionWarning`)
``"checkpoint"``  the adjoint against the forward y(t), replayed from      O(N·(3 + D/k))
                  checkpoints (``pyode.checkpoint``)
``"discrete"``    reverse mode through the RK steps taken: the exact       O(N·(s + 1)·D)
                  derivative of the computed solution (``pyode.discrete``)
``"forward"``     forward sensitivity S = ∂y/∂(y0, θ) integrated with y    O(T·D·(D + P))
                  (``pyode.forward_sensitivity``); for few parameters
================  ======================================================  ================

The backsolve adjoint (Chen, Rubanova, Bettencourt & Duvenaud 2018, "Neural Ordinary
Differential Equations", arXiv:1806.07366, Algorithm 1 and Appendix C). For a loss
L(y(t_0), …, y(t_N)) the adjoint a(t) = dL/dy(t) obeys, between output times,

    da/dt = −a(t)ᵀ ∂f/∂y,                                    (Chen et al., eq. 4)

and the parameter and time gradients are integrals along the same backward solve:

    a_θ(t) : da_θ/dt = −a(t)ᵀ ∂f/∂θ,   dL/dθ = a_θ(t_0)        (eq. 5)
    a_t(t) : da_t/dt = −a(t)ᵀ ∂f/∂t                             (App. C)

The state z(t) is not stored: it is re-integrated backward together with a, a_θ, a_t as one
augmented state ``[z, a, a_θ, a_t]`` (Algorithm 1). At each output time t_i the loss's own
gradient dL/dy(t_i) is added to a, and z is restarted from the stored forward value y(t_i);
the gap between the two, in units of the adjoint tolerance, is the reconstruction error that
the backsolve warning watches.

Design decision (optimise-then-discretise): "backsolve", "checkpoint" and "forward" give the
gradient of the *continuous* solution, computed to the tolerances; "discrete" gives the exact
derivative of the numerical forward solution (discretise-then-optimise, as backprop through
the solver computes). The two differ by an amount of the order of the tolerances.
torchdiffeq's ``odeint_adjoint`` and diffrax's ``BacksolveAdjoint`` default to backsolve; we
keep it as the default for its constant memory and warn where it fails.

Seminorm (``adjoint_options={"norm": "seminorm"}``, Kidger, Chen & Lyons 2021,
arXiv:2009.09457, §3): a_θ and a_t are quadratures — nothing else reads them — so their local
error cannot spoil the rest of the solve and need not limit the step. The seminorm leaves them
out of the backward error norm (backsolve: the norm over [z, a]; checkpoint: over a). The
default norm ("rms") controls every part of the state by its own RMS and takes the largest
(``kernels.step.scaled_norm``), so the P quadratures never dilute the control of z and a and
the seminorm takes at most the steps of the default (on the spiral MLP: the same to 0.7 %
fewer, ``examples/benchmarks/results/adjoint_norms.json``).

Time gradients. With g_i = ∂L/∂y(t_i): dL/dt_i = g_i · f(t_i, y(t_i)) for i ≥ 1 (moving an
output time moves only that output). For t_0 the whole trajectory moves:
dL/dt_0 = −a(t_0⁺) · f(t_0, y_0), with a(t_0⁺) the adjoint before g_0 is added. Along the
backward solve a_t(t) = −a(t)ᵀ f(t, z(t)) is carried as the integral of App. C: it starts at
−g_N · f(t_N, y_N), jumps by −g_i · f(t_i, y_i) when g_i is added, and a_t(t_0) = dL/dt_0.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike

from .backward import TIME_GRADIENT_NOTE, adjoint_solve
from .checkpoint import checkpoint_pass
from .discrete import discrete_pass
from .errors import AdjointReconstructionWarning, NonFiniteError
from .forward_sensitivity import sensitivity_solve, sensitivity_vjp
from .protocol import VectorField, n_params, require
from .protocol import row_args
from .kernels.rows import gap_rows
from .solvers import (SolveInfo, StepNumbers, _odeint, batch_field, check_args,
                      check_attainable, check_field_width, check_options, check_step_count,
                      check_times, check_tolerances, check_y0, integrate, is_device_array,
                      kernel_module, keyword_names)
from .suggest import adjoint_method_hint, unknown_keywords_error
from .tableaus import get_tableau
from .trajectory import StepRecorder

#: The gradient methods of :func:`odeint_adjoint`, name → one line (module docstring).
ADJOINT_METHODS = {
    "backsolve": "Chen et al. (2018): y re-integrated backward with the adjoint; O(1) memory",
    "checkpoint": "adjoint against the forward y(t) replayed from stored states; stable",
    "discrete": "reverse mode through the Runge-Kutta steps taken: the discrete gradient",
    "forward": "forward sensitivity dS/dt = f_y S + f_theta; cheap for few parameters",
}

#: ``adjoint_options`` keys each method accepts, with their defaults.
ADJOINT_OPTIONS = {
    "backsolve": {"norm": "rms"},
    "checkpoint": {"norm": "rms", "checkpoint_every": 1},
    "discrete": {},
    "forward": {},
}

#: Members of the vector-field protocol each method calls, beyond ``__call__`` and ``params``.
FIELD_MEMBERS = {
    "backsolve": ("vjp",),
    "checkpoint": ("vjp",),
    "discrete": ("vjp",),
    "forward": ("jvp", "jvp_params"),
}

#: Backward error norms: the largest of the RMS norms of the parts z, a, a_θ, a_t of the
#: augmented state, or the seminorm of Kidger et al. (2021) that leaves a_θ and a_t out.
NORMS = ("rms", "seminorm")

#: Warn when the backsolve reconstruction of y misses the stored forward state by more than
#: this many times (atol + rtol·|y|). A healthy backward solve errs by the forward and backward
#: global errors, a few times the tolerance (the global-error constant of the solver tests is
#: below 100); an unstable one by exp(∫|λ|dt) times it, orders of magnitude more. Adaptive
#: methods only: a fixed-step solve errs by O(h^p), which the tolerances say nothing about.
RECONSTRUCTION_WARN_FACTOR = 100.0


@dataclass
class AdjointGradients:
    """Gradients returned by the ``vjp`` of :func:`odeint_adjoint`.

    Attributes
    ----------
    y0 : ndarray, shape of y0
        dL/dy0.
    params : ndarray, shape (P,)
        dL/dθ, summed over the samples of a batch.
    t : ndarray, shape (T,), or None
        dL/dt_i for every output time (units: loss per unit of t), summed over the samples;
        None with ``time_gradients=False``.
    info : SolveInfo
        Statistics of the backward pass, per sample: its field evaluations (``nfev``; for
        "discrete" the vjp evaluations, for "forward" the T evaluations of f for dL/dt) and
        the steps of its backward solve (summed over the intervals; "discrete": the steps
        reversed; "forward": none).
    forward_info : SolveInfo or None
        Statistics of the forward solve ("forward": of the augmented system [y, S]).
    method : str
        The ``adjoint_method`` that computed them.
    """

    y0: np.ndarray
    params: np.ndarray
    t: np.ndarray
    info: SolveInfo
    forward_info: SolveInfo = None
    method: str = "backsolve"


def odeint_adjoint(f: VectorField, y0: ArrayLike, t: ArrayLike, method: str = "dopri5",
                   rtol: float = 1e-7, atol: ArrayLike = 1e-9, adjoint_rtol: float | None = None,
                   adjoint_atol: ArrayLike | None = None, options: dict[str, Any] | None = None,
                   backend: str = "auto", adjoint_method: str = "backsolve",
                   adjoint_options: dict[str, Any] | None = None, time_gradients: bool = True,
                   args: tuple = (), **unknown: Any
                   ) -> tuple[np.ndarray, Callable[[ArrayLike], AdjointGradients]]:
    """Solve like :func:`pyode.odeint` and return a function computing gradients.

    Parameters
    ----------
    f : vector field
        Must provide ``__call__``, ``params`` and ``vjp`` (``adjoint_method="forward"``:
        ``jvp`` and ``jvp_params`` instead of ``vjp``) — README, "vector-field protocol".
    y0, t, method, rtol, atol, options, backend
        As in :func:`pyode.odeint`. nn fields run on the Numba kernels for "backsolve" and
        "checkpoint" (its kernel hook: ``pyode.checkpoint``); the other methods run on the
        NumPy path.
    adjoint_rtol, adjoint_atol : float, optional
        Tolerances of the backward solve ("backsolve", "checkpoint"; default: ``rtol`` and
        ``atol``, an array ``atol`` defaulting to its smallest entry). The error norm is the
        largest of the RMS norms of the parts of a sample's augmented state, [z], [a], [a_θ],
        [a_t] for backsolve and [a], [a_θ], [a_t] for checkpoint; an array ``adjoint_atol`` is given in
        the [z, a, a_θ, a_t] layout (checkpoint uses its last D + P + 1 entries). "discrete"
        and "forward" have no backward solve and reject them.
    adjoint_method : {"backsolve", "checkpoint", "discrete", "forward"}
        How the gradient is computed (module docstring, ``ADJOINT_METHODS``). Default
        "backsolve", the adjoint of Chen et al.; it warns with
        :class:`pyode.AdjointReconstructionWarning` when its backward reconstruction of y
        misses the forward solution by more than ``RECONSTRUCTION_WARN_FACTOR`` × the
        adjoint tolerance.
    adjoint_options : dict, optional
        Per method (``ADJOINT_OPTIONS``): ``"norm"`` ("backsolve", "checkpoint"): ``"rms"``
        (default) or ``"seminorm"``; ``"checkpoint_every"`` ("checkpoint"): store the state
        every k-th accepted step (int ≥ 1, default 1).
    time_gradients : bool
        Compute dL/dt (default True). With False, ``vjp(...).t`` is None and nothing of the
        time gradient is computed: "backsolve" and "checkpoint" carry no a_t channel in their
        backward error control (cheaper, and a ∂f/∂t that is infinite at t0, as for
        y' = p·√t, no longer matters) and skip the evaluations of g_i · f(t_i, y_i);
        "discrete" leaves out the cotangents of the step times and sizes (the t-part of the
        field's vjp is not read); "forward" skips its T evaluations of f.
    args : tuple, optional
        Extra arguments of the field, as in :func:`pyode.odeint` (default ``()``), handed to
        ``f(t, y, *args)`` and after the field's own arguments to ``f.vjp(t, y, v, *args)``,
        ``f.vjp_per_sample(t, y, v, *args)``, ``f.jvp(t, y, u, *args)`` and
        ``f.jvp_params(t, y, w, *args)``; for a batch ``y0`` (B, D) an ndarray with leading
        axis of length B is sliced to the rows of each call, in the backward solves too. They
        are constants: no gradient with respect to them is computed. Not for ``nn`` fields.

    Returns
    -------
    ys : ndarray, shape (T, *y0.shape)
    vjp : callable
        ``vjp(grad_ys)`` with ``grad_ys = dL/dys`` (shape of ys) returns
        :class:`AdjointGradients` with ``y0`` (shape of y0), ``params`` (P,), ``t`` (T,),
        ``info`` (backward statistics) and ``forward_info``. It may be called any number of
        times; it works from its own copy of the forward solution (editing the returned ``ys``
        changes nothing) and raises ValueError if ``f.params`` changed since the solve. The
        gradient is that of the continuous solution for "backsolve" and "checkpoint" (to the
        adjoint tolerances), of the numerical one for "discrete".

    Raises
    ------
    ValueError
        Bad arguments (as ``odeint``); an unknown ``adjoint_method`` (the message lists the
        valid ones); an ``adjoint_options`` key unknown or not taken by the method, or a bad
        value (the message names the key); adjoint tolerances given to "discrete"/"forward";
        ``grad_ys`` of the wrong shape or with NaN/inf.
    TypeError
        A field without the members the method needs (the message names them),
        ``adjoint_options`` not a dict, ``args`` not a tuple or given to an nn field, or a
        keyword pyode does not take (for torchdiffeq's ``adjoint_params`` and the like it says
        what pyode does instead).
    SolverError
        When the forward or the backward integration fails.

    Warns
    -----
    AdjointReconstructionWarning
        "backsolve" with an adaptive method only, from ``vjp``: the backward reconstruction of
        y is off (see above).

    References
    ----------
    Chen et al. (2018), arXiv:1806.07366, Algorithm 1 and Appendix C.
    Kidger, Chen & Lyons (2021), "'Hey, that's not an ODE': Faster ODE Adjoints via
    Seminorms", arXiv:2009.09457.
    Ma et al. (2018), arXiv:1812.01892 (the methods compared).
    """
    if unknown:
        raise unknown_keywords_error("odeint_adjoint", unknown, keyword_names(odeint_adjoint))
    check_args(args, f)
    aopts = check_adjoint_method(adjoint_method, adjoint_options)
    if not isinstance(time_gradients, (bool, np.bool_)):
        raise TypeError(f"time_gradients must be True or False, got {time_gradients!r}")
    aopts["time_gradients"] = bool(time_gradients)
    if backend == "cuda" and adjoint_method != "backsolve":
        raise ValueError(f"adjoint_method={adjoint_method!r} has no CUDA kernel (backend='cuda' "
                         "runs 'backsolve'); use backend='numba' or 'auto' for it")
    if is_device_array(y0) and adjoint_method != "backsolve":
        raise TypeError(f"y0 is a CUDA device array, which adjoint_method='backsolve' with "
                        f"backend='cuda' takes; adjoint_method={adjoint_method!r} runs on the "
                        "host: pass y0.copy_to_host()")
    require(f, FIELD_MEMBERS[adjoint_method], f"odeint_adjoint(adjoint_method={adjoint_method!r})")
    if adjoint_method in ("discrete", "forward") and (adjoint_rtol is not None
                                                        or adjoint_atol is not None):
        raise ValueError(f"adjoint_method={adjoint_method!r} has no backward solve, so "
                         "adjoint_rtol/adjoint_atol do not apply; leave them out (its accuracy "
                         "is set by rtol/atol of the forward solve)")
    run = _RUNNERS[adjoint_method]
    ys, forward_info, backward, squeeze = run(
        f, y0, t, method, rtol, atol, (adjoint_rtol, adjoint_atol), options, backend, aopts,
        args)
    ys_out = ys[:, 0] if squeeze else ys
    if not is_device_array(ys_out):
        ys_out = ys_out.copy()       # the user's copy: editing it cannot change the gradient
    tab = get_tableau(method)
    t_arr0 = float(check_times(t)[0])
    params_at_solve = np.array(getattr(f, "params", np.zeros(0)), copy=True)

    def vjp(grad_ys):
        if not np.array_equal(np.asarray(getattr(f, "params", np.zeros(0))), params_at_solve):
            raise ValueError("f.params changed between odeint_adjoint and vjp: the gradient "
                             "would mix two fields. Call vjp before updating the parameters "
                             "(or solve again)")
        if is_device_array(grad_ys) or is_device_array(ys):
            g = _check_device_grad(grad_ys, ys_out)
        else:
            g = check_grad_ys(grad_ys, ys_out.shape, ys.dtype)
        gb = g[:, None] if squeeze else g
        # A gradient beyond the largest float (y0 = [1.7e308, 0], dL/dθ = ∫ a y dt) overflows
        # in the quadratures: detected below as a NonFiniteError, not numpy's warning.
        with np.errstate(over="ignore", invalid="ignore"):
            a, a_theta, dLdt, stats = backward(gb)
        _raise_if_gradient_nonfinite(a, a_theta, dLdt, t_arr0, stats)
        if squeeze:
            a = a[0]
            stats = {k: int(v[0]) for k, v in stats.items()}
        return AdjointGradients(y0=a, params=a_theta, t=dLdt if time_gradients else None,
                                info=SolveInfo(method=tab.name, **stats),
                                forward_info=forward_info, method=adjoint_method)

    return ys_out, vjp


def _raise_if_gradient_nonfinite(a, a_theta, dLdt, t0, stats):
    """NonFiniteError naming the part of the gradient that is NaN/inf (host arrays only)."""
    parts = (("dL/dy0", a), ("dL/dθ", a_theta), ("dL/dt", dLdt))
    bad = [name for name, x in parts if x is not None and isinstance(x, np.ndarray)
           and not np.all(np.isfinite(x))]
    if not bad:
        return
    nfev = int(np.max(stats["nfev"])) if "nfev" in stats else 0
    if bad == ["dL/dt"]:
        # dL/dy0 and dL/dθ are finite: more likely a ∂f/∂t that is infinite or huge somewhere
        # (y' = p·√t at t = 0) than an overflow, which would spoil the others too.
        raise NonFiniteError("The gradient dL/dt is not finite while dL/dy0 and dL/dθ are; "
                             f"{TIME_GRADIENT_NOTE}", t0, 0.0, nfev)
    raise NonFiniteError(f"The gradient {', '.join(bad)} is not finite (it overflows the "
                         "largest float: the state or dL/dys is too large; rescale the "
                         "problem)", t0, 0.0, nfev)


def _check_device_grad(grad_ys, ys):
    """grad_ys for a CUDA forward solve: a device or host array of the shape of ys. Device
    values stay on the device and are not inspected."""
    if tuple(grad_ys.shape) != tuple(ys.shape):
        raise ValueError(f"grad_ys must have the shape of ys {tuple(ys.shape)}, "
                         f"got {tuple(grad_ys.shape)}")
    if is_device_array(grad_ys):
        return grad_ys
    return check_grad_ys(grad_ys, tuple(ys.shape), np.dtype(ys.dtype))


def check_grad_ys(grad_ys, shape, dtype):
    """Validate the cotangent dL/dys handed to ``vjp``: real, finite, of the shape of ys.

    Raises
    ------
    ValueError
        A ragged sequence, another shape, NaN/inf (or values beyond the range of ``dtype``).
    TypeError
        Complex, object or string values (complex ones are not silently made real).
    """
    try:
        raw = np.asarray(grad_ys)
    except ValueError:                        # numpy's "inhomogeneous shape"
        raise ValueError(f"grad_ys must be an array of the shape of ys {shape} (dL/dys), got "
                         "a ragged (nested) sequence") from None
    if raw.dtype.kind not in "biuf":
        fix = (": pass the real part if the imaginary one is zero" if raw.dtype.kind == "c"
               else "")
        raise TypeError(f"grad_ys must hold real numbers (dL/dys, the shape of ys {shape}), "
                        f"got dtype {raw.dtype}{fix}")
    if raw.shape != tuple(shape):
        raise ValueError(f"grad_ys must have the shape of ys {tuple(shape)}, got {raw.shape}")
    with np.errstate(over="ignore"):
        g = raw.astype(dtype)
    if not np.all(np.isfinite(g)):
        raise ValueError(f"grad_ys contains NaN or inf (or values beyond the range of {dtype})")
    return g


def check_adjoint_method(adjoint_method, adjoint_options):
    """Validate ``adjoint_method`` and ``adjoint_options``; return the options with defaults.

    Raises
    ------
    ValueError
        Unknown method (lists the valid ones); a key unknown or not taken by this method, or
        a bad value (names the key and the fix).
    TypeError
        ``adjoint_options`` is not a dict.
    """
    if not isinstance(adjoint_method, str) or adjoint_method not in ADJOINT_METHODS:
        hint = adjoint_method_hint(adjoint_method, ADJOINT_METHODS)
        raise ValueError(f"adjoint_method={adjoint_method!r} is not known"
                         + (f" ({hint})" if hint else "")
                         + f"; valid methods: {', '.join(ADJOINT_METHODS)}")
    if not isinstance(adjoint_options, (dict, type(None))):
        raise TypeError("adjoint_options must be a dict or None, got "
                        f"{type(adjoint_options).__name__}")
    valid = ADJOINT_OPTIONS[adjoint_method]
    out = dict(valid)
    for key, value in (adjoint_options or {}).items():
        if key not in valid:
            takers = [m for m, keys in ADJOINT_OPTIONS.items() if key in keys]
            where = (f"it applies to adjoint_method={' or '.join(map(repr, takers))}" if takers
                     else "no method takes it")
            raise ValueError(f"adjoint_options key {key!r} is not valid for adjoint_method="
                             f"{adjoint_method!r} ({where}); valid keys for "
                             f"{adjoint_method!r}: {', '.join(valid) or 'none'}")
        out[key] = value
    if "norm" in out and out["norm"] not in NORMS:
        raise ValueError(f"adjoint_options['norm']={out['norm']!r} is not known; valid norms: "
                         f"{', '.join(NORMS)}")
    every = out.get("checkpoint_every", 1)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError("adjoint_options['checkpoint_every'] must be a positive int (store "
                         f"the state every k-th accepted step), got {every!r}")
    return out


# ---------------------------------------------------------------------------------------------
# One runner per method: forward solve, and a backward(gb) closure
#   runner(..., args) -> (ys (T, B, D), forward SolveInfo, backward, squeeze)
#   backward(gb (T, B, D)) -> (a (B, D), a_theta (P,) summed over the samples, dLdt (T,),
#                              stats dict of (B,))
# ---------------------------------------------------------------------------------------------

def _run_backsolve(f, y0, t, method, rtol, atol, adjoint_tols, options, backend, aopts, args):
    ys, info = _odeint(f, y0, t, method, rtol, atol, options, backend, args=args)
    tab = get_tableau(method)
    t_arr = np.asarray(t, dtype=np.float64)
    squeeze = ys.ndim == 2
    yb = ys[:, None] if squeeze else ys                 # (T, B, D)
    B, D = yb.shape[1:]
    W = 2 * D + n_params(f) + 1
    a_rtol, a_atol = _adjoint_tolerances(rtol, atol, adjoint_tols, W)
    opts = check_options(options, tab)
    seminorm = aopts["norm"] == "seminorm"

    def backward(gb):
        kernels = kernel_module(f, backend)
        if kernels is not None:
            kw = {"seminorm": True} if seminorm else {}
            if not aopts["time_gradients"]:
                kw["time_gradients"] = False    # a_t leaves the kernels' error norm
            if is_device_array(yb) or is_device_array(gb):
                kw["on_device"] = True          # backend='cuda': keep dL/dy0 on the device
            a, a_theta, dLdt, stats, recon = kernels.adjoint_nn(f, yb, gb, t_arr, tab, a_rtol,
                                                                a_atol, opts, **kw)
            a_theta = a_theta.sum(axis=0)                       # per sample → summed
        else:
            a, a_theta, dLdt, stats, recon = backward_pass(f, yb, gb, t_arr, tab, a_rtol, a_atol,
                                                           opts, squeeze, seminorm,
                                                           aopts["time_gradients"], args)
        if tab.adaptive:
            _warn_if_reconstruction_failed(recon)
        return a, a_theta, dLdt, stats

    return yb, _info(info, tab), backward, squeeze


def _run_checkpoint(f, y0, t, method, rtol, atol, adjoint_tols, options, backend, aopts, args):
    prob = _check_problem(f, y0, t, method, rtol, atol, options)
    D, P = prob.yb.shape[1], n_params(f)
    kernels = kernel_module(f, backend)
    every = int(aopts["checkpoint_every"])
    a_rtol, a_atol = _adjoint_tolerances(rtol, atol, adjoint_tols, 2 * D + P + 1)
    a_atol = a_atol if np.ndim(a_atol) == 0 else a_atol[D:]   # drop the z channel
    seminorm = aopts["norm"] == "seminorm"
    if kernels is not None and hasattr(kernels, "checkpoint_nn") \
            and hasattr(kernels, "checkpoint_forward_nn"):       # the hook of pyode.checkpoint
        ys, stats, record = kernels.checkpoint_forward_nn(f, prob.yb, prob.t, prob.tab,
                                                          prob.rtol, prob.atol, prob.opts,
                                                          every)

        def backward(gb):
            a, a_theta, dLdt, stats = kernels.checkpoint_nn(
                f, ys, gb, prob.t, prob.tab, record, a_rtol, a_atol, prob.opts, seminorm,
                time_gradients=aopts["time_gradients"])
            return a, a_theta.sum(axis=0), dLdt, stats       # per sample → summed
    else:
        record = StepRecorder(prob.yb.shape[0], every=every)
        ys, stats = _solve_numpy(f, prob, record, args)

        def backward(gb):
            return checkpoint_pass(f, ys, gb, prob.t, prob.tab, record, a_rtol, a_atol,
                                   prob.opts, seminorm, squeeze=prob.squeeze,
                                   time_gradients=aopts["time_gradients"], args=args)

    return ys, _info(stats, prob.tab, prob.squeeze), backward, prob.squeeze


def _run_discrete(f, y0, t, method, rtol, atol, adjoint_tols, options, backend, aopts, args):
    prob = _check_problem(f, y0, t, method, rtol, atol, options)
    kernel_module(f, backend)                 # validates backend; this method runs on NumPy
    record = StepRecorder(prob.yb.shape[0], stages=True)
    ys, stats = _solve_numpy(f, prob, record, args)

    def backward(gb):
        return discrete_pass(f, ys, gb, prob.t, prob.tab, record, squeeze=prob.squeeze,
                             time_gradients=aopts["time_gradients"], args=args)

    return ys, _info(stats, prob.tab, prob.squeeze), backward, prob.squeeze


def _run_forward(f, y0, t, method, rtol, atol, adjoint_tols, options, backend, aopts, args):
    prob = _check_problem(f, y0, t, method, rtol, atol, options)
    kernel_module(f, backend)                 # validates backend; this method runs on NumPy
    ys, S, stats = sensitivity_solve(f, prob.yb, prob.t, prob.tab, prob.rtol, prob.atol,
                                     prob.opts, prob.squeeze, args)

    def backward(gb):
        a, a_theta, dLdt, stats = sensitivity_vjp(f, ys, S, gb, prob.t, prob.squeeze, args,
                                                  aopts["time_gradients"])
        return a, a_theta.sum(axis=0), dLdt, stats             # per sample → summed

    return ys, _info(stats, prob.tab, prob.squeeze), backward, prob.squeeze


_RUNNERS = {"backsolve": _run_backsolve, "checkpoint": _run_checkpoint,
            "discrete": _run_discrete, "forward": _run_forward}


def _check_problem(f, y0, t, method, rtol, atol, options):
    """Validate the arguments of a NumPy-path solve (as ``odeint`` does)."""
    if not callable(f):
        raise TypeError(f"f must be a vector field (callable as f(t, y)), got {type(f).__name__}")
    tab = get_tableau(method)
    t_arr = check_times(t)
    y = check_y0(y0)
    squeeze = y.ndim == 1
    yb = y[None] if squeeze else y
    rtol, atol = check_tolerances(rtol, atol, yb.shape[1])
    check_attainable(rtol, atol, yb)
    opts = check_options(options, tab)
    check_field_width(f, yb.shape[1])
    check_step_count(t_arr, opts)
    return SimpleNamespace(tab=tab, t=t_arr, yb=yb, squeeze=squeeze, rtol=rtol, atol=atol,
                           opts=opts)


def _solve_numpy(f, prob, on_step, args=()):
    """The NumPy forward solve of ``odeint``, with an ``on_step`` hook and the field's extra
    arguments ``args``."""
    ev = batch_field(f, prob.squeeze, prob.yb.shape,
                     row_args(args, None if prob.squeeze else prob.yb.shape[0]))
    return integrate(ev, prob.yb, prob.t, prob.tab, prob.rtol, prob.atol, prob.opts,
                     on_step=on_step)


def _info(stats, tab, squeeze=False):
    """A SolveInfo from a stats dict (ints for a 1-D problem); a SolveInfo passes through."""
    if isinstance(stats, SolveInfo):
        return stats
    if squeeze:
        stats = {k: int(v[0]) for k, v in stats.items()}
    return SolveInfo(method=tab.name, **stats)


def _adjoint_tolerances(rtol, atol, adjoint_tols, W):
    """The backward solve's (rtol, atol), validated for a state of W components."""
    adjoint_rtol, adjoint_atol = adjoint_tols
    a_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    a_atol = float(np.min(atol)) if adjoint_atol is None else adjoint_atol
    return check_tolerances(a_rtol, a_atol, W, "adjoint_rtol/adjoint_atol")


def _warn_if_reconstruction_failed(recon):
    """Warn (AdjointReconstructionWarning) when the backsolve reconstruction is off."""
    recon = np.asarray(recon)
    if recon.size and np.max(recon) > RECONSTRUCTION_WARN_FACTOR:
        b = int(np.argmax(recon))
        where = f" (sample {b})" if recon.size > 1 else ""
        warnings.warn(AdjointReconstructionWarning(
            "backsolve adjoint: re-integrating y backward missed the stored forward solution "
            f"by {recon[b]:.3g} x (atol + rtol*|y|){where}, above the threshold "
            f"{RECONSTRUCTION_WARN_FACTOR:g}. The dynamics are probably contracting "
            "(dissipative), where the backward reconstruction is unstable and the gradients "
            "can be wrong; use adjoint_method='checkpoint' (or 'discrete' / 'forward')"),
            stacklevel=4)


def backward_pass(f, yb, gb, t, tab, rtol, atol, opts, squeeze, seminorm=False,
                  time_gradients=True, args=()):
    """The backsolve adjoint (Chen et al., Alg. 1): z integrated backward with [a, a_θ, a_t].

    :func:`pyode.backward.adjoint_solve` with z in the state, and the reconstruction check:
    at every output time the z integrated backward is compared with the stored forward y.

    Parameters
    ----------
    yb, gb : ndarray, shape (T, B, D)
        Forward outputs and dL/dy at the output times.
    t : ndarray, shape (T,)
    rtol : float
    atol : float or ndarray, shape (2D + P + 1,)
        In the layout [z, a, a_θ, a_t] (the a_θ entries are unused without ``vjp_per_sample``).
    seminorm : bool
        Control z and a only (default: each of z, a, a_θ, a_t by its own RMS norm, the
        largest of them; ``kernels.step.scaled_norm``).
    time_gradients : bool
        Carry a_t and return dL/dt (True), or neither (``dLdt`` is None).
    args : tuple
        Extra arguments of the field and its vjp (``pyode.backward.adjoint_solve``).

    Returns
    -------
    a : ndarray (B, D)           dL/dy0 per sample
    a_theta : ndarray (P,)       dL/dθ summed over the samples
    dLdt : ndarray (T,) or None  dL/dt_i summed over samples
    stats : dict of ndarray (B,) backward nfev and step counts
    recon : ndarray (B,)         largest reconstruction error of z at the output times,
                                 max |z(t_i) − y(t_i)| / (atol + rtol·|y(t_i)|)
    """
    T, B, D = yb.shape
    a, a_theta, dLdt, stats, states = adjoint_solve(f, yb, gb, t, tab, rtol, atol, opts,
                                                    squeeze, seminorm, time_gradients,
                                                    args=args)
    # The z integrated backward at t_{T-2}, …, t_0 (before each restart) against the forward y
    # (kernels.step.reconstruction_gap, as the kernels measure it).
    num = StepNumbers(tab, yb.dtype, rtol, np.asarray(atol)[:D] if np.ndim(atol) else atol, D)
    gap = np.zeros(B, dtype=yb.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, T):
            gap_rows(np.ascontiguousarray(states[k, :, :D]), yb[T - 1 - k], num.atol, num.cst,
                     gap)
    return a, a_theta, dLdt, stats, gap
