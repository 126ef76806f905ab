"""First-order optimisers that update a flat parameter vector in place.

Each optimiser holds a reference to a 1-D floating ndarray (typically ``f.params`` of a
:class:`pyode.nn.Sequential`) and ``step(grad)`` overwrites its entries, so the field that owns
the array changes. The state (momentum buffers, moment estimates) is kept in the dtype of the
parameters.

Conventions follow PyTorch's ``torch.optim`` (no weight decay, no Nesterov, no AMSGrad,
``maximize=False``), so a step here equals one PyTorch step from the same state:

* SGD momentum: ``v ← μ v + g; θ ← θ − lr v`` (the buffer holds the velocity without the lr;
  Sutskever et al. 2013 fold lr into v instead, which differs when lr changes between steps).
* Adam: ε is added to ``√v̂`` after the bias correction, as in Kingma & Ba, Algorithm 1.
* RMSprop: ε is added outside the square root, and the mean square starts at 0.

Every optimiser has ``state_dict()`` (a snapshot: kind, hyper-parameters, lr, n_steps and
copies of its buffers) and ``load_state_dict(state)`` (checks and copies the values in, so the
optimiser keeps updating the same ``params`` array); with the same params and gradients, steps
after a ``load_state_dict`` equal those the saved optimiser would have taken, bit for bit.
:func:`pyode.save_checkpoint` stores state dicts in a file.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["SGD", "Adam", "RMSprop", "Optimizer"]


class Optimizer:
    """Base class: validates the parameter array and each gradient.

    Parameters
    ----------
    params : ndarray, shape (P,)
        Writable 1-D float32 or float64 array, updated in place by :meth:`step`.
    lr : float
        Learning rate, finite and > 0.

    Attributes
    ----------
    params : ndarray, shape (P,)
        The very array passed in (not a copy).
    lr : float
        May be changed between steps (for schedules), also to 0 (a schedule that decays to
        exactly 0, such as a cosine ending at the last step); a state with ``lr == 0`` loads.
        Only the constructor requires ``lr > 0``: an optimiser built to take no steps is a
        mistake, one whose schedule has reached 0 is not.
    n_steps : int
        Number of calls to :meth:`step` so far.
    """

    #: Hyper-parameters in the state dict, name -> bounds for ``_check_real`` (subclasses).
    _HYPER = {}
    #: Names of the buffer attributes, each an ndarray of the shape and dtype of ``params``.
    _BUFFERS = ()
    #: Buffers that are running means of g² (so never negative), name -> what they hold.
    _NONNEGATIVE = {}

    def __init__(self, params: np.ndarray, lr: float) -> None:
        if not isinstance(params, np.ndarray):
            raise TypeError(
                f"params must be a 1-D float ndarray updated in place (e.g. f.params); got "
                f"{type(params).__name__}"
            )
        if params.ndim != 1 or not np.issubdtype(params.dtype, np.floating):
            raise ValueError(
                f"params must be a 1-D float32/float64 array; got shape {params.shape}, "
                f"dtype {params.dtype}"
            )
        if not params.flags.writeable:
            raise ValueError("params must be writable: the optimiser updates it in place")
        self.params = params
        self.lr = _check_real(lr, "lr", low=0.0, low_open=True)
        self.n_steps = 0

    def _check_grad(self, grad):
        grad = np.asarray(grad)
        if grad.shape != self.params.shape:
            raise ValueError(
                f"grad must have the shape of params, {self.params.shape}; got {grad.shape}"
            )
        finite = np.isfinite(grad)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"grad has a non-finite entry at index {bad} (grad[{bad}]={grad[bad]}); "
                "check the loss and the solver output before stepping"
            )
        return grad.astype(self.params.dtype, copy=False)

    def step(self, grad: ArrayLike) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    # -- state ---------------------------------------------------------------------------------

    def _hyperparameters(self):
        return {name: getattr(self, name) for name in self._HYPER}

    def _set_hyperparameters(self, values):
        for name, value in values.items():
            setattr(self, name, value)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the optimiser's state, for :meth:`load_state_dict` or a checkpoint.

        Returns
        -------
        dict
            ``"kind"`` (str, the class name, e.g. ``"Adam"``), ``"lr"`` (float), ``"n_steps"``
            (int), the hyper-parameters as floats (SGD ``momentum``; Adam ``beta1``,
            ``beta2``, ``eps``; RMSprop ``alpha``, ``eps``) and copies of the buffers, ndarrays
            of shape (P,) in the dtype of ``params`` (SGD ``velocity``; Adam ``m``, ``v``;
            RMSprop ``square_avg``). The parameters themselves are not included: they belong
            to the model (``f.params``).
        """
        state = {"kind": type(self).__name__, "lr": float(self.lr), "n_steps": int(self.n_steps)}
        state.update({name: float(value) for name, value in self._hyperparameters().items()})
        state.update({name: getattr(self, name).copy() for name in self._BUFFERS})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take over a state from :meth:`state_dict` (e.g. read from a checkpoint).

        Everything is checked before anything changes (``lr`` finite and >= 0, the
        hyper-parameters in their ranges, the buffers finite and, for Adam's ``v`` and
        RMSprop's ``square_avg``, >= 0); then lr, n_steps and the hyper-parameters are set
        and the buffers are copied into the optimiser's own arrays (cast to the dtype of
        ``params``). ``params`` stays the same array: the optimiser goes on updating the model
        it was built on.

        Parameters
        ----------
        state : dict
            As returned by :meth:`state_dict` of an optimiser of the same class over a
            parameter vector of the same shape.

        Raises
        ------
        TypeError
            ``state`` is not a dict, or a value has the wrong type.
        ValueError
            ``state["kind"]`` is another optimiser class; keys are missing or unknown; a
            buffer's shape differs from that of ``params``; a value is out of range; a buffer
            has a NaN or infinite entry, or a negative one where it holds a mean of g² (the
            state is damaged).
        """
        mine = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from {mine}.state_dict(); got "
                            f"{type(state).__name__}")
        kind = state.get("kind")
        if not isinstance(kind, str):
            raise ValueError(f"state has no optimiser name under 'kind' (got {kind!r}): pass "
                             f"the dict returned by {mine}.state_dict()")
        if kind != mine:
            raise ValueError(
                f"state['kind'] is {kind!r} but this optimiser is optim.{mine}: build an "
                f"optim.{kind}(params) and load the state into that one")
        expected = {"kind", "lr", "n_steps", *self._HYPER, *self._BUFFERS}
        missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unknown:
            raise ValueError(
                f"state for optim.{mine} must have the keys {sorted(expected)}; missing "
                f"{missing}, unknown {unknown}: pass the dict returned by state_dict()")
        # lr >= 0, not > 0 as in the constructor: a schedule may have decayed it to exactly 0.
        lr = _check_real(state["lr"], "state['lr']", low=0.0)
        n_steps = state["n_steps"]
        if (not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, (bool, np.bool_))
                or n_steps < 0):
            raise ValueError(f"state['n_steps'] must be an integer >= 0; got {n_steps!r}")
        hyper = {name: _check_real(state[name], f"state[{name!r}]", **bounds)
                 for name, bounds in self._HYPER.items()}
        buffers = {}
        for name in self._BUFFERS:
            value = state[name]
            if not isinstance(value, np.ndarray):
                raise TypeError(f"state[{name!r}] must be an ndarray of shape "
                                f"{self.params.shape}; got {type(value).__name__}")
            if value.shape != self.params.shape:
                raise ValueError(
                    f"state[{name!r}] has shape {value.shape} but params has shape "
                    f"{self.params.shape}: the state belongs to a model with {value.size} "
                    "parameters; load it into an optimiser over that model's params")
            if not (np.issubdtype(value.dtype, np.floating)
                    or np.issubdtype(value.dtype, np.integer)):
                raise TypeError(f"state[{name!r}] must be a float array; got dtype "
                                f"{value.dtype}")
            self._check_buffer(name, value)
            buffers[name] = value
        self.lr = lr
        self.n_steps = int(n_steps)
        self._set_hyperparameters(hyper)
        for name, value in buffers.items():
            getattr(self, name)[...] = value


    def _check_buffer(self, name, value):
        """ValueError for a NaN or infinite entry, or a negative one in a mean of g²."""
        mine = type(self).__name__
        ok = np.isfinite(value)
        rule = "finite"
        if name in self._NONNEGATIVE:
            ok &= value >= 0
            rule = f"finite and >= 0 ({self._NONNEGATIVE[name]})"
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"state[{name!r}] of optim.{mine} must be {rule}; entry {bad} is "
                f"{float(value[bad])!r}: the state is damaged; load an unchanged state_dict() "
                f"or start a new optim.{mine}(params)")


class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball momentum.

    With gradient ``g`` and momentum ``μ``::

        v ← μ v + g        (v starts at 0, so the first step has v = g)
        θ ← θ − lr v

    ``μ = 0`` is plain gradient descent ``θ ← θ − lr g``.

    Parameters
    ----------
    params : ndarray, shape (P,)
        Updated in place.
    lr : float
        Learning rate > 0.
    momentum : float, optional
        ``μ`` in [0, 1), default 0.

    References
    ----------
    B. T. Polyak, "Some methods of speeding up the convergence of iteration methods", USSR
    Comput. Math. Math. Phys. 4(5), 1964 (heavy ball); the buffer convention is PyTorch's
    ``torch.optim.SGD`` with ``dampening=0, nesterov=False``.
    """

    _HYPER = {"momentum": {"low": 0.0, "high": 1.0}}
    _BUFFERS = ("velocity",)

    def __init__(self, params: np.ndarray, lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum = _check_real(momentum, "momentum", low=0.0, high=1.0)
        self.velocity = np.zeros_like(params)

    def step(self, grad: ArrayLike) -> None:
        """Apply one update with ``grad`` (shape ``(P,)``); returns None."""
        g = self._check_grad(grad)
        self.velocity *= self.momentum
        self.velocity += g
        self.params -= self.lr * self.velocity
        self.n_steps += 1


class Adam(Optimizer):
    """Adam (adaptive moment estimation).

    Kingma & Ba (2015), Algorithm 1, at step ``k = 1, 2, …`` with gradient ``g``::

        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        m̂ = m / (1 − β₁ᵏ),   v̂ = v / (1 − β₂ᵏ)
        θ ← θ − lr m̂ / (√v̂ + ε)

    (``m`` and ``v`` start at 0; this is also ``torch.optim.Adam`` with ``amsgrad=False``.)

    Parameters
    ----------
    params : ndarray, shape (P,)
        Updated in place.
    lr : float, optional
        Step size ``α`` > 0, default 1e-3.
    betas : (float, float), optional
        ``(β₁, β₂)``, each in [0, 1), default (0.9, 0.999).
    eps : float, optional
        ``ε`` > 0, default 1e-8.

    References
    ----------
    D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
    arXiv:1412.6980, Algorithm 1.
    """

    _HYPER = {"beta1": {"low": 0.0, "high": 1.0}, "beta2": {"low": 0.0, "high": 1.0},
              "eps": {"low": 0.0, "low_open": True}}
    _BUFFERS = ("m", "v")
    _NONNEGATIVE = {"v": "a running mean of g², never negative"}

    def __init__(self, params: np.ndarray, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2); got betas={betas!r}") \
                from None
        self.betas = (_check_real(beta1, "betas[0]", low=0.0, high=1.0),
                      _check_real(beta2, "betas[1]", low=0.0, high=1.0))
        self.eps = _check_real(eps, "eps", low=0.0, low_open=True)
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)

    def _hyperparameters(self):
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps}

    def _set_hyperparameters(self, values):
        self.betas = (values["beta1"], values["beta2"])
        self.eps = values["eps"]

    def step(self, grad: ArrayLike) -> None:
        """Apply one update with ``grad`` (shape ``(P,)``); returns None."""
        g = self._check_grad(grad)
        beta1, beta2 = self.betas
        self.n_steps += 1
        k = self.n_steps
        self.m *= beta1
        self.m += (1.0 - beta1) * g
        self.v *= beta2
        self.v += (1.0 - beta2) * (g * g)
        m_hat = self.m / (1.0 - beta1 ** k)
        v_hat = self.v / (1.0 - beta2 ** k)
        self.params -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square.

    With gradient ``g``::

        s ← α s + (1 − α) g²       (s starts at 0)
        θ ← θ − lr g / (√s + ε)

    (the convention of ``torch.optim.RMSprop`` with ``momentum=0, centered=False``).

    Parameters
    ----------
    params : ndarray, shape (P,)
        Updated in place.
    lr : float, optional
        Learning rate > 0, default 1e-2.
    alpha : float, optional
        Smoothing constant in [0, 1), default 0.99.
    eps : float, optional
        ``ε`` > 0, default 1e-8.

    References
    ----------
    T. Tieleman, G. Hinton, "Lecture 6.5 - RMSprop: Divide the gradient by a running average of
    its recent magnitude", COURSERA: Neural Networks for Machine Learning, 2012.
    """

    _HYPER = {"alpha": {"low": 0.0, "high": 1.0}, "eps": {"low": 0.0, "low_open": True}}
    _BUFFERS = ("square_avg",)
    _NONNEGATIVE = {"square_avg": "a running mean of g², never negative"}

    def __init__(self, params: np.ndarray, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        self.alpha = _check_real(alpha, "alpha", low=0.0, high=1.0)
        self.eps = _check_real(eps, "eps", low=0.0, low_open=True)
        self.square_avg = np.zeros_like(params)

    def step(self, grad: ArrayLike) -> None:
        """Apply one update with ``grad`` (shape ``(P,)``); returns None."""
        g = self._check_grad(grad)
        self.square_avg *= self.alpha
        self.square_avg += (1.0 - self.alpha) * (g * g)
        self.params -= self.lr * g / (np.sqrt(self.square_avg) + self.eps)
        self.n_steps += 1


def _check_real(value, name, low=None, high=None, low_open=False):
    """Return ``float(value)`` after checking it is a finite real in ``[low, high)``.

    ``low_open=True`` makes the lower bound strict; ``high`` is always strict.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number; got {name}={value!r}")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and value >= high
    if not np.isfinite(value) or below or above:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"< {high}"
        rule = " and ".join(part for part in (lo, hi) if part)
        raise ValueError(f"{name} must be finite and {rule}; got {name}={value!r}")
    return value
