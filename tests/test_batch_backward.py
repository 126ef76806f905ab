"""One backward pass for the whole batch (issue 14): user-written fields without
``vjp_per_sample``.

The backward solves call the field and its ``vjp`` once per stage for all active rows and sum
a_θ over the batch beside the state (``pyode.quadrature``). Checked here against

* the per-sample algorithm, a_θ per sample inside the state (a wrapper that gives the field a
  row-by-row ``vjp_per_sample``, which is what pyode did for every user field before): equal
  to within the adjoint tolerance (C_GLOBAL × rtol of the gradient's scale);
* the 1-D problem: a batch of one row is bit-identical to it;
* central finite differences of ``odeint`` and forward sensitivity (B = 1000, every method);
* call counts: the number of field calls does not grow with B.
"""
import numpy as np
import pytest

from pyode import odeint, odeint_adjoint
from problems import ForcedDecay, HybridMLP, LotkaVolterra

C_GLOBAL = 100.0          # global-error constant of the solver tests (test_gradient_methods.py)
METHODS = ("backsolve", "checkpoint", "discrete")


class PerSample:
    """The field with a row-by-row ``vjp_per_sample``: the per-sample algorithm (oracle)."""

    def __init__(self, field):
        self.field = field
        self.params = field.params

    def __call__(self, t, y):
        return self.field(t, y)

    def vjp(self, t, y, v):
        return self.field.vjp(t, y, v)

    def vjp_per_sample(self, t, y, v):
        parts = [self.field.vjp(float(t[b]), y[b], v[b]) for b in range(y.shape[0])]
        return (np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                np.array([p[2] for p in parts]))


class CountingVjp:
    """Counts the calls of ``__call__`` and ``vjp``."""

    def __init__(self, field):
        self.field, self.params = field, field.params
        self.calls = self.vjps = 0

    def __call__(self, t, y):
        self.calls += 1
        return self.field(t, y)

    def vjp(self, t, y, v):
        self.vjps += 1
        return self.field.vjp(t, y, v)


def assert_close_to(got, want, rtol):
    """|got − want| ≤ rtol · ‖want‖∞."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * np.max(np.abs(want)))


def gradients(f, y0, t, w, **kw):
    ys, vjp = odeint_adjoint(f, y0, t, backend="numpy", **kw)
    return vjp(w)


def batch(B, D, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.5, size=(B, D)).astype(dtype)


FIELDS = {"lotka_volterra": LotkaVolterra, "hybrid": HybridMLP}


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-8), (np.float32, 1e-4)])
@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("method", METHODS)
def test_batch_matches_the_per_sample_algorithm(method, name, dtype, rtol):
    f = FIELDS[name]()
    y0 = batch(7, 2, dtype)
    t = np.linspace(0.0, 2.0, 5)
    w = np.random.default_rng(1).normal(size=(5, 7, 2))
    kw = dict(rtol=rtol, atol=rtol * 1e-2, adjoint_method=method)
    got = gradients(f, y0, t, w, **kw)
    want = gradients(PerSample(f), y0, t, w, **kw)
    for part in ("y0", "params", "t"):
        assert_close_to(getattr(got, part), getattr(want, part), C_GLOBAL * rtol)
    assert got.y0.dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("solver, options", [("dopri5", None), ("bosh3", None),
                                             ("rk4", {"step_size": 0.05})])
def test_one_row_is_bit_identical_to_the_one_dimensional_problem(method, name, solver, options):
    f = FIELDS[name]()
    y0 = batch(1, 2, np.float64)
    t = np.array([0.0, 0.3, 1.1])
    w = np.random.default_rng(2).normal(size=(3, 1, 2))
    kw = dict(method=solver, options=options, rtol=1e-7, atol=1e-9, adjoint_method=method)
    rows = gradients(f, y0, t, w, **kw)
    single = gradients(f, y0[0], t, w[:, 0], **kw)
    assert np.array_equal(rows.y0[0], single.y0)
    assert np.array_equal(rows.params, single.params)
    assert np.array_equal(rows.t, single.t)
    assert int(rows.info.nfev[0]) == single.info.nfev


@pytest.mark.parametrize("method", METHODS)
def test_field_calls_do_not_grow_with_the_batch(method):
    # Identical rows take identical steps: a batch of 30 must call the field exactly as often
    # as a batch of 3 (one call per stage for all rows), never once per row.
    counts = {}
    for B in (3, 30):
        f = CountingVjp(LotkaVolterra())
        y0 = np.tile([1.2, 0.8], (B, 1))
        t = np.linspace(0.0, 3.0, 6)
        ys, vjp = odeint_adjoint(f, y0, t, rtol=1e-6, atol=1e-8, adjoint_method=method,
                                 backend="numpy")
        f.calls = f.vjps = 0
        vjp(np.ones_like(ys))
        counts[B] = (f.calls, f.vjps)
    assert counts[3] == counts[30]
    assert counts[3][1] > 0


def test_hybrid_gradient_matches_finite_differences():
    f = HybridMLP()
    y0 = batch(4, 2, np.float64, seed=5)
    t = np.array([0.0, 0.5, 1.5])
    w = np.random.default_rng(3).normal(size=(3, 4, 2))
    kw = dict(rtol=1e-10, atol=1e-12)
    g = gradients(f, y0, t, w, **kw)

    def loss(theta):
        f.params[:] = theta
        return float(np.sum(w * odeint(f, y0, t, backend="numpy", **kw)))

    theta0 = f.params.copy()
    fd = np.zeros_like(theta0)
    for k in range(theta0.size):
        e = np.zeros_like(theta0)
        e[k] = 1e-5
        fd[k] = (loss(theta0 + e) - loss(theta0 - e)) / 2e-5
    f.params[:] = theta0
    assert_close_to(g.params, fd, 1e-6)


def test_thousand_samples_every_method_agrees_with_forward_sensitivity():
    f = LotkaVolterra()
    y0 = batch(1000, 2, np.float64)
    t = np.linspace(0.0, 5.0, 20)
    kw = dict(rtol=1e-7, atol=1e-9)
    w = np.ones((20, 1000, 2))
    want = gradients(f, y0, t, w, adjoint_method="forward", **kw)
    for method in METHODS:
        got = gradients(f, y0, t, w, adjoint_method=method, **kw)
        assert_close_to(got.params, want.params, C_GLOBAL * 1e-7)
        assert_close_to(got.y0, want.y0, C_GLOBAL * 1e-7)


def test_forced_decay_time_gradients_in_a_batch():
    # A field with ∂f/∂t ≠ 0: the time gradients of a batch are the sums of the samples' own.
    f = ForcedDecay()
    y0 = batch(5, 2, np.float64, seed=9)
    t = np.array([0.0, 0.4, 1.0, 1.7])
    w = np.random.default_rng(4).normal(size=(4, 5, 2))
    kw = dict(rtol=1e-9, atol=1e-11)
    got = gradients(f, y0, t, w, **kw)
    alone = [gradients(f, y0[b], t, w[:, b], **kw) for b in range(5)]
    assert_close_to(got.t, sum(g.t for g in alone), C_GLOBAL * 1e-9)
    for b in range(5):
        assert_close_to(got.y0[b], alone[b].y0, C_GLOBAL * 1e-9)
