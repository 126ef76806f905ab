"""The step formulas of ``kernels/step.py`` against slow, obviously right NumPy oracles.

The formulas are exercised end to end by every solver test; here the error norm — the one
with the most cases (parts, the seminorm, zero scales, overflowing squares, NaN) — is compared
directly with an independent oracle, compiled (through ``kernels.rows``-style use in a jitted
caller) and as plain Python.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from pyode.kernels.numbers import adjoint_parts, constants, forward_parts
from pyode.kernels.step import adjoint_jump, clip_step, scaled_norm
from pyode.tableaus import get_tableau

compiled_norm = njit(lambda x, y, y_new, atol, cst: scaled_norm(x, y, y_new, atol, cst))


def oracle(x, y, y_new, atol, rtol, bounds, n_parts):
    """max over the first n_parts non-empty parts of sqrt(mean((x / scale)²)), in float64
    with exact rescaling (math done on Python floats via fractions of the largest ratio)."""
    scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
    ratio = np.where(scale > 0, x / np.where(scale > 0, scale, 1.0), 0.0)
    norms = []
    for p in range(n_parts):
        r = ratio[bounds[p]:bounds[p + 1]]
        if r.size:
            m = np.max(np.abs(r))
            norms.append(0.0 if m == 0 else m * np.sqrt(np.mean((r / m) ** 2)))
    return max(norms) if norms else 0.0


finite = st.floats(-1e200, 1e200, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(D=st.integers(1, 4), P=st.integers(0, 5), with_z=st.booleans(), with_time=st.booleans(),
       seminorm=st.booleans(), seed=st.integers(0, 2**32 - 1),
       big=st.sampled_from([1.0, 1e150, 1e-150]), rtol=st.sampled_from([0.0, 1e-7, 1e-3]),
       atol=st.sampled_from([0.0, 1e-9, 1.0]))
def test_norm_is_the_largest_part_rms(D, P, with_z, with_time, seminorm, seed, big, rtol, atol):
    bounds, n_parts = adjoint_parts(D if with_z else 0, D, P, with_time, seminorm)
    W = bounds[-1]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(W) * big
    y, y_new = rng.standard_normal(W), rng.standard_normal(W)
    y[rng.random(W) < 0.3] = 0.0                    # zero components: scale 0 when atol = 0
    y_new[y == 0.0] = 0.0
    at = np.full(W, atol)
    cst = constants(np.float64, get_tableau("dopri5"), rtol, {}, (bounds, n_parts))
    want = oracle(x, y, y_new, at, rtol, bounds, n_parts)
    for norm in (compiled_norm, scaled_norm):
        with np.errstate(over="ignore"):        # plain Python: the squares may overflow
            got = norm(x, y, y_new, at, cst)
        if np.isinf(want) or want > 1e300:
            assert got >= 1e300 or np.isinf(got)
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=0.0)


def test_norm_of_a_nan_is_nan_and_of_a_huge_ratio_is_finite():
    bounds, n = forward_parts(3)
    cst = constants(np.float64, get_tableau("dopri5"), 1e-6, {}, (bounds, n))
    y = np.array([1e150, 0.0, 1.0])
    atol = np.full(3, 1e-9)
    # Ratios of 1e159 overflow their squares; the norm itself is finite.
    x = np.array([1e150, 0.0, 0.0])
    assert compiled_norm(x, y * 0, y * 0, atol, cst) == pytest.approx(1e159 / np.sqrt(3),
                                                                      rel=1e-12)
    x[1] = np.nan
    assert np.isnan(compiled_norm(x, y, y, atol, cst))


def test_the_seminorm_and_the_parts_keep_quadratures_from_diluting_z_and_a():
    """An error only in a, against many zero quadrature components: the per-part norm sees a's
    own RMS (one RMS over the whole state would divide it by the square root of its width)."""
    D, P = 2, 100
    bounds, n = adjoint_parts(D, D, P, True, False)
    W = bounds[-1]
    x = np.zeros(W)
    x[D:2 * D] = 1.0
    cst = constants(np.float64, get_tableau("dopri5"), 0.0, {}, (bounds, n))
    assert compiled_norm(x, x * 0, x * 0, np.ones(W), cst) == pytest.approx(1.0, rel=1e-15)
    semi = constants(np.float64, get_tableau("dopri5"), 0.0, {},
                     adjoint_parts(D, D, P, True, True))
    x[2 * D:] = 1e6                                 # the quadratures: left out by the seminorm
    assert compiled_norm(x, x * 0, x * 0, np.ones(W), semi) == pytest.approx(1.0, rel=1e-15)


# The Alg. 1 formulas: the step clipped at a stop time, and the jump at an output time.

@settings(max_examples=200, deadline=None)
@given(t=st.floats(-1e3, 1e3), span=st.floats(1e-12, 10.0), frac=st.floats(1e-3, 3.0),
       backward=st.booleans())
def test_a_clipped_step_lands_on_the_stop_time_and_never_passes_it(t, span, frac, backward):
    direction = -1.0 if backward else 1.0
    t_stop = t + direction * span
    h = direction * span * frac
    for clip in (clip_step, compiled_clip):
        last, h_step, t_new = clip(t, h, t_stop, direction)
        if frac >= 1.0:                             # the proposal reaches t_stop
            assert last
        if last:
            assert t_new == t_stop and h_step == t_stop - t
        else:
            assert h_step == h and t_new == t + h and direction * (t_stop - t_new) > 0


compiled_clip = njit(lambda t, h, t_stop, direction: clip_step(t, h, t_stop, direction))


def jump_oracle(state, a0, with_time, y, g, f):
    """Chen et al. 2018, Alg. 1 / App. C at t_i, written out on whole arrays."""
    D = y.size
    new = state.copy()
    if a0:
        new[:D] = y
    new[a0:a0 + D] += g
    g_f = float(g @ f) if with_time else 0.0
    if with_time:
        new[-1] -= g_f
    return new, g_f


@pytest.mark.parametrize("a0_is_D", [True, False])
@pytest.mark.parametrize("with_time", [True, False])
def test_the_jump_at_an_output_time_matches_alg_1(a0_is_D, with_time):
    rng = np.random.default_rng(3)
    D, P = 3, 4
    a0 = D if a0_is_D else 0
    W = a0 + D + P + 1
    y, g, f = rng.standard_normal((3, D))
    cst = constants(np.float64, get_tableau("dopri5"), 1e-6, {}, forward_parts(W))
    jump = njit(lambda s, a0, i_t, y, g, f, D, cst: adjoint_jump(s, a0, i_t, y, g, f, D, cst))
    for fn in (jump, adjoint_jump):
        state = rng.standard_normal(W)
        want, want_gf = jump_oracle(state, a0, with_time, y, g, f)
        got_gf = fn(state, a0, W - 1 if with_time else -1, y, g, f, D, cst)
        np.testing.assert_allclose(state, want, rtol=1e-15, atol=1e-15)
        assert got_gf == pytest.approx(want_gf, rel=1e-14, abs=1e-15)
