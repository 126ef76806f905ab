"""Bad input and misuse found by trying pyode as a new user: each gets a clear error or the
right answer, on every backend."""
import numpy as np
import pytest

from pyode import (StepSizeUnderflowError, TooManyStepsError, nn, odeint, odeint_adjoint)


class Decay:
    """dy/dt = −k y, with a hand-written protocol (k is the only parameter)."""

    def __init__(self, k=1e-3, bad_vjp=None):
        self.params = np.array([k])
        self.bad_vjp = bad_vjp

    def __call__(self, t, y):
        return -self.params[0] * y

    def vjp(self, t, y, v):
        out = (-self.params[0] * v, np.array([-np.sum(v * y)]), np.zeros_like(np.asarray(t)))
        return self.bad_vjp(out) if self.bad_vjp else out


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_state_width_must_match_the_nn_field(backend):
    f = nn.MLP([2, 8, 2], seed=0)
    t = np.linspace(0, 1, 3)
    with pytest.raises(ValueError, match="width 2"):
        odeint(f, np.ones(3), t, backend=backend)
    with pytest.raises(ValueError, match="width 2"):
        odeint(f, np.ones((4, 1)), t, backend=backend)
    with pytest.raises(ValueError, match="width 2"):
        odeint_adjoint(f, np.ones(3), t, backend=backend, adjoint_method="checkpoint")
    with pytest.raises(ValueError, match=r"sizes\[-1\] == sizes\[0\]"):
        odeint(nn.MLP([2, 8, 3]), np.ones(2), t, backend=backend)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fixed_step_count_is_capped_up_front(backend):
    f = nn.MLP([2, 4, 2], seed=0)
    with pytest.raises(TooManyStepsError, match="needs 1000000000 steps"):
        odeint(f, np.ones(2), [0.0, 1.0], method="euler", options={"step_size": 1e-9},
               backend=backend)
    ys = odeint(f, np.ones(2), [0.0, 1.0], method="euler",
                options={"step_size": 0.25, "max_num_steps": 4}, backend=backend)
    assert ys.shape == (2, 2)


def test_vjp_refuses_changed_parameters_and_ignores_edits_of_ys():
    f = nn.MLP([2, 4, 2], seed=1)
    y0, t = np.array([0.5, -0.5]), np.linspace(0, 1, 4)
    ys, vjp = odeint_adjoint(f, y0, t)
    reference = vjp(np.ones_like(ys)).params
    ys -= 1.0                                   # the user's array; the backward pass has its own
    np.testing.assert_array_equal(vjp(np.ones_like(ys)).params, reference)
    f.params[0] += 1.0
    with pytest.raises(ValueError, match="f.params changed"):
        vjp(np.ones_like(ys))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_output_times_a_few_ulps_apart(backend):
    k = 1e-3
    t = np.array([0.0, 1000.0, 1000.0 + 1e-12, 1001.0])
    f = Decay(k) if backend == "numpy" else nn.Sequential(nn.Linear(1, 1), seed=0)
    if backend == "numba":
        f.params[:] = [-k, 0.0]                 # the same field as an nn Linear layer
    ys, vjp = odeint_adjoint(f, np.array([1.0]), t, rtol=1e-10, atol=1e-12, backend=backend)
    np.testing.assert_allclose(ys[:, 0], np.exp(-k * t), rtol=1e-8)
    g = vjp(np.ones_like(ys))
    np.testing.assert_allclose(g.y0, np.exp(-k * t).sum(), rtol=1e-8)
    ys = odeint(f, np.array([1.0]), [1e6, 1e6 + 1e-9], backend=backend)
    np.testing.assert_allclose(ys[-1], np.exp(-k * 1e-9), rtol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (lambda out: (out[0][..., :0], out[1], out[2]), "vᵀ∂f/∂y of shape"),
    (lambda out: (out[0], np.ones(3), out[2]), "vᵀ∂f/∂θ of shape"),
    (lambda out: (out[0], out[1]), "must return a tuple"),
    (lambda out: (out[0], out[1], np.ones(5)), "vᵀ∂f/∂t of shape"),
])
def test_a_user_vjp_breaking_the_protocol_is_named(bad, match):
    f = Decay(0.5, bad_vjp=bad)
    ys, vjp = odeint_adjoint(f, np.array([1.0, 2.0]), [0.0, 1.0])
    with pytest.raises(ValueError, match=match):
        vjp(np.ones_like(ys))


@pytest.mark.parametrize("options, error", [
    ({"step_size": "0.1"}, TypeError),
    ({"step_size": True}, TypeError),
    ({"step_size": -0.1}, ValueError),
])
def test_step_size_must_be_a_positive_number(options, error):
    with pytest.raises(error, match="step_size"):
        odeint(Decay(), np.ones(1), [0.0, 1.0], method="rk4", options=options)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_failing_sample_is_named(backend):
    f = nn.Sequential(nn.Cube(), nn.Linear(1, 1), seed=0)
    f.params[:] = [1.0, 0.0]                    # dy/dt = y³ blows up at t = 1/(2 y0²)
    y0 = np.array([[0.1], [0.2], [1.0], [0.3]])
    with pytest.raises(StepSizeUnderflowError, match="sample 2") as err:
        odeint(f, y0, [0.0, 2.0], backend=backend)
    assert err.value.sample == 2
    assert err.value.t == pytest.approx(0.5, abs=1e-3)


def test_tolerances_and_times_must_be_real_and_finite():
    with pytest.raises(TypeError, match="rtol"):
        odeint(Decay(), np.ones(1), [0.0, 1.0], rtol=np.array([1e-9, 1e-6]))
    with pytest.raises(TypeError, match="atol"):
        odeint(Decay(), np.ones(1), [0.0, 1.0], atol="1e-9")
    with pytest.raises(ValueError, match="largest float"):
        odeint(Decay(), np.ones(1), [-1e308, 1e308])


def test_a_complex_field_is_refused():
    class Complex(Decay):
        def __call__(self, t, y):
            return (1 + 1j) * y

    with pytest.raises(TypeError, match="real"):
        odeint(Complex(), np.ones(1), [0.0, 1.0])


def test_an_activation_only_nn_field_runs_on_the_numpy_path():
    f = nn.Sequential(nn.Tanh())                 # dy/dt = tanh(y), any width
    y0 = np.array([[0.5, -1.0, 2.0]])
    ys, vjp = odeint_adjoint(f, y0, [0.0, 1.0], rtol=1e-10, atol=1e-12)
    # Closed form: sinh(y(t)) = sinh(y0)·e^t.
    np.testing.assert_allclose(ys[-1], np.arcsinh(np.sinh(y0) * np.e), rtol=1e-8)
    assert vjp(np.ones_like(ys)).y0.shape == (1, 3)
    with pytest.raises(ValueError, match="no Linear layer"):
        odeint(f, y0, [0.0, 1.0], backend="numba")


def test_misplaced_adjoint_options_and_cuda_only_backsolve():
    f = nn.MLP([2, 4, 2], seed=2)
    with pytest.raises(ValueError, match="adjoint_options"):
        odeint_adjoint(f, np.ones(2), [0.0, 1.0], options={"norm": "seminorm"})
    with pytest.raises(ValueError, match="no CUDA kernel"):
        odeint_adjoint(f, np.ones(2), [0.0, 1.0], backend="cuda", adjoint_method="checkpoint")


def test_compare_gradients_takes_one_name_and_refuses_none():
    from pyode import compare_gradients
    f = Decay(0.5)

    def loss(ys):
        return float(ys.sum()), np.ones_like(ys)

    table = compare_gradients(f, np.ones(1), [0.0, 1.0], loss, methods="backsolve",
                              verbose=False)
    assert [row["method"] for row in table.rows] == ["backsolve"]
    with pytest.raises(ValueError, match="methods is empty"):
        compare_gradients(f, np.ones(1), [0.0, 1.0], loss, methods=[], verbose=False)
