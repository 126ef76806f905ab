"""The parameter-JVP ∂f/∂θ · w of the nn layers and of the problem zoo's fields.

Checked two ways (STYLE.md §13): central finite differences in θ along w, and the dot-product
identity ⟨v, J_θ w⟩ = ⟨J_θᵀ v, w⟩ against the VJP that the adjoint already trusts (itself
checked in test_nn.py and test_adjoint.py).

Tolerances. f is smooth in θ; a central difference with step h errs by O(h²·|∂³f/∂θ³|) plus
rounding O(ε_mach·|f|/h). With h = 1e-6 and O(1) fields that is ~1e-12 + 1e-10, so 1e-6
relative to the size of the JVP is four orders of magnitude of margin and far below what a
wrong term gives (O(1)). The dot-product identity holds to rounding: both sides are sums of
the same products in another order, so 1e-12 relative to the sum of absolute terms.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from problems import ZOO
from pyode import nn

FD_STEP = 1e-6
FD_RTOL = 1e-6
DOT_RTOL = 1e-12


def fd_jvp_params(f, t, y, w, h=FD_STEP):
    """(f(θ + h w) − f(θ − h w)) / 2h, restoring θ."""
    theta = f.params.copy()
    try:
        f.params[:] = theta + h * w
        up = f(t, y)
        f.params[:] = theta - h * w
        down = f(t, y)
    finally:
        f.params[:] = theta
    return (up - down) / (2.0 * h)


def check_jvp_params(f, t, y, w, v):
    Jw = f.jvp_params(t, y, w)
    assert Jw.shape == np.shape(y) and Jw.dtype == np.asarray(y).dtype
    fd = fd_jvp_params(f, t, y, w)
    assert np.max(np.abs(Jw - fd)) <= FD_RTOL * max(1.0, np.max(np.abs(fd))), (Jw, fd)
    _, vth, _ = f.vjp(t, y, v)                           # Σ_samples vᵀ ∂f/∂θ, shape (P,)
    lhs, rhs = np.sum(v * Jw), vth @ w
    assert abs(lhs - rhs) <= DOT_RTOL * (np.sum(np.abs(v * Jw)) + np.sum(np.abs(vth * w))
                                         + 1e-300)
    return Jw


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 4),
       hidden=st.lists(st.integers(1, 6), min_size=0, max_size=2),
       activation=st.sampled_from(["tanh", "softplus", "sigmoid", "sin", "elu", "cube"]),
       time_input=st.booleans(), input_activation=st.sampled_from([None, "cube", "tanh"]))
def test_mlp_jvp_params(seed, B, hidden, activation, time_input, input_activation):
    rng = np.random.default_rng(seed)
    D = int(rng.integers(1, 4))
    f = nn.MLP([D, *hidden, D], activation=activation, time_input=time_input,
               input_activation=input_activation, seed=seed % 1000, backend="numpy")
    y = rng.normal(size=(B, D))
    t = rng.uniform(-1.0, 1.0, size=B)
    w, v = rng.normal(size=f.n_params), rng.normal(size=(B, D))
    Jw = check_jvp_params(f, t, y, w, v)
    # A 1-D call is the batch call's first row; a float t is broadcast to every row.
    np.testing.assert_allclose(f.jvp_params(float(t[0]), y[0], w), Jw[0], rtol=1e-13,
                               atol=1e-15)
    # Per-sample cotangents: the identity holds row by row too.
    _, vth_rows, _ = f.vjp_per_sample(t, y, v)
    for b in range(B):
        assert abs(v[b] @ Jw[b] - vth_rows[b] @ w) <= DOT_RTOL * (
            np.sum(np.abs(v[b] * Jw[b])) + np.sum(np.abs(vth_rows[b] * w)) + 1e-300)


def test_linear_layer_jvp_params_is_the_layer_at_the_tangent():
    # y = W x + b is linear in (W, b): ∂y/∂θ · (W_w, b_w) = W_w x + b_w exactly.
    f = nn.Sequential(nn.Linear(3, 2), seed=0)
    layer = f.layers[0]
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(4, 3)), rng.normal(size=f.n_params)
    Ww, bw = w[:6].reshape(2, 3), w[6:]
    np.testing.assert_allclose(layer.jvp_params(x, None, w), x @ Ww.T + bw, rtol=1e-15)
    np.testing.assert_allclose(f.jvp_params(0.0, x, w), x @ Ww.T + bw, rtol=1e-15)


def test_jvp_params_is_linear_in_w_and_zero_for_zero_w():
    f = nn.MLP([2, 5, 2], activation="tanh", time_input=True, seed=3)
    rng = np.random.default_rng(2)
    y, t = rng.normal(size=(3, 2)), rng.normal(size=3)
    w1, w2 = rng.normal(size=f.n_params), rng.normal(size=f.n_params)
    np.testing.assert_allclose(f.jvp_params(t, y, 2.0 * w1 - w2),
                               2.0 * f.jvp_params(t, y, w1) - f.jvp_params(t, y, w2),
                               rtol=1e-12, atol=1e-14)
    assert not np.any(f.jvp_params(t, y, np.zeros(f.n_params)))


def test_float32_field_computes_in_float32():
    f = nn.MLP([2, 4, 2], dtype=np.float32, seed=0)
    y = np.ones((2, 2), dtype=np.float32)
    out = f.jvp_params(0.0, y, np.ones(f.n_params, dtype=np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, f.jvp_params(0.0, y.astype(np.float64),
                                                 np.ones(f.n_params)), rtol=1e-5)


def test_jvp_params_rejects_a_tangent_of_the_wrong_shape():
    f = nn.MLP([2, 4, 2], seed=0)
    with pytest.raises(ValueError, match="w must have the shape of params"):
        f.jvp_params(0.0, np.ones(2), np.ones(f.n_params + 1))


ZOO_FIELDS = ["linear", "decay", "rotation", "riccati", "forced_decay", "lotka_volterra",
              "van_der_pol", "parameterless", "fast_slow"]


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(ZOO_FIELDS), seed=st.integers(0, 2**32 - 1), B=st.integers(1, 3))
def test_zoo_jvp_params(name, seed, B):
    rng = np.random.default_rng(seed)
    p = ZOO[name]()
    f = p.field
    y = p.y0 * (1.0 + 0.3 * rng.normal(size=(B,) + p.y0.shape))
    t = rng.uniform(-1.0, 3.0, size=B)
    w, v = rng.normal(size=f.params.size), rng.normal(size=y.shape)
    Jw = check_jvp_params(f, t, y, w, v)
    np.testing.assert_allclose(f.jvp_params(float(t[0]), y[0], w), Jw[0], rtol=1e-14,
                               atol=1e-15)
