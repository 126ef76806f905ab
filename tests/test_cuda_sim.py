"""The CUDA kernels against the CPU kernels, on the numba-cuda simulator (STYLE.md §17).

The simulator must be switched on before numba is imported, so these tests run in their own
pytest invocation (see .ci/run): ``NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim``. Threads per
block are set small so that several blocks run. Both backends run the same per-trajectory code
(``kernels.rk``), so float64 results agree to rounding (1e-12) and float32 to 1e-5.
"""
import os

import numpy as np
import pytest

from pyode import SolverError, nn, odeint, odeint_adjoint

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                       reason="needs NUMBA_ENABLE_CUDASIM=1 before numba is imported"),
]

F64_TOL = 1e-12
F32_TOL = 1e-5


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    kc = pytest.importorskip("pyode.kernels.cuda")
    monkeypatch.setattr(kc, "THREADS_PER_BLOCK", 2)


def _close(a, b, tol):
    scale = max(float(np.max(np.abs(b))), 1.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def _compare(f, y0, t, tol, **kw):
    """Forward and adjoint on 'cuda' and 'numba'; nfev must match exactly."""
    yc, ic = odeint(f, y0, t, backend="cuda", full_output=True, **kw)
    yn, i_n = odeint(f, y0, t, backend="numba", full_output=True, **kw)
    assert yc.dtype == y0.dtype
    _close(yc, yn, tol)
    np.testing.assert_array_equal(ic.nfev, i_n.nfev)
    g = np.random.default_rng(7).normal(size=yn.shape).astype(y0.dtype)
    gc = odeint_adjoint(f, y0, t, backend="cuda", **kw)[1](g)
    gn = odeint_adjoint(f, y0, t, backend="numba", **kw)[1](g)
    for name in ("y0", "params", "t"):
        _close(getattr(gc, name), getattr(gn, name), tol)
    np.testing.assert_array_equal(gc.info.nfev, gn.info.nfev)


@pytest.mark.parametrize("backward", [False, True])
def test_float64_forward_and_adjoint_match_cpu_kernels(backward):
    f = nn.MLP([2, 6, 2], activation="tanh", input_activation="cube", seed=1)
    y0 = np.random.default_rng(0).uniform(-1, 1, size=(5, 2))
    t = np.array([0.0, 0.3, 0.5, 1.0])
    if backward:
        t = t[::-1].copy()
    _compare(f, y0, t, F64_TOL, rtol=1e-7, atol=1e-9)


def test_float32_forward_and_adjoint_match_cpu_kernels():
    f = nn.MLP([3, 5, 3], activation="softplus", time_input=True, seed=2, dtype=np.float32)
    y0 = np.random.default_rng(1).uniform(-1, 1, size=(4, 3)).astype(np.float32)
    _compare(f, y0, np.array([0.0, 0.4, 1.0]), F32_TOL, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["rk4", "bosh3"])
def test_other_methods_match(method):
    f = nn.MLP([2, 4, 2], activation="sin", seed=3)
    y0 = np.random.default_rng(2).normal(size=(3, 2))
    opts = {"step_size": 0.1} if method == "rk4" else None
    _compare(f, y0, np.array([0.0, 0.25, 0.6]), F64_TOL, method=method, options=opts)


def test_device_arrays_in_and_out():
    from numba import cuda
    f = nn.MLP([2, 4, 2], seed=4)
    y0 = np.random.default_rng(3).normal(size=(4, 2))
    t = np.linspace(0, 1, 3)
    ys_dev = odeint(f, cuda.to_device(y0), t, backend="cuda")
    assert hasattr(ys_dev, "copy_to_host")               # stays on the device
    _close(ys_dev.copy_to_host(), odeint(f, y0, t, backend="numba"), F64_TOL)
    with pytest.raises(TypeError, match="non-contiguous"):
        odeint(f, cuda.to_device(np.ones((4, 4)))[:, :2], t, backend="cuda")
    with pytest.raises(TypeError, match="backend='cuda'"):
        odeint(f, cuda.to_device(y0), t, backend="numba")


def test_failures_raise_the_same_error_as_on_the_cpu():
    f = nn.Sequential(nn.Cube(), nn.Linear(1, 1), seed=0)
    f.params[:] = [5.0, 0.0]               # dy/dt = 5y³ blows up at t = 0.1 from y0 = 1
    errors = []
    for backend in ("cuda", "numba"):
        with pytest.raises(SolverError) as err:
            odeint(f, np.ones((2, 1)), [0.0, 1.0], backend=backend)
        errors.append(err.value)
    assert type(errors[0]) is type(errors[1])
    assert errors[0].t == pytest.approx(errors[1].t, rel=1e-12)


def test_adjoint_with_device_arrays():
    from numba import cuda
    f = nn.MLP([2, 4, 2], seed=6)
    y0 = np.random.default_rng(5).normal(size=(3, 2))
    t = np.array([0.0, 0.5, 1.0])
    ys_dev, vjp = odeint_adjoint(f, cuda.to_device(y0), t, backend="cuda")
    g_dev = vjp(cuda.to_device(np.ones((3, 3, 2))))
    ys, vjp_host = odeint_adjoint(f, y0, t, backend="numba")
    g = vjp_host(np.ones_like(ys))
    _close(ys_dev.copy_to_host(), ys, F64_TOL)
    _close(g_dev.y0.copy_to_host(), g.y0, F64_TOL)
    _close(g_dev.params, g.params, F64_TOL)
    with pytest.raises(ValueError, match="no CUDA kernel"):
        odeint_adjoint(f, cuda.to_device(y0), t, backend="cuda", adjoint_method="discrete")
    with pytest.raises(TypeError, match="device array"):
        odeint_adjoint(f, cuda.to_device(y0), t, backend="numba", adjoint_method="discrete")


def test_without_time_gradients_the_steps_of_the_numpy_path():
    # As tests/test_time_gradients.py for the CPU kernels: with time_gradients=False a_t leaves
    # the backward error norm, so the steps are those of the NumPy path (which has no a_t).
    f = nn.MLP([2, 16, 2], time_input=True, seed=0)
    y0 = np.random.default_rng(1).normal(size=(8, 2))
    t = np.linspace(0.0, 1.0, 6)
    w = np.random.default_rng(11).normal(size=(6, 8, 2))
    kw = dict(rtol=1e-9, atol=1e-11, time_gradients=False)
    gc = odeint_adjoint(f, y0, t, backend="cuda", **kw)[1](w)
    gn = odeint_adjoint(f, y0, t, backend="numba", **kw)[1](w)
    ref = odeint_adjoint(f, y0, t, backend="numpy", **kw)[1](w)
    assert gc.t is None and gn.t is None
    np.testing.assert_array_equal(gc.info.nfev, gn.info.nfev)
    np.testing.assert_array_equal(gc.info.n_accepted, ref.info.n_accepted)
    np.testing.assert_array_equal(gc.info.n_rejected, ref.info.n_rejected)
    for name in ("y0", "params"):
        _close(getattr(gc, name), getattr(gn, name), F64_TOL)
