"""Tests of pyode.losses (values and gradients) and pyode.optim (one step by hand, convergence,
validation)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyode import losses, nn, optim

EPS = 1e-6


def fd_gradient(phi, x):
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += EPS
        xm[idx] -= EPS
        grad[idx] = (phi(xp) - phi(xm)) / (2 * EPS)
    return grad


# -- losses -----------------------------------------------------------------------------------


@st.composite
def pred_target(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    elements = st.floats(-3, 3)
    return (draw(hnp.arrays(np.float64, shape, elements=elements)),
            draw(hnp.arrays(np.float64, shape, elements=elements)))


@settings(max_examples=25, deadline=None)
@given(pair=pred_target())
def test_mse_value_and_gradient(pair):
    pred, target = pair
    value, grad = losses.mse(pred, target)
    assert isinstance(value, float)
    np.testing.assert_allclose(value, np.mean((pred - target) ** 2), rtol=1e-14, atol=1e-300)
    assert grad.shape == pred.shape
    # mse is quadratic: the central difference is exact up to rounding ≈ ε·|value|/h.
    fd = fd_gradient(lambda p: losses.mse(p, target)[0], pred)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * max(1.0, value))


@settings(max_examples=25, deadline=None)
@given(pair=pred_target())
def test_l1_value_and_gradient(pair):
    pred, target = pair
    value, grad = losses.l1(pred, target)
    np.testing.assert_allclose(value, np.mean(np.abs(pred - target)), rtol=1e-14, atol=1e-300)
    np.testing.assert_array_equal(grad, np.sign(pred - target) / pred.size)
    # Away from the kink |d| = 0 the central difference is exact up to rounding.
    away = np.abs(pred - target) > 1e-3
    fd = fd_gradient(lambda p: losses.l1(p, target)[0], pred)
    np.testing.assert_allclose(grad[away], fd[away], rtol=1e-6,
                               atol=1e-8 * max(1.0, value))


def test_losses_on_known_numbers():
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    target = np.array([[1.0, 0.0], [4.0, 5.0]])
    value, grad = losses.mse(pred, target)
    assert value == (0 + 4 + 1 + 0) / 4
    np.testing.assert_array_equal(grad, [[0.0, 1.0], [-0.5, 0.0]])
    value, grad = losses.l1(pred, target)
    assert value == (0 + 2 + 1 + 0) / 4
    np.testing.assert_array_equal(grad, [[0.0, 0.25], [-0.25, 0.0]])


def test_losses_keep_float32():
    pred = np.ones(3, dtype=np.float32)
    assert losses.mse(pred, np.zeros(3, dtype=np.float32))[1].dtype == np.float32
    assert losses.l1(pred, np.zeros(3, dtype=np.float32))[1].dtype == np.float32


@pytest.mark.parametrize("loss", [losses.mse, losses.l1])
def test_losses_reject_mismatched_shapes(loss):
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2,\)"):
        loss(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        loss(np.zeros(0), np.zeros(0))


# -- optimisers: one step by hand -------------------------------------------------------------


P0 = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.3, -1.0, 2.0])
G2 = np.array([-0.1, 0.4, 1.0])


def test_sgd_two_steps_by_hand():
    p = P0.copy()
    opt = optim.SGD(p, lr=0.1, momentum=0.9)
    opt.step(G1)
    np.testing.assert_allclose(p, P0 - 0.1 * G1, rtol=1e-15)
    opt.step(G2)
    v2 = 0.9 * G1 + G2
    np.testing.assert_allclose(p, P0 - 0.1 * G1 - 0.1 * v2, rtol=1e-15)
    plain = P0.copy()
    optim.SGD(plain, lr=0.5).step(G1)
    np.testing.assert_allclose(plain, P0 - 0.5 * G1, rtol=1e-15)


def test_adam_two_steps_by_hand():
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-6
    p = P0.copy()
    opt = optim.Adam(p, lr=lr, betas=(b1, b2), eps=eps)
    m = v = 0.0
    expected = P0.copy()
    for k, g in enumerate((G1, G2), start=1):
        opt.step(g)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat, v_hat = m / (1 - b1 ** k), v / (1 - b2 ** k)
        expected = expected - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(p, expected, rtol=1e-14)
    # First step of Adam moves each coordinate by ≈ lr·sign(g) (m̂/√v̂ = g/|g|).
    q = P0.copy()
    optim.Adam(q, lr=0.01, eps=1e-12).step(G1)
    np.testing.assert_allclose(q, P0 - 0.01 * np.sign(G1), rtol=1e-10)


def test_rmsprop_two_steps_by_hand():
    lr, alpha, eps = 0.05, 0.9, 1e-7
    p = P0.copy()
    opt = optim.RMSprop(p, lr=lr, alpha=alpha, eps=eps)
    s = 0.0
    expected = P0.copy()
    for g in (G1, G2):
        opt.step(g)
        s = alpha * s + (1 - alpha) * g ** 2
        expected = expected - lr * g / (np.sqrt(s) + eps)
        np.testing.assert_allclose(p, expected, rtol=1e-14)


def test_optimiser_updates_the_field_in_place():
    f = nn.MLP([2, 4, 2], seed=0)
    y = np.array([0.5, -0.5])
    before = f(0.0, y)
    opt = optim.SGD(f.params, lr=1.0)
    grad = np.zeros(f.n_params)
    grad[-2:] = [1.0, 2.0]  # last bias
    opt.step(grad)
    np.testing.assert_allclose(f(0.0, y), before - [1.0, 2.0], rtol=1e-12)
    assert opt.n_steps == 1


def test_float32_params_stay_float32():
    p = np.ones(3, dtype=np.float32)
    opt = optim.Adam(p, lr=0.1)
    opt.step(np.array([1.0, -1.0, 0.0]))
    assert p.dtype == np.float32 and opt.m.dtype == np.float32
    np.testing.assert_allclose(p, [0.9, 1.1, 1.0], rtol=1e-6)


def test_adam_minimises_a_quadratic():
    # L(θ) = ½ (θ − c)ᵀ A (θ − c) with an ill-conditioned diagonal A; minimum at c.
    a = np.array([1.0, 10.0, 100.0])
    c = np.array([1.0, -2.0, 3.0])
    theta = np.zeros(3)
    opt = optim.Adam(theta, lr=0.05)
    for _ in range(3000):
        opt.step(a * (theta - c))
    np.testing.assert_allclose(theta, c, atol=1e-4)


def test_sgd_momentum_converges_geometrically_on_a_quadratic():
    # L = |θ|², gradient 2θ: heavy ball with lr·L'' = 0.1 and μ = 0.9 contracts by √μ ≈ 0.95
    # per step, so 500 steps shrink the error by ~1e-11.
    theta = np.array([3.0, -4.0])
    opt = optim.SGD(theta, lr=0.05, momentum=0.9)
    for _ in range(500):
        opt.step(2 * theta)
    assert np.linalg.norm(theta) < 1e-8


def test_rmsprop_reaches_an_lr_neighbourhood_of_the_minimum():
    # RMSprop's step lr·g/rms(g) has size ≈ lr whatever |g| is, so with a constant lr it ends in
    # a jitter of amplitude O(lr) around the minimum rather than converging.
    theta = np.array([3.0, -4.0])
    opt = optim.RMSprop(theta, lr=0.01)
    for _ in range(1000):
        opt.step(2 * theta)
    assert np.linalg.norm(theta) < 10 * opt.lr


# -- optimisers: validation -------------------------------------------------------------------


@pytest.mark.parametrize("build, exc, match", [
    (lambda p: optim.SGD(p, lr=0.0), ValueError, "lr"),
    (lambda p: optim.SGD(p, lr=-1.0), ValueError, "lr"),
    (lambda p: optim.SGD(p, lr=float("nan")), ValueError, "lr"),
    (lambda p: optim.SGD(p, lr="0.1"), TypeError, "lr"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=1.0), ValueError, "momentum"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda p: optim.Adam(p, betas=0.9), ValueError, "betas"),
    (lambda p: optim.Adam(p, eps=0.0), ValueError, "eps"),
    (lambda p: optim.RMSprop(p, alpha=-0.1), ValueError, "alpha"),
    (lambda p: optim.SGD(p.reshape(1, 3), lr=0.1), ValueError, "1-D"),
    (lambda p: optim.SGD(list(p), lr=0.1), TypeError, "ndarray"),
])
def test_optimiser_arguments_are_validated(build, exc, match):
    with pytest.raises(exc, match=match):
        build(np.zeros(3))


def test_optimiser_rejects_bad_gradients():
    p = np.zeros(3)
    opt = optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match=r"shape of params, \(3,\)"):
        opt.step(np.zeros(4))
    with pytest.raises(ValueError, match="index 1"):
        opt.step(np.array([0.0, np.nan, 0.0]))
    np.testing.assert_array_equal(p, 0.0)  # nothing was applied
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        optim.SGD(frozen, lr=0.1)
