"""The checkpointed adjoint on the Numba kernels against its readable NumPy path.

``odeint_adjoint(f, y0, t, adjoint_method="checkpoint")`` with an nn field runs the kernel
hook of ``pyode.checkpoint`` (``kernels.rk.checkpoint_forward_nn`` / ``checkpoint_nn``);
``backend="numpy"`` runs ``pyode.checkpoint.checkpoint_pass``. Both run one algorithm step for
step — the same forward steps recorded, the same segments replayed from their checkpoints with
the recorded step sizes, the same dense output, the same adjoint steps — so they agree to
rounding (1e-10 relative in float64, as in test_kernels.py) and count the same evaluations:
replays, adjoint stages and g·f (STYLE.md §12, a naive oracle).
"""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from problems import FastSlow
from pyode import AdjointReconstructionWarning, SolverError, nn, odeint_adjoint
from pyode.checkpoint import checkpoint_pass
from pyode.backends import numba_cpu as rk
from pyode.solvers import MAX_FACTOR, SAFETY, batch_field, check_options, integrate
from pyode.tableaus import get_tableau
from pyode.trajectory import StepRecorder
from test_adjoint import assert_close_to
from test_kernels import KERNEL_RTOL, _blowing_up_field, _close, fields

C_GLOBAL = 100.0          # global-error constant of the solver tests (test_gradient_methods.py)
STATS = ("nfev", "n_accepted", "n_rejected")


def _checkpoint(f, y0, t, g, backend, **kw):
    ys, vjp = odeint_adjoint(f, y0, t, adjoint_method="checkpoint", backend=backend, **kw)
    return ys, vjp(g)


def _assert_same(kernel, numpy, rtol=KERNEL_RTOL):
    """Outputs and gradients to ``rtol``; the forward and backward counts exactly."""
    (yk, gk), (yn, gn) = kernel, numpy
    _close(yk, yn, rtol)
    for part in ("y0", "params", "t"):
        _close(getattr(gk, part), getattr(gn, part), rtol)
    for name in STATS:
        np.testing.assert_array_equal(getattr(gk.info, name), getattr(gn.info, name))
        np.testing.assert_array_equal(getattr(gk.forward_info, name),
                                      getattr(gn.forward_info, name))


@settings(max_examples=10, deadline=None)
@given(f=fields, batch=st.integers(1, 3), backward=st.booleans(),
       method=st.sampled_from(["dopri5", "bosh3"]), every=st.sampled_from([1, 3]),
       norm=st.sampled_from(["rms", "seminorm"]), data=st.data())
def test_kernels_match_numpy_path(f, batch, backward, method, every, norm, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    y0 = rng.uniform(-1, 1, size=(batch, f.n_in))
    t = np.linspace(0.0, 1.0, 4)
    if backward:
        t = t[::-1] + 0.5
    g = rng.normal(size=(t.size,) + y0.shape)
    kw = dict(method=method, rtol=1e-8, atol=1e-10,
              adjoint_options={"checkpoint_every": every, "norm": norm})
    try:
        kernel = _checkpoint(f, y0, t, g, "numba", **kw)
    except SolverError as err_k:      # e.g. a cube field that blows up: both paths must agree
        with pytest.raises(type(err_k)) as err_n:
            _checkpoint(f, y0, t, g, "numpy", **kw)
        assert err_n.value.t == pytest.approx(err_k.t, rel=1e-9, abs=1e-12)
        return
    _assert_same(kernel, _checkpoint(f, y0, t, g, "numpy", **kw))


@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_fixed_step_methods_match_numpy_path(method, every):
    # No dense output of their own: y(t) is the cubic Hermite interpolant of the replayed steps.
    f = nn.MLP([3, 8, 3], activation="softplus", time_input=True, seed=3)
    y0 = np.random.default_rng(0).normal(size=(2, 3))
    t = np.array([0.0, 0.3, 0.35, 1.0])
    g = np.random.default_rng(1).normal(size=(4, 2, 3))
    kw = dict(method=method, options={"step_size": 0.07},
              adjoint_options={"checkpoint_every": every})
    _assert_same(_checkpoint(f, y0, t, g, "numba", **kw), _checkpoint(f, y0, t, g, "numpy", **kw))


def test_one_dimensional_state_backward_in_time_with_options():
    f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=0)
    y0, t = np.array([2.0, 0.0]), np.linspace(2.0, 0.0, 7)
    kw = dict(options={"first_step": 1e-3, "max_num_steps": 10_000})
    g = np.random.default_rng(2).normal(size=(7, 2))
    kernel = _checkpoint(f, y0, t, g, "auto", **kw)
    assert kernel[1].y0.shape == (2,) and isinstance(kernel[1].info.nfev, int)
    _assert_same(kernel, _checkpoint(f, y0, t, g, "numpy", **kw))


def test_auto_backend_runs_the_kernel_hook(monkeypatch):
    calls = []

    def spy(name):
        hook = getattr(rk, name)

        def counted(*args, **kwargs):
            calls.append(name)
            return hook(*args, **kwargs)
        return counted

    for name in ("checkpoint_forward_nn", "checkpoint_nn"):
        monkeypatch.setattr(rk, name, spy(name))
    f = nn.MLP([2, 8, 2], seed=1)
    ys, vjp = odeint_adjoint(f, np.ones((2, 2)), [0.0, 1.0], adjoint_method="checkpoint")
    vjp(np.ones_like(ys))
    assert calls == ["checkpoint_forward_nn", "checkpoint_nn"]


# ---------------------------------------------------------------------------------------------
# The record and the replay slots.
# ---------------------------------------------------------------------------------------------

def _spiral_problem(method="dopri5", every=1):
    f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=0)
    tab = get_tableau(method)
    opts = check_options({"step_size": 0.1} if method == "rk4" else None, tab)
    y0, t = np.array([[2.0, 0.0], [1.0, 1.0], [0.1, -0.3]]), np.linspace(0.0, 3.0, 5)
    ys, stats, record = rk.checkpoint_forward_nn(f, y0, t, tab, 1e-7, 1e-9, opts, every)
    g = np.random.default_rng(3).normal(size=ys.shape)
    return f, y0, t, tab, opts, ys, stats, record, g


@pytest.mark.parametrize("method, every", [("dopri5", 1), ("bosh3", 3), ("rk4", 2)])
def test_record_is_the_numpy_recorders_and_serves_the_numpy_pass(method, every):
    # The steps pyode.trajectory.StepRecorder keeps on the NumPy path, and the NumPy backward
    # pass run on the kernel's record (through record.sample) gives the kernel's gradient with
    # the kernel's counts.
    #
    # Fixed steps agree to rounding. Adaptive step sizes agree to the controller's sensitivity
    # to rounding: h_next ∝ ‖err‖^(−1/(q+1)), and ‖err‖, a small difference of stage sums in
    # units of rtol·|y|, carries a relative rounding error up to ε / (rtol·‖err‖), largest at
    # the smallest ‖err‖ the controller does not clip, (SAFETY / MAX_FACTOR)^(q+1): dh/h ≤
    # ε / ((q + 1) · rtol · (SAFETY / MAX_FACTOR)^(q+1)) a step (dopri5 7e-5, bosh3 1e-6;
    # measured 7e-7 and 8e-10). The checkpoints are then states of one solution at times that
    # differ by that: within its global error C·(atol + rtol·|y|).
    f, y0, t, tab, opts, ys, stats, record, g = _spiral_problem(method, every)
    np.testing.assert_array_equal(record.n_steps, stats["n_accepted"])
    ref = StepRecorder(y0.shape[0], every=every)
    integrate(batch_field(f, False, y0.shape), y0, t, tab, 1e-7, 1e-9, opts, on_step=ref)
    if tab.adaptive:
        q = tab.error_order
        dh = np.finfo(float).eps / ((q + 1) * 1e-7 * (SAFETY / MAX_FACTOR) ** (q + 1))
    for b in range(y0.shape[0]):
        mine, theirs = record.sample(b), ref.sample(b)
        assert mine.n_steps == theirs.n_steps and mine.every == theirs.every
        if not tab.adaptive:
            for name in ("t", "h", "t_new", "y"):
                _close(getattr(mine, name), getattr(theirs, name))
            continue
        np.testing.assert_allclose(mine.h, theirs.h, rtol=dh, atol=0)
        span = np.sum(np.abs(theirs.h))
        for name in ("t", "t_new"):
            np.testing.assert_allclose(getattr(mine, name), getattr(theirs, name), rtol=0,
                                       atol=dh * span)
        scale = 1e-9 + 1e-7 * np.abs(theirs.y)
        assert np.all(np.abs(mine.y - theirs.y) <= C_GLOBAL * scale)
    a, a_theta, dLdt, st_k = rk.checkpoint_nn(f, ys, g, t, tab, record, 1e-7, 1e-9, opts)
    a_theta = a_theta.sum(axis=0)                  # per sample; checkpoint_pass sums them
    a_n, a_theta_n, dLdt_n, st_n = checkpoint_pass(f, ys, g, t, tab, record, 1e-7, 1e-9, opts)
    for mine, theirs in ((a, a_n), (a_theta, a_theta_n), (dLdt, dLdt_n)):
        _close(mine, theirs)
    for name in STATS:
        np.testing.assert_array_equal(st_k[name], st_n[name])


def test_samples_beyond_the_first_record_pass_are_recorded_again(monkeypatch):
    # Room for fewer steps than some samples take: those are solved once more with room for
    # all; the record (and so the gradient) is that of a single pass with room enough.
    f, y0, t, tab, opts, ys, stats, record, g = _spiral_problem()
    room = 10
    assert record.n_steps.min() < room < record.n_steps.max()
    monkeypatch.setattr(rk, "RECORD_STEPS", room)
    ys_2, stats_2, record_2 = rk.checkpoint_forward_nn(f, y0, t, tab, 1e-7, 1e-9, opts, 1)
    np.testing.assert_array_equal(ys_2, ys)
    np.testing.assert_array_equal(stats_2["nfev"], stats["nfev"])
    np.testing.assert_array_equal(record_2.n_steps, record.n_steps)
    np.testing.assert_array_equal(record_2.steps, record.steps)
    np.testing.assert_array_equal(record_2.y, record.y)
    assert record.steps.shape[2] == record.n_steps.max()       # trimmed to the longest sample


def test_few_replay_slots_give_the_same_gradient_at_more_evaluations():
    # An evicted segment is replayed again when needed: the very same values (bit for bit),
    # one more replay each time.
    f, y0, t, tab, opts, ys, stats, record, g = _spiral_problem()
    full = rk.checkpoint_nn(f, ys, g, t, tab, record, 1e-7, 1e-9, opts)
    one = rk.checkpoint_nn(f, ys, g, t, tab, record, 1e-7, 1e-9, opts, n_slots=1)
    for mine, theirs in zip(one[:3], full[:3]):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(one[3]["n_accepted"], full[3]["n_accepted"])
    assert np.all(one[3]["nfev"] >= full[3]["nfev"]) and np.any(one[3]["nfev"] > full[3]["nfev"])


# ---------------------------------------------------------------------------------------------
# float32, dissipative dynamics, failures, NUMBA_DISABLE_JIT.
# ---------------------------------------------------------------------------------------------

def test_float32_kernels_stay_float32_and_match_float64():
    # rtol 1e-5 is ~100 float32 ulps; the gradient errs by C·rtol ≲ 1e-3 relative (as
    # test_gradient_methods.test_float32_in_float32_out).
    f32 = nn.MLP([2, 16, 2], activation="tanh", time_input=True, seed=2, dtype=np.float32)
    f64 = nn.MLP([2, 16, 2], activation="tanh", time_input=True, seed=2)
    y0 = np.random.default_rng(1).normal(size=(3, 2))
    t = np.linspace(0.0, 1.0, 5)
    g = np.random.default_rng(2).normal(size=(5, 3, 2))
    kw = dict(rtol=1e-5, atol=1e-6, adjoint_options={"checkpoint_every": 2})
    ys32, g32 = _checkpoint(f32, y0.astype(np.float32), t, g.astype(np.float32), "numba", **kw)
    ys64, g64 = _checkpoint(f64, y0, t, g, "numpy", rtol=1e-10, atol=1e-12)
    assert ys32.dtype == g32.y0.dtype == g32.params.dtype == np.float32
    assert_close_to(ys32, ys64, 1e-4)
    for part in ("y0", "params", "t"):
        assert_close_to(getattr(g32, part), getattr(g64, part), 1e-3)


def test_dissipative_cascade_backsolve_warns_checkpoint_on_kernels_is_right():
    # The fast–slow cascade of problems.FastSlow as an nn field: Linear(2, 2) with
    # W = [[−k, 0], [1, −θ]] (negative definite part −k = −20), b = 0, L = v(2). Backsolve
    # re-integrates u backward from u(2) ≈ e^{−40}, whose absolute error grows by e^{40}: it
    # warns and its θ-gradient is off by orders of magnitude. The checkpointed adjoint on the
    # kernels reads y(t) from the forward solution: within C·rtol (1e-5 relative) of the closed
    # forms (FastSlow.gradients for W₀₀ = −k and W₁₁ = −θ; dv/dW₁₀ = ∫ e^{−θ(T−t)} u dt = q u₀,
    # dv/db₁ = (1 − e^{−θT})/θ, dv/db₀ = ((1 − e^{−θT})/θ − (1 − e^{−kT})/k)/(k − θ)), and to
    # rounding of the NumPy path (W₀₁ has no short closed form; it is checked there).
    k, theta, T = 20.0, 1.0, 2.0
    f = nn.Sequential(nn.Linear(2, 2), seed=0)
    f.params[:] = [-k, 0.0, 1.0, -theta, 0.0, 0.0]
    y0, t = np.array([1.0, 1.0]), [0.0, T]
    w = np.array([[0.0, 0.0], [0.0, 1.0]])
    kw = dict(rtol=1e-7, atol=1e-9)
    d_y0, (d_k, d_theta) = FastSlow(k, theta).gradients(y0, T)
    q = d_y0[0]
    b1 = -np.expm1(-theta * T) / theta
    b0 = (b1 + np.expm1(-k * T) / k) / (k - theta)
    _, back = odeint_adjoint(f, y0, t, **kw)               # backsolve, on the kernels
    with pytest.warns(AdjointReconstructionWarning, match="checkpoint"):
        g_back = back(w)
    assert abs(g_back.params[3] + d_theta) > abs(d_theta)     # wrong by more than 100 %
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdjointReconstructionWarning)
        kernel = _checkpoint(f, y0, t, w, "auto", **kw)
    g = kernel[1]
    assert_close_to(g.y0, d_y0, C_GLOBAL * kw["rtol"])
    for index, want in ((0, -d_k), (3, -d_theta), (2, q * y0[0]), (4, b0), (5, b1)):
        assert abs(g.params[index] - want) <= C_GLOBAL * kw["rtol"] * abs(want), index
    _assert_same(kernel, _checkpoint(f, y0, t, w, "numpy", **kw))


def test_solver_failures_raise_like_the_numpy_path():
    f = _blowing_up_field()             # blows up at t = 0.1
    errors = []
    for backend in ("numba", "numpy"):
        with pytest.raises(SolverError) as err:
            odeint_adjoint(f, np.array([1.0]), [0.0, 1.0], adjoint_method="checkpoint",
                           backend=backend)
        errors.append(err.value)
    assert type(errors[0]) is type(errors[1])
    assert errors[0].t == pytest.approx(errors[1].t, rel=1e-12)


SCRIPT = textwrap.dedent("""
    import json, numpy as np, numba
    from pyode import nn, odeint_adjoint
    f = nn.MLP([2, 6, 2], activation="tanh", time_input=True, seed=4)
    y0, t = np.array([[0.3, -0.2], [1.0, 0.5]]), np.array([0.0, 0.2, 0.5])
    out = {"jit_disabled": bool(numba.config.DISABLE_JIT)}
    for backend in ("numba", "numpy"):
        ys, vjp = odeint_adjoint(f, y0, t, backend=backend, rtol=1e-8, atol=1e-10,
                                 adjoint_method="checkpoint",
                                 adjoint_options={"checkpoint_every": 2})
        g = vjp(np.ones_like(ys))
        out[backend] = [ys.tolist(), g.y0.tolist(), g.params.tolist(), g.t.tolist(),
                        g.info.nfev.tolist()]
    print(json.dumps(out))
""")


def test_checkpoint_kernels_run_with_jit_disabled(tmp_path):
    # The flag is read when numba is imported: a fresh interpreter (as test_nojit.py).
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["jit_disabled"]
    for k in range(4):          # the kernels as plain Python against the NumPy path
        np.testing.assert_allclose(out["numba"][k], out["numpy"][k], rtol=1e-10, atol=1e-12)
    assert out["numba"][4] == out["numpy"][4]
