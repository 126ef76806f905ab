"""Losses that return their value and their gradient with respect to the prediction.

Each loss takes ``pred`` and ``target`` of the same shape (no broadcasting: a silent broadcast
of ``(T, B, D)`` against ``(T, D)`` is a common bug) and returns ``(value, grad)`` with
``value`` a Python float and ``grad = ∂value/∂pred`` of the shape of ``pred``, ready to hand to
the adjoint's ``vjp(grad_ys)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["mse", "l1"]


def mse(pred: ArrayLike, target: ArrayLike) -> tuple[float, np.ndarray]:
    """Mean squared error.

    ``value = (1/N) Σ (pred − target)²`` over all ``N`` entries;
    ``grad = 2 (pred − target) / N``.

    Parameters
    ----------
    pred : array_like, shape (...)
    target : array_like, shape of ``pred``

    Returns
    -------
    value : float
    grad : ndarray, shape of ``pred``
        dtype of ``pred`` when it is floating, else float64.

    Raises
    ------
    ValueError
        Shapes differ, or the arrays are empty.
    """
    diff, n = _difference(pred, target)
    return float(np.sum(diff * diff) / n), (2.0 / n) * diff


def l1(pred: ArrayLike, target: ArrayLike) -> tuple[float, np.ndarray]:
    """Mean absolute error.

    ``value = (1/N) Σ |pred − target|``; ``grad = sign(pred − target) / N``, taking the
    subgradient 0 where ``pred == target``.

    Parameters
    ----------
    pred : array_like, shape (...)
    target : array_like, shape of ``pred``

    Returns
    -------
    value : float
    grad : ndarray, shape of ``pred``
        dtype of ``pred`` when it is floating, else float64.

    Raises
    ------
    ValueError
        Shapes differ, or the arrays are empty.
    """
    diff, n = _difference(pred, target)
    return float(np.sum(np.abs(diff)) / n), np.sign(diff) / n


def _difference(pred, target):
    """Return ``(pred − target, N)`` in the dtype of ``pred`` after checking the shapes."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape; got pred {pred.shape} and target "
            f"{target.shape} (no broadcasting: reshape or index one of them)"
        )
    if pred.size == 0:
        raise ValueError(f"pred and target are empty (shape {pred.shape}); a mean needs N >= 1")
    dtype = pred.dtype if np.issubdtype(pred.dtype, np.floating) else np.float64
    diff = pred.astype(dtype, copy=False) - target.astype(dtype, copy=False)
    return diff, pred.size
