"""What pyode calls it: messages for the names that users of neighbouring libraries type.

People port scripts from scipy (``solve_ivp``), torchdiffeq (``odeint``, ``odeint_adjoint``)
and diffrax (``diffeqsolve``). Where they type a name pyode does not know — a method such as
``"RK45"`` or ``"tsit5"``, a keyword such as ``adjoint_params`` or ``t_eval`` — the error says
what pyode calls it, or that pyode has no such thing and what to use instead; a plain typo gets
a "did you mean" from :func:`difflib.get_close_matches`. The tables below are the one place
these names live.
"""
from __future__ import annotations

import difflib

__all__ = ["method_hint", "adjoint_method_hint", "option_hint", "unknown_keywords_error",
           "close_match"]

#: Method names of scipy, torchdiffeq and diffrax → what pyode offers instead.
METHOD_NEIGHBOURS = {
    "rk45": "scipy's RK45 is Dormand-Prince 5(4): use method='dopri5'",
    "dopri5": None,
    "rk23": "scipy's RK23 is Bogacki-Shampine 3(2): use method='bosh3'",
    "bogacki_shampine": "use method='bosh3' (Bogacki-Shampine 3(2))",
    "dop853": ("pyode has no DOP853 (Dormand-Prince 8(5,3)) yet; use method='tsit5' or "
               "'dopri5' with a tighter rtol"),
    "dopri8": ("pyode has no dopri8 yet; use method='tsit5' or 'dopri5' with a tighter rtol"),
    "fehlberg2": "pyode has no fehlberg2; use method='heun_euler' (adaptive, order 2(1))",
    "adaptive_heun": "torchdiffeq's adaptive_heun is method='heun_euler' (Heun 2(1))",
    "heun": ("use method='heun_euler' (Heun's method, adaptive, Euler embedded) or "
             "'ralston' (order 2, fixed step)"),
    "heun2": ("pyode has no fixed-step heun2; use method='ralston' (also order 2, fixed step) "
              "or 'heun_euler' (Heun's method, adaptive)"),
    "rkf45": "use method='fehlberg45' (Runge-Kutta-Fehlberg 4(5))",
    "fehlberg": "use method='fehlberg45' (Runge-Kutta-Fehlberg 4(5))",
    "ssp_rk3": "use method='ssprk3' (Shu-Osher SSP RK3)",
    "explicit_adams": ("pyode has only Runge-Kutta methods (no Adams multistep methods); use "
                       "method='dopri5' (adaptive) or 'rk4' (fixed step)"),
    "implicit_adams": ("pyode has only explicit Runge-Kutta methods (no Adams methods); use "
                       "method='dopri5' (adaptive) or 'rk4' (fixed step)"),
    "fixed_adams": ("pyode has only Runge-Kutta methods (no Adams methods); use method='rk4' "
                    "with options={'step_size': h}"),
    "adams": ("pyode has only explicit Runge-Kutta methods (no Adams methods); use "
              "method='dopri5' (adaptive) or 'rk4' (fixed step)"),
    "scipy_solver": ("pyode integrates with its own solvers; use method='dopri5' (scipy's "
                     "RK45 is the same method)"),
    "radau": ("pyode has only explicit methods, for non-stiff problems; for a stiff problem "
              "use scipy.integrate.solve_ivp(method='Radau')"),
    "bdf": ("pyode has only explicit methods, for non-stiff problems; for a stiff problem use "
            "scipy.integrate.solve_ivp(method='BDF')"),
    "lsoda": ("pyode has only explicit methods; for a problem that may be stiff use "
              "scipy.integrate.solve_ivp(method='LSODA')"),
    "kvaerno5": ("pyode has only explicit methods (no implicit ones such as Kvaerno5); for "
                 "stiff problems use an implicit solver"),
    "rk_4": "use method='rk4'",
    "explicit_euler": "use method='euler'",
}

#: Gradient-method names of torchdiffeq, diffrax and the literature → pyode's
#: ``adjoint_method``.
ADJOINT_NEIGHBOURS = {
    "adjoint": "the adjoint of Chen et al. is adjoint_method='backsolve'",
    "backsolveadjoint": "diffrax's BacksolveAdjoint is adjoint_method='backsolve'",
    "recursivecheckpointadjoint": ("diffrax's RecursiveCheckpointAdjoint differentiates the "
                                   "solver's steps: adjoint_method='discrete' (or "
                                   "'checkpoint' for the continuous adjoint with checkpoints)"),
    "directadjoint": "use adjoint_method='discrete' (backpropagation through the steps)",
    "backprop": "backpropagation through the solver is adjoint_method='discrete'",
    "autodiff": "backpropagation through the solver is adjoint_method='discrete'",
    "interpolating": "use adjoint_method='checkpoint' (the adjoint against a stored y(t))",
    "forward_sensitivity": "use adjoint_method='forward'",
    "sensitivity": "forward sensitivity is adjoint_method='forward'",
}

#: Keywords of scipy, torchdiffeq and diffrax that pyode's solvers do not take → what to do.
#: ``{fn}`` is replaced by the name of the function that was called.
KEYWORD_NEIGHBOURS = {
    "adjoint_params": ("pyode differentiates with respect to all of f.params (the vjp returns "
                       "them as grads.params); to freeze some, zero their entries of "
                       "grads.params before the optimiser step"),
    "t_eval": "pass the output times as t (pyode's t is scipy's t_eval, t[0] the start)",
    "t_span": "pass the output times as t, e.g. t=np.linspace(t0, t1, n)",
    "step_size": "pass options={'step_size': h} (fixed-step methods)",
    "first_step": "pass options={'first_step': h} (adaptive methods)",
    "max_num_steps": "pass options={'max_num_steps': n}",
    "max_steps": "pass options={'max_num_steps': n}",
    "dt0": ("pass options={'first_step': h} (adaptive methods) or options={'step_size': h} "
            "(fixed-step methods)"),
    "saveat": "pass the output times as t",
    "solver": "pass the method by name, method='dopri5' (pyode.METHODS lists them)",
    "stepsize_controller": "pass rtol= and atol= (pyode's controller is built in)",
    "max_step": "pyode has no max_step yet; split t into more output times instead",
    "dense_output": "pyode has no dense solution object yet; ask for the times you need in t",
    "events": "pyode has no event location yet",
    "event_fn": "pyode has no event location yet",
    "vectorized": ("pyode always calls a field with a batch (B, D) for a batch y0 and with "
                   "(D,) for a 1-D y0; drop vectorized"),
    "jac": "explicit Runge-Kutta methods need no Jacobian; drop jac",
    "adjoint_method": ("adjoint_method belongs to odeint_adjoint, which returns the solution "
                       "and a vjp"),
    "adjoint_rtol": "adjoint_rtol belongs to odeint_adjoint",
    "adjoint_atol": "adjoint_atol belongs to odeint_adjoint",
    "adjoint_options": "adjoint_options belongs to odeint_adjoint",
    "adjoint_norm": "pass adjoint_options={'norm': 'seminorm'} to odeint_adjoint",
    "norm": ("pass adjoint_options={'norm': 'seminorm'} to odeint_adjoint (the forward error "
             "norm is fixed: RMS scaled by atol + rtol|y|)"),
    "event_options": "pyode has no event location yet",
    "y": "pass the initial state as y0",
    "x0": "pass the initial state as y0",
    "func": "pass the vector field as the first argument f",
    "fun": "pass the vector field as the first argument f",
    "ts": "pass the output times as t",
}


def adjoint_method_hint(name, valid):
    """A sentence telling what to use for an unknown ``adjoint_method``, or ''."""
    if not isinstance(name, str):
        return ""
    hint = ADJOINT_NEIGHBOURS.get(name.lower().replace("-", "_"))
    if hint:
        return hint
    match = close_match(name.lower(), valid)
    return f"did you mean adjoint_method={match!r}?" if match else ""


def option_hint(key, valid):
    """A sentence for an unknown key of ``options`` (a neighbour's name or a typo), or ''."""
    neighbours = {"max_steps": "max_num_steps", "dt0": "first_step or step_size",
                  "h0": "first_step", "dt": "step_size", "max_step": None}
    if key in neighbours:
        name = neighbours[key]
        return (f"pyode calls it {name!r}" if name
                else "pyode has no max_step yet; split t into more output times instead")
    match = close_match(key, valid)
    return f"did you mean {match!r}?" if match else ""


def close_match(name, valid):
    """The closest of ``valid`` to ``name`` (difflib, cutoff 0.6), or None."""
    matches = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def method_hint(method, valid):
    """A sentence telling what to use for an unknown method name, or '' when nothing fits.

    Parameters
    ----------
    method : object
        The unknown ``method=`` value.
    valid : iterable of str
        pyode's method names.
    """
    if not isinstance(method, str):
        return ""
    valid = list(valid)
    lowered = {v.lower(): v for v in valid}
    key = method.lower()
    if key in lowered:
        return f"method names are lower case: did you mean method={lowered[key]!r}?"
    hint = METHOD_NEIGHBOURS.get(key)
    if hint:
        return hint
    match = close_match(key, valid)
    return f"did you mean method={match!r}?" if match else ""


def unknown_keywords_error(fn, unknown, valid):
    """TypeError for keywords a pyode function does not take, saying what pyode calls them.

    Parameters
    ----------
    fn : str
        Name of the function called (``"odeint"``).
    unknown : dict
        The keywords it was given and does not take.
    valid : iterable of str
        Its keyword parameters (for "did you mean").

    Returns
    -------
    TypeError
        To be raised by the caller.
    """
    parts = []
    adjoint_only = ("adjoint_method", "adjoint_rtol", "adjoint_atol", "adjoint_options")
    for name in unknown:
        hint = KEYWORD_NEIGHBOURS.get(name)
        if hint is None:
            match = close_match(name, valid)
            hint = f"did you mean {match}=?" if match else ""
            if not match and fn == "odeint":
                near = close_match(name, adjoint_only)
                if near:
                    hint = f"did you mean {near}=? It belongs to odeint_adjoint"
        parts.append(f"{fn}() has no keyword {name!r}" + (f": {hint}" if hint else ""))
    return TypeError("; ".join(parts) + f" (its keywords: {', '.join(valid)})")
