"""Tests of pyode.gradcheck: it must pass correct gradients and catch wrong ones."""

import numpy as np
import pytest

from pyode import losses, nn
from pyode.gradcheck import GradcheckResult, gradcheck


def rosenbrock(x):
    """Sum of 100 (x_{i+1} − x_i²)² + (1 − x_i)² with its analytic gradient."""
    a, b = x[:-1], x[1:]
    value = float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    grad[1:] += 200.0 * (b - a * a)
    return value, grad


def test_passes_on_a_correct_gradient():
    x = np.array([-1.2, 1.0, 0.3, 0.8])
    result = gradcheck(rosenbrock, x)
    assert isinstance(result, GradcheckResult)
    assert result.ok and bool(result) and result.n_failed == 0
    assert result.max_abs_err < 1e-5
    np.testing.assert_array_equal(result.analytic, rosenbrock(x)[1])
    np.testing.assert_allclose(result.numeric, rosenbrock(x)[1], rtol=1e-6, atol=1e-6)
    assert "passed" in str(result)


def test_fails_on_a_wrong_entry_and_reports_its_index():
    x = np.arange(12.0).reshape(3, 4) / 10.0

    def wrong(z):
        value, grad = float(np.sum(np.sin(z))), np.cos(z)
        grad = grad.copy()
        grad[2, 1] += 1e-3  # a deliberate error in one entry
        return value, grad

    result = gradcheck(wrong, x)
    assert not result.ok and not bool(result)
    assert result.n_failed == 1
    assert result.worst_index == (2, 1)
    np.testing.assert_allclose(result.max_abs_err, 1e-3, rtol=1e-4)
    np.testing.assert_allclose(result.numeric[2, 1], np.cos(x[2, 1]), rtol=1e-8)
    text = str(result)
    assert "FAILED" in text and "(2, 1)" in text
    assert f"{result.analytic[2, 1]:.10g}" in text and f"{result.numeric[2, 1]:.10g}" in text


def test_does_not_modify_x_and_uses_float64_copies():
    x = np.array([1, 2, 3])  # integers
    seen = []

    def fun(z):
        seen.append(z.dtype)
        z[0] = 100.0  # a careless fun mutating its argument must not corrupt the next call
        return 0.0, np.zeros(3)

    result = gradcheck(fun, x)
    assert result.ok
    np.testing.assert_array_equal(x, [1, 2, 3])
    assert set(seen) == {np.dtype(np.float64)} and len(seen) == 1 + 2 * x.size


def test_scalar_x_and_zero_gradient_relative_error():
    result = gradcheck(lambda z: (float(z) ** 3, 3.0 * z ** 2), 0.5)
    assert result.ok and result.worst_index == ()
    zero = gradcheck(lambda z: (0.0, np.full_like(z, 1e-3)), np.zeros(2))
    assert not zero.ok and zero.max_rel_err == np.inf


def test_checks_a_field_gradient_through_the_loss():
    f = nn.MLP([2, 6, 2], activation="tanh", time_input=True, seed=5)
    y = np.array([[0.3, -0.4], [1.1, 0.2]])
    target = np.array([[0.0, 1.0], [1.0, 0.0]])

    def loss_of_params(p):
        f.params[:] = p
        value, g = losses.mse(f(0.7, y), target)
        return value, f.vjp(0.7, y, g)[1]

    saved = f.params.copy()
    assert gradcheck(loss_of_params, saved).ok
    f.params[:] = saved


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(eps=0.0), ValueError, "eps"),
    (dict(eps=-1e-6), ValueError, "eps"),
    (dict(rtol=-1.0), ValueError, "rtol"),
    (dict(rtol=0.0, atol=0.0), ValueError, "both 0"),
    (dict(atol="1"), TypeError, "atol"),
])
def test_bad_settings_raise(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gradcheck(rosenbrock, np.ones(3), **kwargs)


def test_bad_fun_raises():
    with pytest.raises(ValueError, match=r"grad of shape \(2,\).*x has shape \(3,\)"):
        gradcheck(lambda z: (0.0, np.zeros(2)), np.ones(3))
    with pytest.raises(TypeError, match="pair"):
        gradcheck(lambda z: 0.0, np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        gradcheck(lambda z: (z, z), np.ones(3))
    with pytest.raises(TypeError, match="callable"):
        gradcheck(3, np.ones(3))


def test_a_field_whose_params_is_a_copy_gets_a_hint_in_the_report():
    # fun writes x into f.params, which returns a copy: nothing changes, the numeric
    # gradient is exactly 0, and the report says why instead of only "FAILED".
    class CopyParams:
        def __init__(self):
            self._theta = np.array([2.0])

        @property
        def params(self):
            return self._theta.copy()

    f = CopyParams()

    def fun(p):
        f.params[:] = p                        # lost: writes into a copy
        return float(f._theta[0] ** 2), 2.0 * f._theta

    result = gradcheck(fun, f.params)
    assert not result.ok and np.all(result.numeric == 0.0)
    assert "f.params is the field's own array and not a copy" in str(result)
    correct = gradcheck(lambda p: (float(p[0] ** 2), 2.0 * p), np.array([2.0]))
    assert "not a copy" not in str(correct)
