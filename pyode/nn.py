"""Layers and multilayer perceptrons with hand-written derivatives.

This module is the readable NumPy reference for the vector fields of pyode: every layer
writes its forward map, its Jacobian-vector product (JVP) and its vector-Jacobian product
(VJP) next to each other, with the Jacobian in the docstring. The Numba kernels in
``pyode.kernels.mlp`` compile an op table from :attr:`Sequential.layers` and are tested
against this module.

The layer protocol
------------------
Layers act row by row on a batch. With ``x`` of shape ``(B, n_in)`` and per-sample times
``t`` of shape ``(B,)`` (used only by :class:`TimeInput`):

1. ``forward(x, t)`` returns ``y``, shape ``(B, n_out)``.
2. ``jvp(x, t, u)`` returns ``∂y/∂x · u`` row by row, shape ``(B, n_out)``; ``t`` is held fixed.
3. ``vjp(x, t, v)`` returns a tuple ``(vᵀ∂y/∂x, vᵀ∂y/∂θ, vᵀ∂y/∂t)`` of shapes ``(B, n_in)``,
   ``(B, n_params)`` (one row per sample, not summed) and ``(B,)``; the last two are ``None``
   for layers without parameters or without a time dependence.
4. Layers with parameters (``n_params > 0``) also write ``jvp_params(x, t, w)``, the
   parameter-JVP ``∂y/∂θ · w`` for a tangent ``w`` of shape ``(n_params,)`` (the layer's own
   slice of ``params``, the same for every row); shape ``(B, n_out)``.

Elementwise activations have a diagonal Jacobian ``J = diag(σ'(x))``, so their JVP and VJP are
the same product ``σ'(x) ⊙ u``; each activation therefore writes ``forward`` and ``derivative``
(the diagonal of J) and inherits ``jvp`` / ``vjp`` from :class:`Activation`, which are written
once there.

The parameter layout
--------------------
:class:`Sequential` owns one flat 1-D array ``params``; each :class:`Linear` layer, in layer
order, owns the slice ``params[offset : offset + n_out*n_in + n_out]``: its weight ``W`` of shape
``(n_out, n_in)`` stored row-major, followed by its bias ``b`` of shape ``(n_out,)``. ``W`` and
``b`` are views into ``params``, so writing into ``params`` changes the field. The Numba kernels
rely on this layout exactly.

The vector-field protocol (README, "The vector-field protocol") is implemented by
:class:`Sequential` and hence by :class:`MLP`: ``f(t, y)``, ``f.params``, ``f.jvp``, ``f.vjp``,
``f.vjp_per_sample`` and ``f.jvp_params`` (∂f/∂θ · w, used by forward sensitivity).

References
----------
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366 (vector fields f(z, t; θ), Sec. 2).
"""

from __future__ import annotations

import numbers
import os
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "Activation",
    "Cube",
    "ELU",
    "Identity",
    "Layer",
    "Linear",
    "MLP",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Sin",
    "Softplus",
    "Tanh",
    "TimeInput",
    "get_activation",
    "load",
    # models (pyode/models.py, re-exported at the end of this module)
    "Block",
    "Flatten",
    "ForwardInfo",
    "Model",
    "ModelGradients",
    "ODEBlock",
    "ResidualBlock",
    "ZeroPad",
]

#: Integrator back ends a field may ask for; the solver reads ``f.backend``. ``"numba"`` runs
#: the compiled kernels of ``pyode.kernels``, ``"numpy"`` the readable reference path.
BACKENDS = ("numba", "numpy")

#: Floating dtypes a field can hold its parameters in.
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class Layer:
    """Base class of all layers; see the module docstring for the layer protocol.

    Attributes
    ----------
    name : str
        Short lower-case name of the operation (``"linear"``, ``"tanh"``, ``"time_input"``, ...);
        the kernel compiler maps it to an op code.
    n_params : int
        Number of entries of the owning :class:`Sequential`'s ``params`` this layer owns.
    """

    name = "layer"
    n_params = 0

    def __repr__(self):
        return f"{type(self).__name__}()"


class Linear(Layer):
    """Affine layer ``y = W x + b``.

    Parameters
    ----------
    n_in : int
        Input width (columns of ``x``), at least 1.
    n_out : int
        Output width, at least 1.

    Attributes
    ----------
    n_in, n_out : int
        The widths above.
    n_params : int
        ``n_out * n_in + n_out``.
    offset : int or None
        Index into the owning :class:`Sequential`'s ``params`` where ``W`` starts (``b`` starts at
        ``offset + n_out * n_in``); ``None`` until the layer is placed in a Sequential.
    W : ndarray, shape (n_out, n_in), or None
        View into ``params`` (row-major).
    b : ndarray, shape (n_out,), or None
        View into ``params``.

    Notes
    -----
    The layer owns no storage of its own: :class:`Sequential` allocates ``params``, hands the
    layer its views and initialises them. A Linear instance can belong to one Sequential only.

    Copies: ``copy.copy``, ``copy.deepcopy`` and pickle of a Linear *on its own* give a
    *detached* layer: its ``W`` and ``b`` are copies of the values in arrays of its own (writing
    into them changes neither the original nor its Sequential), ``offset`` is None, and
    ``forward`` / ``jvp`` / ``vjp`` compute what the original computed. Placed in a new
    :class:`Sequential`, a detached layer takes views into that one's ``params`` and is
    initialised from its seed like any other Linear (copy values back with ``layer.W[...] =``).
    Copying a whole Sequential (the usual case) rebinds its layers instead; see there.

    Jacobians, per sample: ``∂y/∂x = W``; ``∂y_i/∂W_jk = δ_ij x_k``; ``∂y/∂b = I``.
    """

    name = "linear"

    def __init__(self, n_in, n_out):
        self.n_in = _check_width(n_in, "n_in")
        self.n_out = _check_width(n_out, "n_out")
        self.n_params = self.n_out * self.n_in + self.n_out
        self.offset = None
        self.W = None
        self.b = None

    def _bind(self, params, offset):
        """Take ``W`` and ``b`` as views into ``params`` starting at ``offset``."""
        n_w = self.n_out * self.n_in
        self.offset = offset
        self.W = params[offset:offset + n_w].reshape(self.n_out, self.n_in)
        self.b = params[offset + n_w:offset + n_w + self.n_out]

    def _unbound_copy(self):
        """A new layer of the same type and widths with no parameters (``W = b = offset =
        None``), for a Sequential to bind."""
        layer = object.__new__(type(self))
        layer.__dict__.update(self.__dict__)
        layer.offset = layer.W = layer.b = None
        return layer

    def __getstate__(self):
        """State for copy and pickle of a Linear on its own: a *detached* layer (class Notes).

        ``W`` and ``b`` are copied out of the Sequential's ``params`` (views would be copied
        apart from it anyway, or, by ``copy.copy``, stay aliased to it) and ``offset`` is
        cleared: the copy belongs to no Sequential.
        """
        state = self.__dict__.copy()
        if self.W is not None:
            state["W"] = np.array(self.W, copy=True)
            state["b"] = np.array(self.b, copy=True)
            state["offset"] = None
        return state

    def _check_bound(self):
        if self.W is None:
            raise RuntimeError(
                f"{self!r} has no parameters yet: place it in a Sequential (or MLP), which "
                "owns the flat parameter vector and initialises W and b"
            )

    def forward(self, x, t=None):
        """``y = W x + b`` row by row.

        Parameters
        ----------
        x : ndarray, shape (B, n_in)
        t : ndarray, shape (B,), optional
            Ignored.

        Returns
        -------
        y : ndarray, shape (B, n_out)
        """
        self._check_bound()
        return x @ self.W.T + self.b

    def jvp(self, x, t, u):
        """``∂y/∂x · u = W u`` row by row; shape ``(B, n_out)``."""
        self._check_bound()
        return u @ self.W.T

    def jvp_params(self, x, t, w):
        """Parameter-JVP ``∂y/∂θ · w = W_w x + b_w`` row by row; shape ``(B, n_out)``.

        ``w`` of shape ``(n_params,)`` is a tangent in this layer's parameter layout: ``W_w``
        (``w[:n_out*n_in]`` reshaped row-major to ``(n_out, n_in)``) then ``b_w``; ``x`` is held
        fixed. (``y`` is linear in ``(W, b)``, so this is ``y`` evaluated at the tangent.)
        """
        self._check_bound()
        n_w = self.n_out * self.n_in
        w = np.asarray(w, dtype=x.dtype)
        return x @ w[:n_w].reshape(self.n_out, self.n_in).T + w[n_w:]

    def vjp(self, x, t, v):
        """Cotangents of ``y = W x + b`` for each sample ``β`` of the batch.

        ``vᵀ∂y/∂x = Wᵀ v``; ``vᵀ∂y/∂W = v xᵀ`` (outer product, flattened row-major like ``W``);
        ``vᵀ∂y/∂b = v``.

        Parameters
        ----------
        x : ndarray, shape (B, n_in)
        t : ndarray, shape (B,) or None
            Ignored.
        v : ndarray, shape (B, n_out)

        Returns
        -------
        g_x : ndarray, shape (B, n_in)
        g_theta : ndarray, shape (B, n_params)
            Row ``β`` is ``[vec(v_β x_βᵀ), v_β]``, the layer's slice of ``params`` layout.
        g_t : None
        """
        self._check_bound()
        batch = x.shape[0]
        g_w = (v[:, :, None] * x[:, None, :]).reshape(batch, self.n_out * self.n_in)
        return v @ self.W, np.concatenate([g_w, v], axis=1), None

    def vjp_batch(self, x, t, v):
        """Cotangents of ``y = W x + b`` with the parameter part summed over the batch.

        The batch sum of :meth:`vjp`'s ``g_theta`` without forming its ``(B, n_params)``
        array: ``Σ_β v_β x_βᵀ = vᵀ x`` is one matrix product. This is what backpropagation
        through a model needs (``pyode.nn.Model``), where only the total gradient is kept.

        Parameters
        ----------
        x : ndarray, shape (B, n_in)
        t : ndarray, shape (B,) or None
            Ignored.
        v : ndarray, shape (B, n_out)

        Returns
        -------
        g_x : ndarray, shape (B, n_in)
            ``Wᵀ v_β`` row by row.
        g_theta : ndarray, shape (n_params,)
            ``[vec(vᵀ x), Σ_β v_β]`` in the layer's slice of the ``params`` layout.
        g_t : None
        """
        self._check_bound()
        return v @ self.W, np.concatenate([(v.T @ x).ravel(), v.sum(axis=0)]), None

    def __repr__(self):
        return f"Linear(n_in={self.n_in}, n_out={self.n_out})"


class TimeInput(Layer):
    """Append the time as an extra last column: ``x_aug = [x, t]``.

    With ``x`` of shape ``(B, n)`` and per-sample times ``t`` of shape ``(B,)`` the output has
    shape ``(B, n + 1)`` and ``x_aug[β, n] = t_β``. Jacobians, per sample:
    ``∂x_aug/∂x = [I; 0]`` and ``∂x_aug/∂t = e_{n+1}`` (the last unit vector).
    """

    name = "time_input"

    def forward(self, x, t):
        """``[x, t]``: shape ``(B, n + 1)`` in the dtype of ``x``."""
        return np.concatenate([x, np.asarray(t, dtype=x.dtype).reshape(-1, 1)], axis=1)

    def jvp(self, x, t, u):
        """``[u, 0]`` (the time is held fixed): shape ``(B, n + 1)``."""
        return np.concatenate([u, np.zeros((u.shape[0], 1), dtype=u.dtype)], axis=1)

    def vjp(self, x, t, v):
        """``(v[:, :n], None, v[:, n])``: the last column of ``v`` is the t-cotangent."""
        return v[:, :-1], None, v[:, -1]


class Activation(Layer):
    """Elementwise activation ``y = σ(x)`` with Jacobian ``J = diag(σ'(x))``.

    Subclasses write ``forward`` (σ) and ``derivative`` (σ'); because ``J`` is diagonal, the
    JVP ``J u = σ'(x) ⊙ u`` and the VJP ``vᵀJ = σ'(x) ⊙ v`` are written once, here. Inputs and
    outputs keep the dtype of ``x``.
    """

    name = "activation"

    def forward(self, x, t=None):  # pragma: no cover - overridden by every subclass
        raise NotImplementedError

    def derivative(self, x):  # pragma: no cover - overridden by every subclass
        raise NotImplementedError

    def jvp(self, x, t, u):
        """``J u = σ'(x) ⊙ u``; shape of ``x``."""
        return self.derivative(x) * u

    def vjp(self, x, t, v):
        """``(σ'(x) ⊙ v, None, None)``."""
        return self.derivative(x) * v, None, None


class Identity(Activation):
    """``σ(x) = x``; ``J = I``."""

    name = "identity"

    def forward(self, x, t=None):
        """``x`` (a copy)."""
        return np.array(x, copy=True)

    def derivative(self, x):
        """``σ'(x) = 1``."""
        return np.ones_like(x)


class Tanh(Activation):
    """``σ(x) = tanh(x)``; ``J = diag(1 − tanh²(x))``."""

    name = "tanh"

    def forward(self, x, t=None):
        """``tanh(x)``."""
        return np.tanh(x)

    def derivative(self, x):
        """``1 − tanh²(x)``."""
        y = np.tanh(x)
        return 1.0 - y * y


class ReLU(Activation):
    """``σ(x) = max(x, 0)``; ``J = diag(1[x > 0])``.

    The derivative at the kink ``x = 0`` is taken as 0 (the convention of PyTorch and JAX);
    finite differences straddling 0 disagree with any choice there.
    """

    name = "relu"

    def forward(self, x, t=None):
        """``max(x, 0)``."""
        return np.maximum(x, 0)

    def derivative(self, x):
        """``1`` where ``x > 0``, else ``0`` (including ``x = 0``)."""
        return (x > 0).astype(x.dtype)


def _sigmoid(x):
    """Stable logistic function ``1 / (1 + exp(−x))``.

    Only ``e = exp(−|x|) ≤ 1`` is formed, so nothing overflows:
    ``σ(x) = 1 / (1 + e)`` for ``x ≥ 0`` and ``e / (1 + e)`` for ``x < 0``.
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


class Softplus(Activation):
    """``σ(x) = log(1 + eˣ)``; ``J = diag(sigmoid(x))``.

    Evaluated as ``log1p(exp(−|x|)) + max(x, 0)``, which equals ``log(1 + eˣ)`` for every ``x``
    and never overflows.
    """

    name = "softplus"

    def forward(self, x, t=None):
        """``log1p(exp(−|x|)) + max(x, 0)``."""
        return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)

    def derivative(self, x):
        """``sigmoid(x) = 1 / (1 + exp(−x))`` (stable form)."""
        return _sigmoid(x)


class Sigmoid(Activation):
    """``σ(x) = 1 / (1 + exp(−x))``; ``J = diag(σ(x)(1 − σ(x)))``.

    Evaluated from ``exp(−|x|)`` only, so it never overflows.
    """

    name = "sigmoid"

    def forward(self, x, t=None):
        """``1 / (1 + exp(−x))`` (stable form)."""
        return _sigmoid(x)

    def derivative(self, x):
        """``σ(x)(1 − σ(x))``."""
        s = _sigmoid(x)
        return s * (1.0 - s)


class ELU(Activation):
    """``σ(x) = x`` for ``x > 0``, ``α(eˣ − 1)`` otherwise; ``J = diag(1 or α eˣ)``.

    Parameters
    ----------
    alpha : float, optional
        ``α > 0``, default 1 (the registry name ``"elu"`` uses 1, for which σ is C¹).

    References
    ----------
    D.-A. Clevert, T. Unterthiner, S. Hochreiter, "Fast and Accurate Deep Network Learning by
    Exponential Linear Units (ELUs)", ICLR 2016, arXiv:1511.07289, Eq. (1)-(2).
    """

    name = "elu"

    def __init__(self, alpha=1.0):
        if (not isinstance(alpha, numbers.Real) or isinstance(alpha, bool)
                or not np.isfinite(alpha) or alpha <= 0):
            raise ValueError(f"alpha must be a finite float > 0; got alpha={alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x, t=None):
        """``x`` for ``x > 0``, else ``α·expm1(x)`` (exp of ``min(x, 0)`` only: no overflow)."""
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0))).astype(
            x.dtype, copy=False)

    def derivative(self, x):
        """``1`` for ``x > 0``, else ``α·exp(x)``."""
        return np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0))).astype(
            x.dtype, copy=False)

    def __repr__(self):
        return f"ELU(alpha={self.alpha!r})"


class Sin(Activation):
    """``σ(x) = sin(x)``; ``J = diag(cos(x))``."""

    name = "sin"

    def forward(self, x, t=None):
        """``sin(x)``."""
        return np.sin(x)

    def derivative(self, x):
        """``cos(x)``."""
        return np.cos(x)


class Cube(Activation):
    """``σ(x) = x³``; ``J = diag(3x²)``."""

    name = "cube"

    def forward(self, x, t=None):
        """``x³``."""
        return x * x * x

    def derivative(self, x):
        """``3x²``."""
        return 3.0 * x * x


#: Activation names accepted wherever an ``activation=`` string is, mapped to their classes.
ACTIVATIONS = {
    cls.name: cls for cls in (Tanh, ReLU, Softplus, Sigmoid, ELU, Sin, Cube, Identity)
}


def get_activation(spec):
    """Return an activation layer for a name or pass an activation instance through.

    Parameters
    ----------
    spec : str or Activation
        One of ``ACTIVATIONS`` (``"tanh"``, ``"relu"``, ``"softplus"``, ``"sigmoid"``,
        ``"elu"``, ``"sin"``, ``"cube"``, ``"identity"``), case-insensitive, or an
        :class:`Activation` instance (returned as is; activations hold no state).

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    TypeError
        ``spec`` is neither a string nor an Activation.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        cls = ACTIVATIONS.get(spec.lower())
        if cls is None:
            raise ValueError(
                f"unknown activation {spec!r}; valid names are {sorted(ACTIVATIONS)}"
            )
        return cls()
    raise TypeError(
        f"activation must be a name (one of {sorted(ACTIVATIONS)}) or a pyode.nn.Activation "
        f"instance; got {type(spec).__name__} {spec!r}"
    )


# ---------------------------------------------------------------------------------------------
# Sequential and MLP: the vector field
# ---------------------------------------------------------------------------------------------


class Sequential:
    """A chain of layers ``f = L_K ∘ … ∘ L_1`` that owns one flat parameter vector.

    ``Sequential`` implements the vector-field protocol of the README: ``f(t, y)``, ``params``,
    ``jvp``, ``vjp``, ``vjp_per_sample`` and ``jvp_params``.

    Parameters
    ----------
    *layers : Layer
        At least one layer. Each :class:`Linear` instance may appear once (it takes views into
        this Sequential's ``params``); activation instances hold no state and may be shared.
    seed : int, numpy.random.Generator or None, optional
        Seed of the initialisation (default 0); ``None`` draws fresh entropy.
    dtype : {numpy.float64, numpy.float32}, optional
        dtype of ``params``; the field computes in ``np.result_type(params.dtype, y.dtype)``.
    backend : {"numba", "numpy"}, optional
        Which integrator path the solver should use for this field (stored as ``backend``;
        this module always computes in NumPy). Default ``"numba"``.

    Attributes
    ----------
    layers : tuple of Layer
        The layers in application order (read by the kernel compiler).
    params : ndarray, shape (P,)
        Flat parameter vector, dtype ``dtype``. ``f.params = value`` copies ``value`` into the
        existing array, exactly like ``f.params[:] = value`` (see the property), so the layers'
        views and an optimiser holding ``f.params`` stay valid on every backend.
    n_params : int
        ``P``.
    n_in : int or None
        Width ``D`` of the state ``y`` (excluding time columns); ``None`` when no layer fixes it.
    n_out : int or None
        Width of ``f(t, y)``; a vector field for an ODE needs ``n_out == n_in``.
    dtype : numpy.dtype
    backend : str
    seed : int, Generator or None

    Raises
    ------
    TypeError
        A layer is not a :class:`Layer`; ``seed`` has an unusable type.
    ValueError
        No layers; consecutive widths disagree; a Linear already belongs to a Sequential;
        unknown ``dtype`` or ``backend``.

    Notes
    -----
    Initialisation (deterministic given ``seed``): ``rng = np.random.default_rng(seed)``; for
    each Linear in layer order draw ``W`` (shape ``(n_out, n_in)``, row-major order) and then
    ``b`` (shape ``(n_out,)``) from ``U(−1/√n_in, 1/√n_in)`` with ``rng.uniform`` in float64,
    then cast to ``dtype``. ``n_in`` counts the time column of a :class:`TimeInput`. This is the
    PyTorch ``nn.Linear`` default range (He et al. 2015 with a = √5, which reduces to 1/√n_in).

    Copies: ``copy.copy(f)``, ``copy.deepcopy(f)`` and ``pickle.loads(pickle.dumps(f))`` all
    give an independent field: a fresh ``params`` array holding the values of ``f.params``,
    and new :class:`Linear` layers whose ``W`` and ``b`` are views into it again, so the Numba
    kernels (which read ``params``) and the NumPy path (which reads ``W`` and ``b``) compute
    the same field, and changing one field never changes the other. ``copy.copy`` is not
    shallow here: a Linear belongs to one Sequential only, and sharing layers would make two
    fields share one parameter vector. Stateless activations may stay shared. For files that
    need no pickle, use :meth:`save` and :func:`load`.
    """

    def __init__(self, *layers: Layer, seed: int | np.random.Generator | None = 0,
                 dtype: DTypeLike = np.float64, backend: str = "numba") -> None:
        if not layers:
            raise ValueError(
                "Sequential needs at least one layer, e.g. Sequential(Linear(2, 2))"
            )
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"layers[{i}] must be a pyode.nn layer (Linear, an Activation such as "
                    f"Tanh(), or TimeInput()); got {type(layer).__name__} {layer!r}"
                )
        self.dtype = _check_dtype(dtype)
        self.backend = _check_backend(backend)
        self.n_in, self.n_out = _trace_widths(layers)
        self._n_time = sum(isinstance(layer, TimeInput) for layer in layers)
        rng = _make_rng(seed)
        self.seed = seed

        linears = [layer for layer in layers if isinstance(layer, Linear)]
        for i, layer in enumerate(linears):
            if layer.offset is not None or any(layer is other for other in linears[:i]):
                raise ValueError(
                    f"{layer!r} already belongs to a Sequential (it holds views into that "
                    "one's params); create a new Linear for each position"
                )
        self._params = np.empty(sum(layer.n_params for layer in layers), dtype=self.dtype)
        offset = 0
        for layer in linears:
            layer._bind(self._params, offset)
            bound = 1.0 / np.sqrt(layer.n_in)
            layer.W[...] = rng.uniform(-bound, bound, size=(layer.n_out, layer.n_in))
            layer.b[...] = rng.uniform(-bound, bound, size=layer.n_out)
            offset += layer.n_params
        self.layers = tuple(layers)

    # -- parameters ----------------------------------------------------------------------------

    @property
    def params(self) -> np.ndarray:
        """ndarray, shape (P,): the flat parameters (layout in the module docstring).

        The array object never changes over the life of the field. Assigning
        ``f.params = value`` (``value`` of shape (P,), any real dtype, cast to ``dtype``)
        copies ``value`` into it and has exactly the effect of ``f.params[:] = value``: the
        layers' ``W`` / ``b`` views, an optimiser holding ``f.params`` and every backend see
        the new values. (The assignment insists on shape (P,); slice assignment also
        broadcasts, e.g. ``f.params[:] = 0.0``.)

        Raises
        ------
        ValueError
            On assignment, ``value`` is not of shape (P,).
        """
        return self._params

    @params.setter
    def params(self, value: ArrayLike) -> None:
        value = np.asarray(value)
        if value.shape != self._params.shape:
            raise ValueError(
                f"params must have shape {self._params.shape}; got shape {value.shape}; "
                "assign an array of that shape (f.params = value copies into the array)"
            )
        self._params[...] = value

    @property
    def n_params(self) -> int:
        """int: number of parameters ``P``."""
        return self._params.size

    def bind_params(self, buffer: np.ndarray) -> None:
        """Keep the parameters in ``buffer`` from now on (storage owned by a larger model).

        The current values are copied into ``buffer``; then ``params`` *is* ``buffer`` and
        every Linear's ``W`` / ``b`` is a view into it, so writing into ``buffer`` changes the
        field on every backend. :class:`pyode.nn.Model` calls this with a slice of its own flat
        parameter vector, so one vector holds the parameters of every block (an ODE block's
        field among them) and one optimiser updates them all.

        This is the one exception to "the ``params`` array never changes": call it before an
        optimiser takes hold of ``params``. Copies are unaffected: ``copy.copy``,
        ``copy.deepcopy``, pickle and :meth:`save` of a bound field give a field with an
        array of its own holding the same values (a Model rebinds the copies of its fields to
        its own new vector).

        Parameters
        ----------
        buffer : ndarray, shape (P,)
            Writable, C-contiguous, of dtype ``dtype`` (a contiguous slice of a larger 1-D
            array qualifies).

        Raises
        ------
        TypeError
            ``buffer`` is not an ndarray.
        ValueError
            Wrong shape or dtype, not writable, or not contiguous (the message says which).
        """
        if not isinstance(buffer, np.ndarray):
            raise TypeError(f"buffer must be a 1-D ndarray of shape {self._params.shape}; got "
                            f"{type(buffer).__name__}")
        if buffer.shape != self._params.shape:
            raise ValueError(f"buffer must have the shape of params, {self._params.shape}; got "
                             f"shape {buffer.shape}")
        if buffer.dtype != self.dtype:
            raise ValueError(f"buffer must have the field's dtype {self.dtype.name}; got "
                             f"{buffer.dtype.name} (build the field with dtype="
                             f"{buffer.dtype.name} or allocate the buffer in {self.dtype.name})")
        if not buffer.flags.writeable or not buffer.flags.c_contiguous:
            raise ValueError("buffer must be writable and C-contiguous (a slice buffer[a:b] of "
                             "a 1-D array is; a strided view buffer[::2] is not)")
        if buffer is self._params:
            return
        buffer[...] = self._params
        offset = 0
        for layer in self.layers:
            if isinstance(layer, Linear):
                layer._bind(buffer, offset)
                offset += layer.n_params
        self._params = buffer

    # -- copies and files ----------------------------------------------------------------------

    def __getstate__(self):
        """State for copy and pickle: the attributes, with unbound copies of the Linears.

        The layers' ``W`` / ``b`` views are left out (they would be copied apart from
        ``params``); :meth:`__setstate__` rebinds the layers to the new ``params``.
        """
        state = self.__dict__.copy()
        state["layers"] = tuple(layer._unbound_copy() if isinstance(layer, Linear) else layer
                                for layer in self.layers)
        return state

    def __copy__(self):
        """``copy.copy(f)``: an independent field, as :func:`copy.deepcopy` (class Notes)."""
        import copy
        return copy.deepcopy(self)

    def __setstate__(self, state):
        """Rebuild from :meth:`__getstate__`: Linears bound to the restored ``params``.

        ``copy.deepcopy`` and pickle hand over a new ``params`` array, and *the same* new array
        to everything copied with the field — an optimiser pickled or deep-copied together
        with it (``pickle.dumps((f, opt))``) still updates the copy's parameters. It is adopted
        as it is when it can be (1-D, C-contiguous, writable, of the field's dtype), otherwise
        copied. Also reads pickles written before copies rebound their layers (their Linears
        carried stale ``W`` / ``b`` arrays; the values come from ``params``, which held the
        same).
        """
        self.__dict__.update(state)
        params = _adopted(state["_params"], self.dtype)
        layers, offset = [], 0
        for layer in state["layers"]:
            if isinstance(layer, Linear):
                layer = layer._unbound_copy()
                layer._bind(params, offset)
                offset += layer.n_params
            layers.append(layer)
        if params.shape != (offset,):
            raise ValueError(
                f"cannot restore {type(self).__name__}: its Linear layers need {offset} "
                f"parameters but the stored params has shape {params.shape}; the pickle is "
                "damaged or not of this pyode"
            )
        self._params = params
        self.layers = tuple(layers)

    def save(self, path: str | os.PathLike) -> None:
        """Write the field to ``path`` in numpy's ``.npz`` format (no pickle); see
        :func:`pyode.nn.load`.

        Stores the architecture (an :class:`MLP`'s constructor arguments, or a Sequential's
        layer list), ``params`` (dtype kept, so the loaded field computes bit-identically),
        ``dtype``, ``backend`` and the pyode version. The write is atomic: a temporary file in
        the same directory, then a rename onto ``path`` (no ``.npz`` is appended to the name).

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        TypeError
            The field has a layer kind the format does not know (a user-written layer), or is
            an instance of a user subclass of Sequential / MLP.
        """
        from .serialization import save_model
        save_model(path, self)

    # -- the field -----------------------------------------------------------------------------

    def __call__(self, t: float | np.ndarray, y: np.ndarray) -> np.ndarray:
        """Evaluate ``f(t, y)``.

        Parameters
        ----------
        t : float or ndarray, shape (B,)
            Time; an array gives one time per sample and needs a batch ``y`` of shape ``(B, D)``.
        y : ndarray, shape (D,) or (B, D)
            State, float32 or float64.

        Returns
        -------
        ndarray, shape (D_out,) or (B, D_out), dtype of ``y``
            ``D_out = n_out``, which equals ``D`` for a vector field.

        Raises
        ------
        TypeError, ValueError
            Bad ``y`` or ``t``; the message names the argument and the expected shape.
        """
        x, tb, y = self._prepare(t, y)
        for layer in self.layers:
            x = layer.forward(x, tb)
        return self._shape_like(x, y)

    def jvp(self, t: float | np.ndarray, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Jacobian-vector product ``∂f/∂y · u`` (``t`` and ``θ`` held fixed).

        Parameters
        ----------
        t : float or ndarray, shape (B,)
        y : ndarray, shape (D,) or (B, D)
        u : ndarray, shape of ``y``
            Tangent.

        Returns
        -------
        ndarray, shape (D_out,) or (B, D_out), dtype of ``y``
            Row ``β`` is ``J_β u_β`` with ``J_β = ∂f/∂y`` at sample ``β``.
        """
        x, tb, y = self._prepare(t, y)
        u = self._check_like(u, y.shape, "u", "the shape of y")
        du = u.reshape(x.shape).astype(x.dtype, copy=False)
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            du = layer.jvp(x, tb, du)
            if k < last:
                x = layer.forward(x, tb)
        return self._shape_like(du, y)

    def jvp_params(self, t: float | np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Parameter-JVP ``∂f/∂θ · w`` (``t`` and ``y`` held fixed).

        Forward mode through the chain: with the tangent ``u₀ = 0`` of the input,
        ``u_k = J_x^k u_{k−1} + J_θ^k w_k`` for layer k (``J_θ^k w_k`` only for layers with
        parameters, ``w_k`` their slice of ``w``), and the result is the last ``u_k``.

        Parameters
        ----------
        t : float or ndarray, shape (B,)
        y : ndarray, shape (D,) or (B, D)
        w : ndarray, shape (P,)
            Tangent in the layout of ``params`` (the same for every sample of a batch).

        Returns
        -------
        ndarray, shape (D_out,) or (B, D_out), dtype of ``y``
            Row ``β`` is ``∂f/∂θ · w`` at sample ``β``.

        Raises
        ------
        ValueError
            ``w`` is not of shape (P,).
        """
        x, tb, y = self._prepare(t, y)
        w = self._check_like(w, self._params.shape, "w", "the shape of params")
        w = w.astype(x.dtype, copy=False)
        du = np.zeros_like(x)
        for layer in self.layers:
            du = layer.jvp(x, tb, du)
            if layer.n_params:
                du = du + layer.jvp_params(x, tb, w[layer.offset:layer.offset + layer.n_params])
            x = layer.forward(x, tb)
        return self._shape_like(du, y)

    def vjp_per_sample(self, t: float | np.ndarray, y: np.ndarray, v: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, float | np.ndarray]:
        """Vector-Jacobian products with one parameter cotangent per sample.

        Parameters
        ----------
        t : float or ndarray, shape (B,)
        y : ndarray, shape (D,) or (B, D)
        v : ndarray, shape (D_out,) or (B, D_out)
            Cotangent, one row per sample (``D_out = n_out``, equal to ``D`` for a field).

        Returns
        -------
        g_y : ndarray, shape of ``y``, dtype of ``y``
            Row ``β`` is ``v_βᵀ ∂f/∂y`` at sample ``β``.
        g_theta : ndarray, shape (B, P) for a batch ``y``, (P,) for a 1-D ``y``
            Row ``β`` is ``v_βᵀ ∂f/∂θ`` at sample ``β``; dtype
            ``np.result_type(params.dtype, y.dtype)``.
        g_t : float or ndarray, shape (B,)
            ``vᵀ ∂f/∂t``: for a float ``t`` a Python float summed over the batch, for an array
            ``t`` one entry per sample. Zero for fields without a :class:`TimeInput`.
        """
        x, tb, y = self._prepare(t, y)
        v = self._check_like(v, self._out_shape(y), "v", "the shape of f(t, y)")
        g = v.reshape(x.shape[0], v.shape[-1]).astype(x.dtype, copy=False)
        inputs = []
        for layer in self.layers:
            inputs.append(x)
            x = layer.forward(x, tb)
        g_theta = np.zeros((x.shape[0], self.n_params), dtype=x.dtype)
        g_t = np.zeros(x.shape[0], dtype=x.dtype)
        for layer, x_in in zip(reversed(self.layers), reversed(inputs)):
            g, g_th, g_tl = layer.vjp(x_in, tb, g)
            if g_th is not None:
                g_theta[:, layer.offset:layer.offset + layer.n_params] = g_th
            if g_tl is not None:
                g_t += g_tl
        g_y = g.reshape(y.shape).astype(y.dtype, copy=False)
        if y.ndim == 1:
            g_theta = g_theta[0]
        return g_y, g_theta, self._time_cotangent(t, g_t)

    def vjp(self, t: float | np.ndarray, y: np.ndarray, v: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, float | np.ndarray]:
        """Vector-Jacobian products, parameter cotangent summed over the batch.

        The batch sum of :meth:`vjp_per_sample`; arguments as there.

        Returns
        -------
        g_y : ndarray, shape of ``y``
            ``vᵀ ∂f/∂y`` row by row.
        g_theta : ndarray, shape (P,)
            ``Σ_β v_βᵀ ∂f/∂θ``.
        g_t : float or ndarray, shape (B,)
            As in :meth:`vjp_per_sample`.
        """
        g_y, g_theta, g_t = self.vjp_per_sample(t, y, v)
        if g_theta.ndim == 2:
            g_theta = g_theta.sum(axis=0)
        return g_y, g_theta, g_t

    # -- helpers -------------------------------------------------------------------------------

    def _prepare(self, t, y):
        """Validate ``(t, y)``; return the batch ``x`` (B, D), times ``tb`` (B,) and ``y``."""
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.floating):
            raise TypeError(
                f"y must be a float32 or float64 array; got dtype {y.dtype}; convert it with "
                "np.asarray(y, dtype=np.float64)"
            )
        if y.ndim not in (1, 2):
            raise ValueError(
                f"y must have shape (D,) or (B, D); got an array of shape {y.shape}"
            )
        width = y.shape[-1]
        if self.n_in is not None and width != self.n_in:
            raise ValueError(
                f"y has last dimension {width} but this field takes states of width "
                f"n_in={self.n_in} (sizes[0] for an MLP); pass y of shape ({self.n_in},) or "
                f"(B, {self.n_in})"
            )
        cdtype = np.result_type(self._params.dtype, y.dtype)
        x = y.reshape(-1, width).astype(cdtype, copy=False)
        return x, self._batch_times(t, y, cdtype), y

    def _batch_times(self, t, y, cdtype):
        """Per-sample times, shape (B,), from a float ``t`` or an array ``t`` of shape (B,)."""
        batch = 1 if y.ndim == 1 else y.shape[0]
        t_arr = np.asarray(t)
        if not (np.issubdtype(t_arr.dtype, np.floating)
                or np.issubdtype(t_arr.dtype, np.integer)):
            raise TypeError(
                f"t must be a float or a float array of shape (B,); got {type(t).__name__} "
                f"with dtype {t_arr.dtype}"
            )
        if t_arr.ndim == 0:
            return np.full(batch, t_arr, dtype=cdtype)
        if y.ndim == 1:
            raise ValueError(
                f"t has shape {t_arr.shape} but y has shape {y.shape}: per-sample times need a "
                "batch y of shape (B, D); for a single state pass a float t"
            )
        if t_arr.shape != (batch,):
            raise ValueError(
                f"t must be a float or an array of shape (B,) = ({batch},) matching "
                f"y of shape {y.shape}; got t of shape {t_arr.shape}"
            )
        return t_arr.astype(cdtype)

    @staticmethod
    def _time_cotangent(t, g_t):
        if np.ndim(t) == 0:
            return float(g_t.sum())
        return g_t

    def _out_shape(self, y):
        width = self.n_out if self.n_out is not None else y.shape[-1] + self._n_time
        return y.shape[:-1] + (width,)

    @staticmethod
    def _shape_like(x, y):
        """Reshape a batch result to 1-D for 1-D ``y``, in the dtype of ``y``."""
        out = x[0] if y.ndim == 1 else x
        return out.astype(y.dtype, copy=False)

    @staticmethod
    def _check_like(a, shape, name, what):
        a = np.asarray(a)
        if a.shape != shape:
            raise ValueError(
                f"{name} must have {what}, {shape}; got {name} of shape {a.shape}"
            )
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"{name} must be a float array; got dtype {a.dtype}")
        return a

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return (f"{type(self).__name__}({inner}; n_params={self.n_params}, "
                f"dtype={self.dtype.name}, backend={self.backend!r})")


class MLP(Sequential):
    """Multilayer perceptron vector field.

    The layers are, in order: the input activation if given (applied to y only); then
    ``TimeInput()`` if ``time_input`` (t appended as the last input column); then
    ``Linear(sizes[0] (+1) → sizes[1])``, activation, ``Linear(sizes[1] → sizes[2])``,
    activation, …, ``Linear(sizes[-2] → sizes[-1])`` with no final activation.

    Parameters
    ----------
    sizes : sequence of int
        Widths ``[D, h_1, …, h_k, D_out]``, at least two entries, each ≥ 1. A vector field for
        an ODE needs ``sizes[-1] == sizes[0]``.
    activation : str or Activation, optional
        Hidden activation, a name in ``ACTIVATIONS`` (default ``"tanh"``).
    time_input : bool, optional
        Append ``t`` as an extra input column (default False).
    input_activation : str, Activation or None, optional
        Activation applied to the input before the first Linear (default none).
    seed, dtype, backend
        As in :class:`Sequential` (the initialisation is described there).

    Attributes
    ----------
    sizes : tuple of int
    activation : str
        Name of the hidden activation.
    input_activation : str or None
    time_input : bool
    (and everything :class:`Sequential` has)

    Examples
    --------
    The spiral model of the torchdiffeq demo, ``Linear(50→2) ∘ tanh ∘ Linear(2→50) ∘ cube``:

    >>> import numpy as np
    >>> from pyode import nn
    >>> f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube")
    >>> f.n_params
    252
    >>> f(0.0, np.array([2.0, 0.0])).shape
    (2,)
    >>> g = nn.MLP([3, 64, 64, 3], activation="softplus", time_input=True, seed=1)
    >>> g(np.array([0.0, 0.5]), np.zeros((2, 3))).shape
    (2, 3)
    """

    def __init__(self, sizes: Sequence[int], activation: str | Activation = "tanh",
                 time_input: bool = False, input_activation: str | Activation | None = None,
                 seed: int | np.random.Generator | None = 0, dtype: DTypeLike = np.float64,
                 backend: str = "numba") -> None:
        sizes = _check_sizes(sizes)
        if not isinstance(time_input, (bool, np.bool_)):
            raise TypeError(f"time_input must be True or False; got {time_input!r}")
        hidden = get_activation(activation)
        layers = []
        if input_activation is not None:
            layers.append(get_activation(input_activation))
        if time_input:
            layers.append(TimeInput())
        n_time = 1 if time_input else 0
        for k in range(len(sizes) - 1):
            layers.append(Linear(sizes[k] + (n_time if k == 0 else 0), sizes[k + 1]))
            if k < len(sizes) - 2:
                layers.append(hidden)
        super().__init__(*layers, seed=seed, dtype=dtype, backend=backend)
        self.sizes = sizes
        self.activation = hidden.name
        self.input_activation = (None if input_activation is None
                                 else get_activation(input_activation).name)
        self.time_input = bool(time_input)


def load(path: str | os.PathLike) -> Sequential:
    """Read a field written by :meth:`Sequential.save` (``f.save(path)``).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file written by ``f.save``; it is read with ``allow_pickle=False``.

    Returns
    -------
    Sequential or MLP
        The same class, layers, ``dtype`` and ``backend`` as the saved field, with
        ``params`` equal bit for bit: it computes exactly what the saved field computed.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    pyode.SaveFormatError
        The file is not a pyode model file (not an ``.npz``, a foreign ``.npz``, a training
        checkpoint — read those with :func:`pyode.load_checkpoint`), was written by a newer
        pyode with a newer format version, or is damaged. The message names the file.
    """
    from .serialization import load_model
    return load_model(path)


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _adopted(array, dtype):
    """``array`` itself if a field can keep its parameters in it, else a copy that can."""
    if (isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype == dtype
            and array.flags.c_contiguous and array.flags.writeable):
        return array
    return np.array(array, dtype=dtype, copy=True).reshape(-1)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_width(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {name}={value!r}")
    return int(value)


def _check_sizes(sizes):
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(
            f"sizes must be a sequence of positive integers such as [2, 50, 2]; got {sizes!r}"
        ) from None
    if len(sizes) < 2:
        raise ValueError(
            f"sizes must have at least two entries [input width, ..., output width]; got "
            f"sizes={list(sizes)!r}, e.g. use [2, 50, 2]"
        )
    for i, size in enumerate(sizes):
        if not _is_int(size) or size < 1:
            raise ValueError(
                f"sizes[{i}] must be a positive integer; got {size!r} in sizes={list(sizes)!r}"
            )
    return tuple(int(size) for size in sizes)


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _DTYPES:
        raise ValueError(f"dtype must be numpy.float32 or numpy.float64; got dtype={dtype!r}")
    return dt


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got backend={backend!r}")
    return backend


def _make_rng(seed):
    if seed is None or isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return np.random.default_rng(seed)
    if not _is_int(seed):
        raise TypeError(
            f"seed must be a non-negative int, a numpy Generator or None; got seed={seed!r}"
        )
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got seed={seed}")
    return np.random.default_rng(seed)


def _trace_widths(layers):
    """Follow the widths through ``layers``; return ``(n_in, n_out)`` (None if unconstrained).

    Raises ValueError when consecutive widths disagree.
    """
    width = None
    n_in = None
    n_time_before = 0
    for i, layer in enumerate(layers):
        if isinstance(layer, TimeInput):
            if width is None:
                n_time_before += 1
            else:
                width += 1
        elif isinstance(layer, Linear):
            if width is None:
                n_in = layer.n_in - n_time_before
                if n_in < 1:
                    raise ValueError(
                        f"layers[{i}] is {layer!r} after {n_time_before} TimeInput layer(s), "
                        f"which leaves {n_in} state columns; use n_in >= {n_time_before + 1}"
                    )
            elif layer.n_in != width:
                raise ValueError(
                    f"layers[{i}] is {layer!r} but the layers before it produce {width} "
                    f"columns; use Linear(n_in={width}, ...)"
                )
            width = layer.n_out
    return n_in, width


# ---------------------------------------------------------------------------------------------
# Models built from these layers and ODE blocks (pyode/models.py), under the names nn.Model,
# nn.ODEBlock, ... . Imported last: models.py uses the layers above.
# ---------------------------------------------------------------------------------------------

from .models import (Block, Flatten, ForwardInfo, Model, ModelGradients, ODEBlock,  # noqa: E402
                     ResidualBlock, ZeroPad)
