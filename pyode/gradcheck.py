"""Check a gradient against central finite differences.

``gradcheck(fun, x)`` takes a function returning ``(value, grad)`` — the convention of
:mod:`pyode.losses` and of a loss composed with ``odeint_adjoint`` — and compares ``grad`` with
the central difference quotient of ``value`` in every entry of ``x``.

Accuracy of the central difference: ``(F(x + h e_i) − F(x − h e_i)) / 2h`` has truncation error
``h² |∂³F| / 6`` and rounding error about ``ε_mach |F| / h``; ``h ≈ ε_mach^{1/3} ≈ 6e-6`` in
float64 balances them, hence the default ``eps=1e-6`` (Nocedal & Wright, *Numerical
Optimization*, 2nd ed., Sec. 8.1, Eq. (8.9)). The function is always evaluated on float64
copies of ``x``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["GradcheckResult", "gradcheck"]


@dataclasses.dataclass
class GradcheckResult:
    """Outcome of :func:`gradcheck`.

    Attributes
    ----------
    ok : bool
        ``|analytic − numeric| ≤ atol + rtol·|numeric|`` holds at every entry (and nothing is
        NaN).
    max_abs_err : float
        ``max |analytic − numeric|``.
    max_rel_err : float
        ``max |analytic − numeric| / |numeric|`` (an entry with ``numeric = 0`` counts as 0 when
        the analytic value is also 0, else inf).
    worst_index : tuple of int or None
        Index into ``x`` of the entry furthest outside (or closest to) the tolerance, measured
        by ``|analytic − numeric| / (atol + rtol·|numeric|)``; ``None`` for an empty ``x``.
    analytic : ndarray, shape of x, float64
        The gradient returned by ``fun(x)``.
    numeric : ndarray, shape of x, float64
        The central finite differences.
    n_failed : int
        Number of entries outside the tolerance.
    eps, rtol, atol : float
        The settings used.
    """

    ok: bool
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple[int, ...] | None
    analytic: np.ndarray
    numeric: np.ndarray
    n_failed: int
    eps: float
    rtol: float
    atol: float

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        lines = [
            f"gradcheck {verdict}: {self.n_failed} of {self.numeric.size} entries outside "
            f"atol + rtol*|numeric| (eps={self.eps:g}, rtol={self.rtol:g}, atol={self.atol:g})"
        ]
        if self.worst_index is not None:
            a = self.analytic[self.worst_index]
            n = self.numeric[self.worst_index]
            lines.append(
                f"  worst index {self.worst_index}: analytic = {a:.10g}, numeric = {n:.10g}, "
                f"abs err = {abs(a - n):.3g}"
            )
        lines.append(
            f"  max abs err = {self.max_abs_err:.3g}, max rel err = {self.max_rel_err:.3g}"
        )
        if self.numeric.size and not np.any(self.numeric) and np.any(self.analytic):
            # The usual cause: fun copies x into a field (f.params[:] = x) whose params
            # property returns a copy, so the differences perturb nothing.
            lines.append(
                "  the numeric gradient is 0 in every entry: fun's value does not change with "
                "x. If fun writes x into a field (f.params[:] = x), check that f.params is the "
                "field's own array and not a copy (or set it with f.params = x)"
            )
        return "\n".join(lines)


def gradcheck(fun: Callable[[np.ndarray], tuple[Any, ArrayLike]], x: ArrayLike,
              eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-8) -> GradcheckResult:
    """Compare the gradient returned by ``fun`` with central finite differences.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (value, grad)`` with ``value`` a real scalar and ``grad`` an array of the
        shape of ``x`` holding ``∂value/∂x``. Called ``1 + 2·x.size`` times, always with a
        fresh float64 array.
    x : array_like, any shape
        The point; not modified.
    eps : float, optional
        Step ``h`` of the central difference ``(F(x + h e_i) − F(x − h e_i)) / 2h``, in the
        units of ``x``; > 0, default 1e-6.
    rtol, atol : float, optional
        An entry passes when ``|analytic − numeric| ≤ atol + rtol·|numeric|``; both ≥ 0, not
        both 0. Defaults 1e-5 and 1e-8.

    Returns
    -------
    GradcheckResult
        ``bool(result)`` is ``result.ok``; ``str(result)`` is a short report.

    Raises
    ------
    ValueError
        Bad ``eps``/``rtol``/``atol``; ``grad`` has the wrong shape.
    TypeError
        ``fun`` is not callable or does not return ``(scalar, array)``.

    Examples
    --------
    >>> import numpy as np
    >>> from pyode.gradcheck import gradcheck
    >>> gradcheck(lambda x: (float(np.sum(x ** 2)), 2 * x), np.arange(3.0)).ok
    True
    """
    if not callable(fun):
        raise TypeError(f"fun must be callable as fun(x) -> (value, grad); got {fun!r}")
    eps = _check_nonneg(eps, "eps")
    rtol = _check_nonneg(rtol, "rtol")
    atol = _check_nonneg(atol, "atol")
    if eps == 0:
        raise ValueError("eps must be > 0; got eps=0.0 (try eps=1e-6)")
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol are both 0: no tolerance is possible; set rtol=1e-5")
    x0 = np.array(x, dtype=np.float64)

    _, grad = _evaluate(fun, x0.copy())
    analytic = np.array(grad, dtype=np.float64)
    if analytic.shape != x0.shape:
        raise ValueError(
            f"fun(x) returned grad of shape {analytic.shape}, but x has shape {x0.shape}; "
            "grad must have the shape of x"
        )

    numeric = np.empty_like(x0)
    for index in np.ndindex(x0.shape):
        xp = x0.copy()
        xp[index] += eps
        xm = x0.copy()
        xm[index] -= eps
        numeric[index] = (_evaluate(fun, xp)[0] - _evaluate(fun, xm)[0]) / (2.0 * eps)

    # Non-finite values from a diverging fun (inf - inf, inf / inf) are reported as failures,
    # not as numpy warnings.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(analytic - numeric)
        tol = atol + rtol * np.abs(numeric)
        passes = diff <= tol  # False where anything is NaN
        ratio = np.full(x0.shape, np.inf)
        np.divide(diff, tol, out=ratio, where=(tol > 0) & np.isfinite(diff))
        ratio[diff == 0] = 0.0
        rel = np.full(x0.shape, np.inf)
        nonzero = np.abs(numeric) > 0
        np.divide(diff, np.abs(numeric), out=rel, where=nonzero)
        rel[~nonzero & (diff == 0)] = 0.0

    if x0.size == 0:
        worst, max_abs, max_rel = None, 0.0, 0.0
    else:
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), x0.shape))
        max_abs = float(np.max(np.where(np.isnan(diff), np.inf, diff)))
        max_rel = float(np.max(np.where(np.isnan(rel), np.inf, rel)))
    return GradcheckResult(
        ok=bool(np.all(passes)), max_abs_err=max_abs, max_rel_err=max_rel, worst_index=worst,
        analytic=analytic, numeric=numeric, n_failed=int(np.count_nonzero(~passes)),
        eps=eps, rtol=rtol, atol=atol,
    )


def _evaluate(fun, x):
    out = fun(x)
    try:
        value, grad = out
    except (TypeError, ValueError):
        raise TypeError(
            f"fun(x) must return a pair (value, grad); got {type(out).__name__}"
        ) from None
    value = np.asarray(value)
    real = np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
    if value.size != 1 or not real:
        raise TypeError(
            f"fun(x) must return a real scalar value; got an array of shape {value.shape}, "
            f"dtype {value.dtype}"
        )
    return float(value.reshape(())), grad


def _check_nonneg(value, name):
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number; got {name}={value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0; got {name}={value!r}")
    return value
