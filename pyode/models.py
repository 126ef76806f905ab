"""Models: discrete layers and ODE blocks chained under one flat parameter vector.

Chen et al. (2018), Sec. 3, replace the stack of residual blocks of a ResNet,
h_{k+1} = h_k + f(h_k, θ_k), by one continuous-depth block: the output of an
:class:`ODEBlock` is the solution at ``t1`` of dh/dt = f(h(t), t; θ) started from its input
at ``t0`` (eq. 1), and its VJP is the adjoint of the solve (eq. 4–5, Algorithm 1) or any other
gradient method of :func:`pyode.odeint_adjoint`. Discrete blocks around it change the shape of
the state (:class:`Flatten`, ``nn.Linear``), pad it with zeros for an augmented Neural ODE
(:class:`ZeroPad`; Dupont, Doucet & Teh 2019) or form the ResNet baseline
(:class:`ResidualBlock`). :class:`Model` chains them, owns one flat parameter vector that holds
every block's parameters as views (an ODE block's field included, through
:meth:`pyode.nn.Sequential.bind_params`) and backpropagates through the whole chain by hand.
The names are re-exported by :mod:`pyode.nn` (``pyode.nn.Model``, ``pyode.nn.ODEBlock``, ...).

The block protocol
------------------
A block acts on a batch ``x`` of shape ``(B, *s)`` (``s`` the per-sample shape) and provides

1. ``n_params`` — the number of entries of the model's ``params`` it owns;
2. ``out_shape(s)`` — the per-sample output shape for the per-sample input shape ``s``
   (a tuple); raises ValueError, saying what it takes, when it cannot take ``s``;
3. ``forward(x, keep, record)`` — returns ``(y, ctx)``: the output ``(B, *out_shape(s))`` and,
   when ``keep`` is true, what its VJP needs (``None`` otherwise). ODE blocks append the
   :class:`pyode.SolveInfo` of their solve to the list ``record`` when ``keep`` is false;
4. ``vjp(ctx, g, record)`` — for the cotangent ``g = ∂L/∂y`` (shape of ``y``) returns
   ``(∂L/∂x, ∂L/∂θ)``: the first of the shape of ``x``, the second of shape ``(n_params,)``
   summed over the batch (``None`` when ``n_params == 0``). ODE blocks append the
   :class:`pyode.AdjointGradients` of their backward pass to ``record``;
5. ``_bind(params, offset)`` and ``_init(rng)`` — take views into the model's vector starting
   at ``offset`` and initialise them (blocks with parameters only).

``nn.Linear`` layers and ``nn`` activations (instances or names) are blocks too: the model
wraps them, using ``Linear.vjp_batch`` (the batch-summed parameter VJP) and the activations'
``forward`` / ``vjp``, so their derivatives are written once, in :mod:`pyode.nn`.

Memory of the backward pass (what ``ctx`` holds): a discrete block keeps its input, so a chain
of L blocks keeps O(L) activations (the ResNet of Table 1). An ODE block keeps what its
gradient method keeps: "backsolve" the two states y(t0), y(t1) (O(1) in the number of steps:
the ODE-Net row), "discrete" the (s + 1)·D floats of every step (RK-Net: O(L̃) in the steps
L̃), "checkpoint" one state per step.

References
----------
R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, arXiv:1806.07366: Sec. 3 and Table 1 (ODE-Net, RK-Net, ResNet),
eq. (1) and (4)–(5), Algorithm 1.
E. Dupont, A. Doucet, Y. W. Teh, "Augmented Neural ODEs", NeurIPS 2019, arXiv:1904.01681,
Sec. 4 (the state padded with zeros).
K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(residual blocks).
"""
from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field as dataclass_field

import numpy as np

from . import nn
from .adjoint import check_adjoint_method, odeint_adjoint
from .solvers import odeint
from .tableaus import METHODS, get_tableau

__all__ = ["Block", "Flatten", "ForwardInfo", "Model", "ModelGradients", "ODEBlock",
           "ResidualBlock", "ZeroPad"]

#: ``backend=`` values an :class:`ODEBlock` passes to the solver (README, "Backends").
ODE_BACKENDS = ("auto", "numba", "numpy", "cuda")


# ---------------------------------------------------------------------------------------------
# The block protocol and the wrappers of nn layers
# ---------------------------------------------------------------------------------------------


class Block:
    """Base class of model blocks; the protocol is in the module docstring.

    Blocks without parameters inherit ``n_params = 0`` and the no-op ``_bind`` / ``_init``.
    """

    name = "block"
    n_params = 0

    def out_shape(self, shape):  # pragma: no cover - overridden by every subclass
        raise NotImplementedError

    def forward(self, x, keep=False, record=None):  # pragma: no cover - overridden
        raise NotImplementedError

    def vjp(self, ctx, g, record=None):  # pragma: no cover - overridden
        raise NotImplementedError

    def _bind(self, params, offset):
        """Take views into ``params`` from ``offset`` on (blocks with parameters)."""

    def _init(self, rng):
        """Initialise the parameters (blocks with parameters)."""

    def _children(self):
        """The blocks inside this one (a residual block's layers), for the model's checks."""
        return ()

    def __repr__(self):
        return f"{type(self).__name__}()"


def _vector_shape(shape, width, what):
    """Check that the per-sample ``shape`` is ``(width,)`` (any width for ``width=None``)."""
    if len(shape) != 1 or (width is not None and shape[0] != width):
        want = f"({width},)" if width is not None else "(D,) (one axis)"
        raise ValueError(f"{what} takes per-sample inputs of shape {want}, i.e. x of shape "
                         f"(B, {width if width is not None else 'D'}); got per-sample shape "
                         f"{tuple(shape)}" + (" (put a Flatten() before it)"
                                              if len(shape) > 1 else ""))
    return tuple(shape)


class _LinearBlock(Block):
    """An ``nn.Linear`` in a model: ``y = W x + b``; VJP by ``Linear.vjp_batch``."""

    name = "linear"

    def __init__(self, layer):
        self.layer = layer
        self.n_params = layer.n_params

    def out_shape(self, shape):
        _vector_shape(shape, self.layer.n_in, repr(self.layer))
        return (self.layer.n_out,)

    def forward(self, x, keep=False, record=None):
        return self.layer.forward(x), (x if keep else None)

    def vjp(self, ctx, g, record=None):
        g_x, g_theta, _ = self.layer.vjp_batch(ctx, None, g)
        return g_x, g_theta

    def _bind(self, params, offset):
        self.layer._bind(params, offset)

    def _init(self, rng):
        # The rule of nn.Sequential (its Notes): W then b from U(-1/sqrt(n_in), 1/sqrt(n_in)).
        bound = 1.0 / np.sqrt(self.layer.n_in)
        self.layer.W[...] = rng.uniform(-bound, bound, size=self.layer.W.shape)
        self.layer.b[...] = rng.uniform(-bound, bound, size=self.layer.b.shape)

    def __repr__(self):
        return repr(self.layer)


class _ActivationBlock(Block):
    """An ``nn`` activation in a model, applied elementwise to a state of any shape."""

    name = "activation"

    def __init__(self, layer):
        self.layer = layer

    def out_shape(self, shape):
        return tuple(shape)

    def forward(self, x, keep=False, record=None):
        return self.layer.forward(x), (x if keep else None)

    def vjp(self, ctx, g, record=None):
        return self.layer.vjp(ctx, None, g)[0], None

    def __repr__(self):
        return repr(self.layer)


def _as_block(obj, where):
    """The block for one entry of a model's (or a residual block's) layer list."""
    if isinstance(obj, Block):
        return obj
    if isinstance(obj, nn.Linear):
        return _LinearBlock(obj)
    if isinstance(obj, (nn.Activation, str)):
        return _ActivationBlock(nn.get_activation(obj))
    hint = ""
    if isinstance(obj, nn.Sequential):
        hint = (" (a Sequential is a vector field: put it in an ODEBlock(field), or pass its "
                "layers one by one)")
    elif isinstance(obj, nn.TimeInput):
        hint = " (TimeInput belongs inside a vector field, not in a model)"
    raise TypeError(f"{where} must be a block (nn.Linear, an activation or its name, "
                    f"nn.Flatten, nn.ZeroPad, nn.ResidualBlock, nn.ODEBlock); got "
                    f"{type(obj).__name__} {obj!r}{hint}")


# ---------------------------------------------------------------------------------------------
# Shape blocks
# ---------------------------------------------------------------------------------------------


class Flatten(Block):
    """Flatten each sample: ``(B, *s) → (B, prod(s))``, in C order.

    The Jacobian is a permutation-free reshape, so the VJP reshapes the cotangent back:
    ``∂L/∂x = reshape(∂L/∂y, (B, *s))``.
    """

    name = "flatten"

    def out_shape(self, shape):
        return (math.prod(shape),)

    def forward(self, x, keep=False, record=None):
        return x.reshape(x.shape[0], -1), (x.shape if keep else None)

    def vjp(self, ctx, g, record=None):
        return g.reshape(ctx), None


class ZeroPad(Block):
    """Append ``n_extra`` zero components to each sample: ``x ↦ [x, 0]``, ``(B, D) → (B, D + p)``.

    The augmentation of Dupont et al. (2019), Sec. 4: an ODE on the padded state R^{D+p} can
    move points around one another, which the flow of an ODE on R^D cannot (its trajectories
    never cross). Jacobian ``[I; 0]``, so ``∂L/∂x = (∂L/∂y)[:, :D]``.

    Parameters
    ----------
    n_extra : int
        ``p ≥ 1``, the number of zeros appended.

    Raises
    ------
    ValueError
        ``n_extra`` is not a positive integer.
    """

    name = "zero_pad"

    def __init__(self, n_extra):
        self.n_extra = nn._check_width(n_extra, "n_extra")

    def out_shape(self, shape):
        _vector_shape(shape, None, repr(self))
        return (shape[0] + self.n_extra,)

    def forward(self, x, keep=False, record=None):
        pad = np.zeros((x.shape[0], self.n_extra), dtype=x.dtype)
        return np.concatenate([x, pad], axis=1), (x.shape[1] if keep else None)

    def vjp(self, ctx, g, record=None):
        return g[:, :ctx], None

    def __repr__(self):
        return f"ZeroPad(n_extra={self.n_extra})"


# ---------------------------------------------------------------------------------------------
# Chains: the residual block and the model share one forward / backward loop
# ---------------------------------------------------------------------------------------------


def _chain_shape(blocks, shape, prefix):
    """Per-sample output shape of ``blocks`` for input ``shape``; ValueError naming the block."""
    for i, block in enumerate(blocks):
        try:
            shape = tuple(block.out_shape(tuple(shape)))
        except ValueError as exc:
            raise ValueError(f"{prefix}[{i}] = {block!r}: {exc}") from None
    return shape


def _chain_forward(blocks, x, keep, record):
    ctxs = []
    for block in blocks:
        x, ctx = block.forward(x, keep, record)
        ctxs.append(ctx)
    return x, ctxs


def _chain_vjp(blocks, offsets, ctxs, g, g_theta, record):
    """Backpropagate ``g`` through ``blocks``; write each block's ∂L/∂θ into ``g_theta`` at its
    offset (relative to the start of ``g_theta``); return ∂L/∂x."""
    for block, offset, ctx in zip(reversed(blocks), reversed(offsets), reversed(ctxs)):
        g, g_th = block.vjp(ctx, g, record)
        if block.n_params:
            g_theta[offset:offset + block.n_params] = g_th
    return g


def _offsets(blocks):
    out, offset = [], 0
    for block in blocks:
        out.append(offset)
        offset += block.n_params
    return out, offset


class ResidualBlock(Block):
    """A residual block ``y = x + r(x)`` with ``r = L_K ∘ … ∘ L_1`` (He et al. 2016).

    The ResNet baseline of Chen et al. (2018), Table 1, stacks such blocks; one block is the
    explicit Euler step of size 1 of the ODE dh/dt = r(h) (Sec. 1, eq. 1). The Jacobian is
    ``I + ∂r/∂x``, so ``∂L/∂x = g + vjp_r(g)`` and ``∂L/∂θ = vjp_r,θ(g)``.

    Parameters
    ----------
    *layers : block
        The layers of ``r``: ``nn.Linear``, activations (instances or names) or other blocks.
        ``r`` must map a per-sample shape to itself.

    Examples
    --------
    >>> from pyode import nn
    >>> block = nn.ResidualBlock(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    >>> block.n_params
    1072
    """

    name = "residual"

    def __init__(self, *layers):
        if not layers:
            raise ValueError("ResidualBlock needs at least one layer, e.g. "
                             "ResidualBlock(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))")
        self.layers = tuple(layers)
        self._blocks = tuple(_as_block(layer, f"layers[{i}]") for i, layer in enumerate(layers))
        self._block_offsets, self.n_params = _offsets(self._blocks)

    def out_shape(self, shape):
        out = _chain_shape(self._blocks, shape, "layers")
        if out != tuple(shape):
            raise ValueError(f"its layers map per-sample shape {tuple(shape)} to {out}; a "
                             "residual block x + r(x) needs r to keep the shape")
        return out

    def forward(self, x, keep=False, record=None):
        r, ctxs = _chain_forward(self._blocks, x, keep, record)
        return x + r, (ctxs if keep else None)

    def vjp(self, ctx, g, record=None):
        g_theta = np.zeros(self.n_params, dtype=g.dtype) if self.n_params else None
        g_x = _chain_vjp(self._blocks, self._block_offsets, ctx, g, g_theta, record)
        return g + g_x, g_theta

    def _bind(self, params, offset):
        for block, off in zip(self._blocks, self._block_offsets):
            block._bind(params, offset + off)

    def _init(self, rng):
        for block in self._blocks:
            block._init(rng)

    def _children(self):
        return self._blocks

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_blocks"]            # rebuilt from the (copied) layers
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._blocks = tuple(_as_block(layer, f"layers[{i}]")
                             for i, layer in enumerate(self.layers))

    def __repr__(self):
        return f"ResidualBlock({', '.join(repr(b) for b in self._blocks)})"


# ---------------------------------------------------------------------------------------------
# The ODE block
# ---------------------------------------------------------------------------------------------


def _check_time(value, name):
    if (not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_))
            or not np.isfinite(value)):
        raise ValueError(f"{name} must be a finite real number; got {name}={value!r}")
    return float(value)


class ODEBlock(Block):
    """A continuous-depth block: ``y = h(t1)`` where ``dh/dt = f(t, h; θ)``, ``h(t0) = x``.

    The ODE-Net block of Chen et al. (2018), Sec. 3: the forward pass is one solve of the
    field ``field`` from ``t0`` to ``t1`` with ``pyode.odeint_adjoint`` (every sample of the
    batch its own initial value problem with its own steps), the VJP is the gradient method
    ``adjoint_method`` of that call. The field's parameters live in the owning
    :class:`Model`'s flat vector (``Sequential.bind_params``).

    Parameters
    ----------
    field : pyode.nn.Sequential or pyode.nn.MLP
        The vector field f, with ``n_in == n_out`` (the state width D); a field with a
        ``TimeInput`` (``MLP(..., time_input=True)``) sees t. Its current parameter values
        become the model's; its dtype must be the model's. nn fields run on the Numba kernels
        for "backsolve" and "checkpoint" (``backend="auto"``), on the NumPy path otherwise.
    t0, t1 : float, optional
        Integration interval (default [0, 1]); ``t1 < t0`` integrates backward. Units of t.
    method : str, optional
        A name in ``pyode.METHODS`` (default ``"dopri5"``). Fixed-step methods (``"rk4"``,
        ...) need ``options={"step_size": h}``.
    rtol, atol : float, optional
        Tolerances of the adaptive forward solve (README / ``pyode.odeint``; default 1e-7 and
        1e-9, the ``odeint`` defaults). Classifiers train well at 1e-3 (torchdiffeq's MNIST
        ODE-Net uses 1e-3; so does ``examples/odenet_digits.py``).
    adjoint_method : {"backsolve", "checkpoint", "discrete", "forward"}, optional
        The gradient of ``pyode.odeint_adjoint`` (default ``"backsolve"``, the adjoint of Chen
        et al., O(1) memory). ``"discrete"`` with a fixed-step method is the RK-Net of Table 1
        (backpropagation through the solver's steps).
    adjoint_rtol, adjoint_atol, adjoint_options, options : optional
        Passed on to ``odeint_adjoint`` / ``odeint`` unchanged.
    backend : {"auto", "numba", "numpy", "cuda"}, optional
        Passed on (default "auto").

    Attributes
    ----------
    field, t0, t1, method, rtol, atol, adjoint_method, adjoint_rtol, adjoint_atol, options,
    adjoint_options, backend
        As given. They may be changed between calls (a tolerance sweep, the NumPy path for a
        memory measurement); the solver checks them on each call.
    n_params : int
        ``field.n_params``.

    Raises
    ------
    TypeError
        ``field`` is not a ``pyode.nn.Sequential``.
    ValueError
        The field's input and output widths differ; ``t0`` or ``t1`` not finite, or equal; an
        unknown ``method``, ``adjoint_method`` or ``backend``; a fixed-step method without
        ``options={"step_size": h}``; a bad ``adjoint_options`` key (as ``odeint_adjoint``).

    Examples
    --------
    >>> import numpy as np
    >>> from pyode import nn
    >>> block = nn.ODEBlock(nn.MLP([2, 16, 2], time_input=True), rtol=1e-5, atol=1e-7)
    >>> model = nn.Model(nn.ZeroPad(1), nn.ODEBlock(nn.MLP([3, 8, 3])), nn.Linear(3, 2))
    >>> model(np.zeros((4, 2))).shape
    (4, 2)
    """

    name = "ode"

    def __init__(self, field, t0=0.0, t1=1.0, method="dopri5", rtol=1e-7, atol=1e-9,
                 adjoint_method="backsolve", adjoint_rtol=None, adjoint_atol=None,
                 options=None, adjoint_options=None, backend="auto"):
        if not isinstance(field, nn.Sequential):
            raise TypeError(
                f"field must be a pyode.nn.Sequential or pyode.nn.MLP (its parameters go into "
                f"the model's flat vector); got {type(field).__name__} {field!r}")
        if field.n_in is None or field.n_in != field.n_out:
            raise ValueError(
                f"field must map states of width D to width D (n_in == n_out); got "
                f"n_in={field.n_in}, n_out={field.n_out}: use e.g. nn.MLP([D, hidden, D])")
        self.t0 = _check_time(t0, "t0")
        self.t1 = _check_time(t1, "t1")
        if self.t0 == self.t1:
            raise ValueError(f"t0 and t1 must differ (the block integrates from t0 to t1); got "
                             f"t0 = t1 = {self.t0!r}")
        tab = get_tableau(method)       # ValueError listing pyode.METHODS
        if not tab.adaptive and (not isinstance(options, dict) or "step_size" not in options):
            raise ValueError(f"method={method!r} takes fixed steps: pass options="
                             "{'step_size': h} (h in units of t), or use an adaptive method "
                             f"({', '.join(m for m in METHODS if METHODS[m].adaptive)})")
        check_adjoint_method(adjoint_method, adjoint_options)
        if backend not in ODE_BACKENDS:
            raise ValueError(f"backend={backend!r} is not known; valid backends: "
                             f"{', '.join(ODE_BACKENDS)}")
        self.field = field
        self.method = method
        self.rtol, self.atol = rtol, atol
        self.adjoint_method = adjoint_method
        self.adjoint_rtol, self.adjoint_atol = adjoint_rtol, adjoint_atol
        self.options = options
        self.adjoint_options = adjoint_options
        self.backend = backend
        self.n_params = field.n_params
        self._bound = False

    @property
    def width(self):
        """int: the state width D (``field.n_in``)."""
        return self.field.n_in

    def out_shape(self, shape):
        return _vector_shape(shape, self.width, f"ODEBlock (a field of width {self.width})")

    def _times(self):
        return np.array([self.t0, self.t1])

    def forward(self, x, keep=False, record=None):
        if not keep:
            ys, info = odeint(self.field, x, self._times(), method=self.method, rtol=self.rtol,
                              atol=self.atol, options=self.options, backend=self.backend,
                              full_output=True)
            if record is not None:
                record.append(info)
            return ys[-1], None
        ys, vjp = odeint_adjoint(self.field, x, self._times(), method=self.method,
                                 rtol=self.rtol, atol=self.atol, adjoint_rtol=self.adjoint_rtol,
                                 adjoint_atol=self.adjoint_atol, options=self.options,
                                 backend=self.backend, adjoint_method=self.adjoint_method,
                                 adjoint_options=self.adjoint_options)
        return ys[-1], vjp

    def vjp(self, ctx, g, record=None):
        g_ys = np.zeros((2,) + g.shape, dtype=g.dtype)    # dL/dy(t0) = 0, dL/dy(t1) = g
        g_ys[1] = g
        grads = ctx(g_ys)
        if record is not None:
            record.append(grads)
        return grads.y0, grads.params

    def trajectory(self, x, t):
        """The states of the flow at the times ``t``, with this block's solver settings.

        Parameters
        ----------
        x : ndarray, shape (B, D)
            Initial states (at ``t[0]``; normally ``t0``).
        t : array_like, shape (T,)
            Output times, e.g. ``np.linspace(block.t0, block.t1, 20)``.

        Returns
        -------
        ndarray, shape (T, B, D)
        """
        return odeint(self.field, x, t, method=self.method, rtol=self.rtol, atol=self.atol,
                      options=self.options, backend=self.backend)

    def _bind(self, params, offset):
        self.field.bind_params(params[offset:offset + self.n_params])

    def __repr__(self):
        return (f"ODEBlock({self.field!r}, t0={self.t0!r}, t1={self.t1!r}, "
                f"method={self.method!r}, rtol={self.rtol!r}, atol={self.atol!r}, "
                f"adjoint_method={self.adjoint_method!r})")


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


@dataclass
class ForwardInfo:
    """Statistics of an inference pass (``model.forward(x, full_output=True)``).

    Attributes
    ----------
    nfe : float
        Field evaluations per sample (the mean over the batch), summed over the ODE blocks;
        0 for a model without ODE blocks.
    solves : list of pyode.SolveInfo
        One per ODE block, in block order (``nfev`` etc. per sample).
    """

    nfe: float = 0.0
    solves: list = dataclass_field(default_factory=list)


@dataclass
class ModelGradients:
    """What the ``vjp`` of :meth:`Model.forward_vjp` returns.

    Attributes
    ----------
    x : ndarray, shape of the input x
        ∂L/∂x.
    params : ndarray, shape (P,)
        ∂L/∂θ in the layout of ``model.params``, summed over the batch.
    nfe_forward, nfe_backward : float
        Field evaluations per sample (mean over the batch) of the forward solves and of the
        backward passes, summed over the ODE blocks (Chen et al. 2018, Fig. 3; for
        "discrete" the backward count is of field VJPs). 0 without ODE blocks.
    solves : list of pyode.AdjointGradients
        One per ODE block, in block order: its ``info`` (backward) and ``forward_info``.
    """

    x: np.ndarray
    params: np.ndarray
    nfe_forward: float = 0.0
    nfe_backward: float = 0.0
    solves: list = dataclass_field(default_factory=list)


def _all_blocks(blocks):
    """``blocks`` and every block inside them, depth first."""
    for block in blocks:
        yield block
        yield from _all_blocks(block._children())


class Model:
    """A chain of blocks ``F = B_K ∘ … ∘ B_1`` with one flat parameter vector and its VJP.

    Parameters
    ----------
    *blocks : block
        ``nn.Linear``, activations (instances such as ``nn.ReLU()`` or names such as
        ``"relu"``), :class:`Flatten`, :class:`ZeroPad`, :class:`ResidualBlock`,
        :class:`ODEBlock`, or any object following the block protocol (module docstring).
        Each block with parameters, and each ODE block's field, belongs to one model only.
    seed : int, numpy.random.Generator or None, optional
        Seed of the initialisation of the ``nn.Linear`` layers (default 0).
    dtype : {numpy.float64, numpy.float32}, optional
        dtype of ``params`` and of the computation (inputs are cast to it).
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(8, 8)``; when given the shapes are checked here,
        otherwise on every call.

    Attributes
    ----------
    blocks : tuple
        The blocks as given.
    params : ndarray, shape (P,)
        One flat vector holding every block's parameters, in block order (a Linear: W
        row-major then b; a residual block: its layers in order; an ODE block: its field's
        ``params``). The blocks read views into it, so writing into it (an optimiser step)
        changes the model; ``model.params = value`` copies into it.
    n_params : int
    ode_blocks : list of ODEBlock
        The ODE blocks, in order (inside residual blocks too).
    dtype : numpy.dtype
    input_shape, output_shape : tuple of int or None

    Raises
    ------
    TypeError
        A block is not a block (the message lists what is).
    ValueError
        No blocks; consecutive shapes disagree (with ``input_shape``); a Linear, block or field
        already belongs to a model or a Sequential, or appears twice; an ODE field's dtype
        differs from ``dtype``.

    Notes
    -----
    Initialisation: ``rng = np.random.default_rng(seed)``; every ``nn.Linear`` of the model
    (residual blocks included), in order, draws W then b from U(−1/√n_in, 1/√n_in) as in
    :class:`pyode.nn.Sequential`. ODE fields keep the values they were built with (their own
    ``seed``).

    Copies: ``copy.copy``, ``copy.deepcopy`` and pickle give an independent model with a
    fresh ``params`` (its blocks and fields are copies bound to it).

    Examples
    --------
    The ODE-Net of Chen et al. (2018), Table 1, on 8×8 images:

    >>> import numpy as np
    >>> from pyode import nn
    >>> field = nn.MLP([32, 64, 32], activation="softplus", time_input=True)
    >>> model = nn.Model(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
    ...                  nn.ODEBlock(field, rtol=1e-3, atol=1e-3), nn.Linear(32, 10))
    >>> x = np.random.default_rng(0).uniform(size=(5, 8, 8))
    >>> logits, vjp = model.forward_vjp(x)
    >>> grads = vjp(np.ones_like(logits))
    >>> logits.shape, grads.params.shape == model.params.shape, grads.x.shape
    ((5, 10), True, (5, 8, 8))
    """

    def __init__(self, *blocks, seed=0, dtype=np.float64, input_shape=None):
        if not blocks:
            raise ValueError("Model needs at least one block, e.g. Model(nn.Linear(64, 10))")
        self.dtype = nn._check_dtype(dtype)
        self.seed = seed
        self.blocks = tuple(blocks)
        self._blocks = tuple(_as_block(b, f"blocks[{i}]") for i, b in enumerate(blocks))
        self._check_ownership()
        self._block_offsets, n_total = _offsets(self._blocks)
        self.input_shape = self.output_shape = None
        if input_shape is not None:
            self.input_shape = self._check_input_shape(input_shape)
            self.output_shape = _chain_shape(self._blocks, self.input_shape, "blocks")
        self._params = np.empty(n_total, dtype=self.dtype)
        self._bind_all()
        rng = nn._make_rng(seed)
        for block in self._blocks:
            block._init(rng)
        self._probe = self._new_probe()

    # -- construction helpers ------------------------------------------------------------------

    def _check_ownership(self):
        seen = {}
        for block in _all_blocks(self._blocks):
            owned = block.layer if isinstance(block, _LinearBlock) else block
            if isinstance(block, _ActivationBlock) or block.n_params == 0 and not isinstance(
                    block, ODEBlock):
                continue                # stateless blocks may repeat
            if id(owned) in seen:
                raise ValueError(f"{owned!r} appears twice in the model; each block with "
                                 "parameters belongs to one position (create another one, or "
                                 "copy.deepcopy it)")
            seen[id(owned)] = owned
            if isinstance(block, _LinearBlock) and block.layer.offset is not None:
                raise ValueError(f"{block.layer!r} already belongs to a Sequential or a Model "
                                 "(it holds views into that one's params); create a new "
                                 "nn.Linear for each position")
            if getattr(block, "_bound", False):
                raise ValueError(f"{block!r} already belongs to a Model; create a new block "
                                 "(or copy.deepcopy it) for this one")
            if isinstance(block, ODEBlock):
                f = block.field
                if id(f) in seen:
                    raise ValueError("the same field is in two ODE blocks; each ODE block "
                                     "needs a field of its own (copy.deepcopy(field))")
                seen[id(f)] = f
                if f.params.base is not None:
                    raise ValueError(f"the field of {block!r} already keeps its parameters in "
                                     "another model's vector; give this ODE block a field of "
                                     "its own (copy.deepcopy(field))")
                if f.dtype != self.dtype:
                    raise ValueError(f"the field of {block!r} has dtype {f.dtype.name} but the "
                                     f"model has dtype {self.dtype.name}; build them with the "
                                     "same dtype")

    @staticmethod
    def _check_input_shape(shape):
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(f"input_shape must be a tuple of positive ints such as (8, 8); got "
                            f"{shape!r}") from None
        if not shape or not all(nn._is_int(s) and s >= 1 for s in shape):
            raise ValueError(f"input_shape must be a non-empty tuple of positive ints (the "
                             f"shape of one sample, e.g. (8, 8)); got {shape!r}")
        return tuple(int(s) for s in shape)

    def _bind_all(self):
        for block, offset in zip(self._blocks, self._block_offsets):
            block._bind(self._params, offset)
        for block in _all_blocks(self._blocks):
            if isinstance(block, ODEBlock):
                block._bound = True

    def _new_probe(self):
        # A fixed random direction: vjp compares params·probe with its value at the forward
        # pass, which catches a parameter update in between without copying params.
        return np.random.default_rng(12345).standard_normal(self.n_params)

    # -- parameters ----------------------------------------------------------------------------

    @property
    def params(self):
        """ndarray, shape (P,): the flat parameters; assigning copies into the array (as for
        :attr:`pyode.nn.Sequential.params`)."""
        return self._params

    @params.setter
    def params(self, value):
        value = np.asarray(value)
        if value.shape != self._params.shape:
            raise ValueError(f"params must have shape {self._params.shape}; got shape "
                             f"{value.shape} (model.params = value copies into the array)")
        self._params[...] = value

    @property
    def n_params(self):
        """int: ``P``."""
        return self._params.size

    @property
    def ode_blocks(self):
        """list of ODEBlock: the model's ODE blocks, in order."""
        return [b for b in _all_blocks(self._blocks) if isinstance(b, ODEBlock)]

    # -- forward and backward ------------------------------------------------------------------

    def _prepare(self, x):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"x must be a real array of shape (B, ...); got dtype {x.dtype}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"x must be a batch of shape (B, *sample_shape) with B >= 1; got "
                             f"shape {x.shape} (one sample: x[None])")
        if self.input_shape is not None and x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.input_shape))}) "
                             f"(input_shape={self.input_shape}); got {x.shape}")
        if self.input_shape is None:
            _chain_shape(self._blocks, x.shape[1:], "blocks")
        return x.astype(self.dtype, copy=False)

    def __call__(self, x):
        """``F(x)``: the output for a batch ``x`` (B, ...); same as :meth:`forward`."""
        return self.forward(x)

    def forward(self, x, full_output=False):
        """Inference: the output for a batch, without what backpropagation needs.

        Parameters
        ----------
        x : array_like, shape (B, *input_shape)
        full_output : bool, optional
            Also return a :class:`ForwardInfo` (the ODE blocks' evaluations).

        Returns
        -------
        y : ndarray, shape (B, *output_shape)
        info : ForwardInfo
            Only with ``full_output=True``.

        Raises
        ------
        TypeError, ValueError
            Bad ``x`` (the message names the block that cannot take its shape).
        pyode.SolverError
            An ODE block's solve failed.
        """
        record = []
        y, _ = _chain_forward(self._blocks, self._prepare(x), False, record)
        if not full_output:
            return y
        return y, ForwardInfo(nfe=sum(float(np.mean(i.nfev)) for i in record), solves=record)

    def forward_vjp(self, x):
        """Forward pass that keeps what backpropagation needs; returns ``(y, vjp)``.

        Parameters
        ----------
        x : array_like, shape (B, *input_shape)

        Returns
        -------
        y : ndarray, shape (B, *output_shape)
        vjp : callable
            ``vjp(g)`` with ``g = ∂L/∂y`` (shape of ``y``) returns :class:`ModelGradients`:
            ∂L/∂x, ∂L/∂θ (P,) and the NFE of the ODE blocks. It may be called several times;
            it raises ValueError if ``params`` changed since the forward pass, or if ``g``
            has the wrong shape or is not finite.

        Raises
        ------
        As :meth:`forward`.
        """
        x = self._prepare(x)
        y, ctxs = _chain_forward(self._blocks, x, True, None)
        stamp = float(self._params @ self._probe)

        def vjp(g):
            now = float(self._params @ self._probe)
            if now != stamp and not (math.isnan(now) and math.isnan(stamp)):
                raise ValueError("model.params changed between forward_vjp and vjp: the "
                                 "gradient would mix two models. Call vjp before the "
                                 "optimiser step (or run forward_vjp again)")
            g = np.asarray(g)
            if g.shape != y.shape:
                raise ValueError(f"g must have the shape of the output, {y.shape}; got "
                                 f"{g.shape}")
            if not np.all(np.isfinite(g)):
                raise ValueError("g contains NaN or inf; check the loss")
            g = g.astype(self.dtype, copy=False)
            g_theta = np.zeros(self.n_params, dtype=self.dtype)
            record = []
            g_x = _chain_vjp(self._blocks, self._block_offsets, ctxs, g, g_theta, record)
            record.reverse()                  # the backward pass met the ODE blocks last first
            return ModelGradients(
                x=g_x, params=g_theta,
                nfe_forward=sum(float(np.mean(r.forward_info.nfev)) for r in record),
                nfe_backward=sum(float(np.mean(r.info.nfev)) for r in record),
                solves=record)

        return y, vjp

    # -- copies --------------------------------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_blocks"]        # rebuilt from the copied blocks and bound to new params
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # The restored params array itself when possible: an optimiser copied or pickled with
        # the model holds that same new array and keeps updating it (nn.Sequential does so).
        values = nn._adopted(state["_params"], self.dtype)
        saved = values.copy()
        self._blocks = tuple(_as_block(b, f"blocks[{i}]") for i, b in enumerate(self.blocks))
        self._block_offsets, n_total = _offsets(self._blocks)
        if n_total != values.size:
            raise ValueError(f"cannot restore Model: its blocks need {n_total} parameters but "
                             f"the stored params has {values.size}; the pickle is damaged")
        self._params = values
        for block in _all_blocks(self._blocks):
            if isinstance(block, ODEBlock):
                block._bound = False
        self._bind_all()
        self._params[...] = saved

    def __copy__(self):
        # A shallow copy would share the blocks, whose views then point into one vector only:
        # copy.copy gives an independent model, like copy.deepcopy (as nn.Sequential does).
        return copy.deepcopy(self)

    def __repr__(self):
        inner = ", ".join(repr(b) for b in self._blocks)
        return f"Model({inner}; n_params={self.n_params}, dtype={self.dtype.name})"
