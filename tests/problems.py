"""A problem zoo with exact answers (STYLE.md §16), and the user-written fields behind it.

Every field here implements the vector-field protocol of the README by hand:

1. ``__call__(t, y)`` — ``y`` (D,) with a float ``t``, or ``y`` (B, D) with ``t`` an array (B,)
   (a float ``t`` with a batch is broadcast);
2. ``params`` — a 1-D array (P,); the methods read it on every call, so writing into it
   changes the field;
3. ``jvp(t, y, u)`` — ∂f/∂y · u, shape of ``y``;
4. ``vjp(t, y, v)`` — ``(vᵀ∂f/∂y`` shape of y, ``vᵀ∂f/∂θ`` (P,) summed over the batch,
   ``vᵀ∂f/∂t`` shape of t; summed over the batch for a float t and a batched y);
5. ``jvp_params(t, y, w)`` — ∂f/∂θ · w for w (P,), shape of ``y`` (forward sensitivity).

A subclass writes the batched formulas once (``_f``, ``_jvp``, ``_vjp_rows``, ``_jvp_params``
on t (B,), y (B, D)); :class:`Field` does the 1-D / batch bookkeeping.

Each :class:`Problem` has an initial value at ``t0`` and ``solution(t)``: a closed form where
one exists, otherwise scipy's DOP853 at rtol=1e-12, atol=1e-14 (its dense output, order 7),
which is 3–4 orders of magnitude tighter than any tolerance the tests ask of pyode.
"""
import numpy as np
from scipy.integrate import solve_ivp
from scipy.linalg import expm

REF_RTOL = 1e-12
REF_ATOL = 1e-14


class Field:
    """Base class: the protocol's shape handling around batched formulas."""

    def __init__(self, params):
        self.params = np.array(params, dtype=np.float64).reshape(-1)

    # -- subclass formulas on t (B,), y (B, D) -------------------------------------------------
    def _f(self, t, y):
        raise NotImplementedError

    def _jvp(self, t, y, u):
        raise NotImplementedError

    def _vjp_rows(self, t, y, v):
        """(vᵀ∂f/∂y (B, D), vᵀ∂f/∂θ per sample (B, P), vᵀ∂f/∂t (B,))."""
        raise NotImplementedError

    def _jvp_params(self, t, y, w):
        """∂f/∂θ · w (B, D) for a tangent w (P,)."""
        raise NotImplementedError

    # -- protocol ------------------------------------------------------------------------------
    @staticmethod
    def _batch(t, y):
        y = np.asarray(y)
        squeeze = y.ndim == 1
        yb = y[None] if squeeze else y
        tb = np.broadcast_to(np.asarray(t, dtype=np.float64), (yb.shape[0],))
        return tb, yb, squeeze

    def __call__(self, t, y):
        tb, yb, squeeze = self._batch(t, y)
        out = np.asarray(self._f(tb, yb), dtype=yb.dtype)
        return out[0] if squeeze else out

    def jvp(self, t, y, u):
        tb, yb, squeeze = self._batch(t, y)
        out = self._jvp(tb, yb, np.asarray(u).reshape(yb.shape))
        return out[0] if squeeze else out

    def jvp_params(self, t, y, w):
        tb, yb, squeeze = self._batch(t, y)
        w = np.asarray(w, dtype=np.float64)
        if w.shape != self.params.shape:
            raise ValueError(f"w must have the shape of params {self.params.shape}, "
                             f"got {w.shape}")
        out = np.asarray(self._jvp_params(tb, yb, w), dtype=yb.dtype).reshape(yb.shape)
        return out[0] if squeeze else out

    def vjp(self, t, y, v):
        tb, yb, squeeze = self._batch(t, y)
        vy, vth, vt = self._vjp_rows(tb, yb, np.asarray(v).reshape(yb.shape))
        vth = np.asarray(vth).reshape(yb.shape[0], self.params.size).sum(axis=0)
        if squeeze:
            return vy[0], vth, float(vt[0])
        if np.ndim(t) == 0:
            return vy, vth, float(np.sum(vt))
        return vy, vth, np.asarray(vt)


class Linear(Field):
    """dy/dt = M y, θ = M.ravel() (row-major), M (D, D).

    ∂f/∂y = M;  vᵀ∂f/∂θ = v ⊗ y (flattened like M);  ∂f/∂t = 0.
    """

    def __init__(self, M):
        M = np.asarray(M, dtype=np.float64)
        self.D = M.shape[0]
        super().__init__(M.ravel())

    @property
    def M(self):
        return self.params.reshape(self.D, self.D)

    def _f(self, t, y):
        return y @ self.M.T

    def _jvp(self, t, y, u):
        return u @ self.M.T

    def _vjp_rows(self, t, y, v):
        B = y.shape[0]
        return v @ self.M, (v[:, :, None] * y[:, None, :]).reshape(B, -1), np.zeros(B)

    def _jvp_params(self, t, y, w):
        return y @ w.reshape(self.D, self.D).T


class Exponential(Field):
    """dy/dt = λ y (decay for λ < 0, growth for λ > 0), θ = [λ]."""

    def __init__(self, rate):
        super().__init__([rate])

    def _f(self, t, y):
        return self.params[0] * y

    def _jvp(self, t, y, u):
        return self.params[0] * u

    def _vjp_rows(self, t, y, v):
        return self.params[0] * v, np.sum(v * y, axis=1)[:, None], np.zeros(y.shape[0])

    def _jvp_params(self, t, y, w):
        return w[0] * y


class Rotation(Field):
    """dy/dt = ω (−y₂, y₁), θ = [ω]: rotation of the plane at angular speed ω."""

    def __init__(self, omega):
        super().__init__([omega])

    def _f(self, t, y):
        w = self.params[0]
        return np.stack([-w * y[:, 1], w * y[:, 0]], axis=1)

    def _jvp(self, t, y, u):
        return self._f(t, u)

    def _vjp_rows(self, t, y, v):
        w = self.params[0]
        vy = np.stack([w * v[:, 1], -w * v[:, 0]], axis=1)
        vth = (-v[:, 0] * y[:, 1] + v[:, 1] * y[:, 0])[:, None]
        return vy, vth, np.zeros(y.shape[0])

    def _jvp_params(self, t, y, w):
        return w[0] * np.stack([-y[:, 1], y[:, 0]], axis=1)


class LotkaVolterra(Field):
    """x' = αx − βxy,  y' = δxy − γy;  θ = [α, β, δ, γ].

    ∂f/∂y = [[α − βy, −βx], [δy, δx − γ]].
    """

    def __init__(self, alpha=1.5, beta=1.0, delta=1.0, gamma=3.0):
        super().__init__([alpha, beta, delta, gamma])

    def _f(self, t, y):
        a, b, d, g = self.params
        x, z = y[:, 0], y[:, 1]
        return np.stack([a * x - b * x * z, d * x * z - g * z], axis=1)

    def _jvp(self, t, y, u):
        a, b, d, g = self.params
        x, z = y[:, 0], y[:, 1]
        return np.stack([(a - b * z) * u[:, 0] - b * x * u[:, 1],
                         d * z * u[:, 0] + (d * x - g) * u[:, 1]], axis=1)

    def _vjp_rows(self, t, y, v):
        a, b, d, g = self.params
        x, z = y[:, 0], y[:, 1]
        vy = np.stack([v[:, 0] * (a - b * z) + v[:, 1] * d * z,
                       -v[:, 0] * b * x + v[:, 1] * (d * x - g)], axis=1)
        vth = np.stack([v[:, 0] * x, -v[:, 0] * x * z, v[:, 1] * x * z, -v[:, 1] * z], axis=1)
        return vy, vth, np.zeros(y.shape[0])

    def _jvp_params(self, t, y, w):
        x, z = y[:, 0], y[:, 1]
        return np.stack([w[0] * x - w[1] * x * z, w[2] * x * z - w[3] * z], axis=1)


class VanDerPol(Field):
    """x' = y,  y' = μ(1 − x²)y − x;  θ = [μ]."""

    def __init__(self, mu=1.0):
        super().__init__([mu])

    def _f(self, t, y):
        mu = self.params[0]
        x, z = y[:, 0], y[:, 1]
        return np.stack([z, mu * (1.0 - x * x) * z - x], axis=1)

    def _jvp(self, t, y, u):
        mu = self.params[0]
        x, z = y[:, 0], y[:, 1]
        return np.stack([u[:, 1], (-2.0 * mu * x * z - 1.0) * u[:, 0]
                         + mu * (1.0 - x * x) * u[:, 1]], axis=1)

    def _vjp_rows(self, t, y, v):
        mu = self.params[0]
        x, z = y[:, 0], y[:, 1]
        vy = np.stack([v[:, 1] * (-2.0 * mu * x * z - 1.0),
                       v[:, 0] + v[:, 1] * mu * (1.0 - x * x)], axis=1)
        return vy, (v[:, 1] * (1.0 - x * x) * z)[:, None], np.zeros(y.shape[0])

    def _jvp_params(self, t, y, w):
        x, z = y[:, 0], y[:, 1]
        return np.stack([np.zeros_like(x), w[0] * (1.0 - x * x) * z], axis=1)


class Riccati(Field):
    """dy/dt = −θ t y² (non-autonomous and nonlinear), θ = [θ].

    Solution: y(t) = 1 / (1/y₀ + θ (t² − t₀²) / 2) componentwise.
    """

    def __init__(self, theta=2.0):
        super().__init__([theta])

    def _f(self, t, y):
        return -self.params[0] * t[:, None] * y * y

    def _jvp(self, t, y, u):
        return -2.0 * self.params[0] * t[:, None] * y * u

    def _vjp_rows(self, t, y, v):
        th = self.params[0]
        vy = -2.0 * th * t[:, None] * y * v
        vth = -np.sum(v * t[:, None] * y * y, axis=1)[:, None]
        vt = -th * np.sum(v * y * y, axis=1)
        return vy, vth, vt

    def _jvp_params(self, t, y, w):
        return -w[0] * t[:, None] * y * y


class ForcedDecay(Field):
    """dy/dt = θ₀ sin(θ₁ t) y − θ₂ y: explicit time dependence, ∂f/∂t = θ₀θ₁ cos(θ₁t) y ≠ 0.

    Solution: y(t) = y₀ exp(−θ₀/θ₁ (cos θ₁t − cos θ₁t₀) − θ₂ (t − t₀)).
    """

    def __init__(self, a=1.3, w=2.0, k=0.4):
        super().__init__([a, w, k])

    def _f(self, t, y):
        a, w, k = self.params
        return (a * np.sin(w * t)[:, None] - k) * y

    def _jvp(self, t, y, u):
        return self._f(t, u)

    def _vjp_rows(self, t, y, v):
        a, w, k = self.params
        s, c = np.sin(w * t), np.cos(w * t)
        vy = (a * s[:, None] - k) * v
        vy_dot = np.sum(v * y, axis=1)
        vth = np.stack([s * vy_dot, a * t * c * vy_dot, -vy_dot], axis=1)
        return vy, vth, a * w * c * vy_dot

    def _jvp_params(self, t, y, tangent):
        # ∂f/∂(a, w, k) · (δa, δw, δk) = (δa sin(wt) + a t cos(wt) δw − δk) y
        a, w, k = self.params
        rate = tangent[0] * np.sin(w * t) + a * t * np.cos(w * t) * tangent[1] - tangent[2]
        return rate[:, None] * y


class Parameterless(Field):
    """dy/dt = (−y₂ − 0.1 y₁³, y₁ − 0.1 y₂³) with no parameters (params is empty)."""

    def __init__(self):
        super().__init__(np.zeros(0))

    def _f(self, t, y):
        return np.stack([-y[:, 1] - 0.1 * y[:, 0] ** 3, y[:, 0] - 0.1 * y[:, 1] ** 3], axis=1)

    def _jvp(self, t, y, u):
        return np.stack([-0.3 * y[:, 0] ** 2 * u[:, 0] - u[:, 1],
                         u[:, 0] - 0.3 * y[:, 1] ** 2 * u[:, 1]], axis=1)

    def _vjp_rows(self, t, y, v):
        vy = np.stack([-0.3 * y[:, 0] ** 2 * v[:, 0] + v[:, 1],
                       -v[:, 0] - 0.3 * y[:, 1] ** 2 * v[:, 1]], axis=1)
        return vy, np.zeros((y.shape[0], 0)), np.zeros(y.shape[0])

    def _jvp_params(self, t, y, w):
        return np.zeros_like(y)


class FastSlow(Field):
    """A dissipative cascade: a fast decaying mode u drives a slow one v.

        u' = −k u,    v' = −θ v + u,    params [k, θ].

    ∂f/∂y = [[−k, 0], [1, −θ]];  ∂f/∂(k, θ) · (δk, δθ) = (−δk u, −δθ v);  ∂f/∂t = 0.
    Solution: u(t) = u₀ e^{−k s}, v(t) = v₀ e^{−θ s} + u₀ (e^{−θ s} − e^{−k s}) / (k − θ),
    s = t − t₀ (k ≠ θ). Re-integrating it backward from t₁ amplifies an error δ in u(t₁) by
    e^{k (t₁ − t)}, and u feeds v: the test case of the backsolve adjoint's instability.
    """

    def __init__(self, k=20.0, theta=1.0):
        super().__init__([k, theta])

    def _f(self, t, y):
        k, th = self.params
        return np.stack([-k * y[:, 0], -th * y[:, 1] + y[:, 0]], axis=1)

    def _jvp(self, t, y, u):
        k, th = self.params
        return np.stack([-k * u[:, 0], -th * u[:, 1] + u[:, 0]], axis=1)

    def _vjp_rows(self, t, y, v):
        k, th = self.params
        vy = np.stack([-k * v[:, 0] + v[:, 1], -th * v[:, 1]], axis=1)
        vth = np.stack([-v[:, 0] * y[:, 0], -v[:, 1] * y[:, 1]], axis=1)
        return vy, vth, np.zeros(y.shape[0])

    def _jvp_params(self, t, y, w):
        return np.stack([-w[0] * y[:, 0], -w[1] * y[:, 1]], axis=1)

    def solution(self, y0, s):
        """(u, v) at elapsed time s = t − t₀ (closed form)."""
        k, th = self.params
        u0, v0 = y0
        return np.array([u0 * np.exp(-k * s),
                         v0 * np.exp(-th * s) + u0 * (np.exp(-th * s) - np.exp(-k * s)) / (k - th)])

    def gradients(self, y0, s):
        """d v(s) / d(u₀, v₀) and d v(s) / d(k, θ), closed form: for the loss L = v(t₁)."""
        k, th = self.params
        u0, v0 = y0
        ek, et = np.exp(-k * s), np.exp(-th * s)
        q = (et - ek) / (k - th)
        d_y0 = np.array([q, et])
        d_k = u0 * (s * ek / (k - th) - q / (k - th))
        d_th = -s * v0 * et + u0 * (-s * et / (k - th) + q / (k - th))
        return d_y0, np.array([d_k, d_th])


class HybridMLP(Field):
    """Physics term plus a small network: y' = −k ⊙ y + W₂ tanh(W₁ y + b₁ + u t).

    θ = [k (D), W₁ (H, D), b₁ (H), u (H), W₂ (D, H)] (row-major). With s = tanh(p), p the
    pre-activation, and g = (v W₂) ⊙ (1 − s²):  vᵀ∂f/∂y = −k ⊙ v + g W₁,  vᵀ∂f/∂k = −v ⊙ y,
    vᵀ∂f/∂W₁ = g ⊗ y,  vᵀ∂f/∂b₁ = g,  vᵀ∂f/∂u = g t,  vᵀ∂f/∂W₂ = v ⊗ s,  vᵀ∂f/∂t = g · u.
    """

    def __init__(self, D=2, H=5, seed=0):
        rng = np.random.default_rng(seed)
        self.D, self.H = D, H
        super().__init__(np.concatenate([rng.uniform(0.2, 1.0, D), rng.normal(0, 0.8, H * D),
                                         rng.normal(0, 0.3, H), rng.normal(0, 0.5, H),
                                         rng.normal(0, 0.8, D * H)]))

    def _parts(self):
        D, H = self.D, self.H
        sizes = np.cumsum([D, H * D, H, H])
        k, W1, b1, u, W2 = np.split(self.params, sizes)
        return k, W1.reshape(H, D), b1, u, W2.reshape(D, H)

    def _hidden(self, t, y):
        k, W1, b1, u, W2 = self._parts()
        return np.tanh(y @ W1.T + b1 + t[:, None] * u)

    def _f(self, t, y):
        k, W1, b1, u, W2 = self._parts()
        return -k * y + self._hidden(t, y) @ W2.T

    def _jvp(self, t, y, v):
        k, W1, b1, u, W2 = self._parts()
        s = self._hidden(t, y)
        return -k * v + ((v @ W1.T) * (1 - s ** 2)) @ W2.T

    def _vjp_rows(self, t, y, v):
        k, W1, b1, u, W2 = self._parts()
        B = y.shape[0]
        s = self._hidden(t, y)
        g = (v @ W2) * (1 - s ** 2)
        vth = np.concatenate([-v * y, (g[:, :, None] * y[:, None, :]).reshape(B, -1), g,
                              g * t[:, None], (v[:, :, None] * s[:, None, :]).reshape(B, -1)],
                             axis=1)
        return -k * v + g @ W1, vth, g @ u

    def _jvp_params(self, t, y, w):
        k, W1, b1, u, W2 = self._parts()
        D, H = self.D, self.H
        dk, dW1, db1, du, dW2 = np.split(w, np.cumsum([D, H * D, H, H]))
        s = self._hidden(t, y)
        dp = y @ dW1.reshape(H, D).T + db1 + t[:, None] * du
        return -dk * y + (dp * (1 - s ** 2)) @ W2.T + s @ dW2.reshape(D, H).T


class Problem:
    """An initial value problem y(t0) = y0 for ``field``, with its solution ``solution(t)``.

    ``solution(t)`` takes times (T,) in [min(t0, t1), max(t0, t1)] and returns (T, D).
    """

    def __init__(self, name, field, y0, t0, t1, exact=None):
        self.name = name
        self.field = field
        self.y0 = np.asarray(y0, dtype=np.float64)
        self.t0 = float(t0)
        self.t1 = float(t1)
        self._exact = exact
        self._ref = None

    def solution(self, t):
        t = np.asarray(t, dtype=np.float64)
        if self._exact is not None:
            return np.array([self._exact(ti) for ti in t])
        if self._ref is None:
            sol = solve_ivp(lambda s, y: self.field(s, y), (self.t0, self.t1), self.y0,
                            method="DOP853", rtol=REF_RTOL, atol=REF_ATOL, dense_output=True)
            if not sol.success:
                raise RuntimeError(f"reference solve of {self.name} failed: {sol.message}")
            self._ref = sol.sol
        return self._ref(t).T

    def __repr__(self):
        return f"Problem({self.name})"


def linear():
    """A damped rotation with coupling: y(t) = expm(M (t − t0)) y0."""
    M = np.array([[-0.3, 1.2, 0.0], [-1.0, -0.2, 0.4], [0.2, 0.0, -0.5]])
    y0 = np.array([1.0, -0.5, 0.8])
    return Problem("linear", Linear(M), y0, 0.0, 2.0, lambda t: expm(M * t) @ y0)


def decay():
    return Problem("decay", Exponential(-1.5), [2.0], 0.0, 2.0,
                   lambda t: np.array([2.0 * np.exp(-1.5 * t)]))


def growth():
    return Problem("growth", Exponential(0.8), [0.5], 0.0, 2.0,
                   lambda t: np.array([0.5 * np.exp(0.8 * t)]))


def rotation():
    w = 2.0
    return Problem("rotation", Rotation(w), [1.0, 0.0], 0.0, 2.0 * np.pi,
                   lambda t: np.array([np.cos(w * t), np.sin(w * t)]))


def riccati():
    th, y0 = 2.0, np.array([1.0, 0.5])
    return Problem("riccati", Riccati(th), y0, 0.0, 2.0,
                   lambda t: 1.0 / (1.0 / y0 + th * t * t / 2.0))


def forced_decay():
    a, w, k = 1.3, 2.0, 0.4
    y0 = np.array([1.0, -2.0])
    return Problem("forced_decay", ForcedDecay(a, w, k), y0, 0.0, 3.0,
                   lambda t: y0 * np.exp(-a / w * (np.cos(w * t) - 1.0) - k * t))


def lotka_volterra():
    """About two periods of the predator–prey cycle."""
    return Problem("lotka_volterra", LotkaVolterra(), [10.0, 5.0], 0.0, 6.0)


def van_der_pol():
    """μ = 1 (not stiff), about 1.5 limit cycles."""
    return Problem("van_der_pol", VanDerPol(1.0), [2.0, 0.0], 0.0, 10.0)


def parameterless():
    return Problem("parameterless", Parameterless(), [1.0, 0.5], 0.0, 3.0)


def fast_slow():
    """The dissipative cascade: u decays 20 times faster than v."""
    f = FastSlow(20.0, 1.0)
    y0 = np.array([1.0, 1.0])
    return Problem("fast_slow", f, y0, 0.0, 2.0, lambda t: f.solution(y0, t))


ZOO = {p.__name__: p for p in (linear, decay, growth, rotation, riccati, forced_decay,
                               lotka_volterra, van_der_pol, parameterless, fast_slow)}
"""Problem name → factory (a fresh field each call, so tests may write into params)."""


class Recording:
    """Wraps a field and records every time it is evaluated at (``__call__``, ``jvp``, ``vjp``).

    ``times`` holds every per-sample time seen (a float t with a batch counts once per row);
    ``calls`` counts the ``__call__`` evaluations and ``rows`` the samples evaluated in them.
    """

    def __init__(self, field):
        self.field = field
        self.params = field.params
        self.times = []
        self.calls = 0
        self.rows = 0

    def _record(self, t, y):
        n = 1 if np.ndim(y) == 1 else np.shape(y)[0]
        self.times.extend(np.broadcast_to(np.asarray(t, dtype=np.float64), (n,)).tolist())
        return n

    def __call__(self, t, y):
        self.rows += self._record(t, y)
        self.calls += 1
        return self.field(t, y)

    def jvp(self, t, y, u):
        self._record(t, y)
        return self.field.jvp(t, y, u)

    def vjp(self, t, y, v):
        self._record(t, y)
        return self.field.vjp(t, y, v)

    def jvp_params(self, t, y, w):
        self._record(t, y)
        return self.field.jvp_params(t, y, w)

    def t_array(self):
        return np.array(self.times)
