"""The discrete adjoint reverses the whole batch in lockstep (issue 14, ``pyode.discrete``).

A user-written NumPy field's ``vjp`` is called once per stage of a reverse round for all the
rows that still have steps, never once per sample. What that must not change:

* the gradient: each sample's dL/dy0, and the sums over the samples of dL/dθ and dL/dt, equal
  what the sample gives alone (as a 1-D problem), to rounding (1e-12 relative in float64; the
  samples have their own step counts and sizes, so some finish their reverse sweep early);
* a batch of one sample is the 1-D problem, bit for bit;
* the statistics: per sample, vjp evaluations = the stage points of that sample.

And what it must change: the number of vjp calls does not grow with B.
The gradient against finite differences of the frozen-step map is tests/test_gradient_methods.py.
"""
import numpy as np
import pytest

from problems import ForcedDecay, LotkaVolterra
from pyode import odeint_adjoint
from pyode.discrete import discrete_pass
from pyode.solvers import batch_field, integrate
from pyode.tableaus import METHODS
from pyode.trajectory import StepRecorder


class PendulumMLP:
    """A hybrid field written on the protocol directly (not on ``problems.Field``): a damped
    pendulum plus a tiny tanh network with a time input,

        y' = (y₁, −ω² sin y₀ − γ y₁) + W₂ tanh(W₁ y + b₁ + u t),

    θ = [ω, γ, W₁ (H, 2), b₁ (H), u (H), W₂ (2, H)] (row-major). With s = tanh(p) and
    g = (v W₂) ⊙ (1 − s²):  vᵀ∂f/∂y = (−ω² cos y₀ v₁, v₀ − γ v₁) + g W₁,
    vᵀ∂f/∂(ω, γ) = (−2ω sin y₀ v₁, −y₁ v₁),  vᵀ∂f/∂(W₁, b₁, u, W₂) = (g ⊗ y, g, g t, v ⊗ s),
    vᵀ∂f/∂t = g · u.
    """

    def __init__(self, H=4, seed=3):
        rng = np.random.default_rng(seed)
        self.H = H
        self.params = np.concatenate([[1.2, 0.3], rng.normal(0, 0.7, 2 * H),
                                      rng.normal(0, 0.3, H), rng.normal(0, 0.5, H),
                                      rng.normal(0, 0.6, 2 * H)])

    def _parts(self):
        H = self.H
        om, ga, W1, b1, u, W2 = np.split(self.params, [1, 2, 2 + 2 * H, 2 + 3 * H, 2 + 4 * H])
        return om[0], ga[0], W1.reshape(H, 2), b1, u, W2.reshape(2, H)

    @staticmethod
    def _rows(t, y):
        y = np.asarray(y)
        yb = y[None] if y.ndim == 1 else y
        return np.broadcast_to(np.asarray(t, dtype=np.float64), (yb.shape[0],)), yb

    def _hidden(self, t, y):
        om, ga, W1, b1, u, W2 = self._parts()
        return np.tanh(y @ W1.T + b1 + t[:, None] * u)

    def __call__(self, t, y):
        tb, yb = self._rows(t, y)
        om, ga, W1, b1, u, W2 = self._parts()
        phys = np.stack([yb[:, 1], -om ** 2 * np.sin(yb[:, 0]) - ga * yb[:, 1]], axis=1)
        out = (phys + self._hidden(tb, yb) @ W2.T).astype(yb.dtype)
        return out[0] if np.ndim(y) == 1 else out

    def jvp(self, t, y, w):
        tb, yb = self._rows(t, y)
        wb = np.asarray(w).reshape(yb.shape)
        om, ga, W1, b1, u, W2 = self._parts()
        s = self._hidden(tb, yb)
        out = np.stack([wb[:, 1], -om ** 2 * np.cos(yb[:, 0]) * wb[:, 0] - ga * wb[:, 1]],
                       axis=1) + ((wb @ W1.T) * (1 - s ** 2)) @ W2.T
        return out[0] if np.ndim(y) == 1 else out

    def vjp(self, t, y, v):
        tb, yb = self._rows(t, y)
        vb = np.asarray(v).reshape(yb.shape)
        om, ga, W1, b1, u, W2 = self._parts()
        s = self._hidden(tb, yb)
        g = (vb @ W2) * (1 - s ** 2)
        vy = np.stack([-om ** 2 * np.cos(yb[:, 0]) * vb[:, 1], vb[:, 0] - ga * vb[:, 1]],
                      axis=1) + g @ W1
        vth = np.concatenate([[np.sum(-2 * om * np.sin(yb[:, 0]) * vb[:, 1]),
                               np.sum(-yb[:, 1] * vb[:, 1])],
                              (g.T @ yb).ravel(), g.sum(0), tb @ g, (vb.T @ s).ravel()])
        vt = g @ u
        if np.ndim(y) == 1:
            return vy[0], vth, float(vt[0])
        return vy, vth, (float(vt.sum()) if np.ndim(t) == 0 else vt)


class CountingVjp:
    """Wraps a field; counts the calls of its vjp and the rows of each."""

    def __init__(self, field):
        self.field = field
        self.params = field.params
        self.rows = []                  # rows per vjp call (1 for a 1-D call)

    def __call__(self, t, y):
        return self.field(t, y)

    def jvp(self, t, y, u):
        return self.field.jvp(t, y, u)

    def vjp(self, t, y, v):
        self.rows.append(1 if np.ndim(y) == 1 else np.shape(y)[0])
        return self.field.vjp(t, y, v)


def _uniform(lo, hi):
    return lambda rng, B: rng.uniform(lo, hi, (B, 2))


def _spread(rng, B):
    """Signs and magnitudes from 1e-3 to 2: with a linear field only the rows where atol
    matters take steps of their own."""
    return rng.choice([-1.0, 1.0], (B, 2)) * 2.0 * 10.0 ** rng.uniform(-3, 0, (B, 2))


FIELDS = {
    # name: (field factory, output times, y0 of B rows from a generator)
    "lotka_volterra": (LotkaVolterra, np.linspace(0.0, 3.0, 6), _uniform(0.5, 2.5)),
    "forced_decay_backward": (ForcedDecay, np.array([2.0, 1.1, 0.3, -0.4]), _spread),
    "pendulum_mlp": (PendulumMLP, np.array([0.0, 0.4, 1.3, 2.0]), _uniform(-1.0, 1.0)),
}
SOLVERS = {
    "dopri5": {"method": "dopri5"},
    "bosh3": {"method": "bosh3"},
    "rk4": {"method": "rk4", "options": {"step_size": 0.05}},
}
TOLS = {np.float64: dict(rtol=1e-6, atol=1e-8), np.float32: dict(rtol=1e-5, atol=1e-7)}
# The batched sweep against each sample's sweep on the same recorded steps: the same arithmetic
# per row, up to the order of the sums over the samples (θ, t) and the field's own rounding.
REL = {np.float64: 1e-12, np.float32: 1e-6}
# Through odeint_adjoint, each sample's forward solve alone is not the batch's bit for bit
# either (NumPy's matrix products in the stage inputs round differently for other shapes):
# in float64 that moves the gradient by rounding, in float32 at rtol 1e-5 (about 100 ulps)
# the rounding noise of the error estimate moves the adaptive steps themselves, and the
# gradient of the float32 solution by up to C·rtol (as in test_gradient_methods.py's float32
# test).
REL_E2E = {np.float64: 1e-12, np.float32: 3e-3}

def _grad(f, y0, t, w, solver, dtype):
    ys, vjp = odeint_adjoint(f, y0.astype(dtype), t, adjoint_method="discrete",
                             backend="numpy", **TOLS[dtype], **SOLVERS[solver])
    return vjp(w.astype(dtype))


def _assert_close(x, ref, rel):
    """|x − ref| ≤ rel · max|ref| componentwise (a relative error of the whole array)."""
    assert x.shape == ref.shape and x.dtype == ref.dtype
    scale = float(np.max(np.abs(ref)))
    np.testing.assert_allclose(x, ref, rtol=rel, atol=rel * scale)


def _case(name, B, seed=0):
    factory, t, draw = FIELDS[name]
    rng = np.random.default_rng(seed)
    y0 = draw(rng, B)
    w = rng.normal(size=(t.size, B, 2))
    return factory(), y0, t, w


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("name", list(FIELDS))
def test_batch_equals_each_sample_alone(name, solver, dtype):
    B = 7
    f, y0, t, w = _case(name, B)
    g = _grad(f, y0, t, w, solver, dtype)
    alone = [_grad(f, y0[b], t, w[:, b], solver, dtype) for b in range(B)]
    if METHODS[solver].adaptive:     # own step counts: some samples finish the sweep early
        assert len({a.info.n_accepted for a in alone}) > 1
    rel = REL_E2E[dtype]
    for b in range(B):
        _assert_close(g.y0[b], alone[b].y0, rel)
        assert g.info.n_accepted[b] == g.forward_info.n_accepted[b]
        if dtype == np.float64 or not METHODS[solver].adaptive:     # the same steps
            assert g.info.nfev[b] == alone[b].info.nfev
            assert g.info.n_accepted[b] == alone[b].info.n_accepted
    assert np.all(g.info.n_rejected == 0)
    _assert_close(g.params, np.sum([a.params for a in alone], axis=0, dtype=dtype), rel)
    _assert_close(g.t, np.sum([a.t for a in alone], axis=0), rel)


def _alone(record, b):
    """Sample b of a batch's record as the record of a 1-D solve (through the on_step hook)."""
    steps = record.sample(b)
    one = StepRecorder(1, stages=True)
    for n in range(steps.n_steps):
        one(np.zeros(1, dtype=np.int64), steps.t[n:n + 1], steps.h[n:n + 1],
            steps.t_new[n:n + 1], steps.y[n][None], steps.K[n][:, None])
    return one


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("name", list(FIELDS))
def test_batched_sweep_equals_each_samples_sweep(name, solver, dtype):
    # One forward solve of the batch; its record reversed in lockstep, and each sample's part
    # of it reversed alone with 1-D calls of the field (what odeint_adjoint does for a 1-D
    # problem): the batch's sweep must be the samples' sweeps, to rounding.
    B = 7
    f, y0, t, w = _case(name, B, seed=1)
    tab = METHODS[solver]
    opts = {"first_step": None, "max_num_steps": 10_000, **SOLVERS[solver].get("options", {})}
    record = StepRecorder(B, stages=True)
    ys, _ = integrate(batch_field(f, False, None), y0.astype(dtype), t, tab,
                      TOLS[dtype]["rtol"], TOLS[dtype]["atol"], opts, on_step=record)
    gs = w.astype(dtype)
    a, a_theta, dLdt, stats = discrete_pass(f, ys, gs, t, tab, record, squeeze=False)
    assert a.dtype == a_theta.dtype == dtype and dLdt.dtype == np.float64
    n_steps = [record.sample(b).n_steps for b in range(B)]
    if tab.adaptive:
        assert len(set(n_steps)) > 1         # some samples finish the reverse sweep early
    np.testing.assert_array_equal(stats["n_accepted"], n_steps)
    np.testing.assert_array_equal(stats["n_rejected"], 0)
    theta_sum, t_sum = 0.0, 0.0
    for b in range(B):
        a1, th1, t1, st1 = discrete_pass(f, ys[:, b:b + 1], gs[:, b:b + 1], t, tab,
                                         _alone(record, b), squeeze=True)
        _assert_close(a[b], a1[0], REL[dtype])
        for k in stats:
            assert stats[k][b] == st1[k][0]
        theta_sum, t_sum = theta_sum + th1.astype(np.float64), t_sum + t1
    _assert_close(a_theta.astype(np.float64), theta_sum, REL[dtype])
    _assert_close(dLdt, t_sum, REL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("name", list(FIELDS))
def test_batch_of_one_is_the_1d_problem_bit_for_bit(name, solver, dtype):
    f, y0, t, w = _case(name, 1, seed=5)
    g = _grad(f, y0, t, w, solver, dtype)
    g1 = _grad(f, y0[0], t, w[:, 0], solver, dtype)
    assert g.y0.shape == (1, 2) and g1.y0.shape == (2,)
    assert np.array_equal(g.y0[0], g1.y0)
    assert np.array_equal(g.params, g1.params) and g.params.dtype == g1.params.dtype == dtype
    assert np.array_equal(g.t, g1.t)
    for k in ("nfev", "n_accepted", "n_rejected"):
        assert getattr(g.info, k)[0] == getattr(g1.info, k)


@pytest.mark.parametrize("solver", ["dopri5", "rk4"])
def test_vjp_calls_do_not_grow_with_the_batch(solver):
    # Equal rows take equal steps: every call then holds all B rows, and B = 3 and B = 30 make
    # the same calls — as many as one sample's vjp evaluations.
    f, y0, t, w = _case("pendulum_mlp", 1)
    calls = {}
    for B in (3, 30):
        counted = CountingVjp(f)
        g = _grad(counted, np.repeat(y0, B, axis=0), t, np.repeat(w, B, axis=1), solver,
                  np.float64)
        assert np.all(g.info.nfev == g.info.nfev[0])
        assert len(counted.rows) == g.info.nfev[0] and set(counted.rows) == {B}
        calls[B] = len(counted.rows)
    assert calls[3] == calls[30]


def test_vjp_calls_with_unequal_steps():
    # Rows of their own: at most one call per stage and reverse round (s · max N), at least as
    # many as the sample with the most evaluations, and far fewer than one call per sample and
    # stage; every call's rows add up to the evaluations of the statistics.
    B = 25
    f, y0, t, w = _case("lotka_volterra", B, seed=2)
    counted = CountingVjp(f)
    g = _grad(counted, y0, t, w, "dopri5", np.float64)
    n = len(counted.rows)
    assert len(set(g.info.n_accepted)) > 1
    assert np.max(g.info.nfev) <= n <= METHODS["dopri5"].n_stages * np.max(g.info.n_accepted)
    assert n < np.sum(g.info.nfev) / 10
    assert sum(counted.rows) == np.sum(g.info.nfev)
    assert max(counted.rows) == B


def test_pendulum_mlp_vjp_is_exact():
    # The hand-written field of these tests: its vjp against central differences of f (in y,
    # θ and t), on a batch with per-sample times and on a 1-D call.
    f = PendulumMLP()
    rng = np.random.default_rng(1)
    t, y, v = rng.uniform(0, 2, 3), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    vy, vth, vt = f.vjp(t, y, v)
    eps = 1e-6

    def fd(fn, x):
        out = np.zeros(x.size)
        for k in range(x.size):
            e = np.zeros(x.size)
            e[k] = eps
            out[k] = (fn(x + e) - fn(x - e)) / (2 * eps)
        return out

    np.testing.assert_allclose(vy.ravel(), fd(lambda z: np.sum(v * f(t, z.reshape(3, 2))),
                                              y.ravel()), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(vt, [fd(lambda s: np.sum(v[i] * f(s[0], y[i])), t[i:i + 1])[0]
                                    for i in range(3)], rtol=1e-7, atol=1e-9)
    theta = f.params.copy()

    def loss_theta(th):
        f.params[:] = th
        try:
            return np.sum(v * f(t, y))
        finally:
            f.params[:] = theta

    np.testing.assert_allclose(vth, fd(loss_theta, theta), rtol=1e-7, atol=1e-9)
    vy1, vth1, vt1 = f.vjp(float(t[0]), y[0], v[0])
    assert isinstance(vt1, float) and vy1.shape == (2,)
    np.testing.assert_allclose(vy1, vy[0], rtol=1e-15)
    np.testing.assert_allclose(f.jvp(t, y, v)[1] @ np.ones(2),
                               fd(lambda z: np.sum(f(t[1], z)), y[1]) @ v[1], rtol=1e-7)
