"""The boundary between pyode and a user-written field, and the names users bring along.

Each mistake below used to give a silently wrong answer or an error from deep inside NumPy;
each must now raise pyode's own error naming the field, what it returned and the fix. The
correct variants are checked against closed forms, so the checks cannot pass by refusing
everything.
"""
import numpy as np
import pytest

from pyode import nn, odeint, odeint_adjoint

T = np.linspace(0.0, 1.0, 5)
TOL = dict(rtol=1e-10, atol=1e-12)


def test_field_writing_into_y_is_refused_not_integrated():
    def decay_inplace(t, y):
        y *= 0.999                       # the porting mistake: y is the solver's own state
        return -y

    with pytest.raises(ValueError, match="'decay_inplace' wrote into its input y"):
        odeint(decay_inplace, np.array([1.0]), T)


def test_field_that_makes_y_writable_and_zeroes_it_is_caught_on_the_first_call():
    def sneaky(t, y):
        out = -np.array(y)
        y.flags.writeable = True         # allowed for a view of a writable array
        y[...] = 0.0
        return out

    with pytest.raises(ValueError, match="changed its input y"):
        odeint(sneaky, np.array([1.0, 2.0]), T)


def test_users_y0_is_never_written():
    y0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    keep = y0.copy()
    ys = odeint(lambda t, y: -y, y0, T, **TOL)
    np.testing.assert_array_equal(y0, keep)
    np.testing.assert_allclose(ys[-1], keep * np.exp(-1.0), rtol=1e-9)


def test_identity_field_that_returns_its_input_is_right():
    # f returns the (read-only) input itself: the solver must copy, not alias its state.
    ys = odeint(lambda t, y: y, np.array([1.0, -2.0]), T, **TOL)
    np.testing.assert_allclose(ys[:, 0], np.exp(T), rtol=1e-9)
    np.testing.assert_allclose(ys[:, 1], -2.0 * np.exp(T), rtol=1e-9)


@pytest.mark.parametrize("container", [list, tuple])
def test_list_or_tuple_result_is_coerced_for_a_1d_state_and_refused_for_a_batch(container):
    # For y (D,) a list of D numbers can only mean one thing; for a batch y (n, D) a list of
    # D columns and a list of n rows look alike, so it stays refused (with the fix).
    def field(t, y):
        return container([-y[0], -2 * y[1]])

    ys = odeint(field, np.array([1.0, 2.0]), T, **TOL)
    np.testing.assert_allclose(ys, np.stack([np.exp(-T), 2.0 * np.exp(-2.0 * T)], axis=1),
                               rtol=1e-9)

    def batch_field(t, y):
        return container([-y[:, 0], -y[:, 1]])

    with pytest.raises(TypeError, match=f"returned a {container.__name__} for a batch.*np.stack"):
        odeint(batch_field, np.array([[1.0, 2.0], [3.0, 4.0]]), T)


@pytest.mark.parametrize("result, y0, expect", [
    (lambda y: -float(y[0]), [1.0], None),                  # a Python float for D = 1
    (lambda y: -y.sum(), [1.0], None),                       # a NumPy scalar for D = 1
    (lambda y: [-y[0], 0], [1.0, 0.0], None),                # ints in a list are numbers
    (lambda y: -float(y[0]), [1.0, 2.0], r"returned a float of shape \(\) for a state of "
                                          r"shape \(2,\)"),
    (lambda y: [-y[0]], [1.0, 2.0], r"returned a list of shape \(1,\) for a state of shape "
                                    r"\(2,\)"),
    (lambda y: [[1.0], [1.0, 2.0]], [1.0, 2.0], r"'field' returned a ragged list"),
    (lambda y: [None, 1.0], [1.0, 2.0], r"'field' returned a list of objects that are not "
                                        r"numbers.*shape \(2,\)"),
])
def test_scalar_and_list_results_of_a_1d_field(result, y0, expect):
    def field(t, y):
        return result(y)

    y0 = np.array(y0)
    if expect is None:
        ys = odeint(field, y0, T, **TOL)
        np.testing.assert_allclose(ys[:, 0], np.exp(-T), rtol=1e-9)
        np.testing.assert_array_equal(ys[:, 1:], np.broadcast_to(y0[1:], (T.size, y0.size - 1)))
    else:
        with pytest.raises((TypeError, ValueError), match=expect):
            odeint(field, y0, T)


@pytest.mark.parametrize("bad, word", [(lambda y: np.ones(y.shape, dtype=np.int64), "int64"),
                                       (lambda y: y.astype(complex), "complex128"),
                                       (lambda y: y > 0, "bool")])
def test_non_float_result_is_refused(bad, word):
    with pytest.raises(TypeError, match=f"dtype {word}"):
        odeint(lambda t, y: bad(y), np.array([1.0, 2.0]), T)


def test_wrong_shape_on_a_later_call_is_refused_not_broadcast():
    calls = []

    def drifting(t, y):
        calls.append(1)
        return -y if len(calls) < 6 else -y[:, :1]     # (B, 1) from the 6th call on

    with pytest.raises(ValueError, match=r"'drifting' returned shape \(2, 1\) for a state of "
                                         r"shape \(2, 2\)"):
        odeint(drifting, np.ones((2, 2)), T)


def test_one_value_per_batch_row_is_explained():
    k = np.array([[1.0], [50.0]])        # the fast row keeps stepping after the slow one ends
    with pytest.raises(ValueError, match="rows still integrating") as err:
        odeint(lambda t, y: -k * y, np.ones((2, 1)), np.array([0.0, 1.0]))
    assert "args=(k,)" in str(err.value)  # the documented way in (tests/test_args.py)


def test_per_sample_time_broadcast_mistake_gets_the_contract_in_the_message():
    with pytest.raises(ValueError, match=r"t\[:, None\]"):
        odeint(lambda t, y: np.sin(t) * y, np.ones((3, 2)), T)


def test_time_dependent_field_written_for_per_sample_t_is_right():
    # y' = sin(t) y  →  y(t) = y0 exp(1 − cos t); rows start at different values.
    y0 = np.array([[1.0, 2.0], [-0.5, 3.0], [4.0, 0.25]])
    ys = odeint(lambda t, y: np.sin(t)[:, None] * y, y0, T, **TOL)
    exact = y0[None] * np.exp(1.0 - np.cos(T))[:, None, None]
    np.testing.assert_allclose(ys, exact, rtol=1e-8)


def test_adjoint_of_a_user_field_goes_through_the_same_boundary():
    class InPlace:
        params = np.array([1.0])

        def __call__(self, t, y):
            y *= 1.0
            return -y

        def vjp(self, t, y, v):
            return -v, np.zeros(1), 0.0 if np.ndim(t) == 0 else np.zeros(np.shape(t))

    with pytest.raises(ValueError, match="wrote into its input y"):
        odeint_adjoint(InPlace(), np.array([1.0]), T)


@pytest.mark.parametrize("name, expect", [("RK45", "'dopri5'"), ("RK23", "'bosh3'"),
                                          ("adaptive_heun", "'heun_euler'"),
                                          ("adams", "Runge-Kutta"),
                                          ("DOP853", "'dopri5'"), ("RK4", "did you mean "
                                                                          "method='rk4'"),
                                          ("Radau", "solve_ivp"), ("dorpi5", "'dopri5'")])
def test_neighbouring_method_names_say_what_pyode_calls_them(name, expect):
    with pytest.raises(ValueError, match=f"method='{name}' is not known") as err:
        odeint(lambda t, y: -y, np.array([1.0]), T, method=name)
    assert expect in str(err.value)
    assert "valid methods: bosh3, dopri5, euler, fehlberg45, heun3, heun_euler" in str(err.value)


@pytest.mark.parametrize("solve", [odeint, odeint_adjoint])
@pytest.mark.parametrize("keyword, expect", [("t_eval", "output times as t"),
                                             ("rtl", "did you mean rtol=?"),
                                             ("step_size", "options={'step_size': h}")])
def test_neighbouring_keywords_say_what_pyode_calls_them(solve, keyword, expect):
    with pytest.raises(TypeError, match=f"{solve.__name__}\\(\\) has no keyword '{keyword}'") \
            as err:
        solve(nn.MLP([1, 4, 1], backend="numpy"), np.array([1.0]), T, **{keyword: 1})
    assert expect in str(err.value)


def test_adjoint_params_of_torchdiffeq_is_explained():
    f = nn.MLP([1, 4, 1], backend="numpy")
    with pytest.raises(TypeError, match="adjoint_params.*grads.params"):
        odeint_adjoint(f, np.array([1.0]), T, adjoint_params=(f.params,))


def test_missing_return_is_named():
    def forgot(t, y):
        -y                               # noqa: B018 - the mistake under test

    with pytest.raises(TypeError, match="returned None"):
        odeint(forgot, np.array([1.0]), T)


def test_lower_precision_result_is_refused_not_rounded():
    with pytest.raises(TypeError, match="float16 values for a float64 state"):
        odeint(lambda t, y: (-y).astype(np.float16), np.array([1.0]), T)
    # the same field solved in its own precision is fine
    ys = odeint(lambda t, y: -y, np.array([1.0], dtype=np.float32), T)
    assert ys.dtype == np.float32


def test_per_row_values_in_a_field_get_both_hints():
    k = np.array([[1.0], [30.0], [0.1]])
    with pytest.raises(ValueError, match="still integrating") as err:
        odeint(lambda t, y: -k * y, np.ones((3, 2)), np.linspace(0.0, 2.0, 5))
    assert "t[:, None]" in str(err.value) and "args=(k,)" in str(err.value)


@pytest.mark.parametrize("name, expect", [("backsolv", "did you mean adjoint_method='backsolve'"),
                                          ("adjoint", "'backsolve'"),
                                          ("RecursiveCheckpointAdjoint", "'discrete'")])
def test_neighbouring_adjoint_method_names(name, expect):
    with pytest.raises(ValueError, match="is not known") as err:
        odeint_adjoint(nn.MLP([1, 4, 1]), np.array([1.0]), T, adjoint_method=name)
    assert expect in str(err.value)


@pytest.mark.parametrize("key, expect", [("max_steps", "'max_num_steps'"),
                                         ("first_stpe", "did you mean 'first_step'"),
                                         ("max_step", "no max_step")])
def test_neighbouring_option_keys(key, expect):
    with pytest.raises(ValueError, match=f"Unknown option '{key}'") as err:
        odeint(lambda t, y: -y, np.array([1.0]), T, options={key: 1})
    assert expect in str(err.value)


def test_adjoint_keyword_typo_on_odeint_points_to_odeint_adjoint():
    with pytest.raises(TypeError, match="adjoint_method=.*belongs to odeint_adjoint"):
        odeint(lambda t, y: -y, np.array([1.0]), T, adjoint_mehod="backsolve")
