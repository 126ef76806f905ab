"""Losses that return their value and their gradient with respect to the prediction.

Each loss takes ``pred`` and ``target`` of the same shape (no broadcasting: a silent broadcast
of ``(T, B, D)`` against ``(T, D)`` is a common bug) and returns ``(value, grad)`` with
``value`` a Python float and ``grad = ∂value/∂pred`` of the shape of ``pred``, ready to hand to
the adjoint's ``vjp(grad_ys)``. For classifiers, :func:`cross_entropy` takes logits and
integer class labels instead, and :func:`accuracy` counts the correct predictions.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["mse", "l1", "cross_entropy", "accuracy"]


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


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy of logits against integer class labels, mean over the batch.

    With ``p = softmax(z)`` row by row, ``value = −(1/B) Σ_β log p_β[y_β]`` and
    ``grad = (p − onehot(y)) / B``. Evaluated stably: ``log p = z − m − log Σ exp(z − m)`` with
    ``m`` the row maximum (the log-sum-exp shift), so no exponential overflows and the
    value is exact to rounding for logits of any size; ``p = exp(log p)``.

    Parameters
    ----------
    logits : array_like, shape (B, C)
        Unnormalised log-probabilities of C ≥ 2 classes, real.
    labels : array_like of int, shape (B,)
        Class of each sample, in ``0 … C−1``.

    Returns
    -------
    value : float
    grad : ndarray, shape (B, C)
        ∂value/∂logits; dtype of ``logits`` when it is floating, else float64.

    Raises
    ------
    ValueError
        ``logits`` not 2-D, fewer than 2 classes, an empty batch, non-finite logits, labels of
        the wrong shape or out of range.
    TypeError
        Labels that are not integers.

    References
    ----------
    C. M. Bishop, *Pattern Recognition and Machine Learning* (2006), Sec. 4.3.4, eq. (4.108)
    to (4.109) (the gradient ``p − t``).
    """
    z, y = _check_classification(logits, labels)
    batch = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(batch)
    value = -float(np.sum(log_p[rows, y])) / batch
    grad = np.exp(log_p)
    grad[rows, y] -= 1.0
    return value, grad / batch


def accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of samples whose largest logit is at their label (ties: the first maximum).

    Parameters
    ----------
    logits : array_like, shape (B, C)
    labels : array_like of int, shape (B,)

    Returns
    -------
    float
        In [0, 1]; the test error is ``1 − accuracy``.

    Raises
    ------
    ValueError, TypeError
        As :func:`cross_entropy`.
    """
    z, y = _check_classification(logits, labels)
    return float(np.mean(np.argmax(z, axis=1) == y))


def _check_classification(logits, labels):
    """Validate ``(logits (B, C), labels (B,))``; return them as float and int64 arrays."""
    z = np.asarray(logits)
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise TypeError(f"logits must be a real array of shape (B, C); got dtype {z.dtype}")
    if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] == 0:
        raise ValueError(f"logits must have shape (B, C) with B >= 1 and C >= 2 classes; got "
                         f"shape {z.shape}")
    if not np.all(np.isfinite(z)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(z))[0])
        raise ValueError(f"logits has a non-finite entry at {bad} (logits[{bad[0]}, {bad[1]}]="
                         f"{z[bad]}); check the model output")
    y = np.asarray(labels)
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape (B,) = ({z.shape[0]},), one class index per "
                         f"row of logits; got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integer class indices in 0..{z.shape[1] - 1}; got "
                        f"dtype {y.dtype} (convert with labels.astype(int))")
    if y.min() < 0 or y.max() >= z.shape[1]:
        bad = int(np.flatnonzero((y < 0) | (y >= z.shape[1]))[0])
        raise ValueError(f"labels[{bad}] = {y[bad]} is not a class of logits with C = "
                         f"{z.shape[1]} columns; labels must lie in 0..{z.shape[1] - 1}")
    dtype = z.dtype if np.issubdtype(z.dtype, np.floating) else np.float64
    return z.astype(dtype, copy=False), y.astype(np.int64, copy=False)


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
