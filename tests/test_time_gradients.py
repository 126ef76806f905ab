"""``odeint_adjoint(..., time_gradients=False)`` (issue 13): no a_t channel, ``vjp(...).t`` is
None, and a ∂f/∂t that is infinite at t0 no longer stops the other gradients."""
import numpy as np
import pytest

from pyode import NonFiniteError, odeint_adjoint
from problems import ForcedDecay, LotkaVolterra

METHODS = ("backsolve", "checkpoint", "discrete", "forward")


class SqrtTime:
    """y' = p·√t (D = 1): y(t) = y0 + (2/3) p t^{3/2}; ∂f/∂t = p / (2√t) is infinite at t = 0."""

    def __init__(self, p=2.0):
        self.params = np.array([p])

    def __call__(self, t, y):
        root = np.sqrt(np.asarray(t, dtype=np.float64))
        return (self.params[0] * (root if np.ndim(t) == 0 else root[:, None])
                * np.ones_like(y))

    def jvp(self, t, y, u):
        return np.zeros_like(y)

    def jvp_params(self, t, y, w):
        root = np.sqrt(np.asarray(t, dtype=np.float64))
        return w[0] * (root if np.ndim(t) == 0 else root[:, None]) * np.ones_like(y)

    def vjp(self, t, y, v):
        t = np.asarray(t, dtype=np.float64)
        root = np.sqrt(t) if np.ndim(t) == 0 else np.sqrt(t)[:, None]
        with np.errstate(divide="ignore"):
            vt = np.sum(v, axis=-1) * self.params[0] * 0.5 / np.sqrt(t)
        return np.zeros_like(y), np.array([np.sum(v * root)]), vt


@pytest.mark.parametrize("method", METHODS)
def test_without_time_gradients_the_others_are_unchanged(method):
    f = ForcedDecay()
    y0 = np.array([[1.0, -2.0], [0.5, 0.3]])
    t = np.array([0.0, 0.5, 1.2, 2.0])
    w = np.random.default_rng(0).normal(size=(4, 2, 2))
    kw = dict(rtol=1e-9, atol=1e-11, adjoint_method=method, backend="numpy")
    ys, vjp = odeint_adjoint(f, y0, t, **kw)
    with_t = vjp(w)
    ys, vjp = odeint_adjoint(f, y0, t, time_gradients=False, **kw)
    without = vjp(w)
    assert with_t.t is not None and without.t is None
    scale = np.max(np.abs(with_t.params))
    np.testing.assert_allclose(without.params, with_t.params, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(without.y0, with_t.y0, rtol=0,
                               atol=1e-6 * np.max(np.abs(with_t.y0)))


def test_backsolve_without_time_gradients_skips_their_evaluations():
    f = LotkaVolterra()
    y0, t = np.array([1.0, 2.0]), np.linspace(0.0, 2.0, 6)
    ys, vjp = odeint_adjoint(f, y0, t, rtol=1e-8, atol=1e-10, backend="numpy")
    ys, vjp_no_t = odeint_adjoint(f, y0, t, rtol=1e-8, atol=1e-10, time_gradients=False,
                                  backend="numpy")
    g, g_no_t = vjp(np.ones_like(ys)), vjp_no_t(np.ones_like(ys))
    # The T − 1 evaluations of g_i · f(t_i, y_i) are gone (and a_t leaves the error norm).
    assert g_no_t.info.nfev < g.info.nfev


class SqrtTimePerSample(SqrtTime):
    """With ``vjp_per_sample``: a_θ per sample in the backward state, its error controlled."""

    def vjp_per_sample(self, t, y, v):
        vy, vth, vt = self.vjp(t, y, v)
        return vy, np.sum(v * np.sqrt(t)[:, None], axis=1, keepdims=True), vt


@pytest.mark.parametrize("method, make", [("backsolve", SqrtTime),
                                          ("backsolve", SqrtTimePerSample),
                                          ("checkpoint", SqrtTimePerSample),
                                          ("discrete", SqrtTime),
                                          ("forward", SqrtTime)])
def test_infinite_time_derivative_at_t0(method, make):
    # L = y(0) + y(1) = 2 y0 + (2/3) p, so dL/dp = 2/3 and dL/dy0 = 2; dL/dt0 = −f(0)·… is
    # finite, but the integrand of a_t, −a ∂f/∂t, is infinite at t = 0, and so is the t-part
    # of the vjp at the first stage that "discrete" reverses. (Checkpoint needs vjp_per_sample
    # here: its state is a alone, which is constant, so without a_θ in the state nothing would
    # limit the step — README, "What a Python field is called with in a batch".)
    f = make()
    kw = dict(rtol=1e-9, atol=1e-11, adjoint_method=method, backend="numpy")
    ys, vjp = odeint_adjoint(f, [0.0], [0.0, 1.0], time_gradients=False, **kw)
    g = vjp(np.ones_like(ys))
    np.testing.assert_allclose(g.params, [2.0 / 3.0], rtol=1e-6)
    np.testing.assert_allclose(g.y0, [2.0], rtol=1e-9)
    assert g.t is None
    ys, vjp = odeint_adjoint(f, [0.0], [0.0, 1.0], **kw)
    if method == "forward":
        # No integral of ∂f/∂t: dL/dt0 = −a(t0⁺)·f(0, y0) = 0, dL/dt1 = f(1, y1) = p = 2.
        np.testing.assert_allclose(vjp(np.ones_like(ys)).t, [0.0, 2.0], atol=1e-12)
        return
    where = (r"The gradient dL/dt is not finite while dL/dy0 and dL/dθ are" if method == "discrete"
             else r"backward \(adjoint\) solve")
    with pytest.raises(NonFiniteError, match=where + ".*time_gradients=False") as info:
        vjp(np.ones_like(ys))
    assert "rescale" not in str(info.value)


@pytest.mark.parametrize("method", ["discrete", "forward"])
def test_without_time_gradients_no_time_gradient_work(method):
    # "forward": the T evaluations of f for dL/dt are skipped; "discrete": the vjp calls are
    # the same (their y- and θ-parts are needed), and the gradients agree with time_gradients.
    f = LotkaVolterra()
    y0, t = np.array([1.0, 2.0]), np.linspace(0.0, 2.0, 6)
    kw = dict(rtol=1e-8, atol=1e-10, adjoint_method=method, backend="numpy")
    ys, vjp = odeint_adjoint(f, y0, t, **kw)
    g = vjp(np.ones_like(ys))
    ys, vjp = odeint_adjoint(f, y0, t, time_gradients=False, **kw)
    g_no_t = vjp(np.ones_like(ys))
    assert g_no_t.t is None
    assert g_no_t.info.nfev == (0 if method == "forward" else g.info.nfev)
    np.testing.assert_array_equal(g_no_t.params, g.params)
    np.testing.assert_array_equal(g_no_t.y0, g.y0)


def test_time_gradients_must_be_a_bool():
    with pytest.raises(TypeError, match="time_gradients"):
        odeint_adjoint(ForcedDecay(), [1.0, 0.0], [0.0, 1.0], time_gradients="no")


@pytest.mark.parametrize("method", ["backsolve", "checkpoint"])
def test_nn_kernels_without_time_gradients_take_the_numpy_steps(method):
    # The NumPy path drops a_t with time_gradients=False; the Numba kernels kept it in their
    # backward error norm, so at these tolerances they took other steps (3 more in all) and their
    # gradients differed by ~2e-11. Now a_t leaves the norm there too: the same steps, the
    # same gradients to rounding. The kernels still evaluate g_i·f(t_i, y_i) for i ≥ 1 (their
    # per-sample drivers in kernels/rk.py carry the a_t slot): T − 1 evaluations more a sample.
    from pyode import nn
    f = nn.MLP([2, 16, 2], time_input=True, seed=0)
    y0 = np.random.default_rng(1).normal(size=(8, 2))
    t = np.linspace(0.0, 1.0, 6)
    w = np.random.default_rng(11).normal(size=(6, 8, 2))
    kw = dict(rtol=1e-9, atol=1e-11, adjoint_method=method, time_gradients=False)
    g = {}
    for backend in ("numba", "numpy"):
        ys, vjp = odeint_adjoint(f, y0, t, backend=backend, **kw)
        g[backend] = vjp(w)
        assert g[backend].t is None
    kern, ref = g["numba"], g["numpy"]
    np.testing.assert_array_equal(kern.info.n_accepted, ref.info.n_accepted)
    np.testing.assert_array_equal(kern.info.n_rejected, ref.info.n_rejected)
    np.testing.assert_array_equal(kern.info.nfev - (t.size - 1), ref.info.nfev)
    np.testing.assert_allclose(kern.params, ref.params, rtol=0,
                               atol=1e-10 * np.max(np.abs(ref.params)))
    np.testing.assert_allclose(kern.y0, ref.y0, rtol=0, atol=1e-10 * np.max(np.abs(ref.y0)))
