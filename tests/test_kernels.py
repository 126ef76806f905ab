"""The Numba kernels against the readable NumPy path (STYLE.md §12: a naive oracle).

Both paths run the same algorithm step for step, so on the same problem they take the same
steps (identical nfev) and agree to rounding: 1e-10 relative in float64.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pyode import NonFiniteError, SolverError, TooManyStepsError, nn, odeint, odeint_adjoint
from pyode.nn import ACTIVATIONS

KERNEL_RTOL = 1e-10      # rounding-level agreement of two implementations of one algorithm


def _close(a, b, rtol=KERNEL_RTOL):
    scale = max(np.max(np.abs(b)), 1.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def _both(f, y0, t, **kw):
    yk, ik = odeint(f, y0, t, full_output=True, backend="numba", **kw)
    yn, i_n = odeint(f, y0, t, full_output=True, backend="numpy", **kw)
    return yk, ik, yn, i_n


def _grads(f, y0, t, g, **kw):
    out = []
    for backend in ("numba", "numpy"):
        ys, vjp = odeint_adjoint(f, y0, t, backend=backend, **kw)
        out.append((ys, vjp(g)))
    return out


fields = st.builds(
    lambda widths, act, time_input, seed: nn.MLP(widths + widths[:1], activation=act,
                                                 time_input=time_input, seed=seed),
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    # relu's kink makes the error estimates erratic (many rejections), so rounding differences
    # grow beyond rounding level there: it has its own test below.
    act=st.sampled_from(sorted(set(ACTIVATIONS) - {"relu"})),
    time_input=st.booleans(),
    seed=st.integers(0, 2**16))


@settings(max_examples=15, deadline=None)
@given(f=fields, batch=st.integers(1, 4), backward=st.booleans(),
       method=st.sampled_from(["dopri5", "bosh3"]), data=st.data())
def test_forward_and_adjoint_match_numpy_path(f, batch, backward, method, data):
    D = f.n_in
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    y0 = rng.uniform(-1, 1, size=(batch, D))
    t = np.linspace(0.0, 1.0, 4)
    if backward:
        t = t[::-1] + 0.5
    tol = dict(method=method, rtol=1e-8, atol=1e-10)
    g = rng.normal(size=(t.size,) + y0.shape)
    try:
        yk, ik, yn, i_n = _both(f, y0, t, **tol)
        _grads(f, y0, t, g, **tol)
    except SolverError as err_k:      # e.g. a cube field that blows up: both paths must agree
        with pytest.raises(type(err_k)) as err_n:
            yn = odeint(f, y0, t, backend="numpy", **tol)
            odeint_adjoint(f, y0, t, backend="numpy", **tol)[1](g)
        assert err_n.value.t == pytest.approx(err_k.t, rel=1e-9, abs=1e-12)
        return
    _close(yk, yn)
    np.testing.assert_array_equal(ik.nfev, i_n.nfev)
    (_, gk), (_, gn) = _grads(f, y0, t, g, **tol)
    _close(gk.y0, gn.y0)
    _close(gk.params, gn.params)
    _close(gk.t, gn.t)
    np.testing.assert_array_equal(gk.info.nfev, gn.info.nfev)


def test_relu_field_matches_numpy_path_to_tolerance():
    # With a kink in f, rounding differences are amplified by nearly singular step-size
    # decisions: the paths may accept or reject a step differently near a kink (here sample 2's
    # backward solve: 21 against 20 rejections). Each is then its own solution within the
    # tolerances, and two such solutions differ by up to their global errors, a small multiple
    # of rtol: compare at 10 × rtol.
    f = nn.MLP([2, 3, 2], activation="relu", seed=0)
    y0 = np.random.default_rng(0).uniform(-1, 1, size=(3, 2))
    t = np.linspace(0.0, 1.0, 4)
    tol = dict(rtol=1e-8, atol=1e-10)
    yk, ik, yn, i_n = _both(f, y0, t, **tol)
    _close(yk, yn, rtol=10 * tol["rtol"])
    g = np.random.default_rng(1).normal(size=yk.shape)
    (_, gk), (_, gn) = _grads(f, y0, t, g, **tol)
    for name in ("y0", "params", "t"):
        _close(getattr(gk, name), getattr(gn, name), rtol=10 * tol["rtol"])


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_fixed_step_methods_match_numpy_path(method):
    f = nn.MLP([3, 8, 3], activation="softplus", time_input=True, seed=3)
    y0 = np.random.default_rng(0).normal(size=(2, 3))
    t = np.array([0.0, 0.3, 0.35, 1.0])
    opts = {"step_size": 0.07}
    yk, ik, yn, i_n = _both(f, y0, t, method=method, options=opts)
    _close(yk, yn)
    np.testing.assert_array_equal(ik.nfev, i_n.nfev)
    g = np.ones_like(yk)
    (_, gk), (_, gn) = _grads(f, y0, t, g, method=method, options=opts)
    for name in ("y0", "params", "t"):
        _close(getattr(gk, name), getattr(gn, name))


def test_spiral_model_1d_state_and_options():
    f = nn.MLP([2, 50, 2], activation="tanh", input_activation="cube", seed=0)
    y0 = np.array([2.0, 0.0])
    t = np.linspace(0, 2, 7)
    opts = {"first_step": 1e-3, "max_num_steps": 10_000}
    yk, ik, yn, i_n = _both(f, y0, t, options=opts)
    assert yk.shape == (7, 2) and isinstance(ik.nfev, int)
    _close(yk, yn)
    assert ik.nfev == i_n.nfev
    (_, gk), (_, gn) = _grads(f, y0, t, np.ones_like(yk), options=opts)
    assert gk.y0.shape == (2,)
    _close(gk.params, gn.params)


def test_sample_alone_equals_sample_in_batch():
    f = nn.MLP([2, 16, 2], activation="tanh", seed=5)
    y0 = np.array([[0.1, 0.2], [3.0, -2.0], [-0.5, 0.01]])
    t = np.linspace(0, 3, 5)
    ys, info = odeint(f, y0, t, full_output=True)
    alone, info1 = odeint(f, y0[1], t, full_output=True)
    np.testing.assert_array_equal(ys[:, 1], alone)   # the kernel is per-sample: bit-identical
    assert info.nfev[1] == info1.nfev
    assert len(set(info.nfev.tolist())) > 1          # the samples did take their own steps


def test_float32_kernels_compute_in_float32_and_match():
    f64 = nn.MLP([2, 16, 2], activation="tanh", seed=2)
    f32 = nn.MLP([2, 16, 2], activation="tanh", seed=2, dtype=np.float32)
    y0 = np.random.default_rng(1).normal(size=(3, 2))
    t = np.linspace(0, 1, 5)
    tol = dict(rtol=1e-5, atol=1e-6)
    y32 = odeint(f32, y0.astype(np.float32), t, **tol)
    y64 = odeint(f64, y0, t, **tol)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    ys, vjp = odeint_adjoint(f32, y0.astype(np.float32), t, **tol)
    g32 = vjp(np.ones_like(ys))
    ys, vjp = odeint_adjoint(f64, y0, t, **tol)
    g64 = vjp(np.ones_like(ys))
    assert g32.params.dtype == np.float32
    np.testing.assert_allclose(g32.params, g64.params, rtol=1e-3, atol=1e-4)


def _blowing_up_field():
    """dy/dt ≈ 5 y³ near y = 1: blows up in finite time (about t = 0.1)."""
    f = nn.Sequential(nn.Cube(), nn.Linear(1, 1), seed=0)
    f.params[:] = [5.0, 0.0]
    return f


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_blow_up_raises_the_same_error_on_both_paths(backend):
    f = _blowing_up_field()
    with pytest.raises(SolverError) as err:
        odeint(f, np.array([1.0]), [0.0, 1.0], backend=backend)
    assert abs(err.value.t - 0.1) < 1e-3       # exact blow-up time 1/(2·5·1²) = 0.1
    assert "nfev=" in str(err.value) and "dt=" in str(err.value)


def test_kernel_errors_match_numpy_errors():
    f = _blowing_up_field()
    errors = []
    for backend in ("numba", "numpy"):
        with pytest.raises(SolverError) as err:
            odeint(f, np.array([1.0]), [0.0, 1.0], backend=backend)
        errors.append(err.value)
    assert type(errors[0]) is type(errors[1])
    assert errors[0].t == pytest.approx(errors[1].t, rel=1e-12)
    assert errors[0].nfev == errors[1].nfev


def test_kernel_too_many_steps():
    f = nn.MLP([2, 8, 2], seed=0)
    with pytest.raises(TooManyStepsError, match="max_num_steps"):
        odeint(f, np.ones(2), [0.0, 100.0], options={"max_num_steps": 3})


def test_nonfinite_parameters_raise():
    f = nn.MLP([2, 8, 2], seed=0)
    f.params[0] = np.nan
    with pytest.raises(NonFiniteError):
        odeint(f, np.ones(2), [0.0, 1.0])


def test_numba_backend_rejects_user_fields():
    class Decay:
        params = np.zeros(0)

        def __call__(self, t, y):
            return -y

    with pytest.raises(ValueError, match="backend='numba'"):
        odeint(Decay(), np.ones(2), [0.0, 1.0], backend="numba")


def test_single_sample_runs_on_one_thread_and_restores_the_thread_count():
    # A batch of one runs its parallel kernel on one thread (pyode.backends.numba_cpu
    # .run_kernel); the result must not change and the caller's thread count must come back,
    # also when the solve fails.
    import numba
    f = nn.MLP([2, 8, 2], seed=3)
    y0 = np.array([[0.4, -1.1], [2.0, 0.3]])
    t = np.linspace(0.0, 1.0, 5)
    threads = numba.get_num_threads()
    ys_batch, vjp_batch = odeint_adjoint(f, y0, t)
    ys_one, vjp_one = odeint_adjoint(f, y0[1:], t)
    assert numba.get_num_threads() == threads
    np.testing.assert_array_equal(ys_one[:, 0], ys_batch[:, 1])
    g = np.ones_like(ys_batch)
    np.testing.assert_array_equal(vjp_one(g[:, 1:]).y0[0], vjp_batch(g).y0[1])
    assert numba.get_num_threads() == threads
    with pytest.raises(SolverError):
        odeint(f, y0[:1], t, options={"max_num_steps": 1})
    assert numba.get_num_threads() == threads


def test_built_kernel_data_is_reused_but_sees_params_tolerances_and_alpha():
    # pyode.backends.program.packed caches everything but the parameters; each change below
    # must reach the kernels (compared with a field built fresh, which cannot hit the cache).
    import copy
    f = nn.Sequential(nn.Linear(2, 8), nn.ELU(0.5), nn.Linear(8, 2), seed=4)
    y0 = np.array([[0.7, -0.2], [1.5, 0.9]])
    t = np.linspace(0.0, 2.0, 4)

    def fresh(rtol=1e-7):
        return odeint(copy.deepcopy(f), y0, t, rtol=rtol)

    np.testing.assert_array_equal(odeint(f, y0, t), fresh())
    f.params[:] = f.params * 1.5                       # in place, as an optimiser does
    np.testing.assert_array_equal(odeint(f, y0, t), fresh())
    np.testing.assert_array_equal(odeint(f, y0, t, rtol=1e-4), fresh(rtol=1e-4))
    before = odeint(f, y0, t)
    f.layers[1].alpha = 2.0                            # a layer's scalar parameter
    after = odeint(f, y0, t)
    np.testing.assert_array_equal(after, fresh())
    assert not np.allclose(after, before)              # the change did reach the kernels


def test_subclassed_layers_and_fields_never_run_as_the_builtin_formula():
    # A subclass may compute another function; the kernels would silently run the base
    # class's formula. "auto" must run it on the NumPy path, "numba" must refuse.
    class ScaledTanh(nn.Tanh):
        def forward(self, x, t=None):
            return 2.0 * np.tanh(x)

        def derivative(self, x):
            return 2.0 * (1.0 - np.tanh(x) ** 2)

    class Damped(nn.MLP):
        def __call__(self, t, y):
            return super().__call__(t, y) - 0.5 * y

    y0 = np.array([[0.4, -0.8]])
    t = np.linspace(0.0, 1.0, 3)
    for f in (nn.Sequential(nn.Linear(2, 8), ScaledTanh(), nn.Linear(8, 2), seed=1),
              Damped([2, 8, 2], seed=1)):
        np.testing.assert_array_equal(odeint(f, y0, t), odeint(f, y0, t, backend="numpy"))
        with pytest.raises(ValueError, match="subclass"):
            odeint(f, y0, t, backend="numba")
    plain = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2), seed=1)
    scaled = nn.Sequential(nn.Linear(2, 8), ScaledTanh(), nn.Linear(8, 2), seed=1)
    assert not np.allclose(odeint(plain, y0, t), odeint(scaled, y0, t))


# -- the CPU executor: row chunks on several threads (pyode.backends.numba_cpu.run_kernel) -----


def _all_outputs(f, y0, t, **kw):
    """Every array the three kernels' wrappers produce: forward, backsolve, checkpoint."""
    ys, info = odeint(f, y0, t, full_output=True, **kw)
    ys_a, vjp = odeint_adjoint(f, y0, t, **kw)
    g = vjp(np.ones_like(ys_a))
    ys_c, vjp_c = odeint_adjoint(f, y0, t, adjoint_method="checkpoint", **kw)
    g_c = vjp_c(np.ones_like(ys_c))
    return [ys, info.nfev, ys_a, g.y0, g.params, g.t, ys_c, g_c.y0, g_c.params, g_c.t]


@pytest.mark.parametrize("threads, chunks", [(2, 1), (2, 4), (3, 2), (8, 4), (64, 1)])
def test_row_chunks_on_threads_are_bit_identical_to_one_thread(monkeypatch, threads, chunks):
    # Samples far apart take different step counts, so the chunks differ in cost; every split
    # and thread count must give the serial result exactly (each sample is solved alone by the
    # same serial code; no kernel reduces across samples).
    from pyode.backends import numba_cpu
    f = nn.MLP([2, 16, 2], activation="tanh", seed=5)
    y0 = np.random.default_rng(5).normal(scale=[[0.1, 0.1]] * 13 + [[3.0, 3.0]] * 24)
    t = np.linspace(0.0, 2.0, 6)
    monkeypatch.setattr(numba_cpu, "num_threads", lambda: 1)
    serial = _all_outputs(f, y0, t, rtol=1e-7, atol=1e-9)
    assert len(set(serial[1].tolist())) > 3                  # the samples differ in cost
    monkeypatch.setattr(numba_cpu, "num_threads", lambda: threads)
    monkeypatch.setattr(numba_cpu, "CHUNKS_PER_THREAD", chunks)
    for got, want in zip(_all_outputs(f, y0, t, rtol=1e-7, atol=1e-9), serial):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    one = _all_outputs(f, y0[20:21], t, rtol=1e-7, atol=1e-9)       # a sample alone
    np.testing.assert_array_equal(one[0][:, 0], serial[0][:, 20])
    np.testing.assert_array_equal(one[3][0], serial[3][20])


def test_run_kernel_covers_every_row_once_and_reraises_a_chunk_failure(monkeypatch):
    from pyode.backends import numba_cpu
    monkeypatch.setattr(numba_cpu, "num_threads", lambda: 3)
    monkeypatch.setattr(numba_cpu, "FIRST_CALLS", {})
    hits = np.zeros(50, dtype=np.int64)

    def kernel(out, lo, hi):                  # a plain Python "kernel": rows lo … hi − 1
        out[lo:hi] += 1

    numba_cpu.run_kernel(kernel, np.dtype(np.float64), 50, hits)
    np.testing.assert_array_equal(hits, 1)

    def failing(out, lo, hi):
        if lo <= 37 < hi:
            raise RuntimeError("chunk failed")
        out[lo:hi] += 1

    with pytest.raises(RuntimeError, match="chunk failed"):
        numba_cpu.run_kernel(failing, np.dtype(np.float64), 50, hits)


def test_thread_count_follows_numba_and_starts_no_threading_layer():
    # NUMBA_NUM_THREADS sets it; numba.set_num_threads (which starts Numba's threading layer)
    # lowers it for the calling thread. pyode itself never starts the layer.
    import os
    import subprocess
    import sys
    code = ("import numba, numpy as np\n"
            "from numba.np.ufunc import parallel\n"
            "from pyode import nn, odeint\n"
            "from pyode.backends.numba_cpu import num_threads\n"
            "odeint(nn.MLP([2, 4, 2], seed=0), np.ones((5, 2)), [0.0, 0.5])\n"
            "print(num_threads(), parallel._is_initialized)\n"
            "numba.set_num_threads(1)\n"
            "print(num_threads(), parallel._is_initialized)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, NUMBA_NUM_THREADS="2"), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["2", "False", "1", "True"]
