"""Numeric edge cases of the one integrator core, on the NumPy path and the Numba kernels.

Each case used to fail or mislead (issue 13, "A boundary you can trust"): a float32 state at an
equilibrium divided by zero in the step factor; Hairer's first-step guess below the step floor
was raised as an underflow; a field that turns NaN from a time on took more evaluations than
scipy's RK45 to give up; float32 kernels blamed a blow-up for their own time resolution;
rtol ≥ 1 was accepted silently; complex t and ragged y0 got numpy's messages. The nn fields
below are written so that both executors solve the same problem (their results and counts are
compared), and the reference is a closed form or scipy's RK45 at the same tolerances.
"""
import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from pyode import (Float32TimeResolutionError, NonFiniteError, StepSizeUnderflowError, nn,
                   odeint, odeint_adjoint)

BACKENDS = ["numpy", "numba"]


def _linear_field(W, b, dtype=np.float64, backend="numba"):
    """f(y) = W y + b as an nn field (runs on both executors)."""
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    f = nn.Sequential(nn.Linear(W.shape[1], W.shape[0]), dtype=dtype, backend=backend)
    f.layers[0].W[...] = W
    f.layers[0].b[...] = b
    return f


def _nan_from_half():
    """dy/dt = −y³ for t ≤ 1/2 and +inf after, as an nn field.

    [y, t] → [y, 1e103 (t − 1/2)] → relu → cube → −y³ + r³: r³ overflows to inf as soon as
    t − 1/2 ≥ one ulp (1e103 · 1.1e-16 cubed), and r = 0 before.
    """
    f = nn.Sequential(nn.TimeInput(), nn.Linear(2, 2), nn.ReLU(), nn.Cube(), nn.Linear(2, 1))
    lin1, lin2 = f.layers[1], f.layers[4]
    lin1.W[...] = [[1.0, 0.0], [0.0, 1e103]]
    lin1.b[...] = [0.0, -0.5e103]
    lin2.W[...] = [[-1.0, 1.0]]
    lin2.b[...] = 0.0
    return f


def _scipy_nfev_until_failure(fun, y0, t_span, rtol, atol):
    with np.errstate(all="ignore"):
        res = solve_ivp(fun, t_span, y0, method="RK45", rtol=rtol, atol=atol)
    assert res.status == -1                  # scipy gives up too
    return res.nfev


# ---------------------------------------------------------------------------------------------
# rtol ≥ 1 warns.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_rtol_of_one_or_more_warns_naming_it_and_the_fix(backend):
    f = _linear_field([[-1.0]], [0.0])
    with pytest.warns(UserWarning, match=r"rtol=1 is >= 1.*use rtol < 1, e\.g\. 1e-3"):
        odeint(f, np.array([1.0]), [0.0, 10.0], rtol=1, atol=1, backend=backend)
    with pytest.warns(UserWarning, match=r"adjoint_rtol=1\.5 is >= 1"):
        odeint_adjoint(f, np.array([1.0]), [0.0, 1.0], adjoint_rtol=1.5, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeint(f, np.array([1.0]), [0.0, 1.0], rtol=0.5, backend=backend)


# ---------------------------------------------------------------------------------------------
# The step factor in float64: a float32 state at an equilibrium.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["python", "nn-numpy", "nn-numba"])
def test_float32_equilibrium_has_no_divide_by_zero(field):
    # f = 1 − y, y0 = 1: every error estimate is exactly 0. In float32 the floor 1e-300 of
    # the step factor was 0, so 0^(−1/5) divided by zero (a FloatingPointError here).
    f = (lambda t, y: 1.0 - y) if field == "python" else _linear_field([[-1.0]], [1.0],
                                                                       dtype=np.float32)
    backend = "numba" if field == "nn-numba" else "numpy"
    y0 = np.ones(1, dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        ys, info = odeint(f, y0, [0.0, 1.0, 10.0], full_output=True, backend=backend)
    assert ys.dtype == np.float32
    np.testing.assert_array_equal(ys, 1.0)
    assert info.n_rejected == 0


# ---------------------------------------------------------------------------------------------
# A first-step guess below the step floor is raised to the floor.
# ---------------------------------------------------------------------------------------------

def _floor_problem(backend):
    """y' = [1, −y₀], y(t0) = [0, 1]: y = [s, 1 − s²/2] with s = t − t0."""
    return _linear_field([[0.0, 0.0], [-1.0, 0.0]], [1.0, 0.0], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t0", [0.0, 1000.0])
def test_first_step_below_the_floor_is_raised_to_it(backend, t0):
    # atol = 1e-20 makes Hairer's guess 1e-13, below 10 ulps of t0 = 1000 (2.3e-12): it used
    # to raise "Step size underflow at t=1000 (dt=1e-13, nfev=2)"; scipy's RK45 raises the
    # step to its floor and solves it (80 evaluations).
    f = _floor_problem(backend)
    rtol, atol = 1e-7, 1e-20
    t = t0 + np.array([0.0, 0.5, 1.0])
    ys, info = odeint(f, np.array([0.0, 1.0]), t, rtol=rtol, atol=atol, full_output=True,
                      backend=backend)
    s = t - t0
    exact = np.stack([s, 1.0 - s ** 2 / 2], axis=1)
    assert np.all(np.abs(ys - exact) <= 100.0 * (atol + rtol * np.abs(exact)))
    res = solve_ivp(lambda t, y: [1.0, -y[0]], (t0, t0 + 1.0), [0.0, 1.0], rtol=rtol,
                    atol=atol)
    assert res.status == 0 and info.nfev <= 2 * res.nfev


# At atol 1e-20 the backward reconstruction of y₁ = s (errors of a few ulps of t = 1000) is
# far outside atol: backsolve warns, rightly; the gradient is still checked below.
@pytest.mark.filterwarnings("ignore::pyode.AdjointReconstructionWarning")
def test_first_step_floor_on_both_executors_and_in_the_backward_solve():
    f = _floor_problem("numba")
    t = np.array([1000.0, 1000.5, 1001.0])
    kw = dict(rtol=1e-7, atol=1e-20, adjoint_atol=1e-20)
    out = []
    for backend in BACKENDS:
        ys, info = odeint(f, np.array([0.0, 1.0]), t, full_output=True, backend=backend,
                          rtol=1e-7, atol=1e-20)
        ys_a, vjp = odeint_adjoint(f, np.array([0.0, 1.0]), t, backend=backend, **kw)
        g = vjp(np.ones_like(ys_a))
        out.append((ys, info.nfev, g))
    (yk, nk, gk), (yn, nn_, gn) = out
    assert nk == nn_                               # the same steps
    np.testing.assert_allclose(yk, yn, rtol=1e-10, atol=1e-12)
    # L = Σ_i y(t_i): dL/dy0 = Σ_i [1, 1 − ... ] computed by the closed form of the flow
    # y₁ = y₁(0) + s, y₂ = y₂(0) − y₁(0) s − s²/2: ∂L/∂y₁(0) = Σ (1 − s_i), ∂L/∂y₂(0) = T.
    s = t - t[0]
    for g in (gk, gn):
        np.testing.assert_allclose(g.y0, [np.sum(1.0 - s), t.size], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# A non-finite stage: give up at the bad time, in no more evaluations than scipy's RK45.
# ---------------------------------------------------------------------------------------------

def _nan_after(t_bad, direction=1.0):
    def f(t, y):
        return np.full_like(y, np.nan) if direction * (t - t_bad) >= 0 else -y
    return f


@pytest.mark.parametrize("rtol, atol", [(1e-3, 1e-6), (1e-5, 1e-8), (1e-7, 1e-9),
                                        (1e-8, 1e-10), (1e-10, 1e-12)])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_nan_from_a_time_gives_up_there_in_no_more_evaluations_than_scipy(rtol, atol,
                                                                           direction):
    # y' = −y and NaN from t = 0.5 on (forward from 0, or backward from 1): before, 506
    # evaluations at rtol 1e-7 and 1e-8, where scipy's RK45 takes 506 and 434.
    t_span = (0.0, 1.0) if direction > 0 else (1.0, 0.0)
    calls = []

    def f(t, y):
        calls.append(t)
        return _nan_after(0.5, direction)(t, y)

    with pytest.raises(NonFiniteError) as err:
        odeint(f, np.array([1.0]), list(t_span), rtol=rtol, atol=atol)
    assert abs(err.value.t - 0.5) < 1e-9
    assert err.value.nfev == len(calls)
    assert len(calls) <= _scipy_nfev_until_failure(_nan_after(0.5, direction), [1.0], t_span,
                                                   rtol, atol)


@pytest.mark.parametrize("rtol, atol", [(1e-7, 1e-9), (1e-8, 1e-10)])
def test_nan_from_a_time_on_the_kernels_matches_the_numpy_path(rtol, atol):
    f = _nan_from_half()
    errors = []
    for backend in BACKENDS:
        with pytest.raises(NonFiniteError) as err:
            odeint(f, np.array([1.0]), [0.0, 1.0], rtol=rtol, atol=atol, backend=backend)
        errors.append(err.value)
    (ek, en) = errors
    assert ek.t == pytest.approx(en.t, rel=1e-12) and ek.nfev == en.nfev
    assert abs(en.t - 0.5) < 1e-9

    def reference(t, y):
        return -y ** 3 if t <= 0.5 else np.full_like(y, np.inf)

    assert en.nfev <= _scipy_nfev_until_failure(reference, [1.0], (0.0, 1.0), rtol, atol)


@pytest.mark.parametrize("first_step", [0.3, 1.0, 10.0])
def test_an_overflowing_first_step_is_not_taken_for_a_failing_time(first_step):
    # y' = −y³ from y0 = 30 with a first step far too large: the trial steps overflow. The
    # bisection towards that time must let go once smaller steps pass it (BISECT_STEPS).
    f = nn.Sequential(nn.Cube(), nn.Linear(1, 1))
    f.params[:] = [-1.0, 0.0]
    t = np.array([0.0, 1.0, 10.0])
    exact = 1.0 / np.sqrt(1.0 / 900.0 + 2.0 * t)
    out = []
    for backend in BACKENDS:
        with np.errstate(over="ignore", invalid="ignore"):
            ys, info = odeint(f, np.array([30.0]), t, rtol=1e-7, atol=1e-9, backend=backend,
                              options={"first_step": first_step}, full_output=True)
        np.testing.assert_allclose(ys[:, 0], exact, rtol=1e-5)
        out.append(info.nfev)
    assert out[0] == out[1]


# ---------------------------------------------------------------------------------------------
# float32 kernels: the error names the float32 time resolution.
# ---------------------------------------------------------------------------------------------

def test_float32_kernels_name_their_time_resolution_and_the_fix():
    # y' = −3e4 (y − 1) on [1e4, 1e4 + 1]: a stable explicit step (~1e-4) is below 10 ulps of
    # t = 1e4 in float32 (1.2e-2). The error used to blame a blow-up or stiffness.
    t = [1e4, 1e4 + 1.0]
    f32 = _linear_field([[-3e4]], [3e4], dtype=np.float32)
    with pytest.raises(Float32TimeResolutionError) as err:
        odeint(f32, np.zeros(1, dtype=np.float32), t)
    msg = str(err.value)
    assert isinstance(err.value, StepSizeUnderflowError)
    assert "float32 resolution of t (eps32*|t| = 0.001" in msg
    assert "Solve in float64" in msg and "at t=10000" in msg
    # the same problem in float64 solves: y = 1 − e^{−3e4 s}
    f64 = _linear_field([[-3e4]], [3e4], dtype=np.float64)
    ys = odeint(f64, np.zeros(1), t)
    np.testing.assert_allclose(ys[-1], [1.0], rtol=1e-6)


def test_a_float64_underflow_keeps_the_blow_up_hint():
    f = nn.Sequential(nn.Cube(), nn.Linear(1, 1))
    f.params[:] = [1.0, 0.0]                           # y' = y³ blows up at t = 1/2
    with pytest.raises(StepSizeUnderflowError) as err:
        odeint(f, np.array([1.0]), [0.0, 1.0])
    assert type(err.value) is StepSizeUnderflowError and "blow up" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Messages for t and y0.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_complex_or_ragged_times_and_ragged_y0_are_named(backend):
    f = _linear_field([[-1.0, 0.0], [0.0, -1.0]], [0.0, 0.0])
    y0 = np.ones(2)
    with pytest.raises(TypeError, match=r"^t must hold real numbers.*complex.*t\.real"):
        odeint(f, y0, np.array([0.0, 1.0 + 0.0j]), backend=backend)
    with pytest.raises(TypeError, match=r"^t must hold real numbers.*dtype <U"):
        odeint(f, y0, ["0", "1"], backend=backend)
    with pytest.raises(ValueError, match=r"^t must be a 1-D array of times, got a ragged"):
        odeint(f, y0, [[0.0, 1.0], [2.0]], backend=backend)
    with pytest.raises(ValueError, match=r"^y0 must be a rectangular array.*rows must have "
                                         r"equal length, got rows of lengths \[2, 1\]"):
        odeint(f, [[1.0, 2.0], [3.0]], [0.0, 1.0], backend=backend)
    with pytest.raises(ValueError, match=r"^y0 must be a rectangular"):
        odeint_adjoint(f, [[1.0, 2.0], [3.0]], [0.0, 1.0], backend=backend)
