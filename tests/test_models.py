"""Models with ODE blocks (issue 11): pyode.nn.Model, ODEBlock, ResidualBlock, Flatten, ZeroPad,
Sequential.bind_params, Linear.vjp_batch, and the classification losses.

Every derivative is checked against central finite differences (``pyode.gradcheck``), the
linear blocks also by the dot-product identity ⟨v, F u⟩ = ⟨Fᵀ v, u⟩ (exact for a linear F).

Tolerances (STYLE.md §15).
  * Smooth discrete maps (the discrete layers, the RK-Net's fixed RK4 steps, the loss): central
    differences with h = 1e-6 err by h²|F'''|/6 ≈ 1e-13 plus rounding ε·|F|/h ≈ 2e-10·|F|;
    SMOOTH_RTOL = 1e-6 relative with an absolute floor of 1e-8·scale keeps two orders of margin
    while a wrong term is off by O(1).
  * Adaptive ODE blocks: the adjoint gives the gradient of the continuous solution to C·rtol
    (C ≲ 100, test_solvers.py), and differences of an adaptive solve at rtol = atol = 1e-12
    err by up to C·tol/h ≈ 1e-8 where the step pattern changes between x ± h (h = 1e-5);
    ADAPTIVE_RTOL = 1e-5 of max|gradient| (the bound of test_gradient_methods.py) leaves
    orders of margin while a wrong term is off by O(1).
  * Identities that hold to rounding (dot products of linear maps, batch sums): 1e-13.
"""
import copy
import pickle

import numpy as np
import pytest

from pyode import gradcheck, losses, nn, odeint, optim
from pyode.solvers import SolveInfo

SMOOTH_RTOL = 1e-6
SMOOTH_ATOL = 1e-8
ADAPTIVE_RTOL = 1e-5
ROUNDING = 1e-13
TIGHT = dict(rtol=1e-12, atol=1e-12)


def rng(seed=0):
    return np.random.default_rng(seed)


def check_grad(fun, x, rtol=SMOOTH_RTOL, atol=SMOOTH_ATOL, eps=1e-6):
    res = gradcheck(fun, x, eps=eps, rtol=rtol, atol=atol)
    assert res.ok, str(res)
    return res


def check_grad_scaled(fun, x, rel, eps=1e-5):
    """Central differences within ``rel`` × max|gradient| (adaptive solves, see docstring)."""
    _, grad = fun(np.array(x, dtype=float))
    scale = float(np.max(np.abs(grad)))
    assert scale > 0
    return check_grad(fun, x, rtol=0.0, atol=rel * scale, eps=eps)


def model_loss(model, x, labels):
    """``theta -> (L(theta), dL/dtheta)`` and ``x -> (L(x), dL/dx)`` for cross-entropy."""
    def of_params(theta):
        model.params = theta
        logits, vjp = model.forward_vjp(x)
        value, g = losses.cross_entropy(logits, labels)
        return value, vjp(g).params

    def of_input(xx):
        logits, vjp = model.forward_vjp(xx)
        value, g = losses.cross_entropy(logits, labels)
        return value, vjp(g).x

    return of_params, of_input


def small_field(width, seed=1, **kw):
    kw.setdefault("activation", "tanh")
    return nn.MLP([width, 5, width], time_input=True, seed=seed, **kw)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def test_cross_entropy_value_against_the_naive_formula():
    z = rng().normal(size=(6, 4)) * 2.0
    y = np.array([0, 3, 1, 2, 2, 0])
    naive = -np.mean(np.log(np.exp(z[np.arange(6), y]) / np.exp(z).sum(axis=1)))
    value, _ = losses.cross_entropy(z, y)
    assert value == pytest.approx(naive, rel=ROUNDING)


def test_cross_entropy_gradient_against_finite_differences():
    z = rng(1).normal(size=(5, 3))
    y = np.array([2, 0, 1, 1, 0])
    check_grad(lambda zz: losses.cross_entropy(zz, y), z)


def test_cross_entropy_is_stable_for_huge_logits():
    """Adding c to a row changes nothing (softmax is shift invariant); with c = 1e4 a naive
    exp overflows (and the test's np.errstate would raise)."""
    z = rng(2).normal(size=(4, 5))
    y = np.array([4, 0, 2, 3])
    value, grad = losses.cross_entropy(z, y)
    shift = np.array([[1e4], [-1e4], [3e3], [0.0]])
    value_s, grad_s = losses.cross_entropy(z + shift, y)
    assert value_s == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grad_s, grad, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=ROUNDING)   # Σ_c (p_c − t_c) = 0
    # A confidently wrong prediction costs its logit gap exactly: -log p = 1000 - 0.
    value_w, _ = losses.cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert value_w == pytest.approx(1000.0, rel=ROUNDING)


def test_accuracy_counts_argmax_hits_and_takes_the_first_of_ties():
    z = np.array([[0.1, 0.9], [2.0, 1.0], [0.5, 0.5], [0.0, -1.0]])
    assert losses.accuracy(z, np.array([1, 0, 0, 1])) == 0.75
    assert losses.accuracy(z, np.array([1, 0, 1, 1])) == 0.5


@pytest.mark.parametrize("logits, labels, exc, words", [
    (np.zeros((3, 4)), np.array([0, 5, 1]), ValueError, "labels[1] = 5"),
    (np.zeros((3, 4)), np.array([0, -1, 1]), ValueError, "labels[1] = -1"),
    (np.zeros((3, 4)), np.array([0.0, 1.0, 1.0]), TypeError, "astype(int)"),
    (np.zeros((3, 4)), np.array([0, 1]), ValueError, "shape (B,) = (3,)"),
    (np.zeros(4), np.array([0]), ValueError, "shape (B, C)"),
    (np.zeros((3, 1)), np.array([0, 0, 0]), ValueError, "C >= 2"),
    (np.array([[0.0, np.nan]]), np.array([0]), ValueError, "non-finite entry at (0, 1)"),
])
def test_classification_losses_name_the_bad_argument(logits, labels, exc, words):
    for fun in (losses.cross_entropy, losses.accuracy):
        with pytest.raises(exc) as info:
            fun(logits, labels)
        assert words in str(info.value)


# ---------------------------------------------------------------------------------------------
# nn additions: Linear.vjp_batch, Sequential.bind_params
# ---------------------------------------------------------------------------------------------


def test_linear_vjp_batch_is_the_batch_sum_of_vjp():
    f = nn.Sequential(nn.Linear(4, 3), seed=3)
    layer = f.layers[0]
    x, v = rng(3).normal(size=(7, 4)), rng(4).normal(size=(7, 3))
    g_x, g_theta, _ = layer.vjp(x, None, v)
    b_x, b_theta, b_t = layer.vjp_batch(x, None, v)
    np.testing.assert_allclose(b_x, g_x, rtol=ROUNDING, atol=ROUNDING)
    np.testing.assert_allclose(b_theta, g_theta.sum(axis=0), rtol=ROUNDING, atol=ROUNDING)
    assert b_theta.shape == (layer.n_params,) and b_t is None


def test_bind_params_moves_the_storage_and_keeps_the_field():
    f = nn.MLP([3, 6, 3], activation="tanh", time_input=True, seed=5)
    y0, t = rng(5).normal(size=(4, 3)), np.linspace(0.0, 0.5, 3)
    before = odeint(f, y0, t)
    big = np.zeros(f.n_params + 10)
    buffer = big[4:4 + f.n_params]
    f.bind_params(buffer)
    assert f.params is buffer and np.shares_memory(f.layers[1].W, big)
    np.testing.assert_array_equal(odeint(f, y0, t, backend="numba"), before)
    np.testing.assert_array_equal(odeint(f, y0, t, backend="numpy"),
                                  odeint(f, y0, t, backend="numpy"))
    big[4:4 + f.n_params] *= 0.5                  # written through the larger buffer
    np.testing.assert_allclose(odeint(f, y0, t, backend="numba"),
                               odeint(f, y0, t, backend="numpy"), rtol=1e-10, atol=1e-10)
    assert not np.allclose(odeint(f, y0, t), before)


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy,
                                    lambda f: pickle.loads(pickle.dumps(f))])
def test_copies_of_a_bound_field_own_their_parameters(copier):
    f = nn.MLP([2, 5, 2], seed=6)
    big = np.zeros(f.n_params + 3)
    f.bind_params(big[3:])
    f.params[:] = rng(6).normal(size=f.n_params)
    g = copier(f)
    assert not np.shares_memory(g.params, big)
    np.testing.assert_array_equal(g.params, f.params)
    big[:] = 0.0
    assert np.any(g.params != 0.0)
    y = rng(7).normal(size=(3, 2))
    np.testing.assert_allclose(odeint(g, y, [0.0, 0.3], backend="numba"),
                               odeint(g, y, [0.0, 0.3], backend="numpy"), rtol=1e-10)


def test_save_and_load_of_a_bound_field(tmp_path):
    f = nn.MLP([2, 4, 2], seed=8)
    f.bind_params(np.ones(f.n_params + 1)[1:])
    f.save(tmp_path / "f.npz")
    g = nn.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(g.params, f.params)
    assert g.params.base is None


@pytest.mark.parametrize("buffer, exc, words", [
    ([0.0] * 8, TypeError, "ndarray"),
    (np.zeros(9), ValueError, "shape of params"),
    (np.zeros(8, dtype=np.float32), ValueError, "dtype float64"),
    (np.zeros(16)[::2], ValueError, "C-contiguous"),
])
def test_bind_params_rejects_bad_buffers(buffer, exc, words):
    f = nn.Sequential(nn.Linear(1, 4))                                    # 8 params
    before = f.params
    with pytest.raises(exc) as info:
        f.bind_params(buffer)
    assert words in str(info.value)
    assert f.params is before


# ---------------------------------------------------------------------------------------------
# Discrete blocks: VJPs against differences and the dot-product identity
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block, shape", [(nn.Flatten(), (3, 2, 4)), (nn.ZeroPad(2), (3, 4))])
def test_linear_blocks_satisfy_the_dot_product_identity(block, shape):
    u = rng(9).normal(size=shape)
    y, ctx = block.forward(u, keep=True)
    v = rng(10).normal(size=y.shape)
    g, g_theta = block.vjp(ctx, v)
    assert g.shape == u.shape and g_theta is None
    assert np.sum(v * y) == pytest.approx(np.sum(g * u), rel=ROUNDING)


def test_zero_pad_appends_zeros():
    x = np.arange(6.0).reshape(2, 3)
    y, _ = nn.ZeroPad(2).forward(x)
    np.testing.assert_array_equal(y, [[0, 1, 2, 0, 0], [3, 4, 5, 0, 0]])


def test_residual_block_vjp_against_finite_differences():
    model = nn.Model(nn.ResidualBlock(nn.Linear(3, 5), nn.Softplus(), nn.Linear(5, 3)), seed=11)
    x, v = rng(11).normal(size=(4, 3)), rng(12).normal(size=(4, 3))

    def of_params(theta):
        model.params = theta
        y, vjp = model.forward_vjp(x)
        return float(np.sum(v * y)), vjp(v).params

    def of_input(xx):
        y, vjp = model.forward_vjp(xx)
        return float(np.sum(v * y)), vjp(v).x

    check_grad(of_params, model.params.copy())
    check_grad(of_input, x)
    # y = x + r(x): with r's last layer zeroed the block is the identity and its VJP is v.
    model.params[-3:] = 0.0
    model.blocks[0].layers[2].W[...] = 0.0
    y, vjp = model.forward_vjp(x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(vjp(v).x, v)


# ---------------------------------------------------------------------------------------------
# Whole models against central differences
# ---------------------------------------------------------------------------------------------


def images(n=6, seed=13):
    r = rng(seed)
    return r.normal(size=(n, 3, 3)), r.integers(0, 4, size=n)


def test_resnet_model_gradients():
    x, labels = images()
    model = nn.Model(nn.Flatten(), nn.Linear(9, 4), nn.Tanh(),
                     *(nn.ResidualBlock(nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 4))
                       for _ in range(3)), nn.Linear(4, 4), seed=14, input_shape=(3, 3))
    of_params, of_input = model_loss(model, x, labels)
    check_grad(of_params, model.params.copy())
    check_grad(of_input, x)


def test_relu_mlp_model_gradients_away_from_the_kink():
    x, labels = images(seed=15)
    model = nn.Model(nn.Flatten(), nn.Linear(9, 7), "relu", nn.Linear(7, 4), seed=15)
    pre = model.blocks[1].forward(x.reshape(len(x), -1))
    assert np.min(np.abs(pre)) > 1e-3      # FD steps of 1e-6 cannot cross the kink of ReLU
    of_params, of_input = model_loss(model, x, labels)
    check_grad(of_params, model.params.copy())
    check_grad(of_input, x)


def test_rk_net_gradients_are_the_exact_derivative_of_the_rk4_steps():
    """adjoint_method="discrete" on fixed RK4 steps: differences of the very same map."""
    x, labels = images(seed=16)
    block = nn.ODEBlock(small_field(4, seed=16), method="rk4", options={"step_size": 0.25},
                        adjoint_method="discrete")
    model = nn.Model(nn.Flatten(), nn.Linear(9, 4), nn.Tanh(), block, nn.Linear(4, 4), seed=16)
    of_params, of_input = model_loss(model, x, labels)
    check_grad(of_params, model.params.copy())
    check_grad(of_input, x)


@pytest.mark.parametrize("adjoint_method, backend", [("backsolve", "auto"),
                                                     ("checkpoint", "auto"),
                                                     ("backsolve", "numpy")])
def test_ode_net_gradients(adjoint_method, backend):
    x, labels = images(seed=17)
    block = nn.ODEBlock(small_field(4, seed=17), adjoint_method=adjoint_method,
                        backend=backend, **TIGHT)
    model = nn.Model(nn.Flatten(), nn.Linear(9, 4), nn.Tanh(), block, nn.Linear(4, 4), seed=17)
    of_params, of_input = model_loss(model, x, labels)
    check_grad_scaled(of_params, model.params.copy(), ADAPTIVE_RTOL)
    check_grad_scaled(of_input, x, ADAPTIVE_RTOL)


def test_augmented_ode_gradients_and_backward_time():
    """ZeroPad before an ODE block integrated backward in time (t1 < t0)."""
    r = rng(18)
    x, labels = r.normal(size=(5, 2)), r.integers(0, 2, size=5)
    block = nn.ODEBlock(small_field(3, seed=18), t0=0.5, t1=-0.25, **TIGHT)
    model = nn.Model(nn.ZeroPad(1), block, nn.Linear(3, 2), seed=18)
    of_params, of_input = model_loss(model, x, labels)
    check_grad_scaled(of_params, model.params.copy(), ADAPTIVE_RTOL)
    check_grad_scaled(of_input, x, ADAPTIVE_RTOL)


# ---------------------------------------------------------------------------------------------
# The flat parameter vector, NFE, copies
# ---------------------------------------------------------------------------------------------


def ode_model(seed=19, **kw):
    field = small_field(3, seed=seed)
    return nn.Model(nn.Linear(2, 3), nn.Tanh(), nn.ODEBlock(field, **kw), nn.Linear(3, 2),
                    seed=seed), field


def test_one_flat_vector_holds_every_block():
    model, field = ode_model(rtol=1e-8, atol=1e-10)
    lin0, ode, lin1 = model.blocks[0], model.blocks[2], model.blocks[3]
    assert model.n_params == lin0.n_params + field.n_params + lin1.n_params
    off = lin0.n_params
    assert field.params.base is model.params
    assert np.shares_memory(field.params, model.params[off:off + field.n_params])
    assert np.shares_memory(lin0.W, model.params) and np.shares_memory(lin1.b, model.params)
    x = rng(19).normal(size=(4, 2))
    y_numba = model(x)
    ode.backend = "numpy"
    np.testing.assert_allclose(model(x), y_numba, rtol=1e-9, atol=1e-12)
    ode.backend = "auto"
    # One optimiser step on model.params moves the field on both paths.
    opt = optim.SGD(model.params, lr=0.1)
    logits, vjp = model.forward_vjp(x)
    opt.step(vjp(np.ones_like(logits)).params)
    y_after = model(x)
    assert not np.allclose(y_after, y_numba)
    ode.backend = "numpy"
    np.testing.assert_allclose(model(x), y_after, rtol=1e-9, atol=1e-12)


def test_initialisation_follows_the_sequential_rule_and_keeps_the_field():
    model, field = ode_model(seed=20)
    fresh = small_field(3, seed=20)
    np.testing.assert_array_equal(field.params, fresh.params)       # the field's own seed
    r = np.random.default_rng(20)
    W = r.uniform(-1 / np.sqrt(2), 1 / np.sqrt(2), size=(3, 2))
    np.testing.assert_array_equal(model.blocks[0].W, W)


def test_nfe_is_that_of_the_solves():
    model, field = ode_model(rtol=1e-6, atol=1e-8)
    x = rng(21).normal(size=(5, 2))
    h0 = np.tanh(model.blocks[0].forward(x))
    _, info = odeint(field, h0, [0.0, 1.0], rtol=1e-6, atol=1e-8, full_output=True)
    y, finfo = model.forward(x, full_output=True)
    logits, vjp = model.forward_vjp(x)
    grads = vjp(np.ones_like(logits))
    assert finfo.nfe == grads.nfe_forward == pytest.approx(np.mean(info.nfev))
    assert isinstance(finfo.solves[0], SolveInfo)
    assert grads.nfe_backward == pytest.approx(np.mean(grads.solves[0].info.nfev))
    assert grads.nfe_backward > 0
    no_ode = nn.Model(nn.Linear(2, 2))
    _, vjp = no_ode.forward_vjp(x)
    g = vjp(np.ones((5, 2)))
    assert g.nfe_forward == g.nfe_backward == 0.0 and no_ode.forward(x, True)[1].nfe == 0.0


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy,
                                    lambda m: pickle.loads(pickle.dumps(m))])
def test_model_copies_are_independent(copier):
    model, _ = ode_model(seed=22)
    resnet = nn.Model(nn.Linear(2, 3), nn.ResidualBlock(nn.Linear(3, 4), "tanh",
                                                        nn.Linear(4, 3)), seed=22)
    x = rng(22).normal(size=(3, 2))
    for m in (model, resnet):
        before = m(x)
        c = copier(m)
        np.testing.assert_array_equal(c(x), before)
        assert not np.shares_memory(c.params, m.params)
        for block in c.ode_blocks:
            assert block.field.params.base is c.params
        c.params = c.params * 0.5
        np.testing.assert_array_equal(m(x), before)
        assert not np.allclose(c(x), before)


# ---------------------------------------------------------------------------------------------
# Errors at the API boundary
# ---------------------------------------------------------------------------------------------


def test_shape_errors_name_the_block():
    model = nn.Model(nn.Flatten(), nn.Linear(9, 4), nn.ODEBlock(small_field(3)))
    with pytest.raises(ValueError) as info:
        model(np.zeros((2, 3, 3)))
    assert "blocks[2]" in str(info.value) and "(3,)" in str(info.value)
    with pytest.raises(ValueError) as info:
        nn.Model(nn.Linear(9, 4), input_shape=(3, 3))
    assert "blocks[0]" in str(info.value) and "Flatten()" in str(info.value)
    with pytest.raises(ValueError, match="x must be a batch"):
        nn.Model(nn.Linear(2, 2))(np.zeros(2))
    with pytest.raises(ValueError, match="keep the shape"):
        nn.Model(nn.ResidualBlock(nn.Linear(2, 3)))(np.zeros((1, 2)))


def test_ode_block_argument_errors():
    f = small_field(3)
    with pytest.raises(TypeError, match="pyode.nn.Sequential"):
        nn.ODEBlock(lambda t, y: y)
    with pytest.raises(ValueError, match="n_in == n_out"):
        nn.ODEBlock(nn.MLP([3, 4, 2]))
    with pytest.raises(ValueError, match="t0 and t1 must differ"):
        nn.ODEBlock(f, t0=1.0, t1=1.0)
    with pytest.raises(ValueError, match="t1 must be a finite"):
        nn.ODEBlock(f, t1=np.inf)
    with pytest.raises(ValueError, match=r"options=\{'step_size': h\}"):
        nn.ODEBlock(f, method="rk4")
    with pytest.raises(ValueError, match="valid methods"):
        nn.ODEBlock(f, method="RK45")
    with pytest.raises(ValueError, match="adjoint_method="):
        nn.ODEBlock(f, adjoint_method="autograd")
    with pytest.raises(ValueError, match="backend="):
        nn.ODEBlock(f, backend="gpu")


def test_ownership_errors():
    lin = nn.Linear(2, 2)
    nn.Model(lin)
    with pytest.raises(ValueError, match="already belongs"):
        nn.Model(lin)
    lin2 = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="appears twice"):
        nn.Model(lin2, nn.Tanh(), lin2)
    f = small_field(2)
    with pytest.raises(ValueError, match="same field is in two ODE blocks"):
        nn.Model(nn.ODEBlock(f), nn.ODEBlock(f))
    block = nn.ODEBlock(small_field(2))
    nn.Model(block)
    with pytest.raises(ValueError, match="already belongs to a Model"):
        nn.Model(block)
    with pytest.raises(ValueError, match="another model's vector"):
        nn.Model(nn.ODEBlock(block.field))
    with pytest.raises(ValueError, match="dtype float32"):
        nn.Model(nn.ODEBlock(nn.MLP([2, 3, 2], dtype=np.float32)))
    with pytest.raises(TypeError, match="put it in an ODEBlock"):
        nn.Model(nn.MLP([2, 3, 2]))


def test_vjp_refuses_changed_params_and_bad_cotangents():
    model = nn.Model(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    x = rng(23).normal(size=(4, 2))
    y, vjp = model.forward_vjp(x)
    with pytest.raises(ValueError, match="shape of the output"):
        vjp(np.ones((4, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        vjp(np.full_like(y, np.nan))
    g1 = vjp(np.ones_like(y)).params
    np.testing.assert_array_equal(vjp(np.ones_like(y)).params, g1)     # may be called again
    model.params[0] += 1e-3
    with pytest.raises(ValueError, match="params changed"):
        vjp(np.ones_like(y))


def test_docstring_examples_run():
    import doctest

    import pyode.models
    result = doctest.testmod(pyode.models)
    assert result.attempted >= 10 and result.failed == 0
