"""The adjoint method (Chen et al. 2018, Alg. 1 and App. C): closed forms and finite differences.

Gradients are checked against
  * closed forms (exponential growth and decay, where every gradient is known exactly), and
  * central finite differences of ``odeint`` for the user-written fields of ``problems.py``,
    whose own derivatives are checked first (FD and the dot-product identity, STYLE.md §13).

Tolerances. The adjoint is the gradient of the exact solution computed to the adjoint
tolerance (optimise-then-discretise), so it errs by about C·rtol relative, with the
global-error constant C ≲ 100 of the forward tests (test_solvers.py): at rtol = 1e-10 that is
≲ 1e-8. Central differences with relative step ε = 1e-5 err by O(ε²) ≈ 1e-10 (truncation) plus
the jitter of the adaptive forward solution under a perturbation (≲ C·rtol_fd) divided by ε:
≲ 1e-8/1e-5 = 1e-3 in the worst case, ~1e-9–1e-7 in practice because the step sequence moves
smoothly with the inputs. FD_RTOL = 1e-5 (relative to the size of the gradient) is a hundred
times above what is observed and far below what a wrong term in the adjoint (O(1)) gives.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from problems import (ZOO, Exponential, ForcedDecay, LotkaVolterra, Parameterless,
                      Recording)
from pyode.adjoint import odeint_adjoint
from pyode.backward import Layout, adjoint_dynamics
from pyode.solvers import odeint

FWD = dict(rtol=1e-10, atol=1e-12)
FD_EPS = 1e-5
FD_RTOL = 1e-5
C_GLOBAL = 100.0


def adjoint(f, y0, t, grad_ys, **kw):
    kw.setdefault("backend", "numpy")
    ys, vjp = odeint_adjoint(f, y0, t, **kw)
    return ys, vjp(grad_ys)


# ---------------------------------------------------------------------------------------------
# Finite differences of L = Σ w · odeint(f, y0, t) with respect to y0, θ and every t_i.
# ---------------------------------------------------------------------------------------------

def fd_gradients(f, y0, t, w, eps=FD_EPS, **kw):
    """Central differences, step ε·max(1, |x|) per entry. Returns (dL/dy0, dL/dθ, dL/dt)."""
    kw = {**FWD, "backend": "numpy", **kw}
    y0 = np.array(y0, dtype=np.float64)
    t = np.array(t, dtype=np.float64)

    def loss():
        return float(np.sum(w * odeint(f, y0, t, **kw)))

    def partials(x):
        g = np.zeros(x.shape)
        for i in np.ndindex(x.shape):
            old = x[i]
            h = eps * max(1.0, abs(old))
            x[i] = old + h
            up = loss()
            x[i] = old - h
            down = loss()
            x[i] = old
            g[i] = (up - down) / (2.0 * h)
        return g

    # f.params is written in place (the protocol says writing into params changes the field).
    return partials(y0), partials(f.params), partials(t)


def assert_close_to(got, want, rtol):
    """|got − want| ≤ rtol · ‖want‖∞ (entries near zero judged against the whole gradient)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    if want.size == 0:
        return
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) <= rtol * scale, (got, want)


# ---------------------------------------------------------------------------------------------
# 0. The fields of the zoo are right (otherwise nothing below means anything).
# ---------------------------------------------------------------------------------------------

FIELDS = ["linear", "decay", "rotation", "riccati", "forced_decay", "lotka_volterra",
          "van_der_pol", "parameterless"]


def _random_state(p, rng, B):
    return p.y0 * (1.0 + 0.3 * rng.normal(size=(B,) + p.y0.shape)) + 0.1 * rng.normal(
        size=(B,) + p.y0.shape)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(FIELDS), seed=st.integers(0, 2**32 - 1), B=st.integers(1, 4))
def test_zoo_field_derivatives(name, seed, B):
    rng = np.random.default_rng(seed)
    p = ZOO[name]()
    f = p.field
    y = _random_state(p, rng, B)
    t = rng.uniform(-1.0, 3.0, size=B)
    u, v = rng.normal(size=y.shape), rng.normal(size=y.shape)
    fy = f(t, y)
    assert fy.shape == y.shape
    # Batched evaluation = row-wise evaluation (the two calling conventions agree; a matrix
    # product may round differently for one row than for a batch).
    for b in range(B):
        np.testing.assert_allclose(f(float(t[b]), y[b]), fy[b], rtol=1e-14, atol=1e-15)
    # Dot-product identity ⟨v, J u⟩ = ⟨Jᵀ v, u⟩ to rounding.
    Ju = f.jvp(t, y, u)
    vy, vth, vt = f.vjp(t, y, v)
    assert vy.shape == y.shape and vth.shape == f.params.shape and np.shape(vt) == (B,)
    lhs, rhs = np.sum(v * Ju), np.sum(vy * u)
    assert abs(lhs - rhs) <= 1e-12 * (np.sum(np.abs(v * Ju)) + np.sum(np.abs(vy * u)))
    # Central differences (step 1e-6: truncation ~1e-12, rounding ~1e-10 relative).
    h = 1e-6
    Ju_fd = (f(t, y + h * u) - f(t, y - h * u)) / (2 * h)
    assert_close_to(Ju, Ju_fd, 1e-6)
    vt_fd = np.sum(v * (f(t + h, y) - f(t - h, y)), axis=1) / (2 * h)
    assert np.max(np.abs(vt - vt_fd)) <= 1e-6 * max(1.0, np.max(np.abs(vt_fd)))
    vth_fd = np.zeros(f.params.size)
    for k in range(f.params.size):
        old = f.params[k]
        f.params[k] = old + h
        up = f(t, y)
        f.params[k] = old - h
        down = f(t, y)
        f.params[k] = old
        vth_fd[k] = np.sum(v * (up - down)) / (2 * h)
    assert_close_to(vth, vth_fd, 1e-6)
    # 1-D call: vᵀ∂f/∂t is a float; a float t with a batch sums it over the batch.
    vy1, vth1, vt1 = f.vjp(float(t[0]), y[0], v[0])
    assert vy1.shape == y[0].shape and isinstance(vt1, float)
    _, vth_f, vt_f = f.vjp(float(t[0]), np.repeat(y[:1], 2, 0), np.repeat(v[:1], 2, 0))
    assert abs(vt_f - 2 * vt1) <= 1e-12 * (1 + abs(vt1))
    np.testing.assert_allclose(vth_f, 2 * vth1, rtol=1e-12, atol=1e-300)


class ForcedDecayPerSample(ForcedDecay):
    """Adds the optional ``vjp_per_sample`` (θ-part of shape (B, P))."""

    def vjp_per_sample(self, t, y, v):
        tb, yb, _ = self._batch(t, y)
        return self._vjp_rows(tb, yb, v)


@pytest.mark.parametrize("per_sample", [True, False])
def test_augmented_dynamics_layout(per_sample):
    # [z | a | a_θ | a_t] (per-sample vjp) or [z | a | a_t]: dz/dt = f, da/dt = −aᵀf_y,
    # da_θ/dt = −aᵀf_θ, da_t/dt = −aᵀf_t.
    f = ForcedDecayPerSample() if per_sample else ForcedDecay()
    D, P = 2, 3
    rng = np.random.default_rng(3)
    z, a = rng.normal(size=(4, D)), rng.normal(size=(4, D))
    t = rng.uniform(0.0, 2.0, size=4)
    W = 2 * D + (P if per_sample else 0) + 1
    state = np.concatenate([z, a, rng.normal(size=(4, W - 2 * D))], axis=1)
    layout = Layout(D, P, with_z=True, with_theta=per_sample, with_time=True)
    ds = adjoint_dynamics(f, False, layout)(t, state, np.arange(4))
    assert ds.shape == (4, W)
    np.testing.assert_allclose(ds[:, :D], f(t, z), rtol=1e-15)
    for b in range(4):
        vy, vth, vt = f.vjp(float(t[b]), z[b], a[b])
        np.testing.assert_allclose(ds[b, D:2 * D], -vy, rtol=1e-15)
        if per_sample:
            np.testing.assert_allclose(ds[b, 2 * D:2 * D + P], -vth, rtol=1e-15)
        np.testing.assert_allclose(ds[b, -1], -vt, rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# 1. Closed forms.
# ---------------------------------------------------------------------------------------------

def test_decay_two_times():
    # f = −y (θ = λ = −1), t = [0, 1], L = y(0) + y(1) = y0 (1 + e^{λ(t1 − t0)}):
    #   dL/dy0 = 1 + e⁻¹,  dL/dλ = y0 (t1 − t0) e^{λ} = e⁻¹,
    #   dL/dt1 = λ y0 e^{λ} = −e⁻¹,  dL/dt0 = −dL/dt1 = e⁻¹.
    ys, g = adjoint(Exponential(-1.0), [1.0], [0.0, 1.0], np.ones((2, 1)), **FWD)
    e = np.exp(-1.0)
    tol = C_GLOBAL * FWD["rtol"]
    assert g.y0.shape == (1,) and g.params.shape == (1,) and g.t.shape == (2,)
    assert abs(g.y0[0] - (1.0 + e)) <= tol
    assert abs(g.params[0] - e) <= tol
    assert abs(g.t[1] + e) <= tol
    assert abs(g.t[0] - e) <= tol


def test_growth_many_times():
    # f = y, t_i = linspace(0, 1, 20), L = Σ y(t_i) = Σ y0 e^{t_i − t0}:
    #   dL/dy0 = Σ e^{t_i},  dL/dθ = Σ t_i e^{t_i},  dL/dt_i = e^{t_i} (i ≥ 1),
    #   dL/dt0 = −Σ_{i≥1} e^{t_i}, so Σ_i dL/dt_i = 0.
    t = np.linspace(0.0, 1.0, 20)
    ys, g = adjoint(Exponential(1.0), [1.0], t, np.ones((20, 1)), **FWD)
    tol = C_GLOBAL * FWD["rtol"]
    assert abs(g.y0[0] - np.sum(np.exp(t))) <= tol * np.sum(np.exp(t))
    assert abs(g.params[0] - np.sum(t * np.exp(t))) <= tol * np.sum(t * np.exp(t))
    assert_close_to(g.t[1:], np.exp(t[1:]), tol)
    assert abs(g.t[0] + np.sum(np.exp(t[1:]))) <= tol * np.sum(np.exp(t))
    assert abs(np.sum(g.t)) <= tol * np.sum(np.exp(t))


def test_loss_on_the_initial_state_only():
    # L = w · y(t0): dL/dy0 = w exactly, and nothing depends on θ or on any time.
    f = LotkaVolterra()
    t = [0.0, 0.5, 1.0]
    w = np.zeros((3, 2))
    w[0] = [0.3, -1.7]
    _, g = adjoint(f, [10.0, 5.0], t, w, **FWD)
    np.testing.assert_array_equal(g.y0, w[0])
    np.testing.assert_array_equal(g.params, np.zeros(4))
    np.testing.assert_array_equal(g.t, np.zeros(3))


def test_zero_cotangent_gives_zero_gradients():
    _, g = adjoint(LotkaVolterra(), [[10.0, 5.0], [1.0, 2.0]], [0.0, 1.0], np.zeros((2, 2, 2)),
                   **FWD)
    assert not np.any(g.y0) and not np.any(g.params) and not np.any(g.t)


# ---------------------------------------------------------------------------------------------
# 2. Finite differences, user-written fields.
# ---------------------------------------------------------------------------------------------

FD_CASES = {
    # name: (field factory, y0, t)
    "lotka_volterra": (LotkaVolterra, [10.0, 5.0], [0.0, 0.7, 1.5, 2.5]),
    "forced_decay_nonautonomous": (ForcedDecay, [1.0, -2.0], [0.2, 0.5, 1.7, 3.0]),
    "parameterless": (Parameterless, [1.0, 0.5], [0.0, 1.0, 3.0]),
    "lotka_volterra_backward": (LotkaVolterra, [10.0, 5.0], [2.5, 1.0, 0.0]),
    "forced_decay_backward": (ForcedDecay, [1.0, -2.0], [3.0, 1.1, -0.4]),
    "lotka_volterra_batch": (LotkaVolterra, [[10.0, 5.0], [1.0, 2.0], [4.0, 0.5]],
                             [0.0, 1.0, 2.5]),
    "forced_decay_batch_backward": (ForcedDecay, [[1.0, -2.0], [0.1, 3.0]], [2.0, 0.0]),
}


@pytest.mark.parametrize("case", sorted(FD_CASES))
def test_against_finite_differences(case):
    make, y0, t = FD_CASES[case]
    f = make()
    y0 = np.array(y0, dtype=np.float64)
    rng = np.random.default_rng(len(case))
    # A loss on every output, y(t0) included: L = Σ w · ys.
    w = rng.normal(size=(len(t),) + y0.shape)
    ys, g = adjoint(f, y0, t, w, **FWD)
    np.testing.assert_array_equal(ys, odeint(f, y0, t, backend="numpy", **FWD))
    gy, gp, gt = fd_gradients(f, y0, t, w)
    assert g.y0.shape == y0.shape and g.params.shape == f.params.shape
    assert g.t.shape == (len(t),)
    assert_close_to(g.y0, gy, FD_RTOL)
    assert_close_to(g.params, gp, FD_RTOL)
    assert_close_to(g.t, gt, FD_RTOL)
    # The non-autonomous field really has ∂f/∂t ≠ 0: the time gradients do not cancel.
    if make is ForcedDecay:
        assert abs(np.sum(gt)) > 1e-3 * np.max(np.abs(gt))


@pytest.mark.parametrize("method, options, rtol", [
    ("rk4", {"step_size": 0.01}, None),
    ("bosh3", None, 1e-8),
    ("dopri5", {"first_step": 1e-3, "max_num_steps": 10_000}, 1e-10),
])
def test_other_methods_against_finite_differences(method, options, rtol):
    # Reference: FD of the accurate dopri5 solution (the gradient of the exact solution). rk4
    # with h = 0.01 errs by O(h⁴) ≈ 1e-8, bosh3 at rtol 1e-8 by C·1e-8: both far below FD_RTOL.
    f = LotkaVolterra()
    y0, t = np.array([10.0, 5.0]), [0.0, 0.55, 1.3]
    w = np.random.default_rng(5).normal(size=(3, 2))
    kw = dict(method=method, options=options)
    if rtol is not None:
        kw.update(rtol=rtol, atol=rtol * 1e-2)
    _, g = adjoint(f, y0, t, w, **kw)
    gy, gp, gt = fd_gradients(f, y0, t, w)
    assert_close_to(g.y0, gy, FD_RTOL)
    assert_close_to(g.params, gp, FD_RTOL)
    assert_close_to(g.t, gt, FD_RTOL)


def test_looser_adjoint_tolerance():
    # adjoint_rtol controls the backward solve: looser → fewer evaluations, still within its
    # own C·adjoint_rtol of the accurate gradient.
    f = LotkaVolterra()
    y0, t = [10.0, 5.0], [0.0, 1.0, 2.0]
    w = np.random.default_rng(7).normal(size=(3, 2))
    _, tight = adjoint(f, y0, t, w, **FWD)
    _, loose = adjoint(f, y0, t, w, adjoint_rtol=1e-5, adjoint_atol=1e-7, **FWD)
    assert loose.info.nfev < tight.info.nfev
    assert_close_to(loose.y0, tight.y0, C_GLOBAL * 1e-5)
    assert_close_to(loose.params, tight.params, C_GLOBAL * 1e-5)
    assert not np.allclose(loose.y0, tight.y0, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# 3. Batches: one adjoint per sample.
# ---------------------------------------------------------------------------------------------

class LotkaVolterraPerSample(LotkaVolterra):
    """Adds the optional ``vjp_per_sample`` (θ-part of shape (B, P))."""

    def vjp_per_sample(self, t, y, v):
        tb, yb, _ = self._batch(t, y)
        return self._vjp_rows(tb, yb, v)


@pytest.mark.parametrize("make", [LotkaVolterra, LotkaVolterraPerSample])
def test_batch_equals_samples_alone(make):
    f = make()
    Y0 = np.array([[10.0, 5.0], [1.0, 2.0], [4.0, 0.5]])
    t = [0.0, 0.8, 2.0]
    W = np.random.default_rng(11).normal(size=(3, 3, 2))
    _, g = adjoint(f, Y0, t, W, **FWD)
    assert g.y0.shape == (3, 2) and g.info.nfev.shape == (3,)
    params, times = np.zeros(4), np.zeros(3)
    for b in range(3):
        _, gb = adjoint(f, Y0[b], t, W[:, b], **FWD)
        # Same steps and arithmetic per row (NumPy's reductions may sum in another order).
        np.testing.assert_allclose(g.y0[b], gb.y0, rtol=1e-11, atol=0)
        assert g.info.nfev[b] == gb.info.nfev
        params += gb.params
        times += gb.t
    # θ and t gradients are sums over the samples.
    assert_close_to(g.params, params, 1e-11)
    assert_close_to(g.t, times, 1e-11)


# ---------------------------------------------------------------------------------------------
# 4. Bookkeeping: evaluations, where they happen, linearity.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [[0.0, 0.4, 1.3, 2.0], [2.0, 1.0, 0.25]])
@pytest.mark.parametrize("method, options", [("dopri5", None), ("rk4", {"step_size": 0.07})])
def test_backward_pass_stays_inside_span_and_counts(t, method, options):
    f = Recording(ForcedDecay())
    _, vjp = odeint_adjoint(f, [1.0, -2.0], t, method=method, options=options,
                            backend="numpy")
    calls_forward = f.calls
    f.times.clear()
    g = vjp(np.ones((len(t), 2)))
    seen = f.t_array()
    assert seen.size > 0
    assert seen.min() >= min(t) and seen.max() <= max(t)
    # Every field evaluation of the backward pass is counted in its nfev.
    assert f.calls - calls_forward == g.info.nfev


def test_vjp_is_linear_and_reusable():
    f = LotkaVolterra()
    t = [0.0, 0.6, 1.5]
    ys, vjp = odeint_adjoint(f, [10.0, 5.0], t, backend="numpy", **FWD)
    rng = np.random.default_rng(2)
    w1, w2 = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    g1, g2, g12 = vjp(w1), vjp(w2), vjp(2.0 * w1 - 3.0 * w2)
    tol = C_GLOBAL * FWD["rtol"]
    assert_close_to(g12.y0, 2.0 * g1.y0 - 3.0 * g2.y0, tol)
    assert_close_to(g12.params, 2.0 * g1.params - 3.0 * g2.params, tol)
    assert_close_to(g12.t, 2.0 * g1.t - 3.0 * g2.t, tol)
    # A second call with the same cotangent gives the same answer (nothing was mutated).
    np.testing.assert_array_equal(vjp(w1).y0, g1.y0)


# ---------------------------------------------------------------------------------------------
# 5. Errors.
# ---------------------------------------------------------------------------------------------

def test_grad_ys_of_wrong_shape():
    _, vjp = odeint_adjoint(LotkaVolterra(), [10.0, 5.0], [0.0, 1.0], backend="numpy")
    for bad in (np.ones((2,)), np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 1, 2))):
        with pytest.raises(ValueError, match="grad_ys"):
            vjp(bad)
    with pytest.raises(ValueError, match="grad_ys"):
        vjp(np.array([[1.0, np.nan], [0.0, 0.0]]))


def test_field_without_vjp():
    class NoVJP:
        params = np.zeros(0)

        def __call__(self, t, y):
            return -y

    with pytest.raises(TypeError, match="vjp"):
        odeint_adjoint(NoVJP(), [1.0], [0.0, 1.0], backend="numpy")
    with pytest.raises(TypeError, match="vjp"):
        odeint_adjoint(lambda t, y: -y, [1.0], [0.0, 1.0], backend="numpy")


def test_adjoint_argument_errors():
    f = LotkaVolterra()
    with pytest.raises(ValueError, match="adjoint_rtol"):
        odeint_adjoint(f, [1.0, 1.0], [0.0, 1.0], adjoint_rtol=-1.0, backend="numpy")
    with pytest.raises(ValueError, match=r"\bt\b"):
        odeint_adjoint(f, [1.0, 1.0], [0.0], backend="numpy")
    with pytest.raises(ValueError, match="step_size"):
        odeint_adjoint(f, [1.0, 1.0], [0.0, 1.0], method="rk4", backend="numpy")


def test_float32_adjoint():
    # float32 in, float32 gradients out, within float32-appropriate accuracy of float64
    # (rtol 1e-5 is ~100 float32 ulps; C·rtol ≲ 1e-3).
    f = LotkaVolterra()
    t, w = [0.0, 0.5, 1.0], np.random.default_rng(4).normal(size=(3, 2))
    kw = dict(rtol=1e-5, atol=1e-6)
    ys32, g32 = adjoint(f, np.array([10.0, 5.0], dtype=np.float32), t, w, **kw)
    _, g64 = adjoint(f, np.array([10.0, 5.0]), t, w, **FWD)
    assert ys32.dtype == g32.y0.dtype == g32.params.dtype == np.float32
    assert_close_to(g32.y0, g64.y0, 1e-3)
    assert_close_to(g32.params, g64.params, 1e-3)
    assert_close_to(g32.t, g64.t, 1e-3)
