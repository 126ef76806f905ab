"""Butcher tableaus: construction invariants, the order conditions, dense output coefficients.

The order conditions are Butcher's rooted-tree conditions Σ bᵢ Φᵢ(τ) = 1/γ(τ) (HNW I, §II.2,
Theorem 2.13; orders 1–5, 17 trees). They are written out below as the textbook prints them and
cross-checked against a tree generator, which also supplies the 20 conditions of order 6 used to
show that no method is of higher order than it claims.

Tolerances: tableau entries are ratios of small integers rounded to float64, and each condition
is a short sum of products of O(1–50) numbers, so it holds to a few ulps: 1e-14 (STYLE.md §15).
A condition that *fails* misses by a rational number with a small denominator, ≥ 1e-4 here; we
require a miss of at least 1e-8, far from rounding and far below any true miss.
"""
import itertools

import numpy as np
import pytest

from pyode.tableaus import METHODS, ButcherTableau, get_tableau

TOL = 1e-14
FAIL_MIN = 1e-8


# ---------------------------------------------------------------------------------------------
# The 17 conditions of orders 1–5, written out (HNW I, §II.2). Each entry:
# (order, elementary weight Φ(b, A, c) = Σ b·(…), 1/γ).
# ---------------------------------------------------------------------------------------------

def written_conditions():
    def cond(order, phi, gamma):
        return order, phi, 1.0 / gamma

    return [
        # order 1
        cond(1, lambda b, A, c: b.sum(), 1),
        # order 2
        cond(2, lambda b, A, c: b @ c, 2),
        # order 3
        cond(3, lambda b, A, c: b @ c**2, 3),
        cond(3, lambda b, A, c: b @ A @ c, 6),
        # order 4
        cond(4, lambda b, A, c: b @ c**3, 4),
        cond(4, lambda b, A, c: b @ (c * (A @ c)), 8),
        cond(4, lambda b, A, c: b @ A @ c**2, 12),
        cond(4, lambda b, A, c: b @ A @ A @ c, 24),
        # order 5
        cond(5, lambda b, A, c: b @ c**4, 5),
        cond(5, lambda b, A, c: b @ (c**2 * (A @ c)), 10),
        cond(5, lambda b, A, c: b @ (c * (A @ c**2)), 15),
        cond(5, lambda b, A, c: b @ (c * (A @ A @ c)), 30),
        cond(5, lambda b, A, c: b @ (A @ c) ** 2, 20),
        cond(5, lambda b, A, c: b @ A @ c**3, 20),
        cond(5, lambda b, A, c: b @ A @ (c * (A @ c)), 40),
        cond(5, lambda b, A, c: b @ A @ A @ c**2, 60),
        cond(5, lambda b, A, c: b @ A @ A @ A @ c, 120),
    ]


# ---------------------------------------------------------------------------------------------
# Generated conditions: a rooted tree is the sorted tuple of its subtrees; the leaf is ().
# φ(τ) = Π_children A φ(child) (a vector over stages), γ(τ) = |τ| Π_children γ(child).
# ---------------------------------------------------------------------------------------------

def _canon(tree):
    return tuple(sorted(tree))


def _grow(tree):
    """Every tree obtained by attaching one leaf to some node of ``tree``."""
    out = [_canon(tree + ((),))]
    for i, child in enumerate(tree):
        for g in _grow(child):
            out.append(_canon(tree[:i] + (g,) + tree[i + 1:]))
    return out


def trees_of_order(n):
    level = {()}
    for _ in range(n - 1):
        level = {g for t in level for g in _grow(t)}
    return sorted(level)


def _size(tree):
    return 1 + sum(_size(ch) for ch in tree)


def _gamma(tree):
    return _size(tree) * np.prod([_gamma(ch) for ch in tree])


def _phi(tree, A):
    v = np.ones(A.shape[0])
    for ch in tree:
        v = v * (A @ _phi(ch, A))
    return v


def generated_residuals(b, A, order):
    """|Σ b Φ(τ) − 1/γ(τ)| for every tree of the given order."""
    return np.array([abs(b @ _phi(t, A) - 1.0 / _gamma(t)) for t in trees_of_order(order)])


def written_residuals(b, A, c, order):
    return np.array([abs(phi(b, A, c) - inv_gamma)
                     for o, phi, inv_gamma in written_conditions() if o == order])


def embedded(tab):
    return tab.b - tab.b_err


ALL = sorted(METHODS)
ADAPTIVE = sorted(name for name, tab in METHODS.items() if tab.adaptive)


# ---------------------------------------------------------------------------------------------
# The test harness checks itself.
# ---------------------------------------------------------------------------------------------

def test_tree_counts_match_the_textbook():
    # Number of rooted trees of order 1..6: 1, 1, 2, 4, 9, 20 (OEIS A000081).
    assert [len(trees_of_order(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]
    assert len(written_conditions()) == 17


def test_written_conditions_agree_with_the_tree_generator():
    # On an arbitrary explicit tableau (c = A·1), the written-out conditions and the generated
    # ones are the same multiset of (Φ, 1/γ) per order.
    rng = np.random.default_rng(0)
    s = 6
    A = np.tril(rng.normal(size=(s, s)), -1)
    b = rng.normal(size=s)
    c = A.sum(axis=1)
    for order in range(1, 6):
        written = sorted((round(phi(b, A, c), 10), round(g, 12))
                         for o, phi, g in written_conditions() if o == order)
        generated = sorted((round(b @ _phi(t, A), 10), round(1.0 / _gamma(t), 12))
                           for t in trees_of_order(order))
        assert written == generated


# ---------------------------------------------------------------------------------------------
# Invariants and order conditions of every shipped method.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_invariants(name):
    tab = METHODS[name]
    s = tab.n_stages
    assert tab.name == name
    assert tab.c.shape == (s,) and tab.A.shape == (s, s) and tab.b.shape == (s,)
    assert tab.c[0] == 0.0
    assert np.all(np.triu(tab.A) == 0.0)
    assert np.max(np.abs(tab.A.sum(axis=1) - tab.c)) <= TOL
    assert abs(tab.b.sum() - 1.0) <= TOL
    assert tab.source
    if tab.adaptive:
        assert tab.b_err.shape == (s,)
        assert abs(tab.b_err.sum()) <= TOL
        assert tab.error_order < tab.order
        # FSAL is derived: the last stage is f(t + h, y + h Σ b K).
        assert tab.fsal and tab.c[-1] == 1.0 and np.array_equal(tab.A[-1], tab.b)


@pytest.mark.parametrize("name", ALL)
def test_order_conditions_hold_up_to_order(name):
    tab = METHODS[name]
    assert 1 <= tab.order <= 5
    for order in range(1, tab.order + 1):
        res = written_residuals(tab.b, tab.A, tab.c, order)
        assert np.max(res) <= TOL, (name, order, res)


@pytest.mark.parametrize("name", ALL)
def test_order_is_not_higher_than_claimed(name):
    tab = METHODS[name]
    res = generated_residuals(tab.b, tab.A, tab.order + 1)
    assert np.max(res) >= FAIL_MIN, (name, res)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_order(name):
    tab = METHODS[name]
    bhat = embedded(tab)
    for order in range(1, tab.error_order + 1):
        res = written_residuals(bhat, tab.A, tab.c, order)
        assert np.max(res) <= TOL, (name, order, res)
    assert np.max(generated_residuals(bhat, tab.A, tab.error_order + 1)) >= FAIL_MIN


def test_known_orders():
    # The names promise these orders (HNW I; Ralston 1962; Shu & Osher 1988; Bogacki & Shampine
    # 1989; Fehlberg 1969; Dormand & Prince 1980; Tsitouras 2011). Stage counts include the
    # appended FSAL stage of heun_euler and fehlberg45.
    got = {name: (tab.order, tab.error_order, tab.n_stages) for name, tab in METHODS.items()}
    assert got == {"euler": (1, None, 1), "midpoint": (2, None, 2), "ralston": (2, None, 2),
                   "heun3": (3, None, 3), "ssprk3": (3, None, 3), "rk4": (4, None, 4),
                   "heun_euler": (2, 1, 3), "bosh3": (3, 2, 4), "fehlberg45": (5, 4, 7),
                   "dopri5": (5, 4, 7), "tsit5": (5, 4, 7)}


# ---------------------------------------------------------------------------------------------
# Dense output: bᵢ(θ) = Σⱼ P[i, j] θ^(j+1).
# ---------------------------------------------------------------------------------------------

def dense_weights(tab, theta):
    return tab.P @ theta ** np.arange(1, tab.P.shape[1] + 1)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_endpoints(name):
    tab = METHODS[name]
    # θ = 1 reproduces the step: Σⱼ P[i, j] = bᵢ.
    assert np.max(np.abs(tab.P.sum(axis=1) - tab.b)) <= TOL
    # d/dθ at θ = 0 is P[:, 0], which must be e1 (the interpolant starts with slope f(t, y)).
    e1 = np.zeros(tab.n_stages)
    e1[0] = 1.0
    assert np.array_equal(tab.P[:, 0], e1)
    # d/dθ at θ = 1 is e_s (slope f(t + h, y_new), the FSAL stage), for the Hermite part and
    # for dopri5's θ²(1 − θ)² correction alike: Σⱼ (j+1) P[i, j] = δ_is.
    es = np.zeros(tab.n_stages)
    es[-1] = 1.0
    dP1 = tab.P @ np.arange(1, tab.P.shape[1] + 1)
    assert np.max(np.abs(dP1 - es)) <= 10 * TOL


@pytest.mark.parametrize("name", ["dopri5", "tsit5"])
def test_own_dense_output_has_continuous_order_4(name):
    # A continuous extension of order 4 satisfies Σ bᵢ(θ) Φᵢ(τ) = θ^|τ| / γ(τ) for every tree
    # of order ≤ 4 and every θ (HNW I, §II.6: the order conditions of a continuous extension,
    # Σ bᵢ(θ) Φᵢ(τ) = θ^ρ(τ)/γ(τ)). The plain Hermite cubic would not.
    # Tolerance: tsit5's polynomials are printed to 16 digits with coefficients up to ~90, so
    # the rounding of a condition scales with the largest row sum of |P| (1 for fractions).
    tab = METHODS[name]
    tol = TOL * max(1.0, np.abs(tab.P).sum(axis=1).max())
    for theta in (0.1, 0.3, 0.5, 0.77, 1.0):
        bt = dense_weights(tab, theta)
        for order in range(1, 5):
            for tree in trees_of_order(order):
                got = bt @ _phi(tree, tab.A)
                assert abs(got - theta ** order / _gamma(tree)) <= tol, (theta, tree)
    # …and it is not of order 5 at θ = 1/2.
    bt = dense_weights(tab, 0.5)
    miss = [abs(bt @ _phi(t, tab.A) - 0.5 ** 5 / _gamma(t)) for t in trees_of_order(5)]
    assert max(miss) >= FAIL_MIN


# ---------------------------------------------------------------------------------------------
# Construction checks.
# ---------------------------------------------------------------------------------------------

HEUN = dict(c=[0.0, 1.0], A=[[0.0, 0.0], [1.0, 0.0]], b=[0.5, 0.5], order=2)
# Kutta's 3-stage order-3 method, a base whose entries the cases below break one at a time.
KUTTA3 = dict(c=[0.0, 0.5, 1.0], A=[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [-1.0, 2.0, 0.0]],
              b=[1 / 6, 2 / 3, 1 / 6], order=3)


def test_valid_custom_tableau_is_accepted():
    for base in (HEUN, KUTTA3):
        tab = ButcherTableau(name="custom", **base)
        assert not tab.adaptive and not tab.fsal and tab.P is None
        assert tab.n_stages == len(base["c"])
        for order in range(1, tab.order + 1):
            assert np.max(written_residuals(tab.b, tab.A, tab.c, order)) <= TOL


@pytest.mark.parametrize("change, words", [
    # rows of A do not sum to c
    (dict(c=[0.0, 0.5, 0.9]), "sum to c"),
    # Σ b ≠ 1
    (dict(b=[1 / 6, 2 / 3, 0.2]), "sum to 1"),
    # an entry above the diagonal (rows still sum to c)
    (dict(A=[[0.0, 0.0, 0.0], [0.3, 0.0, 0.2], [-1.0, 2.0, 0.0]]), "lower triangular"),
    # an entry on the diagonal (an implicit stage; rows still sum to c)
    (dict(A=[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [-1.0, 1.5, 0.5]]), "lower triangular"),
    # c₁ ≠ 0
    (dict(c=[0.1, 0.5, 1.0], A=[[0.1, 0.0, 0.0], [0.5, 0.0, 0.0], [-1.0, 2.0, 0.0]]),
     "c\\[0\\]"),
    # shapes disagree
    (dict(c=[0.0, 0.5]), "shape"),
    (dict(b=[0.5, 0.5]), "shape"),
])
def test_bad_tableau_raises(change, words):
    kwargs = {**KUTTA3, **change}
    with pytest.raises(ValueError, match=words):
        ButcherTableau(name="bad", **kwargs)


def test_bad_error_weights_raise():
    bosh = METHODS["bosh3"]
    base = dict(c=bosh.c, A=bosh.A, b=bosh.b, order=3, error_order=2)
    with pytest.raises(ValueError, match="sum to 0"):
        ButcherTableau(name="bad", b_err=bosh.b_err + 1e-3, **base)
    with pytest.raises(ValueError, match="shape"):
        ButcherTableau(name="bad", b_err=bosh.b_err[:-1], **base)
    with pytest.raises(ValueError, match="error_order"):
        ButcherTableau(name="bad", c=bosh.c, A=bosh.A, b=bosh.b, order=3, b_err=bosh.b_err)
    # A tolerance check, not exact equality: a rounding-sized Σ b_err passes.
    ButcherTableau(name="ok", b_err=bosh.b_err + np.array([1e-16, 0, 0, 0]), **base)


def test_embedded_pair_that_is_not_fsal_gets_the_end_stage_appended():
    # Heun with Euler embedded, as printed (2 stages, not FSAL): stored with a third stage at
    # c = 1 whose A row is b, weight 0 — so it is FSAL and the order conditions are unchanged.
    tab = ButcherTableau(name="he", b_err=[-0.5, 0.5], error_order=1, **HEUN)
    assert tab.fsal and tab.fsal_appended and tab.n_stages == 3
    np.testing.assert_array_equal(tab.c, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(tab.A[2], [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(tab.b, [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(tab.b_err, [-0.5, 0.5, 0.0])
    assert np.max(written_residuals(tab.b, tab.A, tab.c, 2)) <= TOL
    # An FSAL pair as printed is stored as printed.
    assert not METHODS["dopri5"].fsal_appended and METHODS["dopri5"].n_stages == 7


def test_dense_P_must_reproduce_b():
    tsit5 = METHODS["tsit5"]
    base = dict(c=tsit5.c, A=tsit5.A, b=tsit5.b, b_err=tsit5.b_err, order=5, error_order=4)
    bad = tsit5.P.copy()
    bad[3, 2] += 1e-6
    with pytest.raises(ValueError, match="dense_P"):
        ButcherTableau(name="bad", dense_P=bad, **base)
    with pytest.raises(ValueError, match="not both"):
        ButcherTableau(name="bad", dense_P=tsit5.P, dense_d=np.zeros(7), **base)


def test_get_tableau():
    for name, tab in METHODS.items():
        assert get_tableau(name) is tab
        assert get_tableau(tab) is tab
    with pytest.raises(ValueError) as exc:
        get_tableau("rk45")
    for name in METHODS:
        assert name in str(exc.value)
    with pytest.raises(ValueError):
        get_tableau(None)


def test_tableaus_are_frozen():
    tab = METHODS["rk4"]
    with pytest.raises(Exception):
        tab.order = 5
    # All numeric fields are float64 arrays (the kernels rely on the dtype).
    for t in METHODS.values():
        assert t.c.dtype == t.A.dtype == t.b.dtype == np.float64
        assert list(itertools.chain(t.c.shape, t.A.shape)) == [t.n_stages] * 3
