"""The vector-field protocol (README, "The vector-field protocol"): :class:`VectorField` for
type checkers and ``isinstance``, which members each gradient method needs, and per-sample
wrappers of the field's VJP.

Every gradient method integrates one independent problem per row of a batch, so it needs the
field's derivatives one row at a time; these wrappers turn the protocol's calls (a 1-D call
for a 1-D problem, a batch call otherwise) into arrays with one row per sample.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["VectorField", "n_params", "require", "vjp_rows"]


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
    missing = [m for m in members if not callable(getattr(f, m, None))]
    if missing:
        raise TypeError(f"{why} needs a field with {', '.join(m + '(...)' for m in members)}; "
                        f"{type(f).__name__} has no {', '.join(missing)} (see the vector-field "
                        "protocol in the README)")


def vjp_rows(f, squeeze):
    """Per-sample VJP ``(t (n,), y (n, D), v (n, D)) → (vᵀf_y (n, D), vᵀf_θ (n, P), vᵀf_t (n,))``.

    ``squeeze``: call the field with 1-D arguments (one row, a float t), as for a 1-D problem.
    Otherwise uses the field's optional ``vjp_per_sample``, or calls ``vjp`` one sample at a
    time (the θ-part of ``vjp`` is summed over a batch, and the adjoint needs one per sample).
    """
    P = n_params(f)

    def rows(t, y, v):
        n = y.shape[0]
        if squeeze:
            vy, vth, vt = _checked(f.vjp(float(t[0]), y[0], v[0]), y[0].shape, (P,), (), "vjp")
            return vy[None], vth.reshape(1, P), vt.reshape(1)
        if hasattr(f, "vjp_per_sample"):
            vy, vth, vt = _checked(f.vjp_per_sample(t, y, v), y.shape, (n, P), (n,),
                                   "vjp_per_sample")
            return vy, vth, vt
        vy = np.empty_like(y)
        vth = np.empty((n, P), dtype=y.dtype)
        vt = np.empty(n, dtype=y.dtype)
        for b in range(n):
            vy[b], vth[b], vt[b] = _checked(f.vjp(float(t[b]), y[b], v[b]), y[b].shape, (P,),
                                            (), "vjp")
        return vy, vth, vt

    return rows


def _checked(result, y_shape, theta_shape, t_shape, name):
    """The three parts of a field's VJP as arrays of the protocol's shapes (ValueError if not).

    A float t-part may stand for a per-sample one when it is 0-dimensional (no time input).
    """
    if not (isinstance(result, tuple) and len(result) == 3):
        raise ValueError(f"the field's {name}(t, y, v) must return a tuple (vᵀ∂f/∂y, vᵀ∂f/∂θ, "
                         f"vᵀ∂f/∂t), got {type(result).__name__}"
                         + (f" of length {len(result)}" if isinstance(result, tuple) else ""))
    vy, vth, vt = (np.asarray(x) for x in result)
    if vy.shape != y_shape:
        raise ValueError(f"the field's {name} returned vᵀ∂f/∂y of shape {vy.shape} for y of "
                         f"shape {y_shape}; it must have the shape of y")
    if vth.size != int(np.prod(theta_shape)) or (vth.ndim and vth.shape != theta_shape
                                                  and vth.shape != (vth.size,)):
        raise ValueError(f"the field's {name} returned vᵀ∂f/∂θ of shape {vth.shape}; expected "
                         f"{theta_shape} (P = {theta_shape[-1]} = params.size)")
    if vt.shape not in (t_shape, ()):
        raise ValueError(f"the field's {name} returned vᵀ∂f/∂t of shape {vt.shape}; expected "
                         f"{t_shape or 'a float'} (the shape of t)")
    return (vy.astype(np.result_type(vy, np.float32), copy=False),
            vth.reshape(theta_shape), np.broadcast_to(vt, t_shape))
