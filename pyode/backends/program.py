"""What a kernel call needs, built from a field and a problem: the op table and the packed data.

An nn field (:class:`pyode.nn.Sequential`) becomes an op table that ``kernels.mlp`` interprets
one sample at a time (:func:`op_table`); the tableau, the tolerances and the controller's
numbers become the typed arrays of ``kernels.rk`` (:class:`Packed`). Everything but the
parameters depends only on the field's layers, the method, the dtype, the tolerances and the
options, so :func:`packed` builds it once per combination and reuses it; the parameters are
read from ``f.params`` on every call, so a training step's update is seen without a rebuild.
"""
import weakref

import numpy as np

from .. import nn
from ..kernels.mlp import ACTIVATION_CODES, LINEAR, TIME
from ..kernels.numbers import constants, pack_tableau


def kernel_reason(f):
    """Why the kernels cannot run the field ``f``, or None when they can.

    They run pyode's own :class:`~pyode.nn.Sequential` / :class:`~pyode.nn.MLP` with pyode's
    own layer classes — exact classes, not subclasses, which may compute another function
    (the kernels would replace it by the built-in formula without a word).
    """
    if type(f) not in (nn.Sequential, nn.MLP):
        return (f"this field is a {type(f).__name__}, and the kernels run pyode.nn.Sequential "
                "and pyode.nn.MLP themselves, not subclasses or other fields")
    for i, layer in enumerate(f.layers):
        kind = type(layer)
        if kind in (nn.Linear, nn.TimeInput):
            continue
        if nn.ACTIVATIONS.get(getattr(layer, "name", None)) is kind:
            continue
        return (f"layers[{i}] is {layer!r} ({kind.__module__}.{kind.__qualname__}), which "
                "the kernels do not implement (they run pyode's own layer classes, not "
                "subclasses)")
    return None


def op_table(f, dtype):
    """Compile the layers of an ``nn.Sequential`` to ``(ops (n_ops, 4) int64, opf (n_ops,))``.

    One row ``[kind, n_in, n_out, offset]`` per layer (``kernels.mlp``); ``opf`` holds a
    layer's scalar parameter (ELU's α) in the working ``dtype``.

    Raises
    ------
    ValueError
        If a layer has no kernel implementation (use ``backend="numpy"``).
    """
    reason = kernel_reason(f)
    if reason is not None:
        raise ValueError(f"{reason}; build the field with backend='numpy' or pass "
                         "backend='numpy' to odeint")
    rows, pars = [], []
    width = f.n_in
    for layer in f.layers:
        if isinstance(layer, nn.Linear):
            rows.append((LINEAR, layer.n_in, layer.n_out, layer.offset))
            width = layer.n_out
        elif isinstance(layer, nn.TimeInput):
            rows.append((TIME, width, width + 1, 0))
            width += 1
        else:
            rows.append((ACTIVATION_CODES[layer.name], width, width, 0))
        pars.append(float(getattr(layer, "alpha", 0.0)))
    return np.array(rows, dtype=np.int64).reshape(-1, 4), np.array(pars, dtype=dtype)


def max_width(ops):
    """Widest layer input or output of the table (scratch row length)."""
    return int(max(ops[:, 1].max(), ops[:, 2].max()))


class Packed:
    """Everything a kernel needs for one call, converted to the working dtype.

    Attributes
    ----------
    ops, opf : the op table of :func:`op_table`
    theta : ndarray, shape (P,)
        ``f.params`` in the working dtype.
    tab : ndarray, shape (s, s + 7)
        The tableau packed by ``kernels.numbers.pack_tableau``.
    cst : ndarray
        The constants of ``kernels.numbers.constants``.
    atol : ndarray, shape (W,)
    mw : int
        Scratch row length (:func:`max_width`).
    """

    def __init__(self, f, tab, rtol, atol, opts, W, parts, dtype):
        self.ops, self.opf = op_table(f, dtype)
        self.theta = np.ascontiguousarray(f.params, dtype=dtype)
        self.tab = pack_tableau(tab, dtype)
        self.cst = constants(dtype, tab, rtol, opts, parts)
        self.atol = np.ascontiguousarray(np.broadcast_to(atol, (W,)), dtype=dtype)
        self.mw = max_width(self.ops)


#: Built Packed objects per field (weak: a field's entries go with it), keyed by
#: :func:`_key`. A field holds at most ``_MAX_ENTRIES`` (oldest dropped first).
_CACHE = weakref.WeakKeyDictionary()
_MAX_ENTRIES = 16


def _key(f, tab, rtol, atol, opts, W, parts, dtype):
    """What a Packed depends on besides the parameters.

    ``tab`` by identity (the entry holds it, so its id cannot be reused while cached); the
    layer tuple by identity plus each layer's scalar parameter (ELU's α), which ``op_table``
    copies into ``opf``.
    """
    atol_key = float(atol) if np.ndim(atol) == 0 else tuple(np.ravel(atol).tolist())
    alphas = tuple(getattr(layer, "alpha", 0.0) for layer in f.layers)
    return (id(tab), id(f.layers), alphas, float(rtol), atol_key,
            tuple(sorted(opts.items())), W, parts, np.dtype(dtype).str)


def packed(f, tab, rtol, atol, opts, W, parts, dtype):
    """A :class:`Packed` for this call: the cached arrays, with ``theta`` read from ``f.params``.

    Arguments as :class:`Packed`. The returned object is the caller's own (its ``theta`` is
    this call's); the arrays it shares with the cache are never written by the kernels.
    """
    key = _key(f, tab, rtol, atol, opts, W, parts, dtype)
    entries = _CACHE.get(f)
    if entries is None:
        entries = _CACHE[f] = {}
    hit = entries.get(key)
    if hit is None:
        if len(entries) >= _MAX_ENTRIES:
            entries.pop(next(iter(entries)))
        hit = entries[key] = (Packed(f, tab, rtol, atol, opts, W, parts, dtype), tab, f.layers)
    k = object.__new__(Packed)
    k.__dict__.update(hit[0].__dict__)
    k.theta = np.ascontiguousarray(f.params, dtype=dtype)
    return k
