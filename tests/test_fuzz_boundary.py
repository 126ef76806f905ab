"""A property-based boundary suite (issue 13): whatever is passed, pyode answers or says why.

Hypothesis draws every argument of :func:`pyode.odeint` and :func:`pyode.odeint_adjoint`
(and of the latter's ``vjp``) from strategies that mix valid values with the mistakes users
make: y0 of every shape and dtype (0-d, 3-d, empty, complex, object, NaN, ragged lists), t of
every length and order (repeats, NaN, complex, 2-D), tolerances (negative, NaN, arrays of the
wrong length, rtol ≥ 1), method and option names (scipy's among them), backends, and fields
that misbehave (a wrong shape from call k on, NaN from time τ on, writing into y, returning a
list / tuple / float / None, raising their own exception).

The property, for every draw:

* either a finite result of the documented shape and dtype that agrees with a reference —
  for the linear field dy/dt = A y its closed form ``expm(A (t − t0)) y0`` (adaptive methods,
  to a multiple of the tolerances), or for the fixed-step methods the exact discrete solution
  ``R(hA)^n y0`` with R the method's stability polynomial (to rounding); gradients likewise
  (the exact ones by complex-step differentiation of those closed forms); for the nn field the
  same call on ``backend="numpy"`` (the NumPy oracle);
* or a ValueError / TypeError / :class:`pyode.SolverError` (CudaUnavailableError for
  ``backend="cuda"``; the field's own exception unchanged) whose message names an offending
  argument — never another exception type, never NumPy's or Python's own message, never a
  silent answer to an invalid call;
* warnings only where documented: ``rtol >= 1`` (UserWarning naming rtol, and then always)
  and :class:`pyode.AdjointReconstructionWarning` from the backsolve vjp;
* within a time limit (no hang), and with the caller's y0 left unchanged.

Each draw is labelled with the set of argument names that make it invalid (empty: valid), so
the property knows which outcomes are allowed. The number of examples is that of the loaded
Hypothesis profile, but at least ``MIN_EXAMPLES``; ``HYPOTHESIS_PROFILE=thorough`` runs 5,000
per property (tests/conftest.py). ``--hypothesis-show-statistics`` prints how the outcomes
were distributed (``event``).

Failures the property found are kept below it as plain regression tests.
"""
import math
import time
import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import pyode
from pyode import (AdjointReconstructionWarning, CudaUnavailableError, SolverError, nn, odeint,
                   odeint_adjoint)

#: At least this many examples per property, whatever the profile (Hypothesis' own default is
#: 100); a profile with more (``thorough``) raises it.
MIN_EXAMPLES = 200
FUZZ = settings(max_examples=max(MIN_EXAMPLES, settings.default.max_examples), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

#: One call (solve, reference and vjp) must finish within this many seconds: the problems are
#: tiny (D ≤ 3, B ≤ 4, |t| spans ≤ 3.5), so a slower call is a hang or a runaway step count.
TIME_LIMIT_S = 30.0

#: Global error allowed against the closed form, in units of the local tolerance
#: (atol + rtol·scale): a healthy adaptive solve over these short spans errs by a few of them.
GLOBAL_ERROR_FACTOR = 1e3

#: Messages of NumPy or Python that must never reach the user from pyode.
INTERNAL_MESSAGES = (
    "operands could not be broadcast", "index out of bounds", "out of bounds for axis",
    "'NoneType' object", "inhomogeneous", "could not convert", "has no attribute",
    "unsupported operand", "not subscriptable", "positional argument", "only length-1",
    "only 0-dimensional", "truth value of an array", "cannot reshape", "object is not iterable",
    "not supported between instances", "invalid literal", "setting an array element",
    "must be real number, not", "encountered in", "object cannot be interpreted",
)

METHODS = sorted(pyode.METHODS)
FIXED_ORDER = {name: tab.order for name, tab in pyode.METHODS.items() if not tab.adaptive}
BAD_METHODS = ["RK45", "DOP853", "LSODA", "Radau", "Tsit5", "rk45", "Euler", "", None, 3,
               "dopri8"]
BAD_BACKENDS = ["gpu", "NUMPY", "", None, 0, "jax"]


class FieldFailure(Exception):
    """The field's own exception: pyode must let it through unchanged."""


# ---------------------------------------------------------------------------------------------
# The fields
# ---------------------------------------------------------------------------------------------

class LinearField:
    """dy/dt = A y with A = params.reshape(D, D), the full protocol, and a ``behaviour``.

    Behaviours: "correct"; ("wrong_shape", k): a result of the wrong width from the k-th call
    on; ("nan_from", τ): NaN for t > τ; "writes": writes into y; "list" / "tuple": the rows of
    the result as a list / tuple; "float": the first component as a Python float; "none":
    returns None; "raises": raises :class:`FieldFailure`. Only ``__call__`` misbehaves.
    """

    def __init__(self, A, behaviour="correct"):
        self.D = A.shape[0]
        self.params = np.array(A, dtype=np.float64).ravel()
        self.behaviour = behaviour
        self.calls = 0

    @property
    def A(self):
        return self.params.reshape(self.D, self.D)

    def __call__(self, t, y):
        self.calls += 1
        kind = self.behaviour if isinstance(self.behaviour, str) else self.behaviour[0]
        with np.errstate(all="ignore"):            # huge y0: inf is pyode's to detect
            out = (y @ self.A.T).astype(y.dtype)
        if kind == "wrong_shape" and self.calls >= self.behaviour[1]:
            return out[..., :-1] if self.D > 1 else np.concatenate([out, out], axis=-1)
        if kind == "nan_from":
            late = np.asarray(t) > self.behaviour[1]
            return np.where(late[..., None] if out.ndim == 2 else late, np.nan, out)
        if kind == "writes":
            y *= 1.0
        if kind == "list":
            return list(out)
        if kind == "tuple":
            return tuple(out)
        if kind == "float":
            return float(out.flat[0])
        if kind == "none":
            return None
        if kind == "raises":
            raise FieldFailure("the field's own failure")
        return out

    def jvp(self, t, y, u):
        return u @ self.A.T

    def jvp_params(self, t, y, w):
        return y @ np.asarray(w).reshape(self.D, self.D).T

    def vjp(self, t, y, v):
        vth = (np.atleast_2d(v).T @ np.atleast_2d(y)).ravel()   # ∂(A y)/∂A_ij = e_i y_j
        return v @ self.A, vth, np.zeros(np.shape(t))


def field_ok(behaviour, y_shape):
    """Whether ``LinearField(behaviour)`` is a valid field for a state of ``y_shape`` (None:
    it depends on how often or when it is called)."""
    kind = behaviour if isinstance(behaviour, str) else behaviour[0]
    if kind == "correct":
        return True
    if kind in ("wrong_shape", "nan_from"):
        return None
    if kind in ("list", "tuple"):
        return len(y_shape) == 1
    if kind == "float":
        return y_shape == (1,)
    return False


# ---------------------------------------------------------------------------------------------
# Strategies: each returns (value, bad), bad = the argument names that make the value invalid
# ---------------------------------------------------------------------------------------------

def broken_parts(parts):
    """Which arguments of a call are drawn invalid: none in about half the calls (so that
    results are checked as often as errors), one in most of the rest, sometimes two."""
    return st.sampled_from([0, 0, 0, 0, 0, 1, 1, 1, 1, 2]).flatmap(
        lambda n: st.lists(st.sampled_from(parts), min_size=n, max_size=n, unique=True)
    ).map(set)


def kinds(draw, valid, invalid, broken):
    return draw(st.sampled_from(invalid if broken else valid))


finite = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)
huge = st.sampled_from([1e150, -1e200, 1e300, 1.7e308, -1e308])


@st.composite
def y0_cases(draw, D, broken=False):
    """y0: valid ((D,) or (B, D), float/int/bool arrays or lists) or not (named "y0")."""
    B = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(D,), (B, D)]))
    values = np.array(draw(st.lists(finite, min_size=B * D, max_size=B * D)))[:math.prod(shape)]
    values = values.reshape(shape)
    kind = kinds(draw, ["float64"] * 6 + ["float32"] * 2 + ["int", "bool", "list", "huge"],
                 ["complex", "object", "float16", "0d", "3d", "empty", "nonfinite", "ragged",
                  "strings", "none"], broken)
    if kind == "float64":
        return values, set()
    if kind == "float32":
        return values.astype(np.float32), set()
    if kind == "int":
        return np.round(values).astype(draw(st.sampled_from([np.int64, np.int32]))), set()
    if kind == "bool":
        return values > 0, set()
    if kind == "list":
        return values.tolist(), set()
    if kind == "huge":
        v = values.copy()
        v.flat[draw(st.integers(0, v.size - 1))] = draw(huge)
        return v, set()
    if kind == "complex":
        return values + 0j, {"y0"}
    if kind == "object":
        return values.astype(object), {"y0"}
    if kind == "float16":
        return values.astype(np.float16), {"y0"}
    if kind == "0d":
        return draw(st.sampled_from([1.0, np.float64(0.5), np.array(2.0)])), {"y0"}
    if kind == "3d":
        return values.reshape((1,) * (3 - values.ndim) + values.shape), {"y0"}
    if kind == "empty":
        return np.zeros(draw(st.sampled_from([(0,), (0, D), (B, 0), (0, 0)]))), {"y0"}
    if kind == "nonfinite":
        v = values.astype(np.float64)
        v.flat[draw(st.integers(0, v.size - 1))] = draw(st.sampled_from([np.nan, np.inf,
                                                                         -np.inf]))
        return v, {"y0"}
    if kind == "ragged":
        rows = [list(r) for r in np.atleast_2d(values)] + [[0.5] * (D + 1)]
        return draw(st.sampled_from([rows, [1.0, [2.0, 3.0]], [[1.0], 2.0]])), {"y0"}
    if kind == "strings":
        return np.array(["a"] * D), {"y0"}
    return None, {"y0"}


@st.composite
def t_cases(draw, broken=False):
    """t: valid (strictly monotonic, finite, real, 1-D, ≥ 2 times; arrays, lists, ints) or not
    (named "t")."""
    T = draw(st.sampled_from([2, 2, 3, 4, 7]))
    t0 = draw(st.sampled_from([0.0, 0.0, -0.5, 3.7, 1e3]))
    steps = draw(st.lists(st.floats(1e-3, 0.5), min_size=T - 1, max_size=T - 1))
    sign = draw(st.sampled_from([1.0, 1.0, -1.0]))
    t = t0 + sign * np.concatenate([[0.0], np.cumsum(steps)])
    kind = kinds(draw, ["array"] * 6 + ["list", "int", "object"],
                 ["empty", "one", "nonmonotone", "repeat", "nonfinite", "complex", "2d", "bool",
                  "scalar", "strings", "none"], broken)
    if kind == "array":
        return t, set()
    if kind == "list":
        return t.tolist(), set()
    if kind == "int":
        return (sign * np.arange(min(T, 3))).astype(np.int64), set()
    if kind == "object":
        from fractions import Fraction
        return np.array([Fraction(k, 4) for k in range(T)], dtype=object), set()
    if kind == "empty":
        return draw(st.sampled_from([[], np.zeros(0)])), {"t"}
    if kind == "one":
        return t[:1], {"t"}
    if kind == "nonmonotone":
        if T == 2:
            return np.array([0.0, 1.0, 0.5]), {"t"}
        return np.concatenate([t[:1], t[2:3], t[1:2], t[3:]]), {"t"}
    if kind == "repeat":
        k = draw(st.integers(0, T - 1))
        return np.insert(t, k, t[k]), {"t"}
    if kind == "nonfinite":
        v = t.copy()
        v[draw(st.integers(0, T - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return v, {"t"}
    if kind == "complex":
        return t + draw(st.sampled_from([0j, 1j])), {"t"}
    if kind == "2d":
        return draw(st.sampled_from([t[None], t[:, None]])), {"t"}
    if kind == "bool":
        return np.array([False, True]), {"t"}
    if kind == "scalar":
        return 1.0, {"t"}
    if kind == "strings":
        return ["0", "1"], {"t"}
    return None, {"t"}


@st.composite
def tolerance_cases(draw, D, broken=False):
    """(rtol, atol): valid, rtol ≥ 1 (valid with a warning), or invalid (named)."""
    which = draw(st.sampled_from(["rtol", "atol", "both"])) if broken else ""
    rtol, bad_r = kinds(draw,
        [(1e-3, set()), (1e-6, set()), (1e-9, set()), (0.0, set()), (np.float32(1e-4), set()),
         (1.0, set()), (1.5, set()), (0, set()), (1e-5, set()), (1e-7, set())],
        [(-1e-6, {"rtol"}), (np.nan, {"rtol"}), (np.inf, {"rtol"}), ("1e-6", {"rtol"}),
         (None, {"rtol"}), ([1e-6], {"rtol"}), (np.array([1e-6, 1e-3]), {"rtol"}),
         (True, {"rtol"}), (1e-6 + 0j, {"rtol"})], which in ("rtol", "both"))
    atol, bad_a = kinds(draw,
        [(1e-9, set()), (1e-6, set()), (0.0, set()), (np.full(D, 1e-8), set()),
         ([1e-7] * D, set()), (np.array(1e-8), set()), (1e-9, set()), (1e-10, set())],
        [(-1e-9, {"atol"}), (np.nan, {"atol"}), (-np.inf, {"atol"}),
         (np.full(D + 1, 1e-8), {"atol"}), (np.full((1, D), 1e-8), {"atol"}), ("x", {"atol"}),
         (None, {"atol"}), (np.array([np.nan] + [1e-8] * (D - 1)), {"atol"}),
         ([1e-8] * D + [[1e-8]], {"atol"}), (1e-9j, {"atol"}),
         (np.full(D, 1e-8) + 0j, {"atol"}), (["1e-8"] * D, {"atol"})], which in ("atol", "both"))
    bad = bad_r | bad_a
    if not bad and float(rtol) == 0.0 and np.any(np.asarray(atol) == 0):
        bad = {"rtol", "atol"}
    return rtol, atol, bad


@st.composite
def method_option_cases(draw, broken=False):
    """(method, options, bad): a valid method with valid or invalid options, or a bad name."""
    if broken and draw(st.booleans()):
        return draw(st.sampled_from(BAD_METHODS)), None, {"method"}
    method = draw(st.sampled_from(METHODS))
    if method in FIXED_ORDER:
        valid = [{"step_size": h} for h in (0.05, 0.1, 0.3, 10.0)] + [
            {"step_size": 0.1, "max_num_steps": 3}, {"step_size": 0.2, "max_num_steps": 10**6}]
        invalid = [None, {}, {"step_size": 0}, {"step_size": -0.1}, {"step_size": np.nan},
                   {"step_size": np.inf}, {"step_size": "0.1"}, {"step_size": True},
                   {"step_size": None}, {"step_size": [0.1]}, {"first_step": 0.1},
                   {"step_size": 0.1, "foo": 1}, {"step_size": 0.1, "max_num_steps": 0},
                   [("step_size", 0.1)]]
    else:
        valid = [None, {}, {"first_step": 1e-3}, {"first_step": -0.05}, {"first_step": None},
                 {"max_num_steps": 1}, {"max_num_steps": 1000},
                 {"first_step": 0.1, "max_num_steps": np.int64(50)}]
        invalid = [{"step_size": 0.1}, {"first_step": 0}, {"first_step": np.nan},
                   {"first_step": "a"}, {"first_step": [0.1]}, {"max_num_steps": 0},
                   {"max_num_steps": -1}, {"max_num_steps": 1.5}, {"max_num_steps": True},
                   {"max_num_steps": "10"}, {"foo": 1}, {"rtol": 1e-3},
                   [("first_step", 0.1)], "first_step=0.1"]
    if not broken:
        return method, draw(st.sampled_from(valid)), set()
    return method, draw(st.sampled_from(invalid)), {"option"}


def linear_backend_cases(broken=False):
    """Backends for a plain NumPy field: "auto" and "numpy" run it; the rest are refused."""
    if not broken:
        return st.sampled_from([("auto", set()), ("numpy", set())])
    return st.sampled_from([("numba", {"backend"}), ("cuda", {"backend"})]
                           + [(b, {"backend"}) for b in BAD_BACKENDS])


def nn_backend_cases(broken=False):
    """Backends for an nn field: "cuda" has no device here (CudaUnavailableError)."""
    if not broken:
        return st.sampled_from([("auto", set()), ("numba", set()), ("numpy", set()),
                                ("numba", set())])
    return st.sampled_from([("cuda", {"cuda", "backend"})]
                           + [(b, {"backend"}) for b in BAD_BACKENDS])


def behaviours(broken=False):
    """Field behaviours (LinearField); a "broken" field misbehaves, possibly harmlessly (a
    wrong shape after the last call, NaN outside the span, a list for a 1-D state)."""
    if not broken:
        return st.just("correct")
    return st.one_of(
        st.tuples(st.just("wrong_shape"), st.integers(1, 40)),
        st.tuples(st.just("nan_from"), st.sampled_from([-1e4, 0.05, 0.4, 1.0, 1e4])),
        st.sampled_from(["writes", "list", "tuple", "float", "none", "raises"]))


@st.composite
def grad_cases(draw, shape, broken=False):
    """grad_ys for vjp: valid (float/int arrays, lists) or not (named "grad_ys")."""
    values = np.array(draw(st.lists(finite, min_size=math.prod(shape),
                                    max_size=math.prod(shape)))).reshape(shape)
    kind = kinds(draw, ["array"] * 6 + ["int", "list"],
                 ["wrong_shape", "nonfinite", "complex", "strings", "none", "ragged", "object"],
                 broken)
    if kind == "array":
        return values, set()
    if kind == "int":
        return np.round(values).astype(np.int64), set()
    if kind == "list":
        return values.tolist(), set()
    if kind == "wrong_shape":
        return draw(st.sampled_from([values[1:], values[..., None], values.ravel(),
                                     np.ones(3)])), {"grad_ys"}
    if kind == "nonfinite":
        v = values.copy()
        v.flat[draw(st.integers(0, v.size - 1))] = np.nan
        return v, {"grad_ys"}
    if kind == "complex":
        return values + 1j, {"grad_ys"}
    if kind == "strings":
        return np.full(shape, "a"), {"grad_ys"}
    if kind == "none":
        return None, {"grad_ys"}
    if kind == "ragged":
        return [values[0].tolist(), [1.0, 2.0, 3.0, 4.0, 5.0]], {"grad_ys"}
    return values.astype(object), {"grad_ys"}


# ---------------------------------------------------------------------------------------------
# Oracles: closed forms for dy/dt = A y
# ---------------------------------------------------------------------------------------------

def exact_solution(A, y0, t):
    """y(t_i) = expm(A (t_i − t0)) y0 for every row of y0 (B, D); works for complex inputs."""
    return np.stack([y0 @ scipy.linalg.expm(A * (ti - t[0])).T for ti in t])


def fixed_step_solution(A, y0, t, method, h):
    """The exact numerical solution of an explicit RK method of order p = s on dy/dt = A y:
    each step multiplies by the stability polynomial R(hA) = Σ_{k≤p} (hA)^k / k!, with
    ⌈|Δt| / h⌉ equal steps per output interval (the documented step placement)."""
    p = FIXED_ORDER[method]
    ys, y = [y0], y0
    for dt in np.diff(t):
        n = max(1, math.ceil(abs(dt.real) / h * (1.0 - 1e-12)))
        Z = A * (dt / n)
        R, term = np.eye(A.shape[0], dtype=Z.dtype), np.eye(A.shape[0], dtype=Z.dtype)
        for k in range(1, p + 1):
            term = term @ Z / k
            R = R + term
        for _ in range(n):
            y = y @ R.T
        ys.append(y)
    return np.stack(ys)


def complex_step(L, x, h=1e-30):
    """∂L/∂x of a real-analytic scalar function by the complex step Im L(x + ih e_k) / h."""
    x = np.asarray(x, dtype=np.float64)
    g = np.empty(x.size)
    for k in range(x.size):
        xc = x.astype(complex).ravel()
        xc[k] += 1j * h
        g[k] = L(xc.reshape(x.shape)).imag / h
    return g.reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------------------------

def run(call):
    """``call()`` with every warning recorded; returns (result or exception, warnings, s)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except Exception as exc:          # noqa: BLE001 - classified by check_outcome
            result = exc
    return result, caught, time.perf_counter() - start


def check_warnings(caught, rtol_warns):
    for w in caught:
        if issubclass(w.category, AdjointReconstructionWarning):
            continue
        if w.category is UserWarning and "rtol" in str(w.message) and ">= 1" in str(w.message):
            continue
        raise AssertionError(f"undocumented warning {w.category.__name__}: {w.message}")
    if rtol_warns and not any("rtol" in str(w.message) for w in caught):
        raise AssertionError("rtol >= 1 was accepted without the documented UserWarning")


def check_error(exc, bad, field_valid, where="call"):
    """An exception is allowed if it is pyode's, of the right type, and names an offending
    argument (or is the field's own)."""
    msg = str(exc)
    event(f"{where}: {type(exc).__name__}")
    if isinstance(exc, FieldFailure):
        assert field_valid is False and not bad - {"field-raises"}, "field's exception leaked"
        return
    for internal in INTERNAL_MESSAGES:
        assert internal not in msg, f"internal message reached the user: {exc!r}"
    if isinstance(exc, CudaUnavailableError):
        assert "cuda" in bad, f"CudaUnavailableError without backend='cuda': {exc!r}"
        return
    if isinstance(exc, SolverError):
        # Integration failures are the answer for valid calls too (huge y0, NaN from τ, a
        # small max_num_steps); their messages name t, the step size and nfev.
        assert "t=" in msg and "nfev" in msg, f"SolverError without t/nfev: {exc!r}"
        return
    assert type(exc) in (ValueError, TypeError), f"exception of another type: {exc!r}"
    names = set(bad) - {"cuda"}
    if field_valid is not True:
        names |= {"vector field"}
    assert names, f"a valid call was refused: {exc!r}"
    assert any(name in msg for name in names), \
        f"the message names none of {sorted(names)}: {exc!r}"


def close(got, ref, rtol, atol, dtype, exact_steps=False, factor=GLOBAL_ERROR_FACTOR):
    """max |got − ref| within the tolerance-scaled bound (module docstring)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape}"
    scale = 1.0 + np.max(np.abs(ref), initial=0.0)
    eps = np.finfo(dtype).eps
    bound = (1e6 if dtype == np.float32 else 1e4) * eps * scale
    if not exact_steps:
        bound += factor * (float(np.max(atol)) + float(rtol) * scale)
    err = np.max(np.abs(got - ref), initial=0.0)
    assert err <= bound, f"off by {err:.3g} (allowed {bound:.3g}):\n{got}\nvs\n{ref}"


def reference_usable(ref):
    return np.all(np.isfinite(ref)) and np.max(np.abs(ref), initial=0.0) < 1e100


def expected_dtype(y0):
    return np.float32 if np.asarray(y0).dtype == np.float32 else np.float64


@st.composite
def linear_problems(draw):
    """A linear field (with a behaviour) and every argument of odeint, each labelled."""
    broken = draw(broken_parts(["y0", "t", "tol", "method", "backend", "field"]))
    D = draw(st.integers(1, 3))
    A = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=D * D, max_size=D * D)))
    y0, bad_y0 = draw(y0_cases(D, "y0" in broken))
    t, bad_t = draw(t_cases("t" in broken))
    rtol, atol, bad_tol = draw(tolerance_cases(D, "tol" in broken))
    method, options, bad_opt = draw(method_option_cases("method" in broken))
    backend, bad_backend = draw(linear_backend_cases("backend" in broken))
    behaviour = draw(behaviours("field" in broken))
    bad = bad_y0 | bad_t | bad_tol | bad_opt | bad_backend
    bad |= unattainable(y0, rtol, atol, bad)
    return dict(A=A.reshape(D, D), y0=y0, t=t, rtol=rtol, atol=atol, method=method,
                options=options, backend=backend, behaviour=behaviour, bad=bad)


def unattainable(y0, rtol, atol, bad):
    """{"rtol", "atol"} when valid tolerances ask for errors below 1 % of the rounding error
    of a valid y0 (documented refusal, ``pyode.solvers.check_attainable``)."""
    if bad & {"y0", "rtol", "atol"}:
        return set()
    y = np.asarray(y0)
    eps = np.finfo(np.float32 if y.dtype == np.float32 else np.float64).eps
    y_abs = np.abs(y.astype(np.float64))
    with np.errstate(over="ignore"):
        short = np.asarray(atol, dtype=np.float64) + float(rtol) * y_abs < 0.01 * eps * y_abs
    return {"rtol", "atol"} if np.any(short) else set()


def _rtol_warns(p, key="rtol"):
    try:
        return float(p[key]) >= 1
    except (TypeError, ValueError):
        return False


def _reference(p, dtype):
    """The linear field's exact or exact-discrete solution at float64, or None."""
    y0 = np.atleast_2d(np.asarray(p["y0"], dtype=np.float64))
    t = np.asarray(p["t"], dtype=np.float64)
    with np.errstate(all="ignore"):
        if p["method"] in FIXED_ORDER:
            ref = fixed_step_solution(p["A"], y0, t, p["method"], p["options"]["step_size"])
        else:
            ref = exact_solution(p["A"], y0, t)
    if not reference_usable(ref):
        return None
    return ref if np.ndim(p["y0"]) == 2 else ref[:, 0]


def check_forward_result(ys, p, field_valid):
    """ys: the documented shape and dtype, finite, and the closed form's values."""
    assert not p["bad"], f"an invalid call ({sorted(p['bad'])}) returned a result"
    assert field_valid is not False, f"a field that is wrong ({p['behaviour']}) was integrated"
    y0 = np.asarray(p["y0"])
    t = np.asarray(p["t"])
    assert isinstance(ys, np.ndarray), type(ys)
    assert ys.shape == (t.shape[0],) + y0.shape, ys.shape
    assert ys.dtype == expected_dtype(y0), ys.dtype
    assert np.all(np.isfinite(ys)), "non-finite values in a result"
    if _rtol_warns(p):
        return                       # documented: the result may be wrong in every digit
    ref = _reference(p, ys.dtype)
    if ref is not None:
        close(ys, ref, p["rtol"], p["atol"], ys.dtype, exact_steps=p["method"] in FIXED_ORDER)


def kind_of(behaviour):
    return behaviour if isinstance(behaviour, str) else behaviour[0]


def solve_linear(p):
    field = LinearField(p["A"], p["behaviour"])
    return field, odeint(field, p["y0"], p["t"], method=p["method"], rtol=p["rtol"],
                         atol=p["atol"], options=p["options"], backend=p["backend"])


def _state_shape(y0):
    try:
        return np.shape(y0)
    except ValueError:
        return None


@FUZZ
@given(linear_problems())
def test_odeint_with_a_linear_field_answers_right_or_names_the_argument(p):
    note(repr(p))
    y0_before = np.array(p["y0"], copy=True) if isinstance(p["y0"], np.ndarray) else None
    result, caught, seconds = run(lambda: solve_linear(p)[1])
    assert seconds < TIME_LIMIT_S, f"took {seconds:.1f} s"
    field_valid = field_ok(p["behaviour"], _state_shape(p["y0"]))
    if kind_of(p["behaviour"]) == "raises" and not p["bad"]:
        assert isinstance(result, (FieldFailure, SolverError)), \
            f"expected the field's exception: {result!r}"
    if isinstance(result, BaseException):
        check_error(result, p["bad"] | ({"field-raises"} if kind_of(p["behaviour"]) == "raises"
                                        else set()), field_valid)
    else:
        event("call: finite result")
        check_forward_result(result, p, field_valid)
    check_warnings(caught, _rtol_warns(p) and not isinstance(result, BaseException))
    if y0_before is not None:
        np.testing.assert_array_equal(p["y0"], y0_before)


# ---------------------------------------------------------------------------------------------
# nn fields: the Numba kernels against the NumPy path
# ---------------------------------------------------------------------------------------------

NN = nn.MLP([2, 4, 2], seed=0)


@st.composite
def nn_problems(draw):
    broken = draw(broken_parts(["y0", "t", "tol", "method", "backend", "width"]))
    D = draw(st.sampled_from([1, 3])) if "width" in broken else 2
    y0, bad_y0 = draw(y0_cases(D, "y0" in broken))
    if D != 2:
        bad_y0 = {"y0"}                         # the field takes states of width 2
    t, bad_t = draw(t_cases("t" in broken))
    rtol, atol, bad_tol = draw(tolerance_cases(2, "tol" in broken))
    method, options, bad_opt = draw(method_option_cases("method" in broken))
    backend, bad_backend = draw(nn_backend_cases("backend" in broken))
    bad = bad_y0 | bad_t | bad_tol | bad_opt | bad_backend
    return dict(y0=y0, t=t, rtol=rtol, atol=atol, method=method, options=options,
                backend=backend, bad=bad | unattainable(y0, rtol, atol, bad))


def _nn_kwargs(p, backend=None):
    return dict(method=p["method"], rtol=p["rtol"], atol=p["atol"], options=p["options"],
                backend=p["backend"] if backend is None else backend)


def _nn_bad(p):
    """A y0 of the wrong width may be reported through an atol of the field's width."""
    return p["bad"] | ({"atol"} if "y0" in p["bad"] else set())


@FUZZ
@given(nn_problems())
def test_odeint_with_an_nn_field_matches_the_numpy_path_or_names_the_argument(p):
    note(repr(p))
    result, caught, seconds = run(lambda: odeint(NN, p["y0"], p["t"], **_nn_kwargs(p)))
    assert seconds < TIME_LIMIT_S, f"took {seconds:.1f} s"
    if isinstance(result, BaseException):
        check_error(result, _nn_bad(p), True)
    else:
        event("call: finite result")
        assert not p["bad"], f"an invalid call ({sorted(p['bad'])}) returned a result"
        y0 = np.asarray(p["y0"])
        assert result.shape == (np.asarray(p["t"]).shape[0],) + y0.shape
        assert result.dtype == expected_dtype(y0)
        assert np.all(np.isfinite(result))
        if p["backend"] != "numpy" and not _rtol_warns(p):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = odeint(NN, p["y0"], p["t"], **_nn_kwargs(p, "numpy"))
            close(result, ref, p["rtol"], p["atol"], result.dtype,
                  exact_steps=p["method"] in FIXED_ORDER)
    check_warnings(caught, _rtol_warns(p) and not isinstance(result, BaseException))


# ---------------------------------------------------------------------------------------------
# odeint_adjoint and its vjp
# ---------------------------------------------------------------------------------------------

ADJOINT = sorted(pyode.ADJOINT_METHODS)
BAD_ADJOINT = ["adjoint", "Backsolve", "BacksolveAdjoint", "", None, 1]


@st.composite
def adjoint_cases(draw):
    """(adjoint_method, adjoint_options, adjoint_rtol, adjoint_atol, time_gradients, bad)."""
    broken = draw(st.sampled_from([set()] * 6 + [{"method"}, {"options"}, {"tols"}, {"tg"}]))
    if "method" in broken and draw(st.booleans()):
        return draw(st.sampled_from(BAD_ADJOINT)), None, None, None, True, {"adjoint_method"}
    method = draw(st.sampled_from(ADJOINT))
    bad = set()
    valid_opts = {"backsolve": [None, {}, {"norm": "rms"}, {"norm": "seminorm"}],
                  "checkpoint": [None, {"norm": "seminorm"}, {"checkpoint_every": 2},
                                 {"checkpoint_every": 1, "norm": "rms"}],
                  "discrete": [None, {}], "forward": [None, {}]}[method]
    if "options" not in broken:
        aopts = draw(st.sampled_from(valid_opts))
    else:
        aopts = draw(st.sampled_from([{"norm": "l2"}, {"checkpoint_every": 0},
                                      {"checkpoint_every": 1.5}, {"checkpoint_every": True},
                                      {"foo": 1}, {"first_step": 0.1}, [("norm", "rms")],
                                      {"norm": None}]))
        bad.add("adjoint_options")
    a_rtol, a_atol = None, None
    if draw(st.integers(0, 3)) == 0 or "tols" in broken:
        a_rtol, a_atol, bad_a = kinds(draw, [(1e-8, None, set()), (None, 1e-10, set()),
                                             (1e-6, 1e-8, set()), (2.0, None, set())],
            [(-1.0, None, {"adjoint_rtol"}), (None, np.nan, {"adjoint_atol"}),
             ("1e-6", None, {"adjoint_rtol"}), (None, np.ones(2), {"adjoint_atol"})],
            "tols" in broken)
        if method in ("discrete", "forward"):
            bad_a = {"adjoint_rtol"}
        bad |= bad_a
    tg, bad_tg = kinds(draw, [(True, set()), (True, set()), (False, set()),
                              (np.bool_(True), set())],
                       [("yes", {"time_gradients"}), (1, {"time_gradients"}),
                        (None, {"time_gradients"})], "tg" in broken)
    return method, aopts, a_rtol, a_atol, tg, bad | bad_tg


def _call_adjoint(f, p, backend=None):
    return odeint_adjoint(f, p["y0"], p["t"], method=p["method"], rtol=p["rtol"],
                          atol=p["atol"], options=p["options"],
                          backend=p["backend"] if backend is None else backend,
                          adjoint_method=p["adjoint_method"],
                          adjoint_options=p["adjoint_options"], adjoint_rtol=p["adjoint_rtol"],
                          adjoint_atol=p["adjoint_atol"], time_gradients=p["time_gradients"])


def _with_adjoint(p, case):
    method, aopts, a_rtol, a_atol, tg, bad = case
    p = dict(p, adjoint_method=method, adjoint_options=aopts, adjoint_rtol=a_rtol,
             adjoint_atol=a_atol, time_gradients=tg)
    p["bad"] = p["bad"] | bad
    return p


def _adjoint_rtol_warns(p):
    if p["adjoint_method"] not in ("backsolve", "checkpoint"):
        return _rtol_warns(p)
    return _rtol_warns(p) or (p["adjoint_rtol"] is None and _rtol_warns(p)) or \
        _rtol_warns(p, "adjoint_rtol")


def exact_gradients(p, g):
    """dL/dy0, dL/dθ, dL/dt for L = Σ g·ys on the closed form (complex step), or None."""
    A = p["A"]
    y0 = np.atleast_2d(np.asarray(p["y0"], dtype=np.float64))
    t = np.asarray(p["t"], dtype=np.float64)
    gb = np.asarray(g, dtype=np.float64)
    gb = gb[:, None] if np.ndim(p["y0"]) == 1 else gb
    fixed = p["method"] in FIXED_ORDER

    def solution(A_, y0_, t_):
        if fixed:
            return fixed_step_solution(A_, y0_, t_, p["method"], p["options"]["step_size"])
        return exact_solution(A_, y0_, t_)

    def loss(A_=A, y0_=y0, t_=t):
        return np.sum(gb * solution(A_, y0_, t_))

    with np.errstate(all="ignore"):
        if not reference_usable(solution(A, y0, t)):
            return None
        d_y0 = complex_step(lambda x: loss(y0_=x), y0)
        d_A = complex_step(lambda x: loss(A_=x), A).ravel()
        d_t = complex_step(lambda x: loss(t_=x), t)
    if not all(reference_usable(x) for x in (d_y0, d_A, d_t)):
        return None
    return (d_y0 if np.ndim(p["y0"]) == 2 else d_y0[0]), d_A, d_t


def check_gradients(grads, p, ys, g):
    """Shapes, finiteness, and agreement with the closed form (where one exists)."""
    y0 = np.asarray(p["y0"])
    T = np.asarray(p["t"]).shape[0]
    assert isinstance(grads, pyode.AdjointGradients), type(grads)
    assert grads.y0.shape == y0.shape, grads.y0.shape
    assert grads.params.shape == (p["A"].size,), grads.params.shape
    assert np.all(np.isfinite(grads.y0)) and np.all(np.isfinite(grads.params))
    if p["time_gradients"]:
        assert grads.t.shape == (T,) and np.all(np.isfinite(grads.t))
    else:
        assert grads.t is None
    if _adjoint_rtol_warns(p):
        return
    if p["adjoint_method"] == "discrete" and p["method"] not in FIXED_ORDER:
        # The exact derivative of the numerical solution, whose steps the error control picks
        # for y alone: for y0 = 0 on y' = y (y ≡ 0, so every step is accepted and grows ten-
        # fold) it is the derivative of a few huge bosh3 steps, 17.3 against e³ = 20.1 at
        # rtol = 1e-6. Not O(tolerance) from the continuous gradient, and no closed form here.
        return
    ref = exact_gradients(p, g)
    if ref is None:
        return
    fixed = p["method"] in FIXED_ORDER
    rtol = max(float(p["rtol"]), float(p["adjoint_rtol"] or 0.0))
    atol = max(float(np.max(p["atol"])), float(np.max(p["adjoint_atol"] or 0.0)))
    dtype = ys.dtype
    # Fixed steps: every method's dL/dy0 is the discrete one for a linear autonomous field
    # (the adjoint a' = −Aᵀa stepped with the same h multiplies by R(hA)ᵀ); dL/dθ is the
    # discrete one for "discrete" and "forward", and all of dL/dt for "discrete". The
    # continuous methods' quadratures (a_θ, a_t) differ from both by O(h^p): not compared.
    close(grads.y0, ref[0], rtol, atol, dtype, exact_steps=fixed)
    if not fixed or p["adjoint_method"] in ("discrete", "forward"):
        close(grads.params, ref[1], rtol, atol, dtype, exact_steps=fixed)
    if p["time_gradients"] and (not fixed or p["adjoint_method"] == "discrete"):
        close(grads.t, ref[2], rtol, atol, dtype, exact_steps=fixed)


@FUZZ
@given(linear_problems(), adjoint_cases(), st.data())
def test_odeint_adjoint_and_vjp_of_a_linear_field_answer_right_or_name_the_argument(p, case,
                                                                                    data):
    p = _with_adjoint(p, case)
    note(repr(p))
    field_valid = field_ok(p["behaviour"], _state_shape(p["y0"]))
    raises = {"field-raises"} if kind_of(p["behaviour"]) == "raises" else set()
    result, caught, seconds = run(lambda: _call_adjoint(LinearField(p["A"], p["behaviour"]),
                                                        p))
    assert seconds < TIME_LIMIT_S, f"took {seconds:.1f} s"
    if isinstance(result, BaseException):
        check_error(result, p["bad"] | raises, field_valid)
        check_warnings(caught, False)
        return
    event("call: finite result")
    ys, vjp = result
    check_forward_result(ys, p, field_valid)
    check_warnings(caught, _rtol_warns(p))
    g, bad_g = data.draw(grad_cases(ys.shape, data.draw(st.integers(0, 4)) == 0),
                         label="grad_ys")
    grads, caught, seconds = run(lambda: vjp(g))
    assert seconds < TIME_LIMIT_S, f"vjp took {seconds:.1f} s"
    if isinstance(grads, BaseException):
        check_error(grads, bad_g | raises, field_valid, "vjp")
    else:
        event("vjp: finite result")
        assert not bad_g, f"an invalid grad_ys ({sorted(bad_g)}) gave gradients"
        check_gradients(grads, p, ys, g)
    check_warnings(caught, False)


@FUZZ
@given(nn_problems(), adjoint_cases(), st.data())
def test_odeint_adjoint_of_an_nn_field_matches_the_numpy_path_or_names_the_argument(p, case,
                                                                                     data):
    p = _with_adjoint(p, case)
    note(repr(p))
    result, caught, seconds = run(lambda: _call_adjoint(NN, p))
    assert seconds < TIME_LIMIT_S, f"took {seconds:.1f} s"
    if isinstance(result, BaseException):
        check_error(result, _nn_bad(p), True)
        check_warnings(caught, False)
        return
    event("call: finite result")
    assert not p["bad"], f"an invalid call ({sorted(p['bad'])}) returned a result"
    ys, vjp = result
    y0 = np.asarray(p["y0"])
    assert ys.shape == (np.asarray(p["t"]).shape[0],) + y0.shape and np.all(np.isfinite(ys))
    check_warnings(caught, _rtol_warns(p))
    g, bad_g = data.draw(grad_cases(ys.shape, data.draw(st.integers(0, 4)) == 0),
                         label="grad_ys")
    grads, caught, seconds = run(lambda: vjp(g))
    assert seconds < TIME_LIMIT_S, f"vjp took {seconds:.1f} s"
    if isinstance(grads, BaseException):
        check_error(grads, bad_g, True, "vjp")
        check_warnings(caught, False)
        return
    event("vjp: finite result")
    assert not bad_g, f"an invalid grad_ys ({sorted(bad_g)}) gave gradients"
    assert grads.y0.shape == y0.shape and grads.params.shape == NN.params.shape
    assert np.all(np.isfinite(grads.y0)) and np.all(np.isfinite(grads.params))
    check_warnings(caught, False)
    if p["backend"] == "numpy" or _adjoint_rtol_warns(p):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ys_ref, vjp_ref = _call_adjoint(NN, p, backend="numpy")
        ref = vjp_ref(g)
    rtol = max(float(p["rtol"]), float(p["adjoint_rtol"] or 0.0))
    atol = max(float(np.max(p["atol"])), float(np.max(p["adjoint_atol"] or 0.0)))
    exact = p["method"] in FIXED_ORDER
    close(ys, ys_ref, rtol, atol, ys.dtype, exact_steps=exact)
    close(grads.y0, ref.y0, rtol, atol, ys.dtype, exact_steps=exact)
    close(grads.params, ref.params, rtol, atol, ys.dtype, exact_steps=exact)
    if p["time_gradients"]:
        close(grads.t, ref.t, rtol, atol, ys.dtype, exact_steps=exact)


# ---------------------------------------------------------------------------------------------
# Regression tests: failures the property found
# ---------------------------------------------------------------------------------------------

T2 = np.array([0.0, 0.5, 1.0])


def test_ragged_or_non_real_atol_is_named():
    # was numpy's "setting an array element with a sequence ... inhomogeneous shape"
    with pytest.raises(ValueError, match=r"atol must be a float or an array of shape \(1,\), "
                                         "got a ragged"):
        odeint(lambda t, y: -y, np.array([1.0]), T2, atol=[1e-8, [1e-8]])
    # was numpy's ComplexWarning (the imaginary part dropped) and "could not convert string"
    for atol in (np.full(2, 1e-8) + 0j, ["1e-8", "1e-8"]):
        with pytest.raises(TypeError, match="atol must be .* of real numbers"):
            odeint(lambda t, y: -y, np.ones(2), T2, atol=atol)
    with pytest.raises(TypeError, match="adjoint_atol must be .* of real numbers"):
        odeint_adjoint(LinearField(-np.eye(1)), np.ones(1), T2, adjoint_atol=["x"] * 4)


@pytest.mark.parametrize("y0", [[1e150, 0.0, 0.0], [0.0, 2.2250738585072014e-309]])
def test_huge_or_subnormal_component_against_the_tolerance_does_not_overflow_the_norm(y0):
    # y0 = [1e150, 0, 0] with y₂' = y₀: f/(atol + rtol|y0|) = 1e159, squared overflowed
    # (FloatingPointError 'overflow encountered in square' in the first-step guess); a
    # subnormal |y0| with atol = 0 overflowed the quotient itself.
    y0 = np.array(y0)
    D = y0.size
    A = np.zeros((D, D))
    A[-1, 0] = 1.0
    ys = odeint(LinearField(A), y0, T2, method="bosh3", rtol=1e-3, atol=1e-9 if D == 3 else 0.0)
    close(ys, exact_solution(A, y0[None], T2)[:, 0], 1e-3, 1e-9, np.float64)


def test_tolerance_far_below_the_rounding_of_y0_is_refused_not_run_for_a_minute():
    # Pure absolute control asking for 1e-9 on values of 1e150: steps of 3e-142 until
    # max_num_steps (58 s on the NumPy path); now refused up front, naming the fix.
    A = np.diag([1.0, 0.0])
    with pytest.raises(ValueError, match=r"rtol/atol: .*rounding error of component 0 of y0.*"
                                         r"use rtol >= 2\.2e-14"):
        odeint(LinearField(A), np.array([1e150, 0.0]), [0.0, 0.5], rtol=0.0, atol=1e-9)
    with pytest.raises(ValueError, match=r"y0\[1, 0\]"):
        odeint_adjoint(LinearField(A), np.array([[1.0, 0.0], [1e150, 0.0]]), [0.0, 0.5],
                       rtol=0.0, atol=1e-9, adjoint_method="checkpoint")
    # float32 at its default tolerances (rtol = 1e-7 < ε32) stays accepted
    ys = odeint(LinearField(-np.eye(2)), np.ones(2, dtype=np.float32), T2)
    assert ys.dtype == np.float32


def test_fixed_step_overflow_is_a_nonfinite_error():
    # y0 = 1.7e308 growing backward in time with euler: FloatingPointError 'overflow
    # encountered in add' from the stage sum, not pyode's error.
    with pytest.raises(pyode.NonFiniteError, match="t="):
        odeint(LinearField(-np.eye(1)), np.array([1.7e308]), [0.0, -0.5], method="euler",
               options={"step_size": 0.05})


def test_rtol_of_one_or_more_with_values_near_the_largest_float():
    # rtol·|y| overflowed in the error scale (FloatingPointError); it is inf, which scales
    # every error to 0. The warning stays.
    with pytest.warns(UserWarning, match="rtol=1.5 is >= 1"):
        ys = odeint(LinearField(np.zeros((1, 1))), np.array([1.7e308]), T2, rtol=1.5)
    np.testing.assert_array_equal(ys, 1.7e308)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backsolve_with_atol_zero_and_a_zero_state(backend):
    # The reconstruction check divided 0 by atol + rtol·|y| = 0 (FloatingPointError 'invalid
    # value encountered in divide' from vjp); such a component counts 0, as in the error norm.
    f = NN if backend == "numba" else LinearField(np.zeros((1, 1)))
    y0 = np.zeros(f.params.size and (2 if backend == "numba" else 1))
    ys, vjp = odeint_adjoint(f, y0, [0.0, 0.5], method="bosh3", rtol=1e-3, atol=0.0,
                             backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no reconstruction warning of "inf x"
        g = vjp(np.zeros_like(ys))
    assert np.all(np.isfinite(g.y0)) and np.all(np.isfinite(g.params))


@pytest.mark.parametrize("grad_ys, error, match", [
    (np.ones((3, 2)) + 1j, TypeError, "grad_ys must hold real numbers.*complex128.*real part"),
    (np.full((3, 2), "a"), TypeError, "grad_ys must hold real numbers.*dtype <U1"),
    ([[1.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0]], ValueError, "grad_ys.*ragged"),
    (np.ones((3, 2), dtype=object), TypeError, "dtype object"),
    (None, TypeError, "grad_ys must hold real numbers"),
    (np.full((3, 2), 1e300), ValueError, "beyond the range of float32"),
])
def test_bad_grad_ys_is_named(grad_ys, error, match):
    # complex grad_ys lost its imaginary part with a ComplexWarning; strings gave numpy's
    # "could not convert string to float"; float64 beyond float32's range overflowed in the cast.
    f = LinearField(-np.eye(2))
    ys, vjp = odeint_adjoint(f, np.ones(2, dtype=np.float32), T2)
    with pytest.raises(error, match=match):
        vjp(grad_ys)
    if "float32" not in match:                  # the nn field runs in float64
        ys, vjp = odeint_adjoint(NN, np.ones(2), T2)
        with pytest.raises(error, match="grad_ys"):
            vjp(grad_ys)


def test_gradient_beyond_the_largest_float_is_a_nonfinite_error():
    # y0 = [1.7e308, 0, 0], L = y₂(1.5): dL/dA₂₀ = ∫ y₀ dt = 2.6e308 overflowed in the
    # θ-quadrature (FloatingPointError 'overflow encountered in add' from vjp).
    f = LinearField(np.zeros((3, 3)))
    ys, vjp = odeint_adjoint(f, np.array([1.7e308, 0.0, 0.0]), [0.0, 0.5, 1.0, 1.5],
                             method="bosh3", rtol=1e-3)
    g = np.zeros_like(ys)
    g[-1, 2] = 1.0
    with pytest.raises(pyode.NonFiniteError, match="The gradient dL/dθ is not finite"):
        vjp(g)


@pytest.mark.parametrize("adjoint_method", ["backsolve", "checkpoint"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_backward_step_that_rounds_onto_an_output_time_still_adds_its_gradient(
        adjoint_method, backend):
    # f ≡ 0, so dL/dy0 = Σ g_i = 1 for L = y(t_5). Backward from t_6 = 0.96975 with
    # first_step = 0.001, the step end 0.96975 − 0.001 rounds onto t_5 = 0.96875 although the
    # interval is 0.0010000000000000009: the step was not flagged as landing there, so g_5
    # was never added and the NumPy path returned dL/dy0 = 0 (silently).
    t = np.array([0.0, 0.5, 0.75, 0.875, 0.9375, 0.96875, 0.96975])
    if backend == "numba":
        f = nn.Sequential(nn.Linear(1, 1), seed=0)
        f.params[:] = 0.0
    else:
        f = LinearField(np.zeros((1, 1)))
    ys, vjp = odeint_adjoint(f, np.array([0.0]), t, method="bosh3", rtol=1e-6,
                             options={"first_step": 0.001}, adjoint_method=adjoint_method,
                             backend=backend)
    g = np.zeros_like(ys)
    g[5] = 1.0
    np.testing.assert_allclose(vjp(g).y0, [1.0], rtol=1e-12)
