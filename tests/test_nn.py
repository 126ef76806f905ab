"""Tests of pyode.nn: derivatives against central differences and the dot-product identity,
batch/sample consistency, dtypes, the parameter layout and initialisation, error messages.

Finite-difference tolerance (derived, not tuned): a central difference with step h = 1e-6 in
float64 has truncation error h²|F'''|/6 ≈ 1e-13 for the moderate inputs drawn here (|x| ≤ 2,
weights ≤ 1) and rounding error ≈ ε_mach·|F|/h ≈ 2e-10·|F|. We allow
``RTOL·|fd| + ATOL_PER_SCALE·scale`` with ``scale = max(1, |F|)``, a margin of ~500 over the
rounding error, while a wrong derivative is off by O(1)·scale.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyode import nn

EPS = 1e-6
RTOL = 1e-6
ATOL_PER_SCALE = 1e-7
ACT_NAMES = sorted(nn.ACTIVATIONS)
# ReLU is not differentiable at 0: an FD step that straddles the kink is not a test of the
# derivative. Inputs to ReLU layers must stay this far from 0 (1000 × the largest change an FD
# step of EPS can cause for the moderate values drawn here).
KINK_MARGIN = 1e-3

HYP = settings(max_examples=25, deadline=None)


# -- finite-difference oracles ----------------------------------------------------------------


def fd_directional(fun, x, u):
    """(F(x + h u) − F(x − h u)) / 2h."""
    return (fun(x + EPS * u) - fun(x - EPS * u)) / (2 * EPS)


def fd_gradient(phi, x):
    """Central-difference gradient of the scalar phi w.r.t. every entry of the array x."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp = x.copy()
        xp[idx] += EPS
        xm = x.copy()
        xm[idx] -= EPS
        grad[idx] = (phi(xp) - phi(xm)) / (2 * EPS)
    return grad


def assert_fd_close(analytic, numeric, scale):
    np.testing.assert_allclose(
        analytic, numeric, rtol=RTOL, atol=ATOL_PER_SCALE * max(1.0, float(scale))
    )


def relu_margin(f, t, y):
    """Smallest |input| of any ReLU layer of f at (t, y) (inf if f has none)."""
    x = np.atleast_2d(y)
    tb = np.broadcast_to(np.asarray(t, dtype=np.float64), (x.shape[0],))
    margin = np.inf
    for layer in f.layers:
        if isinstance(layer, nn.ReLU) and x.size:
            margin = min(margin, float(np.min(np.abs(x))))
        x = layer.forward(x, tb)
    return margin


def param_fun(f, fun):
    """Wrap fun() so that it evaluates with f.params set to p (restored afterwards)."""
    def wrapped(p):
        saved = f.params.copy()
        f.params[:] = p
        try:
            return fun()
        finally:
            f.params[:] = saved
    return wrapped


# -- strategies -------------------------------------------------------------------------------


def values(shape, bound=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound))


@st.composite
def field_cases(draw, batched=None):
    """An MLP field with random structure, a point (t, y) and whether t is per-sample."""
    depth = draw(st.integers(1, 3))
    dim = draw(st.integers(1, 4))
    hidden = draw(st.lists(st.integers(1, 6), min_size=depth - 1, max_size=depth - 1))
    f = nn.MLP(
        [dim, *hidden, dim],
        activation=draw(st.sampled_from(ACT_NAMES)),
        input_activation=draw(st.sampled_from([None, *ACT_NAMES])),
        time_input=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    if batched is None:
        batched = draw(st.booleans())
    if batched:
        batch = draw(st.integers(1, 4))
        y = draw(values((batch, dim)))
        if draw(st.booleans()):
            t = draw(values((batch,)))
        else:
            t = draw(st.floats(-2, 2))
    else:
        y = draw(values((dim,)))
        t = draw(st.floats(-2, 2))
    assume(relu_margin(f, t, y) > KINK_MARGIN)
    return f, t, y


def out_scale(f, t, y):
    return np.max(np.abs(f(t, y)), initial=0.0)


# -- activations ------------------------------------------------------------------------------


@HYP
@given(name=st.sampled_from(ACT_NAMES), data=st.data())
def test_activation_jvp_and_vjp_match_central_differences(name, data):
    layer = nn.get_activation(name)
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5)))
    x = data.draw(values(shape))
    u = data.draw(values(shape, 1.0))
    v = data.draw(values(shape, 1.0))
    if name == "relu":
        assume(np.min(np.abs(x)) > KINK_MARGIN)
    t = np.zeros(shape[0])
    scale = np.max(np.abs(layer.forward(x, t)))

    jvp = layer.jvp(x, t, u)
    assert_fd_close(jvp, fd_directional(lambda z: layer.forward(z, t), x, u), scale)

    g_x, g_theta, g_t = layer.vjp(x, t, v)
    assert g_theta is None and g_t is None
    fd = fd_gradient(lambda z: np.sum(v * layer.forward(z, t)), x)
    assert_fd_close(g_x, fd, np.sum(np.abs(v)) * scale)
    # Dot-product identity ⟨v, J u⟩ = ⟨Jᵀ v, u⟩.
    lhs, rhs = np.sum(v * jvp), np.sum(g_x * u)
    assert abs(lhs - rhs) <= 1e-13 * (np.sum(np.abs(v * jvp)) + 1e-300)


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_forward_matches_textbook_formula(name):
    x = np.linspace(-3.0, 3.0, 13)
    reference = {
        "tanh": np.tanh(x),
        "relu": np.where(x > 0, x, 0.0),
        "softplus": np.log(1.0 + np.exp(x)),
        "sigmoid": 1.0 / (1.0 + np.exp(-x)),
        "elu": np.where(x > 0, x, np.exp(x) - 1.0),
        "sin": np.sin(x),
        "cube": x ** 3,
        "identity": x,
    }[name]
    np.testing.assert_allclose(nn.get_activation(name).forward(x), reference, rtol=1e-14,
                               atol=1e-15)


def test_activations_are_stable_at_large_arguments():
    # pytest turns RuntimeWarning (overflow in exp) into an error, so this also checks that no
    # warning is emitted.
    x = np.array([-800.0, 800.0])
    np.testing.assert_array_equal(nn.Softplus().forward(x), [0.0, 800.0])
    np.testing.assert_array_equal(nn.Softplus().derivative(x), [0.0, 1.0])
    np.testing.assert_array_equal(nn.Sigmoid().forward(x), [0.0, 1.0])
    np.testing.assert_array_equal(nn.Sigmoid().derivative(x), [0.0, 0.0])
    np.testing.assert_array_equal(nn.ELU().forward(x), [-1.0, 800.0])
    np.testing.assert_array_equal(nn.ELU().derivative(x), [0.0, 1.0])
    # Far tails of sigmoid in float32 keep their dtype and are not NaN.
    s = nn.Sigmoid().forward(np.array([-100.0, 100.0], dtype=np.float32))
    assert s.dtype == np.float32 and s[0] > 0 and s[1] == 1


def test_relu_derivative_at_zero_is_zero():
    np.testing.assert_array_equal(nn.ReLU().derivative(np.array([-1.0, 0.0, 2.0])), [0, 0, 1])


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activations_keep_float32(name):
    x = np.linspace(-1, 1, 5, dtype=np.float32)
    layer = nn.get_activation(name)
    assert layer.forward(x).dtype == np.float32
    assert layer.jvp(x, None, x).dtype == np.float32
    assert layer.vjp(x, None, x)[0].dtype == np.float32


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="tanhh") as info:
        nn.get_activation("tanhh")
    for name in ACT_NAMES:
        assert name in str(info.value)
    with pytest.raises(TypeError, match="activation"):
        nn.MLP([2, 2, 2], activation=3)


# -- Linear and TimeInput ---------------------------------------------------------------------


@HYP
@given(n_in=st.integers(1, 4), n_out=st.integers(1, 4), batch=st.integers(1, 3),
       seed=st.integers(0, 1000), data=st.data())
def test_linear_layer_derivatives_match_central_differences(n_in, n_out, batch, seed, data):
    f = nn.Sequential(nn.Linear(n_in, n_out), seed=seed)
    layer = f.layers[0]
    x = data.draw(values((batch, n_in)))
    u = data.draw(values((batch, n_in), 1.0))
    v = data.draw(values((batch, n_out), 1.0))
    t = np.zeros(batch)
    np.testing.assert_allclose(layer.forward(x, t), x @ layer.W.T + layer.b, rtol=1e-14)
    scale = np.max(np.abs(layer.forward(x, t)))

    assert_fd_close(layer.jvp(x, t, u), fd_directional(lambda z: layer.forward(z, t), x, u),
                    scale)
    g_x, g_theta, g_t = layer.vjp(x, t, v)
    assert g_t is None and g_theta.shape == (batch, layer.n_params)
    assert_fd_close(g_x, fd_gradient(lambda z: np.sum(v * layer.forward(z, t)), x),
                    np.sum(np.abs(v)) * scale)
    for beta in range(batch):  # per-sample parameter cotangent, row by row
        phi = param_fun(f, lambda: np.sum(v[beta] * layer.forward(x[beta:beta + 1], t[:1])))
        assert_fd_close(g_theta[beta], fd_gradient(phi, f.params.copy()),
                        np.sum(np.abs(v[beta])) * scale)


@HYP
@given(n=st.integers(1, 4), batch=st.integers(1, 3), data=st.data())
def test_time_input_appends_t_and_returns_its_cotangent(n, batch, data):
    layer = nn.TimeInput()
    x = data.draw(values((batch, n)))
    t = data.draw(values((batch,)))
    u = data.draw(values((batch, n), 1.0))
    v = data.draw(values((batch, n + 1), 1.0))
    out = layer.forward(x, t)
    np.testing.assert_array_equal(out, np.column_stack([x, t]))
    np.testing.assert_array_equal(layer.jvp(x, t, u), np.column_stack([u, np.zeros(batch)]))
    g_x, g_theta, g_t = layer.vjp(x, t, v)
    assert g_theta is None
    np.testing.assert_array_equal(g_x, v[:, :n])
    scale = np.sum(np.abs(v)) * max(1.0, np.max(np.abs(out)))
    assert_fd_close(g_t, fd_gradient(lambda s: np.sum(v * layer.forward(x, s)), t), scale)


# -- MLP: derivatives -------------------------------------------------------------------------


@HYP
@given(case=field_cases(), data=st.data())
def test_mlp_jvp_matches_central_differences(case, data):
    f, t, y = case
    u = data.draw(values(y.shape, 1.0))
    numeric = fd_directional(lambda z: f(t, z), y, u)
    assert_fd_close(f.jvp(t, y, u), numeric, out_scale(f, t, y))


@HYP
@given(case=field_cases(), data=st.data())
def test_mlp_vjp_y_part_matches_central_differences(case, data):
    f, t, y = case
    v = data.draw(values(y.shape, 1.0))
    g_y, _, _ = f.vjp(t, y, v)
    numeric = fd_gradient(lambda z: np.sum(v * f(t, z)), y)
    assert_fd_close(g_y, numeric, np.sum(np.abs(v)) * out_scale(f, t, y))


@HYP
@given(case=field_cases(), data=st.data())
def test_mlp_vjp_theta_part_matches_central_differences(case, data):
    f, t, y = case
    v = data.draw(values(y.shape, 1.0))
    _, g_theta, _ = f.vjp(t, y, v)
    assert g_theta.shape == (f.n_params,)
    numeric = fd_gradient(param_fun(f, lambda: np.sum(v * f(t, y))), f.params.copy())
    assert_fd_close(g_theta, numeric, np.sum(np.abs(v)) * out_scale(f, t, y))


@HYP
@given(case=field_cases(), data=st.data())
def test_mlp_vjp_t_part_matches_central_differences(case, data):
    f, t, y = case
    v = data.draw(values(y.shape, 1.0))
    _, _, g_t = f.vjp(t, y, v)
    phi = lambda s: np.sum(v * f(s if np.ndim(t) else float(s), y))  # noqa: E731
    numeric = fd_gradient(phi, t)
    if np.ndim(t) == 0:
        assert isinstance(g_t, float)
    else:
        assert g_t.shape == np.shape(t)
    assert_fd_close(g_t, numeric, np.sum(np.abs(v)) * out_scale(f, t, y))
    if not f.time_input:
        assert np.all(np.asarray(g_t) == 0.0)


@HYP
@given(case=field_cases(), data=st.data())
def test_mlp_dot_product_identity(case, data):
    f, t, y = case
    u = data.draw(values(y.shape, 1.0))
    v = data.draw(values(y.shape, 1.0))
    ju = f.jvp(t, y, u)
    jtv = f.vjp(t, y, v)[0]
    lhs, rhs = np.sum(v * ju), np.sum(jtv * u)
    bound = 1e-12 * (np.sum(np.abs(v * ju)) + np.sum(np.abs(jtv * u))) + 1e-300
    assert abs(lhs - rhs) <= bound


# -- MLP: batch and sample consistency --------------------------------------------------------


@HYP
@given(case=field_cases(batched=True), data=st.data())
def test_vjp_is_batch_sum_of_vjp_per_sample(case, data):
    f, t, y = case
    v = data.draw(values(y.shape, 1.0))
    g_y, g_theta, g_t = f.vjp(t, y, v)
    p_y, p_theta, p_t = f.vjp_per_sample(t, y, v)
    assert p_theta.shape == (y.shape[0], f.n_params)
    np.testing.assert_allclose(g_theta, p_theta.sum(axis=0), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(g_y, p_y)
    np.testing.assert_array_equal(g_t, p_t)


@HYP
@given(case=field_cases(batched=True), data=st.data())
def test_sample_alone_equals_row_of_batch(case, data):
    f, t, y = case
    u = data.draw(values(y.shape, 1.0))
    v = data.draw(values(y.shape, 1.0))
    t_rows = np.broadcast_to(np.asarray(t, dtype=np.float64), (y.shape[0],))
    out = f(t, y)
    ju = f.jvp(t, y, u)
    g_y, g_theta, _ = f.vjp_per_sample(t, y, v)
    close = dict(rtol=1e-13, atol=1e-14)
    for beta in range(y.shape[0]):
        tb = float(t_rows[beta])
        np.testing.assert_allclose(f(tb, y[beta]), out[beta], **close)
        np.testing.assert_allclose(f.jvp(tb, y[beta], u[beta]), ju[beta], **close)
        s_y, s_theta, _ = f.vjp_per_sample(tb, y[beta], v[beta])
        assert s_y.shape == y[beta].shape and s_theta.shape == (f.n_params,)
        np.testing.assert_allclose(s_y, g_y[beta], **close)
        np.testing.assert_allclose(s_theta, g_theta[beta], **close)


@HYP
@given(sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4), batch=st.integers(1, 4),
       data=st.data())
def test_per_sample_times_equal_rowwise_scalar_calls(sizes, batch, data):
    sizes[-1] = sizes[0]
    f = nn.MLP(sizes, activation="softplus", time_input=True, seed=3)
    y = data.draw(values((batch, sizes[0])))
    t = data.draw(values((batch,)))
    v = data.draw(values((batch, sizes[0]), 1.0))
    out = f(t, y)
    _, _, g_t = f.vjp(t, y, v)
    assert g_t.shape == (batch,)
    for beta in range(batch):
        row = f(float(t[beta]), y[beta:beta + 1])
        np.testing.assert_allclose(row[0], out[beta], rtol=1e-13, atol=1e-14)
        _, _, g_row = f.vjp(float(t[beta]), y[beta:beta + 1], v[beta:beta + 1])
        assert isinstance(g_row, float)
        np.testing.assert_allclose(g_row, g_t[beta], rtol=1e-13, atol=1e-14)
    # A float t is the same time for every sample; its cotangent is the batch sum.
    t0 = float(t[0])
    _, _, g_same = f.vjp(np.full(batch, t0), y, v)
    np.testing.assert_allclose(f.vjp(t0, y, v)[2], g_same.sum(), rtol=1e-12, atol=1e-14)


def test_time_input_changes_output_with_t_and_plain_field_does_not():
    y = np.array([[0.3, -0.2, 0.1]])
    timed = nn.MLP([3, 8, 3], time_input=True)
    plain = nn.MLP([3, 8, 3])
    assert not np.allclose(timed(0.0, y), timed(1.0, y))
    np.testing.assert_array_equal(plain(0.0, y), plain(1.0, y))


# -- dtypes -----------------------------------------------------------------------------------


def test_float32_field_computes_in_float32():
    f32 = nn.MLP([3, 16, 3], activation="softplus", time_input=True, seed=2, dtype=np.float32)
    f64 = nn.MLP([3, 16, 3], activation="softplus", time_input=True, seed=2)
    assert f32.params.dtype == np.float32 and f32.dtype == np.float32
    y = np.linspace(-1, 1, 6).reshape(2, 3)
    t = np.array([0.1, 0.7])
    y32 = y.astype(np.float32)
    out = f32(t, y32)
    ju = f32.jvp(t, y32, y32)
    g_y, g_theta, g_t = f32.vjp(t, y32, y32)
    for a in (out, ju, g_y, g_theta, g_t):
        assert a.dtype == np.float32
    # Same seed: the float32 parameters are the rounded float64 ones, outputs agree to float32
    # precision.
    np.testing.assert_array_equal(f32.params, f64.params.astype(np.float32))
    np.testing.assert_allclose(out, f64(t, y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_theta, f64.vjp(t, y, y)[1], rtol=1e-4, atol=1e-5)
    # A float64 field keeps the dtype of a float32 state.
    assert f64(0.0, y32).dtype == np.float32


# -- parameters -------------------------------------------------------------------------------


def test_writing_into_params_changes_the_field():
    f = nn.MLP([2, 5, 2], seed=0)
    y = np.array([[0.4, -0.3], [1.0, 2.0]])
    before = f(0.0, y)
    f.params[-2:] += np.array([1.0, -3.0])  # the last Linear's bias b
    np.testing.assert_allclose(f(0.0, y) - before, [[1.0, -3.0], [1.0, -3.0]], rtol=1e-12)
    f.params[:] = 0.0
    np.testing.assert_array_equal(f(0.0, y), np.zeros_like(y))
    # Assigning the attribute copies into the same array, so the layers' views stay valid.
    array = f.params
    f.params = np.ones(f.n_params)
    assert f.params is array
    assert np.all(f.layers[0].W == 1.0)
    with pytest.raises(ValueError, match="params must have shape"):
        f.params = np.ones(f.n_params + 1)


def test_parameter_layout_and_naive_forward():
    f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=4)
    kinds = [type(layer) for layer in f.layers]
    assert kinds == [nn.Cube, nn.Linear, nn.Tanh, nn.Linear]
    lin1, lin2 = f.layers[1], f.layers[3]
    assert (lin1.n_in, lin1.n_out, lin1.offset) == (2, 50, 0)
    assert (lin2.n_in, lin2.n_out, lin2.offset) == (50, 2, 150)
    assert f.n_params == 2 * 50 + 50 + 50 * 2 + 2 == 252
    p = f.params
    w1, b1 = p[:100].reshape(50, 2), p[100:150]
    w2, b2 = p[150:250].reshape(2, 50), p[250:252]
    for layer, w, b in ((lin1, w1, b1), (lin2, w2, b2)):
        np.testing.assert_array_equal(layer.W, w)
        np.testing.assert_array_equal(layer.b, b)
        assert np.shares_memory(layer.W, p) and np.shares_memory(layer.b, p)
    y = np.array([[2.0, 0.0], [-0.5, 1.5]])
    naive = np.array([w2 @ np.tanh(w1 @ row ** 3 + b1) + b2 for row in y])
    np.testing.assert_allclose(f(0.0, y), naive, rtol=1e-13)
    assert [layer.name for layer in f.layers] == ["cube", "linear", "tanh", "linear"]


def test_time_input_mlp_structure():
    f = nn.MLP([3, 64, 64, 3], activation="softplus", time_input=True, seed=1)
    assert isinstance(f.layers[0], nn.TimeInput)
    assert [layer.name for layer in f.layers[1:]] == [
        "linear", "softplus", "linear", "softplus", "linear"]
    assert (f.layers[1].n_in, f.layers[1].n_out) == (4, 64)
    assert f.n_params == 4 * 64 + 64 + 64 * 64 + 64 + 64 * 3 + 3
    assert (f.n_in, f.n_out) == (3, 3)
    assert f.sizes == (3, 64, 64, 3) and f.time_input and f.activation == "softplus"


def test_initialisation_follows_documented_recipe():
    f = nn.MLP([3, 7, 3], time_input=True, seed=11)
    rng = np.random.default_rng(11)
    for layer in (f.layers[1], f.layers[3]):
        bound = 1.0 / np.sqrt(layer.n_in)
        np.testing.assert_array_equal(
            layer.W, rng.uniform(-bound, bound, size=(layer.n_out, layer.n_in)))
        np.testing.assert_array_equal(layer.b, rng.uniform(-bound, bound, size=layer.n_out))
        assert np.all(np.abs(layer.W) <= bound)
    np.testing.assert_array_equal(nn.MLP([3, 7, 3], time_input=True, seed=11).params, f.params)
    assert not np.array_equal(nn.MLP([3, 7, 3], time_input=True, seed=12).params, f.params)


def test_backend_attribute():
    assert nn.MLP([2, 2]).backend == "numba"
    assert nn.MLP([2, 2], backend="numpy").backend == "numpy"
    with pytest.raises(ValueError, match=r"'cuda'.*numba|numba.*'cuda'"):
        nn.MLP([2, 2], backend="cuda")


# -- error paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, match", [
    ([2], "at least two entries"),
    ([2, 0, 2], r"sizes\[1\]"),
    ([2, -3], r"sizes\[1\]"),
    ([2, 2.5], r"sizes\[1\]"),
    ([True, 2], r"sizes\[0\]"),
])
def test_bad_sizes_raise(sizes, match):
    with pytest.raises(ValueError, match=match):
        nn.MLP(sizes)


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match="dtype"):
        nn.MLP([2, 2], dtype=np.int32)
    with pytest.raises(TypeError, match="time_input"):
        nn.MLP([2, 2], time_input="yes")
    with pytest.raises(TypeError, match="seed"):
        nn.MLP([2, 2], seed=1.5)
    with pytest.raises(ValueError, match="n_in"):
        nn.Linear(0, 2)
    with pytest.raises(ValueError, match=r"layers\[2\].*produce 3 columns"):
        nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        nn.Sequential(nn.Linear(2, 2), np.tanh)
    with pytest.raises(ValueError, match="at least one layer"):
        nn.Sequential()
    lin = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="Sequential"):
        lin.forward(np.zeros((1, 2)))
    nn.Sequential(lin)
    with pytest.raises(ValueError, match="already belongs"):
        nn.Sequential(lin)
    shared = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="already belongs"):
        nn.Sequential(shared, nn.Tanh(), shared)


def test_bad_call_arguments_raise():
    f = nn.MLP([2, 4, 2], time_input=True)
    with pytest.raises(ValueError, match=r"y has last dimension 3.*n_in=2"):
        f(0.0, np.zeros(3))
    with pytest.raises(ValueError, match=r"y must have shape"):
        f(0.0, np.zeros((1, 1, 2)))
    with pytest.raises(TypeError, match="y must be a float"):
        f(0.0, np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"t has shape \(2,\).*batch y"):
        f(np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"t must be .*\(3,\)"):
        f(np.zeros(2), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="u must have"):
        f.jvp(0.0, np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="v must have"):
        f.vjp(0.0, np.zeros((3, 2)), np.zeros(2))


def test_empty_batch_gives_empty_results():
    f = nn.MLP([2, 3, 2], time_input=True)
    y = np.zeros((0, 2))
    assert f(np.zeros(0), y).shape == (0, 2)
    assert f.jvp(0.0, y, y).shape == (0, 2)
    g_y, g_theta, g_t = f.vjp(np.zeros(0), y, y)
    assert g_y.shape == (0, 2) and g_t.shape == (0,)
    np.testing.assert_array_equal(g_theta, np.zeros(f.n_params))
    assert f.vjp(0.5, y, y)[2] == 0.0
