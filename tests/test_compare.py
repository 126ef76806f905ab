"""``pyode.compare_gradients``: the side-by-side table of the gradient methods.

The numbers in the table are checked against what they claim to be: errors against a closed
form, evaluation counts against the solves' own statistics, and a failing method against the
problem known to break it (tolerances as in test_gradient_methods.py's docstring).
"""
import numpy as np
import pytest

from problems import Exponential, FastSlow, LotkaVolterra
from pyode import compare_gradients, losses, odeint, odeint_adjoint
from pyode.adjoint import ADJOINT_METHODS

C_GLOBAL = 100.0


def _sum_loss(ys):
    return float(np.sum(ys)), np.ones_like(ys)


def test_errors_against_a_closed_form_and_the_counts():
    # y' = λy, L = Σ_i y(t_i) = Σ_i y0 e^{λ(t_i − t0)}: dL/dy0 = Σ e^{λ(t_i−t0)},
    # dL/dλ = Σ (t_i − t0) y0 e^{λ(t_i−t0)}, dL/dt_i = λ y(t_i) (i ≥ 1), dL/dt0 = −Σ_{i≥1} λ y(t_i).
    lam, y0, t = -0.7, 2.0, np.array([0.0, 0.4, 1.1, 2.0])
    y = y0 * np.exp(lam * t)
    reference = {"y0": np.array([np.sum(y) / y0]), "params": np.array([np.sum(t * y)]),
                 "t": np.concatenate([[-lam * np.sum(y[1:])], lam * y[1:]])}
    f = Exponential(lam)
    rtol = 1e-9
    res = compare_gradients(f, [y0], t, _sum_loss, rtol=rtol, atol=1e-11, backend="numpy",
                            reference=reference, verbose=False)
    assert [r["method"] for r in res.rows] == list(ADJOINT_METHODS)
    for r in res.rows:
        assert r["error"] is None and r["warnings"] == []
        assert r["err"] == max(r["err_y0"], r["err_params"], r["err_t"])
        assert r["err"] <= C_GLOBAL * rtol, r            # the continuous gradient, C·rtol
        assert r["time_s"] > 0 and r["peak_kib"] > 0
        g = res.gradients[r["method"]]
        assert r["nfev_backward"] == g.info.nfev and r["nfev_forward"] == g.forward_info.nfev
    # The forward solve of backsolve, checkpoint and discrete is odeint's.
    _, info = odeint(f, [y0], t, rtol=rtol, atol=1e-11, backend="numpy", full_output=True)
    for m in ("backsolve", "checkpoint", "discrete"):
        assert res.row(m)["nfev_forward"] == info.nfev
    assert res.value == pytest.approx(np.sum(y), rel=C_GLOBAL * rtol)


def test_finite_differences_by_default_and_the_table(capsys):
    f = LotkaVolterra()
    theta = f.params.copy()
    target = np.zeros((3, 2))
    res = compare_gradients(f, [10.0, 5.0], [0.0, 0.5, 1.2], lambda ys: losses.mse(ys, target),
                            methods=["backsolve", ("backsolve", {"norm": "seminorm"}),
                                     ("checkpoint", {"checkpoint_every": 4}), "forward"],
                            rtol=1e-9, atol=1e-11, backend="numpy")
    np.testing.assert_array_equal(f.params, theta)        # the differences restored θ
    out = capsys.readouterr().out
    assert out.strip() == str(res).strip()                # verbose=True prints the table
    labels = ["backsolve", "backsolve(norm=seminorm)", "checkpoint(checkpoint_every=4)",
              "forward"]
    assert [r["method"] for r in res.rows] == labels
    lines = str(res).splitlines()
    assert lines[0].startswith("Gradient methods on LotkaVolterra")
    assert lines[1].split()[:4] == ["method", "err", "y0", "err"]
    for label, line in zip(labels, lines[3:]):
        assert line.split()[0] == label
    # The reference is the central difference of an rtol 1e-10 solve: agreement to 1e-5
    # (test_adjoint.py's FD_RTOL, derived there).
    for r in res.rows:
        assert r["err"] <= 1e-5, r
    # The errors are those of the gradients against the stored reference.
    g = res.gradients["forward"].params
    ref = res.reference["params"]
    assert res.row("forward")["err_params"] == pytest.approx(
        np.max(np.abs(g - ref)) / np.max(np.abs(ref)), rel=1e-12)
    with pytest.raises(KeyError, match="no method 'discrete'"):
        res.row("discrete")


def test_dissipative_problem_shows_the_backsolve_failure():
    # The fast–slow cascade (test_gradient_methods.py): backsolve warns and is wrong; the
    # others are right. The table says so.
    f = FastSlow(20.0, 1.0)

    def loss(ys):
        g = np.zeros_like(ys)
        g[-1, 1] = 1.0
        return ys[-1, 1], g

    d_y0, d_params = f.gradients(np.array([1.0, 1.0]), 2.0)
    res = compare_gradients(f, [1.0, 1.0], [0.0, 2.0], loss, backend="numpy", verbose=False,
                            reference={"y0": d_y0, "params": d_params})
    back = res.row("backsolve")
    assert back["warnings"] == ["AdjointReconstructionWarning"] and back["err_params"] > 1.0
    assert np.isnan(back["err_t"])                         # no t reference given
    assert "AdjointReconstructionWarning" in str(res)
    for m in ("checkpoint", "discrete", "forward"):
        assert res.row(m)["err"] <= 1e-3 and res.row(m)["warnings"] == []


def test_a_failing_method_gets_a_row():
    # With k = 200 the backsolve reconstruction grows like e^{200 (4 − t)} going backward and
    # its steps shrink with it: it runs out of max_num_steps (500; the forward solve needs
    # 308), which the table reports while the other methods go on.
    f = FastSlow(200.0, 1.0)
    res = compare_gradients(f, [1.0, 1.0], [0.0, 4.0], _sum_loss, backend="numpy",
                            options={"max_num_steps": 500}, methods=["backsolve", "forward"],
                            verbose=False, reference={"params": np.zeros(2)})
    back = res.row("backsolve")
    assert back["error"].startswith("TooManyStepsError") and np.isnan(back["err"])
    assert "backsolve" not in res.gradients
    assert "failed: TooManyStepsError" in str(res)
    assert res.row("forward")["error"] is None


def test_argument_errors():
    f = LotkaVolterra()
    with pytest.raises(TypeError, match="loss must be callable"):
        compare_gradients(f, [1.0, 1.0], [0.0, 1.0], "mse", verbose=False)
    with pytest.raises(ValueError, match="dL/dys of shape"):
        compare_gradients(f, [1.0, 1.0], [0.0, 1.0], lambda ys: (0.0, np.ones(3)),
                          verbose=False)
    with pytest.raises(ValueError, match=r"must return \(value, dL/dys\)"):
        compare_gradients(f, [1.0, 1.0], [0.0, 1.0], lambda ys: 0.0, verbose=False)
    with pytest.raises(TypeError, match="each entry of methods"):
        compare_gradients(f, [1.0, 1.0], [0.0, 1.0], _sum_loss, methods=[("backsolve",)],
                          verbose=False, reference={})
    with pytest.raises(ValueError, match="adjoint_method='adjoint' is not known"):
        compare_gradients(f, [1.0, 1.0], [0.0, 1.0], _sum_loss, methods=["adjoint"],
                          verbose=False, reference={})


def test_the_table_lines_up_with_a_batch_and_an_nn_field():
    # Batch y0, sums over samples in the counts; the nn backsolve runs on the kernels.
    from pyode import nn
    f = nn.MLP([2, 3, 2], seed=0)
    y0 = np.array([[0.5, 0.1], [0.2, -0.3]])
    res = compare_gradients(f, y0, [0.0, 0.5], _sum_loss, methods=["backsolve", "discrete"],
                            verbose=False)
    ys, vjp = odeint_adjoint(f, y0, [0.0, 0.5])
    g = vjp(np.ones_like(ys))
    assert res.row("backsolve")["nfev_backward"] == int(np.sum(g.info.nfev))
    widths = {len(line) for line in str(res).splitlines()[1:3]}
    assert len(widths) == 1                               # header and rule line up


def _example_module():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "gradient_methods.py"
    spec = importlib.util.spec_from_file_location("gradient_methods_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_fields_are_right():
    # The example's fields implement the protocol by hand: check them as the zoo's are
    # (dot-product identities to rounding, central differences with h = 1e-6 to 1e-6).
    ex = _example_module()
    rng = np.random.default_rng(0)
    for f in (ex.Cascade(), ex.CubicSpiral([[-0.1, 2.0], [-2.0, -0.1]])):
        y, u, v = rng.normal(size=(3, 4, 2))
        w = rng.normal(size=f.params.size)
        Ju, Jw = f.jvp(0.0, y, u), f.jvp_params(0.0, y, w)
        vy, vth, vt = f.vjp(0.0, y, v)
        assert abs(np.sum(v * Ju) - np.sum(vy * u)) <= 1e-12 * np.sum(np.abs(v * Ju))
        assert abs(np.sum(v * Jw) - vth @ w) <= 1e-12 * np.sum(np.abs(v * Jw))
        h = 1e-6
        np.testing.assert_allclose(Ju, (f(0.0, y + h * u) - f(0.0, y - h * u)) / (2 * h),
                                   rtol=1e-6, atol=1e-6)
        theta = f.params.copy()
        f.params[:] = theta + h * w
        up = f(0.0, y)
        f.params[:] = theta - h * w
        down = f(0.0, y)
        f.params[:] = theta
        np.testing.assert_allclose(Jw, (up - down) / (2 * h), rtol=1e-6, atol=1e-6)
    # The cascade's closed form is the zoo's FastSlow (itself checked against DOP853 and FD).
    d_y0, d_params = ex.Cascade(20.0, 1.0).exact_gradients(np.array([1.0, 1.0]), 2.0)
    z_y0, z_params = FastSlow(20.0, 1.0).gradients(np.array([1.0, 1.0]), 2.0)
    np.testing.assert_allclose(d_y0, z_y0, rtol=1e-14)
    np.testing.assert_allclose(d_params, z_params, rtol=1e-14)


@pytest.mark.slow
def test_example_runs_and_writes_its_plots(tmp_path):
    # About half a minute: the --quick sweep of examples/gradient_methods.py.
    import subprocess
    import sys
    pytest.importorskip("matplotlib")
    ex = _example_module()
    res = subprocess.run([sys.executable, ex.__file__, "--quick", "--out", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("gradient_methods_error.png", "gradient_methods_memory.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        assert str(tmp_path / name) in res.stdout
    assert res.stdout.count("AdjointReconstructionWarning") == 2   # dissipative backsolves


class _CopyParams(Exponential):
    """y' = λy whose ``params`` property returns a copy of θ (the mistake under test)."""

    def __init__(self, rate):
        self._theta = np.array([rate], dtype=np.float64)

    @property
    def params(self):
        return self._theta.copy()


class _CopyParamsWithSetter(_CopyParams):
    """The same, with a setter: ``f.params = θ`` is how its parameters change."""

    @_CopyParams.params.setter
    def params(self, value):
        self._theta = np.array(value, dtype=np.float64).reshape(-1)


def _decay_reference(lam, y0, t):
    """dL/dλ of L = Σ_i y(t_i) for y' = λy (test_errors_against_a_closed_form_...)."""
    return np.array([np.sum(t * y0 * np.exp(lam * t))])


def test_params_returning_a_copy_is_refused_with_the_fix():
    # The differences wrote into the copy, perturbed nothing and reported the adjoint as
    # ~100 % wrong; now the write is checked and the message says what to change.
    with pytest.raises(TypeError, match=r"_CopyParams\.params returns a copy.*setter"):
        compare_gradients(_CopyParams(-0.7), [2.0], [0.0, 0.4, 1.1], _sum_loss,
                          methods=["backsolve"], backend="numpy", verbose=False)


def test_params_returning_a_copy_goes_through_the_setter():
    f, t = _CopyParamsWithSetter(-0.7), np.array([0.0, 0.4, 1.1])
    res = compare_gradients(f, [2.0], t, _sum_loss, methods=["backsolve"], rtol=1e-9,
                            atol=1e-11, backend="numpy", verbose=False)
    # central differences of rtol 1e-10 solves: 1e-5 (test_adjoint.py's FD_RTOL)
    np.testing.assert_allclose(res.reference["params"], _decay_reference(-0.7, 2.0, t),
                               rtol=1e-5)
    assert res.row("backsolve")["err_params"] <= 1e-5
    np.testing.assert_array_equal(f.params, [-0.7])          # restored


class _NoJvpParams(Exponential):
    """y' = λy with vjp and jvp but no jvp_params: every method but "forward" applies."""

    jvp_params = None


def test_a_method_the_field_cannot_run_is_skipped_with_the_reason():
    # compare_gradients raised odeint_adjoint's TypeError from inside its loop, and the
    # table of the other three methods was lost.
    t = np.array([0.0, 0.4, 1.1])
    res = compare_gradients(_NoJvpParams(-0.7), [2.0], t, _sum_loss, rtol=1e-9, atol=1e-11,
                            backend="numpy", verbose=False,
                            reference={"params": _decay_reference(-0.7, 2.0, t)})
    fwd = res.row("forward")
    assert fwd["skipped"] == "forward needs jvp, jvp_params; _NoJvpParams has no jvp_params"
    assert fwd["error"] is None and np.isnan(fwd["err"]) and np.isnan(fwd["nfev_forward"])
    assert "forward" not in res.gradients
    assert "skipped: forward needs jvp, jvp_params" in str(res)
    for m in ("backsolve", "checkpoint", "discrete"):
        assert res.row(m)["skipped"] is None and res.row(m)["err_params"] <= C_GLOBAL * 1e-9


def test_a_misspelt_reference_key_is_refused():
    # {"param": ...} was ignored: err_params came out NaN ("not compared") without a word.
    f = Exponential(-0.7)
    with pytest.raises(ValueError, match=r"reference has an unknown key 'param': did you mean "
                                         r"'params'\? its keys are 'y0' .*'params' .*'t' "):
        compare_gradients(f, [2.0], [0.0, 1.0], _sum_loss, backend="numpy", verbose=False,
                          reference={"y0": np.ones(1), "param": np.ones(1)})
    with pytest.raises(ValueError, match=r"unknown key 'theta': its keys are"):
        compare_gradients(f, [2.0], [0.0, 1.0], _sum_loss, verbose=False,
                          reference={"theta": np.ones(1)})
    with pytest.raises(TypeError, match="reference must be a dict .* got list"):
        compare_gradients(f, [2.0], [0.0, 1.0], _sum_loss, verbose=False,
                          reference=[np.ones(1)])
