"""The vector-field protocol (README, "The vector-field protocol"): :class:`VectorField` for
type checkers and ``isinstance``, which members each gradient method needs, and per-sample
wrappers of the field's VJP.

Every gradient method integrates one independent problem per row of a batch, and calls the
field once for all the rows it is stepping (never once per row); these wrappers turn the
protocol's calls (a 1-D call for a 1-D problem, a batch call otherwise) into arrays with one
row per sample.
"""
from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["VectorField", "has_per_sample_vjp", "missing_members", "n_params", "require",
           "row_args", "vjp_rows"]


@runtime_checkable
class VectorField(Protocol):
    """A vector field f(t, y; θ) that every solver and gradient method accepts.

    The README's "The vector-field protocol" is the contract in words (shapes, batches,
    per-sample t); this class writes its four required members down for type checkers. Any
    object with them is a field: nothing needs to inherit from this class. ``isinstance(f,
    VectorField)`` checks only that the members exist, not their signatures (``issubclass`` is
    not supported, as for any protocol with a data member). The optional members
    ``vjp_per_sample`` and ``jvp_params`` are described in the README.

    Attributes
    ----------
    params : ndarray, shape (P,)
        The parameters θ, flat (may be empty); writing into it changes the field.
    """

    params: np.ndarray

    def __call__(self, t: float | np.ndarray, y: np.ndarray) -> np.ndarray:
        """dy/dt at ``y`` of shape (D,) or (B, D) and ``t`` a float or (B,) per-sample times;
        the shape and dtype of ``y``."""

    def jvp(self, t: float | np.ndarray, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """∂f/∂y · u, shape of ``y``."""

    def vjp(self, t: float | np.ndarray, y: np.ndarray,
            v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
        """(vᵀ∂f/∂y shape of ``y``, vᵀ∂f/∂θ shape (P,) summed over a batch, vᵀ∂f/∂t shape of
        ``t``; with a float ``t`` and a batch, summed over the batch)."""


def n_params(f):
    """P, the number of parameters of the field (0 when it has no ``params``)."""
    return int(np.asarray(getattr(f, "params", np.zeros(0))).size)


def missing_members(f, members):
    """The names among ``members`` that ``f`` does not offer as callables, in order."""
    return [m for m in members if not callable(getattr(f, m, None))]


def require(f, members, why):
    """Raise TypeError naming the members of the protocol that ``f`` lacks.

    Parameters
    ----------
    f : vector field
    members : sequence of str
        Method names the caller needs (``"vjp"``, ``"jvp"``, ``"jvp_params"``).
    why : str
        Who needs them, for the message (e.g. ``"adjoint_method='forward'"``).
    """
    missing = missing_members(f, members)
    if missing:
        raise TypeError(f"{why} needs a field with {', '.join(m + '(...)' for m in members)}; "
                        f"{type(f).__name__} has no {', '.join(missing)} (see the vector-field "
                        "protocol in the README)")


def has_per_sample_vjp(f):
    """Whether the field offers ``vjp_per_sample`` (the θ-part of its VJP row by row)."""
    return callable(getattr(f, "vjp_per_sample", None))


def row_args(args, B):
    """The extra arguments ``args`` of ``f(t, y, *args)`` for a call on some rows of a batch.

    Returns None for ``args=()`` (the field is called without them, at no cost) and otherwise
    ``at(rows) → tuple``: each ndarray of ``args`` whose leading axis has length B (one entry
    per row of the batch, like y0) indexed by ``rows`` (n,), the batch rows the call
    evaluates, in the order of the rows of y; every other argument (a scalar, a list, an
    array of another leading length) unchanged, as scipy's ``solve_ivp(args=)`` passes them.
    ``B=None`` (a 1-D problem, whose field is called with a (D,) y) slices nothing.
    """
    if not args:
        return None
    sliced = [] if B is None else [i for i, a in enumerate(args)
                                   if isinstance(a, np.ndarray) and a.ndim and a.shape[0] == B]
    if not sliced:
        return lambda rows: args

    def at(rows):
        out = list(args)
        for i in sliced:
            out[i] = args[i][rows]
        return tuple(out)

    return at


def vjp_rows(f, squeeze, per_sample, args_at=None):
    """The field's VJP on rows: ``(t (n,), y (n, D), v (n, D), rows (n,)) → (vᵀf_y, vᵀf_θ,
    vᵀf_t)``.

    One call of the field for all n rows. ``vᵀf_y`` is (n, D) and ``vᵀf_t`` (n,), one per row;
    ``vᵀf_θ`` is (n, P) with ``per_sample`` (from the field's optional ``vjp_per_sample``) and
    otherwise (P,), summed over the rows (the protocol's ``vjp``) — which is all a gradient
    needs, since dL/dθ is a sum over the samples. ``squeeze``: call the field with 1-D
    arguments (one row, a float t), as for a 1-D problem. ``args_at`` (from
    :func:`row_args`; None: no extra arguments) gives the field's extra arguments for the
    batch rows ``rows``, handed over after ``v`` (``f.vjp(t, y, v, *args)``); without it
    ``rows`` is not read.

    Raises
    ------
    ValueError
        The field's result is not a tuple of three parts of the protocol's shapes.
    """
    P = n_params(f)
    if per_sample and not (squeeze or has_per_sample_vjp(f)):
        raise TypeError(f"{type(f).__name__} has no vjp_per_sample(t, y, v)")

    def on_rows(t, y, v, rows=None):
        n = y.shape[0]
        args = () if args_at is None else args_at(rows)
        if squeeze:
            vy, vth, vt = _checked(f.vjp(float(t[0]), y[0], v[0], *args), y[0].shape, (P,), (),
                                   "vjp")
            return vy[None], (vth.reshape(1, P) if per_sample else vth), vt.reshape(1)
        if per_sample:
            return _checked(f.vjp_per_sample(t, y, v, *args), y.shape, (n, P), (n,),
                            "vjp_per_sample")
        return _checked(f.vjp(t, y, v, *args), y.shape, (P,), (n,), "vjp")

    return on_rows


def _checked(result, y_shape, theta_shape, t_shape, name):
    """The three parts of a field's VJP as arrays of the protocol's shapes (ValueError if not).

    A float t-part may stand for a per-sample one when it is 0-dimensional (no time input);
    ``None`` for the t-part (a field that does not depend on t), or for the θ-part of a field
    without parameters, means zeros.
    """
    if not (isinstance(result, tuple) and len(result) == 3):
        raise ValueError(f"the field's {name}(t, y, v) must return a tuple (vᵀ∂f/∂y, vᵀ∂f/∂θ, "
                         f"vᵀ∂f/∂t), got {type(result).__name__}"
                         + (f" of length {len(result)}" if isinstance(result, tuple) else ""))
    vy, vth, vt = result
    if vt is None:
        vt = np.zeros(t_shape)
    if vth is None and math.prod(theta_shape) == 0:
        vth = np.zeros(theta_shape)
    if vth is None or vy is None:
        raise ValueError(f"the field's {name}(t, y, v) returned None for "
                         f"{'vᵀ∂f/∂y' if vy is None else 'vᵀ∂f/∂θ'}; return an array (zeros "
                         "where the derivative is zero)")
    vy, vth, vt = np.asarray(vy), np.asarray(vth), np.asarray(vt)
    if vy.shape != y_shape:
        raise ValueError(f"the field's {name} returned vᵀ∂f/∂y of shape {vy.shape} for y of "
                         f"shape {y_shape}; it must have the shape of y")
    if vth.shape != theta_shape and (vth.size != math.prod(theta_shape)
                                     or (vth.ndim and vth.shape != (vth.size,))):
        raise ValueError(f"the field's {name} returned vᵀ∂f/∂θ of shape {vth.shape}; expected "
                         f"{theta_shape} (P = {theta_shape[-1]} = params.size)")
    if vt.shape != t_shape:
        if vt.shape != ():
            raise ValueError(f"the field's {name} returned vᵀ∂f/∂t of shape {vt.shape}; "
                             f"expected {t_shape or 'a float'} (the shape of t)")
        vt = np.broadcast_to(vt, t_shape)
    if vy.dtype.kind != "f" or vy.dtype.itemsize < 4:
        vy = vy.astype(np.result_type(vy, np.float32))
    return vy, vth.reshape(theta_shape), vt
