"""``args=`` of ``odeint`` and ``odeint_adjoint`` (issue 13, "Per-row data has a documented way
in"): extra arguments handed to ``f(t, y, *args)`` and to its derivatives after their own
arguments, an ndarray with one entry per row of a batch sliced to the rows being evaluated.

Checked here:

* the issue's example, y' = −k y with k = [[1], [50]] per row, against exp(−k t), while the
  rows finish at different times (the field is called on fewer rows, not always the first);
* gradients of every method (backsolve, checkpoint, discrete, forward; the fields with and
  without ``vjp_per_sample``) on a Lotka–Volterra batch whose rates α, γ are per-row args:
  against each row solved alone with its own args, against central finite differences of
  ``odeint``, and a batch of one row bit-identical to the 1-D problem (backsolve, checkpoint
  and discrete promise that: tests/test_batch_backward.py);
* what passes unchanged: scalars, lists, arrays of another leading length, every argument of a
  1-D problem;
* the errors: ``args`` that is not a tuple, ``args`` for an nn field.
"""
import numpy as np
import pytest

from pyode import gradcheck, nn, odeint, odeint_adjoint

C_GLOBAL = 100.0          # global-error constant of the solver tests (test_gradient_methods.py)
GRADIENT_METHODS = ("backsolve", "checkpoint", "discrete", "forward")
ONE_ROW_IDENTICAL = ("backsolve", "checkpoint", "discrete")   # tests/test_batch_backward.py


def assert_close_to(got, want, rtol):
    """|got − want| ≤ rtol · ‖want‖∞."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * np.max(np.abs(want)))


# ---------------------------------------------------------------------------------------------
# The example: one decay rate per row
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_per_row_rate_gives_each_row_its_own_exponential(method):
    k = np.array([[1.0], [50.0], [3.0], [200.0]])      # rows 0 and 2 finish long before 1, 3
    seen = []

    def decay(t, y, k):
        seen.append(k[:, 0].copy())
        return -k * y

    t = np.linspace(0.0, 1.0, 6)
    rtol, atol = 1e-10, 1e-12
    ys, info = odeint(decay, np.ones((4, 1)), t, method=method, rtol=rtol, atol=atol,
                      args=(k,), full_output=True)
    exact = np.exp(-k[:, 0][None, :] * t[:, None])[:, :, None]
    # Global error within C_GLOBAL tolerances of the solution's own scale (test_solvers.py).
    assert np.all(np.abs(ys - exact) <= C_GLOBAL * (atol + rtol * np.abs(exact)))
    # The rows took very different step counts, so the active set shrank: the field was called
    # on the fast rows alone, and k came sliced to exactly those rows.
    assert info.n_accepted[3] > 5 * info.n_accepted[0]
    assert any(np.array_equal(s, [50.0, 200.0]) for s in seen)
    assert any(np.array_equal(s, [200.0]) for s in seen)
    assert all(set(s) <= {1.0, 50.0, 3.0, 200.0} for s in seen)


def test_a_vector_of_one_value_per_row_is_sliced_too():
    k = np.array([2.0, 40.0, 0.5])     # (B,): any ndarray whose leading axis has length B
    y0 = np.array([[1.0, -2.0], [3.0, 1.0], [0.5, 0.25]])
    t = np.linspace(0.0, 1.5, 4)
    rtol, atol = 1e-10, 1e-12
    ys = odeint(lambda t, y, k: -k[:, None] * y, y0, t, args=(k,), rtol=rtol, atol=atol)
    exact = y0[None] * np.exp(-k[None, :, None] * t[:, None, None])
    assert np.all(np.abs(ys - exact) <= C_GLOBAL * (atol + rtol * np.abs(exact)))


def test_the_hint_for_per_row_values_in_the_field_points_to_args():
    k = np.array([[1.0], [50.0]])
    with pytest.raises(ValueError, match=r"still integrating.*args=\(k,\)"):
        odeint(lambda t, y: -k * y, np.ones((2, 1)), np.array([0.0, 1.0]))
    rtol, atol = 1e-10, 1e-14
    ys = odeint(lambda t, y, k: -k * y, np.ones((2, 1)), np.array([0.0, 1.0]), args=(k,),
                rtol=rtol, atol=atol)
    exact = np.exp(-k[:, 0])
    assert np.all(np.abs(ys[-1, :, 0] - exact) <= C_GLOBAL * (atol + rtol * exact))


def test_a_list_of_per_row_values_is_passed_unchanged_and_the_hint_says_so():
    k = [[1.0], [50.0]]                                  # a list: unchanged, as scipy passes it
    with pytest.raises(ValueError, match=r"np\.asarray\(k\)"):
        odeint(lambda t, y, k: -np.asarray(k) * y, np.ones((2, 1)), np.array([0.0, 1.0]),
               args=(k,))


# ---------------------------------------------------------------------------------------------
# Gradients: Lotka–Volterra with per-row rates
# ---------------------------------------------------------------------------------------------

class RowRatesLV:
    """dy/dt = s · [α x − c β x z, c δ x z − γ z], θ = (β, δ) shared by every row; per-row
    rates ``rates`` = (α, γ, c) of shape (B, 3) (or (3,) for a 1-D y) and a scalar time scale
    s, both passed as args: ``f(t, y, rates, s)``. The coupling c makes ∂f/∂θ depend on the
    row's args too (so the a_θ quadrature must slice them).

    ∂f/∂y = s [[α − cβz, −cβx], [cδz, cδx − γ]];  ∂f/∂θ = s c [[−xz, 0], [0, xz]];  ∂f/∂t = 0.
    """

    def __init__(self, theta=(1.0, 1.0)):
        self.params = np.array(theta, dtype=np.float64)

    def __call__(self, t, y, rates, s):
        b, d = self.params
        x, z = y[..., 0], y[..., 1]
        al, ga, c = rates[..., 0], rates[..., 1], rates[..., 2]
        return s * np.stack([al * x - c * b * x * z, c * d * x * z - ga * z], axis=-1)

    def jvp(self, t, y, u, rates, s):
        b, d = self.params
        x, z = y[..., 0], y[..., 1]
        al, ga, c = rates[..., 0], rates[..., 1], rates[..., 2]
        return s * np.stack([(al - c * b * z) * u[..., 0] - c * b * x * u[..., 1],
                             c * d * z * u[..., 0] + (c * d * x - ga) * u[..., 1]], axis=-1)

    def jvp_params(self, t, y, w, rates, s):
        cxz = rates[..., 2] * y[..., 0] * y[..., 1]
        return s * np.stack([-w[0] * cxz, w[1] * cxz], axis=-1)

    def _vjp_parts(self, t, y, v, rates, s):
        b, d = self.params
        x, z = y[..., 0], y[..., 1]
        al, ga, c = rates[..., 0], rates[..., 1], rates[..., 2]
        vx, vz = v[..., 0], v[..., 1]
        vy = s * np.stack([(al - c * b * z) * vx + c * d * z * vz,
                           -c * b * x * vx + (c * d * x - ga) * vz], axis=-1)
        vth = s * c[..., None] * np.stack([-vx * x * z, vz * x * z], axis=-1)    # per row
        return vy, vth, np.zeros_like(np.asarray(t, dtype=np.float64))

    def vjp(self, t, y, v, rates, s):
        vy, vth, vt = self._vjp_parts(t, y, v, rates, s)
        return vy, vth.reshape(-1, 2).sum(axis=0), vt


class RowRatesLVPerSample(RowRatesLV):
    """The same field with ``vjp_per_sample`` (a_θ per sample in the backward state)."""

    def vjp_per_sample(self, t, y, v, rates, s):
        return self._vjp_parts(t, y, v, rates, s)


RATES = np.array([[1.5, 3.0, 1.0], [0.5, 1.0, 2.0], [4.0, 8.0, 0.5]])   # different steps
SCALE = 0.8
Y0 = np.array([[1.0, 1.0], [2.0, 0.5], [0.7, 1.3]])
T_OUT = np.array([0.0, 0.4, 1.1, 2.0])
W = np.random.default_rng(7).normal(size=(4, 3, 2))         # L = Σ W · ys
FIELDS = {"summed": RowRatesLV, "per_sample": RowRatesLVPerSample}


def cases():
    for method in GRADIENT_METHODS:
        for name in FIELDS:
            if name == "per_sample" and method not in ("backsolve", "checkpoint"):
                continue                  # the other methods never call vjp_per_sample
            yield method, name


def gradients(f, y0, w, method, rates, **kw):
    ys, vjp = odeint_adjoint(f, y0, T_OUT, adjoint_method=method, args=(rates, SCALE), **kw)
    return ys, vjp(w)


@pytest.mark.parametrize("method, name", list(cases()))
def test_batch_gradients_match_each_row_solved_alone_with_its_own_args(method, name):
    f = FIELDS[name]()
    rtol = 1e-8
    kw = dict(rtol=rtol, atol=rtol * 1e-2)
    ys, g = gradients(f, Y0, W, method, RATES, **kw)
    steps = []
    alone = []
    for b in range(3):
        ys_b, g_b = gradients(f, Y0[b:b + 1], W[:, b:b + 1], method, RATES[b:b + 1], **kw)
        alone.append(g_b)
        steps.append(g_b.forward_info.n_accepted[0])
        # A row's forward solve is the one it takes alone (per-sample step control; the
        # error estimate's rounding may depend on the batch, so not bit for bit).
        assert_close_to(ys[:, b], ys_b[:, 0], C_GLOBAL * rtol)
        assert_close_to(g.y0[b], g_b.y0[0], C_GLOBAL * rtol)
    assert max(steps) > 2 * min(steps)          # rows finish at very different times
    assert_close_to(g.params, sum(a.params for a in alone), C_GLOBAL * rtol)
    assert_close_to(g.t, sum(a.t for a in alone), C_GLOBAL * rtol)
    # The args matter: with every row given the rates of row 0 the gradient is another one.
    _, g_same = gradients(f, Y0, W, method, np.tile(RATES[:1], (3, 1)), **kw)
    assert np.max(np.abs(g_same.y0[1:] - g.y0[1:])) > 1e3 * C_GLOBAL * rtol * np.max(
        np.abs(g.y0))


@pytest.mark.parametrize("method, name", list(cases()))
def test_gradients_with_args_match_central_differences(method, name):
    f = FIELDS[name]()
    kw = dict(rtol=1e-11, atol=1e-13)
    theta0 = f.params.copy()

    def loss_and_grad(x):
        # x = [y0 (B·D), θ (2)]: L = Σ W · ys and its gradient by the method under test.
        f.params[:] = x[6:]
        ys, g = gradients(f, x[:6].reshape(3, 2), W, method, RATES, **kw)
        return float(np.sum(W * ys)), np.concatenate([g.y0.ravel(), g.params])

    # Central differences with h = 1e-5: truncation h²|∂³L| ≈ 1e-10 and the solver's error
    # ≈ 1e-11 relative, divided by h, ≈ 1e-6 relative; the check allows ten times that.
    res = gradcheck(loss_and_grad, np.concatenate([Y0.ravel(), theta0]), eps=1e-5, rtol=1e-5,
                    atol=1e-7)
    f.params[:] = theta0
    assert res.ok, str(res)


@pytest.mark.parametrize("method, name", [c for c in cases() if c[0] in ONE_ROW_IDENTICAL])
def test_one_row_with_args_is_bit_identical_to_the_one_dimensional_problem(method, name):
    f = FIELDS[name]()
    kw = dict(rtol=1e-7, atol=1e-9)
    ys_b, g_b = gradients(f, Y0[2:3], W[:, 2:3], method, RATES[2:3], **kw)
    ys_1, g_1 = gradients(f, Y0[2], W[:, 2], method, RATES[2], **kw)    # args unchanged, 1-D
    assert np.array_equal(ys_b[:, 0], ys_1)
    assert np.array_equal(g_b.y0[0], g_1.y0)
    assert np.array_equal(g_b.params, g_1.params)
    assert np.array_equal(g_b.t, g_1.t)


# ---------------------------------------------------------------------------------------------
# What passes unchanged
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("y0", [np.array([1.0, 2.0]), np.array([[1.0, 2.0], [3.0, 0.5],
                                                                  [0.2, 1.0]])])
def test_scalar_args_pass_unchanged(y0):
    received = []

    def decay(t, y, k, label):
        received.append((k, label))
        return -k * y

    t = np.linspace(0.0, 2.0, 5)
    ys = odeint(decay, y0, t, args=(2.5, "tag"), rtol=1e-10, atol=1e-12)
    exact = y0[None] * np.exp(-2.5 * t)[(slice(None),) + (None,) * y0.ndim]
    assert np.all(np.abs(ys - exact) <= C_GLOBAL * (1e-12 + 1e-10 * np.abs(exact)))
    assert all(k == 2.5 and type(k) is float and label == "tag" for k, label in received)


def test_arrays_of_another_leading_length_pass_unchanged():
    c = np.array([1.0, 2.0])          # (D,) for a batch of B = 3: the same for every row
    seen = []

    def decay(t, y, c):
        seen.append(c)
        return -c * y

    y0 = np.array([[1.0, 1.0], [2.0, 3.0], [0.5, 4.0]])
    t = np.array([0.0, 0.5, 1.5])
    ys = odeint(decay, y0, t, args=(c,), rtol=1e-10, atol=1e-12)
    exact = y0[None] * np.exp(-c[None, None, :] * t[:, None, None])
    assert np.all(np.abs(ys - exact) <= C_GLOBAL * (1e-12 + 1e-10 * np.abs(exact)))
    assert seen and all(s is c for s in seen)


def test_a_one_dimensional_problem_gets_its_args_unchanged():
    c = np.array([1.0, 2.0, 1.0])     # a 1-D y0: never sliced, whatever the length
    seen = []
    f = RowRatesLV()

    def spy(t, y, rates, s):
        seen.append(rates)
        return f(t, y, rates, s)

    odeint(spy, np.array([1.0, 1.0]), np.array([0.0, 1.0]), args=(c, SCALE))
    assert seen and all(r is c for r in seen)


def test_empty_args_call_the_field_with_t_and_y_only():
    f = RowRatesLV()
    shared = np.array([[1.5, 3.0, 1.0]])  # the same rates for every row: (1, 3), not sliced

    def two_arguments(t, y):
        return f(t, y, shared, SCALE)

    ys = odeint(two_arguments, Y0, T_OUT)
    assert np.array_equal(ys, odeint(two_arguments, Y0, T_OUT, args=()))
    assert np.array_equal(ys, odeint(f, Y0, T_OUT, args=(shared, SCALE)))
    per_row = np.tile(shared, (3, 1))    # one row each, sliced: the same solution
    assert np.array_equal(ys, odeint(f, Y0, T_OUT, args=(per_row, SCALE)))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solve", [odeint, odeint_adjoint])
@pytest.mark.parametrize("args", [2.0, [np.ones((2, 1))], np.ones((2, 1))])
def test_args_that_is_not_a_tuple_is_refused_with_the_fix(solve, args):
    with pytest.raises(TypeError, match=r"args must be a tuple.*args=\(k,\)"):
        solve(lambda t, y, k: -k * y, np.ones((2, 1)), np.array([0.0, 1.0]), args=args)


@pytest.mark.parametrize("backend", ["auto", "numpy"])
@pytest.mark.parametrize("solve", [odeint, odeint_adjoint])
def test_an_nn_field_refuses_args(solve, backend):
    f = nn.MLP([2, 4, 2], backend=backend if backend == "numpy" else "numba")
    with pytest.raises(TypeError, match=r"args=.*nn field.*takes none"):
        solve(f, np.ones((3, 2)), np.array([0.0, 1.0]), backend=backend,
              args=(np.ones((3, 1)),))
