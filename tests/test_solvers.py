"""The NumPy integrator and ``odeint``: orders, accuracy, per-sample control, statistics, errors.

Tolerances are derived (STYLE.md §15): convergence slopes within 0.3 of the order; adaptive
solutions against references in units of (atol + rtol·|y|); bitwise or few-ulp equalities where
the arithmetic is the same.
"""
import time
import warnings

import numpy as np
import pytest

from problems import ZOO, Exponential, Field, LotkaVolterra, Recording, Rotation, VanDerPol
from pyode.errors import (NonFiniteError, SolverError, StepSizeUnderflowError,
                          TooManyStepsError)
from pyode.solvers import dense_output, integrate_fixed, odeint, rk_step
from pyode.tableaus import METHODS, ButcherTableau

FIXED = tuple(name for name, tab in METHODS.items() if not tab.adaptive)
ADAPTIVE = tuple(name for name, tab in METHODS.items() if tab.adaptive)
SLOPE_MARGIN = 0.3


def solve(f, y0, t, **kw):
    kw.setdefault("backend", "numpy")
    return odeint(f, y0, t, **kw)


# ---------------------------------------------------------------------------------------------
# Small fields for the tests below.
# ---------------------------------------------------------------------------------------------

class Square(Field):
    """dy/dt = y²: y = 1/(1 − t) from y(0) = 1 blows up at t = 1."""

    def __init__(self):
        super().__init__([])

    def _f(self, t, y):
        return y * y


class Zero(Field):
    """dy/dt = 0 exactly."""

    def __init__(self):
        super().__init__([])

    def _f(self, t, y):
        return np.zeros_like(y)


class NaNAfter(Field):
    """dy/dt = −y for t ≤ t_bad and NaN after."""

    def __init__(self, t_bad):
        super().__init__([])
        self.t_bad = t_bad

    def _f(self, t, y):
        return np.where(t[:, None] > self.t_bad, np.nan, -y)


# ---------------------------------------------------------------------------------------------
# 1. Measured order of convergence (fixed steps through the solver's own stage loop).
# ---------------------------------------------------------------------------------------------

def fixed_solve(field, y0, t_out, tab, step_size):
    """The solver's fixed-step loop on one sample; returns ys (T, D)."""
    ev = lambda t, y, rows=None: field(t, y)                                # noqa: E731
    ys, _ = integrate_fixed(ev, np.asarray(y0, dtype=np.float64)[None],
                            np.asarray(t_out, dtype=np.float64), tab, step_size)
    return ys[:, 0]


def measured_slope(hs, errs):
    """Least-squares slope of log(err) against log(h)."""
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


def embedded_tableau(name):
    """The embedded (lower-order) solution b̂ = b − b_err of an adaptive pair, as its own method."""
    tab = METHODS[name]
    return ButcherTableau(name=name + "_embedded", c=tab.c, A=tab.A, b=tab.b - tab.b_err,
                          order=tab.error_order)


CONVERGENCE_CASES = [METHODS[name] for name in FIXED + ADAPTIVE] + \
    [embedded_tableau(name) for name in ADAPTIVE]

# Coarsest step per order: small enough to be in the asymptotic regime, large enough that the
# finest of the four halvings still has an error ≥ 1e-12, a thousand times above rounding.
COARSEST_STEP = {1: 0.02, 2: 0.05, 3: 0.05, 4: 0.1, 5: 0.2}
# Methods whose asymptotic regime starts elsewhere, as (coarsest step, number of steps sizes):
# fehlberg45's order-6 error terms are large next to its order-5 ones (on riccati from h = 0.2
# the error falls as h^5.38, h^5.22, h^5.12, h^5.06 over successive halvings), likewise its
# embedded order-4 solution; tsit5's are so small that from h = 0.2 the first halving gives
# h^3.55, and a fourth halving from 0.1 reaches 3e-14, near rounding — three sizes from 0.1.
COARSEST_STEP_OF = {"fehlberg45": (0.1, 4), "fehlberg45_embedded": (0.05, 4), "tsit5": (0.1, 3)}


@pytest.mark.parametrize("problem", ["linear", "riccati"])
@pytest.mark.parametrize("tab", CONVERGENCE_CASES, ids=lambda tab: tab.name)
def test_convergence_order(tab, problem):
    # linear: dy/dt = My (the matrix exponential) checks the tall-tree conditions; riccati
    # (−θ t y², non-autonomous and nonlinear) the others and the nodes c.
    p = ZOO[problem]()
    T = 1.0
    ref = p.solution([T])[0]
    h0, n = COARSEST_STEP_OF.get(tab.name, (COARSEST_STEP[tab.order], 4))
    hs = h0 / 2.0 ** np.arange(n)
    errs = [np.max(np.abs(fixed_solve(p.field, p.y0, [0.0, T], tab, h)[-1] - ref)) for h in hs]
    assert min(errs) > 1e-13                       # the measurement is above rounding
    assert abs(measured_slope(hs, errs) - tab.order) <= SLOPE_MARGIN, errs


@pytest.mark.parametrize("problem", ["linear", "riccati"])
def test_dopri5_dense_output_order(problem):
    # Dense output of order q = 4 (HNW I, §II.6): at a fixed θ inside a step the interpolant
    # errs by O(h^(q+1)) = O(h⁵) on top of the O(h⁵) global error of the step start, so the
    # error at interior points converges with slope q + 1 = 5. (The plain Hermite cubic, of
    # order 3, would give slope 4 and fail.)
    p = ZOO[problem]()
    tab = METHODS["dopri5"]
    ev = lambda t, y, rows=None: p.field(t, y)                              # noqa: E731
    thetas = (0.3, 0.5)
    hs = 0.2 / 2.0 ** np.arange(4)
    errs = []
    for h in hs:
        y = p.y0[None].copy()
        K = np.empty((tab.n_stages,) + y.shape)
        worst = 0.0
        for k in range(int(round(1.0 / h))):
            t, hh = np.array([k * h]), np.array([h])
            y_new = rk_step(ev, t, y, hh, t + hh, ev(t, y), tab, K, np.zeros(1, int))
            for theta in thetas:
                y_mid = dense_output(tab, y, hh, K, np.array([theta]))[0]
                worst = max(worst, np.max(np.abs(y_mid - p.solution([t[0] + theta * h])[0])))
            y = y_new
        errs.append(worst)
    assert measured_slope(hs, errs) >= 4 + 1 - SLOPE_MARGIN, errs


@pytest.mark.parametrize("method", FIXED)
def test_odeint_fixed_is_the_stage_loop(method):
    # The public call runs exactly the loop measured above (same arithmetic, bit for bit).
    p = ZOO["riccati"]()
    t = [0.0, 0.35, 1.0]
    ys = solve(p.field, p.y0, t, method=method, options={"step_size": 0.05})
    np.testing.assert_array_equal(ys, fixed_solve(p.field, p.y0, t, METHODS[method], 0.05))


# ---------------------------------------------------------------------------------------------
# 3. Adaptive methods against exact / DOP853 references, forward and backward in time.
# ---------------------------------------------------------------------------------------------

RTOL = {"dopri5": 1e-8, "tsit5": 1e-8, "fehlberg45": 1e-8, "bosh3": 1e-6, "heun_euler": 1e-5}
ATOL = 1e-10
# The controller keeps every step's *local* error estimate below atol + rtol·|y|. The global
# error is the sum of the propagated local errors; on these non-stiff problems over one or two
# periods it stays within a few tens of the tolerance (the propagated solution is also more
# accurate than the lower-order solution whose error is estimated). C = 100 leaves room for that
# accumulation and still fails for a wrong coefficient, controller or interpolant, which costs
# orders of magnitude. The scale uses the size of the state, max_j |y_ref,j(t)|, rather than
# each component's own |y_ref,i|: on a cycle a component crosses zero while its error (a phase
# error) stays of the size of the whole state.
C_GLOBAL = 100.0
N_OUT = 41

FORWARD = ["linear", "decay", "growth", "rotation", "riccati", "forced_decay",
           "lotka_volterra", "van_der_pol", "parameterless"]
# Van der Pol is left out backward: its limit cycle attracts forward in time, so backward it
# repels and amplifies any error (by ~1e3 over this span) — the problem, not the solver.
BACKWARD = [name for name in FORWARD if name != "van_der_pol"]


# fehlberg45's outputs between step ends come from the cubic Hermite interpolant (order 3)
# while its steps are of order 5: at rtol 1e-8 the interpolant's O(h⁴) error is ~400× the
# tolerance. For it these tests compare the step ends only (t0, t1; the last step is clipped
# to t1); its interpolant is the one bosh3 is tested with, and README says so.
N_OUT_OF = {"fehlberg45": 2}


def scaled_error(ys, ref, rtol, atol):
    scale = atol + rtol * np.max(np.abs(ref), axis=-1, keepdims=True)
    return np.max(np.abs(ys - ref) / scale)


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("problem", FORWARD)
def test_forward_against_reference(problem, method):
    p = ZOO[problem]()
    t = np.linspace(p.t0, p.t1, N_OUT_OF.get(method, N_OUT))
    ref = p.solution(t)
    ys = solve(p.field, p.y0, t, method=method, rtol=RTOL[method], atol=ATOL)
    assert ys.shape == ref.shape
    assert ys[0].tolist() == p.y0.tolist()
    assert scaled_error(ys, ref, RTOL[method], ATOL) < C_GLOBAL


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("problem", BACKWARD)
def test_backward_against_reference(problem, method):
    # Start from the reference at t1 and integrate to t0 through decreasing output times.
    p = ZOO[problem]()
    t = np.linspace(p.t1, p.t0, N_OUT_OF.get(method, N_OUT))
    ref = p.solution(t)
    ys = solve(p.field, ref[0], t, method=method, rtol=RTOL[method], atol=ATOL)
    assert scaled_error(ys, ref, RTOL[method], ATOL) < C_GLOBAL


@pytest.mark.parametrize("method", ADAPTIVE)
def test_unevenly_spaced_outputs(method):
    # Output times that fall anywhere inside steps, several inside one step, and one that is
    # closer to its neighbour than any step.
    p = ZOO["lotka_volterra"]()
    t = np.sort(np.concatenate([[0.0, 6.0, 3.0, 3.0 + 1e-9],
                                np.random.default_rng(1).uniform(0.0, 6.0, 30)]))
    ref = p.solution(t)
    ys = solve(p.field, p.y0, t, method=method, rtol=RTOL[method], atol=ATOL)
    assert scaled_error(ys, ref, RTOL[method], ATOL) < C_GLOBAL


def test_tighter_tolerance_gives_smaller_error():
    # Tolerance proportionality: with error-per-step control and local extrapolation the
    # global error of dopri5 scales like tol^(p/(q+1)) = tol^(5/5) (HNW I, §II.4), so 1000×
    # tighter tolerances must buy ~1000× smaller errors; we demand 100×.
    p = ZOO["lotka_volterra"]()
    t = np.linspace(p.t0, p.t1, 11)
    ref = p.solution(t)
    errs = [np.max(np.abs(solve(p.field, p.y0, t, rtol=rtol, atol=rtol * 1e-2) - ref))
            for rtol in (1e-5, 1e-8)]
    assert errs[1] < errs[0] / 100.0


# ---------------------------------------------------------------------------------------------
# 4. Every sample is its own problem.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ADAPTIVE)
def test_sample_alone_equals_sample_in_batch(method):
    f = LotkaVolterra()
    Y0 = np.array([[10.0, 5.0], [1.0, 1.0], [0.1, 20.0], [3.0, 0.3]])
    t = np.linspace(0.0, 6.0, 7)
    kw = dict(method=method, rtol=RTOL[method], atol=ATOL, full_output=True)
    ys, info = solve(f, Y0, t, **kw)
    assert ys.shape == (7, 4, 2) and info.nfev.shape == (4,)
    for b in range(4):
        for y0 in (Y0[b], Y0[b:b + 1]):              # a 1-D problem and a batch of one
            alone, info1 = solve(f, y0, t, **kw)
            alone = alone.reshape(7, 2)
            # Same steps, same arithmetic per row; only summation order inside NumPy's
            # reductions may differ with the batch size: a few ulps, amplified along the path.
            np.testing.assert_allclose(alone, ys[:, b], rtol=1e-12, atol=0)
            assert np.ravel(info1.nfev)[0] == info.nfev[b]
            assert np.ravel(info1.n_accepted)[0] == info.n_accepted[b]
            assert np.ravel(info1.n_rejected)[0] == info.n_rejected[b]


def test_samples_of_different_scales_take_different_steps():
    # A rotation of radius 1 is controlled by rtol; one of radius 1e-6 mostly by atol, so it
    # needs fewer steps. With a shared step size both would take the same number.
    f = Rotation(2.0)
    Y0 = np.array([[1.0, 0.0], [1e-6, 0.0], [1.0, 0.0]])
    ys, info = solve(f, Y0, [0.0, 6.0], rtol=1e-8, atol=1e-10, full_output=True)
    assert info.nfev[1] < info.nfev[0]
    assert info.nfev[0] == info.nfev[2]
    np.testing.assert_allclose(ys[:, 0], ys[:, 2], rtol=1e-12, atol=0)


def test_batch_evaluates_only_active_samples():
    # Σ over calls of the rows evaluated equals Σ of the per-sample nfev: a finished sample is
    # not evaluated any more.
    f = Recording(Rotation(2.0))
    Y0 = np.array([[1.0, 0.0], [1e-6, 0.0], [1e3, 1.0]])
    _, info = solve(f, Y0, [0.0, 3.0, 6.0], rtol=1e-8, atol=1e-10, full_output=True)
    assert f.rows == int(np.sum(info.nfev))


# ---------------------------------------------------------------------------------------------
# 5. nfev: the formula of SolveInfo's docstring, and the real number of evaluations.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("first_step", [None, 1.0])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_nfev_formula(method, first_step):
    # FSAL: one evaluation at t0, one probe of Hairer's initial step (unless first_step is
    # given), then s − 1 new stages per attempted step.
    s = METHODS[method].n_stages
    f = Recording(VanDerPol(1.0))
    options = None if first_step is None else {"first_step": first_step}
    _, info = solve(f, [2.0, 0.0], np.linspace(0.0, 5.0, 6), method=method, rtol=1e-8,
                    atol=1e-10, options=options, full_output=True)
    n_init = 1 if first_step is None else 0
    assert info.nfev == 1 + n_init + (s - 1) * (info.n_accepted + info.n_rejected)
    assert info.nfev == f.calls
    assert info.method == method
    assert isinstance(info.nfev, int) and isinstance(info.n_rejected, int)
    if first_step is not None:
        # A first step of 1.0 at rtol 1e-8 is far too large: the formula is checked with
        # rejections in the count.
        assert info.n_rejected >= 1


@pytest.mark.parametrize("method", FIXED)
def test_fixed_nfev_formula(method):
    s = METHODS[method].n_stages
    f = Recording(Exponential(-1.0))
    t = [0.0, 0.25, 0.3, 1.0]
    _, info = solve(f, [1.0], t, method=method, options={"step_size": 0.1}, full_output=True)
    # Each interval is split into ceil(|Δt| / h) equal steps: 3 + 1 + 7.
    assert info.n_accepted == 11 and info.n_rejected == 0
    assert info.nfev == s * info.n_accepted == f.calls


def test_batch_nfev_formula():
    f = LotkaVolterra()
    Y0 = np.array([[10.0, 5.0], [1.0, 1.0], [0.1, 20.0]])
    _, info = solve(f, Y0, [0.0, 6.0], rtol=1e-8, atol=1e-10, full_output=True)
    np.testing.assert_array_equal(info.nfev, 2 + 6 * (info.n_accepted + info.n_rejected))
    assert info["nfev"] is info.nfev


# ---------------------------------------------------------------------------------------------
# 6. Fixed-step methods.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", FIXED)
def test_fixed_needs_step_size(method):
    with pytest.raises(ValueError, match="step_size"):
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], method=method)
    with pytest.raises(ValueError, match="step_size"):
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], method=method, options={"step_size": 0.0})
    with pytest.raises(ValueError, match="first_step"):
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], method=method, options={"first_step": 0.1})


@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fixed_steps_land_on_output_times(method, sign):
    tab = METHODS[method]
    t = sign * np.array([0.0, 0.33, 0.4, 1.0])
    h = 0.1
    f = Recording(ZOO["riccati"]().field)
    p = ZOO["riccati"]()
    ys = solve(f, p.y0, t, method=method, options={"step_size": h})
    seen = f.t_array()
    # Every step starts with k1 = f(t_n, y_n), so step starts are the evaluations with c = 0:
    # the first s-th call of each step. They include every output time but the last, exactly.
    starts = seen[::tab.n_stages]
    for ti in t[:-1]:
        assert ti in starts
    # The step ends are the next starts and the final time: no step longer than h, and (for
    # rk4, whose last stage has c = 1) the final time is evaluated exactly.
    ends = np.append(starts[1:], t[-1])
    assert np.all(np.abs(ends - starts) <= h * (1 + 1e-12))
    assert np.all(sign * (ends - starts) > 0)
    if method == "rk4":
        assert t[-1] in seen
    # And the values at the output times are the order-p accurate solution there: the error
    # constants C in C·h^p measured on this problem (test_convergence_order) are all below
    # 0.1, so C = 1 leaves a factor 10.
    err = np.max(np.abs(ys - p.solution(t)))
    assert err < h ** tab.order


def test_euler_exact_arithmetic():
    # dy/dt = y with h = 0.1 on [0, 1]: ten steps y ← y + 0.1·y, so y(1) = 1.1¹⁰ up to the
    # rounding of ten multiply-adds (the loop below is that arithmetic, bit for bit).
    ys = solve(Exponential(1.0), [1.0], [0.0, 1.0], method="euler", options={"step_size": 0.1})
    y = 1.0
    for _ in range(10):
        y = y + 0.1 * y
    assert ys[-1, 0] == y
    assert abs(ys[-1, 0] - 1.1 ** 10) <= 1e-15 * 1.1 ** 10


# ---------------------------------------------------------------------------------------------
# 7. The field is never evaluated outside [t0, t_end].
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, options", [("dopri5", None), ("bosh3", None),
                                             ("dopri5", {"first_step": 100.0}),
                                             ("rk4", {"step_size": 0.3}),
                                             ("midpoint", {"step_size": 0.3})])
@pytest.mark.parametrize("t", [[0.0, 1.0], [0.0, 0.3, 0.31, 2.5, 3.0], [3.0, 1.7, 0.1, 0.0],
                               [-1.0, -0.5], [1e8, 1e8 + 1.0]])
def test_field_evaluated_only_inside_span(t, method, options):
    f = Recording(ZOO["forced_decay"]().field)
    solve(f, [1.0, 2.0], t, method=method, options=options)
    seen = f.t_array()
    assert seen.size > 0
    assert seen.min() >= min(t[0], t[-1]) and seen.max() <= max(t[0], t[-1])


# ---------------------------------------------------------------------------------------------
# 8. Argument errors and solver failures.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [[0.0], [0.0, 1.0, 0.5], [0.0, 1.0, 1.0], [[0.0, 1.0]],
                               [0.0, np.nan], [0.0, np.inf], []])
def test_bad_times(t):
    with pytest.raises(ValueError, match=r"\bt\b"):
        solve(Exponential(-1.0), [1.0], t)


@pytest.mark.parametrize("y0", [[1.0, np.nan], [[1.0], [np.inf]]])
def test_nonfinite_y0(y0):
    with pytest.raises(ValueError, match="y0"):
        solve(Exponential(-1.0), y0, [0.0, 1.0])


def test_bad_y0_shape_and_dtype():
    with pytest.raises(ValueError, match="y0"):
        solve(Exponential(-1.0), np.ones((2, 2, 2)), [0.0, 1.0])
    with pytest.raises(ValueError, match="y0"):
        solve(Exponential(-1.0), np.ones((0,)), [0.0, 1.0])
    with pytest.raises(TypeError, match="y0"):
        solve(Exponential(-1.0), np.ones(2, dtype=np.complex128), [0.0, 1.0])
    # integer y0 is promoted to float64
    assert solve(Exponential(-1.0), [1, 2], [0.0, 1.0]).dtype == np.float64


def test_unknown_method_lists_valid_methods():
    with pytest.raises(ValueError) as exc:
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], method="rk45")
    assert "rk45" in str(exc.value)
    for name in METHODS:
        assert name in str(exc.value)


@pytest.mark.parametrize("method, options, key", [
    ("dopri5", {"step_sise": 0.1}, "step_sise"),
    ("dopri5", {"step_size": 0.1}, "step_size"),          # a fixed-step option
    ("rk4", {"step_size": 0.1, "atol": 1.0}, "atol"),
    ("rk4", {"step_size": 0.1, "first_step": 1.0}, "first_step"),
])
def test_unknown_option_names_the_key(method, options, key):
    with pytest.raises(ValueError, match=repr(key)):
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], method=method, options=options)
    with pytest.raises(TypeError, match="options"):
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], method=method, options=[("step_size", 1)])


@pytest.mark.parametrize("kw", [dict(rtol=-1e-6), dict(atol=-1.0), dict(rtol=np.nan),
                                dict(rtol=0.0, atol=0.0), dict(atol=[1e-9, 1e-9, 1e-9])])
def test_bad_tolerances(kw):
    with pytest.raises(ValueError, match="rtol|atol"):
        solve(Exponential(-1.0), [1.0, 2.0], [0.0, 1.0], **kw)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_max_num_steps(n):
    with pytest.raises(ValueError, match="max_num_steps"):
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], options={"max_num_steps": n})


@pytest.mark.parametrize("first_step", [0.0, np.nan, np.inf])
def test_bad_first_step(first_step):
    with pytest.raises(ValueError, match="first_step"):
        solve(Exponential(-1.0), [1.0], [0.0, 1.0], options={"first_step": first_step})


def test_bad_backend_and_field():
    with pytest.raises(ValueError, match="backend"):
        odeint(Exponential(-1.0), [1.0], [0.0, 1.0], backend="cuda")
    with pytest.raises(ValueError, match="numpy"):
        odeint(Exponential(-1.0), [1.0], [0.0, 1.0], backend="numba")
    with pytest.raises(TypeError, match="f must"):
        solve(np.ones(3), [1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        solve(lambda t, y: np.zeros(3), [1.0, 2.0], [0.0, 1.0])


def test_first_step_sign_follows_t():
    # Only the magnitude of first_step is used; a negative one forward in time still works.
    p = ZOO["decay"]()
    t = [0.0, 1.0]
    a = solve(p.field, p.y0, t, options={"first_step": 0.01})
    b = solve(p.field, p.y0, t, options={"first_step": -0.01})
    np.testing.assert_array_equal(a, b)


def test_blow_up_raises_quickly_with_a_useful_message():
    start = time.perf_counter()
    with pytest.raises(SolverError) as exc:
        solve(Square(), [1.0], [0.0, 2.0])
    elapsed = time.perf_counter() - start
    e = exc.value
    assert elapsed < 5.0
    for word in ("t=", "dt=", "nfev="):
        assert word in str(e)
    assert abs(e.t - 1.0) < 1e-3
    assert e.nfev > 0


def test_blow_up_stops_when_the_step_no_longer_moves_t():
    # The solver must give up once a step can no longer move t (StepSizeUnderflowError), not
    # keep accepting steps with t + h == t. The last step tried then is about the spacing of t.
    f = Recording(Square())
    with pytest.raises(StepSizeUnderflowError) as exc:
        solve(f, [1.0], [0.0, 2.0])
    e = exc.value
    assert abs(e.dt) >= np.spacing(e.t)
    # No more than the 7 evaluations of one step at the same time t.
    _, counts = np.unique(f.t_array(), return_counts=True)
    assert counts.max() <= METHODS["dopri5"].n_stages


@pytest.mark.parametrize("method", ADAPTIVE)
def test_nan_field_raises_at_the_bad_time(method):
    with pytest.raises(SolverError) as exc:
        solve(NaNAfter(0.5), [1.0], [0.0, 2.0], method=method)
    assert isinstance(exc.value, NonFiniteError)
    assert abs(exc.value.t - 0.5) < 1e-3
    assert "nfev=" in str(exc.value)


@pytest.mark.parametrize("method", FIXED)
def test_nan_field_raises_fixed(method):
    h = 0.1
    with pytest.raises(NonFiniteError) as exc:
        solve(NaNAfter(0.5), [1.0], [0.0, 2.0], method=method, options={"step_size": h})
    # The step that first meets t > 0.5 starts within one step of it.
    assert 0.5 - h - 1e-12 <= exc.value.t <= 0.5 + h + 1e-12


def test_nan_at_t0_raises():
    with pytest.raises(NonFiniteError) as exc:
        solve(NaNAfter(-1.0), [1.0], [0.0, 1.0])
    assert exc.value.t == 0.0


def test_too_many_steps():
    with pytest.raises(TooManyStepsError) as exc:
        solve(ZOO["van_der_pol"]().field, [2.0, 0.0], [0.0, 10.0],
              options={"max_num_steps": 5})
    e = exc.value
    assert "max_num_steps" in str(e) and "nfev=" in str(e)
    assert 0.0 < e.t < 10.0
    # five attempted steps of dopri5 at most after the start: 2 + 6·5 evaluations
    assert e.nfev == 2 + 6 * 5


def test_zero_field_no_warnings():
    # dy/dt = 0 exactly: error estimate 0 (the step-size formula must not divide by it), and a
    # zero state component (scale = atol) must not trip anything either.
    for method in ADAPTIVE:
        for y0 in ([1.0, 0.0, -2.0], [[0.0], [5.0]]):
            with warnings.catch_warnings(), np.errstate(all="raise"):
                warnings.simplefilter("error")
                ys, info = solve(Zero(), y0, [0.0, 0.5, 1.0], method=method, full_output=True)
            np.testing.assert_array_equal(ys, np.broadcast_to(y0, ys.shape))
            assert np.all(info.n_rejected == 0)


def test_pure_relative_tolerance_with_a_zero_component():
    # y = (0, e^{−t}): the first component stays exactly 0. With rtol > 0 and atol = 0 its
    # error is exactly 0 too and it must simply not count.
    f = ZOO["decay"]().field
    t = np.linspace(0.0, 1.0, 5)
    ys = solve(f, [[0.0], [1.0]], t, rtol=1e-8, atol=0.0, options={"max_num_steps": 1000})
    np.testing.assert_array_equal(ys[:, 0, 0], 0.0)
    np.testing.assert_allclose(ys[:, 1, 0], np.exp(-1.5 * t), rtol=100 * 1e-8)


# ---------------------------------------------------------------------------------------------
# 9. float32.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, options", [("dopri5", None), ("bosh3", None),
                                             ("rk4", {"step_size": 0.01})])
def test_float32(method, options):
    p = ZOO["lotka_volterra"]()
    t = np.linspace(0.0, 3.0, 7)
    # rtol 1e-5 is ~100 float32 ulps: reachable, so the comparison measures the solver.
    kw = dict(method=method, rtol=1e-5, atol=1e-6, options=options)
    y32 = solve(p.field, p.y0.astype(np.float32), t, **kw)
    y64 = solve(p.field, p.y0, t, **kw)
    assert y32.dtype == np.float32
    ref = p.solution(t)
    assert np.max(np.abs(y64 - ref) / np.abs(ref)) < 1e-3
    # float32 rounding (eps ≈ 1.2e-7 per operation, a few hundred steps) on top of the float64
    # path's own error: a few 1e-5 relative, below 1e-3.
    assert np.max(np.abs(y32 - y64) / np.abs(y64)) < 1e-3
    y32b = solve(p.field, np.stack([p.y0, p.y0]).astype(np.float32), t, **kw)
    assert y32b.dtype == np.float32
    assert np.max(np.abs(y32b[:, 1] - y64) / np.abs(y64)) < 1e-3


# The step-size controller is the standard one (HNW I, §II.4; Hairer's DOPRI5, scipy's RK45 and
# RK23): the same initial step, error norm, factors and — after a rejection — no growth in the
# next accepted step. Then pyode takes exactly scipy's steps, so the evaluation counts agree.
_MU = 0.012277471


def _arenstorf(t, y):
    x, z, vx, vz = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
    d1 = ((x + _MU) ** 2 + z ** 2) ** 1.5
    d2 = ((x - 1 + _MU) ** 2 + z ** 2) ** 1.5
    ax = x + 2 * vz - (1 - _MU) * (x + _MU) / d1 - _MU * (x - 1 + _MU) / d2
    az = z - 2 * vx - (1 - _MU) * z / d1 - _MU * z / d2
    return np.stack([vx, vz, ax, az], axis=-1)


_ARENSTORF_Y0 = np.array([0.994, 0.0, 0.0, -2.00158510637908252240537862224])
_ARENSTORF_T = 17.0652165601579625588917206249


@pytest.mark.parametrize("method, scipy_method", [("dopri5", "RK45"), ("bosh3", "RK23")])
@pytest.mark.parametrize("rtol, atol", [(1e-3, 1e-6), (1e-6, 1e-9)])
def test_evaluation_counts_equal_scipy_on_the_arenstorf_orbit(method, scipy_method, rtol,
                                                               atol):
    from scipy.integrate import solve_ivp
    ref = solve_ivp(_arenstorf, (0.0, _ARENSTORF_T), _ARENSTORF_Y0, method=scipy_method,
                    rtol=rtol, atol=atol)
    _, info = odeint(_arenstorf, _ARENSTORF_Y0, np.array([0.0, _ARENSTORF_T]), method=method,
                     rtol=rtol, atol=atol, full_output=True)
    assert info.n_rejected > 0          # the case where the cap after a rejection matters
    assert info.nfev == ref.nfev


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_a_row_of_a_batch_is_solved_bit_identically_to_the_row_alone(method):
    # Per-sample step control promises that a sample's result does not depend on the rows
    # beside it. Every stage, error and dense-output sum of the NumPy path is an explicit sum,
    # because BLAS and einsum products round differently with the number of rows (before:
    # all 37 rows differed from their solo solves in the last bits).
    f = LotkaVolterra()
    y0 = np.random.default_rng(0).uniform(0.5, 2.5, size=(37, 2))
    t = np.linspace(0.0, 5.0, 20)
    ys = odeint(f, y0, t, method=method, rtol=1e-6, atol=1e-8)
    for b in (0, 17, 36):
        alone = odeint(f, y0[b:b + 1], t, method=method, rtol=1e-6, atol=1e-8)
        assert np.array_equal(alone[:, 0], ys[:, b])
