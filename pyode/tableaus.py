"""Butcher tableaus of the explicit Runge–Kutta methods, in textbook form.

A method is only data: nodes ``c`` (with c₁ = 0), the strictly lower-triangular stage matrix
``A``, weights ``b`` and, for embedded pairs, the error weights ``b_err = b − b̂`` (the
difference between the propagated solution and the embedded one, so Σ b_err = 0). The solver
runs every method through one stage loop (``pyode.solvers.rk_step``).

Dense output
------------
Every adaptive method here is FSAL (first same as last: the last stage is f(t + h, y_new)), so
the step's end derivative is free. An embedded pair that is not FSAL as printed (Heun–Euler,
Fehlberg) gets that stage appended on construction: cₛ₊₁ = 1, row s + 1 of A equal to b, weight
0 in b and b_err. The appended stage is the next step's first stage, so an accepted step costs
what the printed method costs; a rejected one costs one evaluation more. (scipy's ``rk.py``
makes the same evaluation outside the tableau, for the same reason.) The continuous extension
is written as

    y(t + θh) = y + h Σᵢ bᵢ(θ) kᵢ,   bᵢ(θ) = Σⱼ P[i, j] θ^(j+1),   θ ∈ [0, 1].

By default ``P`` is the cubic Hermite interpolant through (y, k₁) and (y_new, k_s) (HNW I,
§II.6, eq. (6.7)); a method may add its own continuous extension — for dopri5 the order-4 one of
Dormand & Prince / Hairer (``d`` coefficients below), which adds d·θ²(1 − θ)² to the Hermite
polynomial; tsit5 gives its own polynomials bᵢ(θ) in full (``dense_P``).
"""
from dataclasses import dataclass, field
from fractions import Fraction as F

import numpy as np

from .suggest import method_hint

# Tolerance of the construction checks: tableau entries are ratios of small integers, so the
# invariants hold to a few ulps.
_CHECK_TOL = 1e-14
# Dense-output polynomials printed as 16-digit decimals (tsit5) reproduce b to ~1e-15 per term.
_DENSE_TOL = 1e-13


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method.

    Parameters
    ----------
    name : str
    c : array_like, shape (s,)
        Nodes, c[0] = 0.
    A : array_like, shape (s, s)
        Strictly lower-triangular stage matrix; row i sums to c[i].
    b : array_like, shape (s,)
        Weights of the propagated solution (Σ b = 1).
    order : int
        Order of the propagated solution.
    b_err : array_like, shape (s,), optional
        Error weights b − b̂ of the embedded pair (Σ b_err = 0); None for fixed-step methods.
    error_order : int, optional
        Order of the embedded solution b̂; the step-size exponent is −1/(error_order + 1).
    dense_d : array_like, shape (s,), optional
        The method's own continuous-extension coefficients, added to the Hermite interpolant
        as h·θ²(1 − θ)²·Σ dᵢ kᵢ.
    dense_P : array_like, shape (s, 4), optional
        The method's own continuous extension in full: bᵢ(θ) = Σⱼ P[i, j] θ^(j+1) (instead of
        the Hermite cubic; not together with ``dense_d``). Σⱼ P[i, j] must equal bᵢ.
    source : str
        Where the numbers come from (paper, table, page).

    Raises
    ------
    ValueError
        If shapes disagree, A is not strictly lower triangular, rows of A do not sum to c,
        Σ b ≠ 1, Σ b_err ≠ 0, or ``dense_P`` does not reproduce b at θ = 1.

    Notes
    -----
    An embedded pair that is not FSAL as given is stored with the stage f(t + h, y_new)
    appended (module docstring): ``n_stages`` is then one more than the printed tableau's and
    ``fsal_appended`` is True.
    """

    name: str
    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    order: int
    b_err: np.ndarray = None
    error_order: int = None
    dense_d: np.ndarray = None
    dense_P: np.ndarray = None
    source: str = ""
    fsal: bool = field(init=False)
    fsal_appended: bool = field(init=False)
    P: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        c = np.asarray(self.c, dtype=np.float64)
        A = np.asarray(self.A, dtype=np.float64)
        b = np.asarray(self.b, dtype=np.float64)
        s = c.shape[0]
        if c.ndim != 1 or A.shape != (s, s) or b.shape != (s,):
            raise ValueError(f"{self.name}: shapes of c {c.shape}, A {A.shape}, b {b.shape} "
                             "disagree; need c (s,), A (s, s), b (s,)")
        if c[0] != 0.0:
            raise ValueError(f"{self.name}: c[0] must be 0, got {c[0]}")
        if np.any(np.triu(A) != 0.0):
            raise ValueError(f"{self.name}: A must be strictly lower triangular (explicit method)")
        if np.max(np.abs(A.sum(axis=1) - c)) > _CHECK_TOL:
            raise ValueError(f"{self.name}: rows of A must sum to c; got {A.sum(axis=1)} vs {c}")
        if abs(b.sum() - 1.0) > _CHECK_TOL:
            raise ValueError(f"{self.name}: weights b must sum to 1, got {b.sum()!r}")
        b_err = None
        if self.b_err is not None:
            b_err = np.asarray(self.b_err, dtype=np.float64)
            if b_err.shape != (s,):
                raise ValueError(f"{self.name}: b_err has shape {b_err.shape}, need ({s},)")
            if abs(b_err.sum()) > _CHECK_TOL:
                raise ValueError(f"{self.name}: error weights b_err must sum to 0, "
                                 f"got {b_err.sum()!r}")
            if self.error_order is None:
                raise ValueError(f"{self.name}: an embedded pair needs error_order")
        # FSAL is derived, not declared: the last stage is evaluated at (t + h, y_new).
        fsal = _is_fsal(c, A, b)
        appended = b_err is not None and not fsal
        dense_P = None if self.dense_P is None else np.asarray(self.dense_P, dtype=np.float64)
        dense_d = None if self.dense_d is None else np.asarray(self.dense_d, dtype=np.float64)
        if appended:
            c, A, b, b_err = _append_fsal_stage(c, A, b, b_err)
            dense_d = None if dense_d is None else np.append(dense_d, 0.0)
            dense_P = None if dense_P is None else np.vstack([dense_P, np.zeros(4)])
            fsal = True
        for name, value in (("c", c), ("A", A), ("b", b), ("b_err", b_err),
                            ("dense_d", dense_d), ("dense_P", dense_P)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "fsal", bool(fsal))
        object.__setattr__(self, "fsal_appended", bool(appended))
        object.__setattr__(self, "P", self._dense_matrix() if b_err is not None else None)

    @property
    def n_stages(self):
        """Number of stages s."""
        return self.c.shape[0]

    @property
    def adaptive(self):
        """True for embedded pairs (step-size control possible)."""
        return self.b_err is not None

    def _dense_matrix(self):
        """P (s, 4): bᵢ(θ) = Σⱼ P[i, j] θ^(j+1) of the continuous extension (module docstring).

        Cubic Hermite through (y, k₁), (y_new, k_s):
            y(θ) − y = h[θ k₁ + θ²(3 Σb k − 2k₁ − k_s) + θ³(−2 Σb k + k₁ + k_s)],
        plus, when ``dense_d`` is given, h·(θ² − 2θ³ + θ⁴)·Σ dᵢ kᵢ; ``dense_P`` replaces it all.
        """
        s = self.n_stages
        if self.dense_P is not None:
            if self.dense_d is not None:
                raise ValueError(f"{self.name}: give dense_d or dense_P, not both")
            if self.dense_P.shape != (s, 4):
                raise ValueError(f"{self.name}: dense_P has shape {self.dense_P.shape}, "
                                 f"need ({s}, 4)")
            miss = np.max(np.abs(self.dense_P.sum(axis=1) - self.b))
            if miss > _DENSE_TOL:
                raise ValueError(f"{self.name}: dense_P must give b at θ = 1 (Σⱼ P[i, j] = bᵢ); "
                                 f"misses by {miss:.3g}")
            return self.dense_P.copy()
        e1 = np.zeros(s)
        e1[0] = 1.0
        es = np.zeros(s)
        es[-1] = 1.0
        P = np.zeros((s, 4))
        P[:, 0] = e1
        P[:, 1] = 3.0 * self.b - 2.0 * e1 - es
        P[:, 2] = -2.0 * self.b + e1 + es
        if self.dense_d is not None:
            d = np.asarray(self.dense_d, dtype=np.float64)
            P[:, 1] += d
            P[:, 2] -= 2.0 * d
            P[:, 3] += d
        return P


def _is_fsal(c, A, b):
    """The last stage is f(t + h, y + h Σ b K): c_s = 1, row s of A equal to b, b_s = 0."""
    return c.shape[0] > 1 and c[-1] == 1.0 and np.array_equal(A[-1], b) and b[-1] == 0.0


def _append_fsal_stage(c, A, b, b_err):
    """The tableau with the stage f(t + h, y_new) added: c = 1, A row = b, weight 0."""
    s = c.shape[0]
    A_new = np.zeros((s + 1, s + 1))
    A_new[:s, :s] = A
    A_new[s, :s] = b
    return (np.append(c, 1.0), A_new, np.append(b, 0.0), np.append(b_err, 0.0))


def _f(rows):
    """Exact fractions (written as the papers print them) to float64."""
    return np.array([[float(F(x)) for x in row] for row in rows]) if isinstance(rows[0], list) \
        else np.array([float(F(x)) for x in rows])


# Euler's method (order 1). HNW I, §II.1, eq. (1.3).
EULER = ButcherTableau(
    name="euler", c=_f(["0"]), A=_f([["0"]]), b=_f(["1"]), order=1,
    source="Hairer, Nørsett & Wanner, Solving ODEs I, §II.1, eq. (1.3)")

# Explicit midpoint rule (order 2). HNW I, §II.1, eq. (1.7) (Runge 1895).
MIDPOINT = ButcherTableau(
    name="midpoint", c=_f(["0", "1/2"]), A=_f([["0", "0"], ["1/2", "0"]]), b=_f(["0", "1"]),
    order=2, source="Hairer, Nørsett & Wanner, Solving ODEs I, §II.1, eq. (1.7)")

# The classical Runge–Kutta method (order 4). HNW I, §II.1, Table 1.2 (left).
RK4 = ButcherTableau(
    name="rk4",
    c=_f(["0", "1/2", "1/2", "1"]),
    A=_f([["0", "0", "0", "0"],
          ["1/2", "0", "0", "0"],
          ["0", "1/2", "0", "0"],
          ["0", "0", "1", "0"]]),
    b=_f(["1/6", "1/3", "1/3", "1/6"]),
    order=4, source="Hairer, Nørsett & Wanner, Solving ODEs I, §II.1, Table 1.2")

# Bogacki–Shampine 3(2) pair, FSAL. Bogacki & Shampine (1989), "A 3(2) pair of Runge-Kutta
# formulas", Appl. Math. Lett. 2(4), 321–325, Table 1 (b̂ = 7/24, 1/4, 1/3, 1/8).
BOSH3 = ButcherTableau(
    name="bosh3",
    c=_f(["0", "1/2", "3/4", "1"]),
    A=_f([["0", "0", "0", "0"],
          ["1/2", "0", "0", "0"],
          ["0", "3/4", "0", "0"],
          ["2/9", "1/3", "4/9", "0"]]),
    b=_f(["2/9", "1/3", "4/9", "0"]),
    b_err=np.array(
        [float(F(2, 9) - F(7, 24)), float(F(1, 3) - F(1, 4)), float(F(4, 9) - F(1, 3)),
         float(F(0) - F(1, 8))]),
    order=3, error_order=2,
    source="Bogacki & Shampine, Appl. Math. Lett. 2 (1989) 321-325, Table 1")

# Dormand–Prince 5(4) pair, FSAL. Dormand & Prince (1980), J. Comp. Appl. Math. 6(1), 19–26,
# Table 2 (RK5(4)7M); also HNW I, §II.5, Table 5.2. b̂ (order 4) =
# 5179/57600, 0, 7571/16695, 393/640, −92097/339200, 187/2100, 1/40.
_DOPRI5_B = [F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0)]
_DOPRI5_BHAT = [F(5179, 57600), F(0), F(7571, 16695), F(393, 640), F(-92097, 339200),
                F(187, 2100), F(1, 40)]
DOPRI5 = ButcherTableau(
    name="dopri5",
    c=_f(["0", "1/5", "3/10", "4/5", "8/9", "1", "1"]),
    A=_f([["0", "0", "0", "0", "0", "0", "0"],
          ["1/5", "0", "0", "0", "0", "0", "0"],
          ["3/40", "9/40", "0", "0", "0", "0", "0"],
          ["44/45", "-56/15", "32/9", "0", "0", "0", "0"],
          ["19372/6561", "-25360/2187", "64448/6561", "-212/729", "0", "0", "0"],
          ["9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656", "0", "0"],
          ["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84", "0"]]),
    b=np.array([float(x) for x in _DOPRI5_B]),
    b_err=np.array([float(x - y) for x, y in zip(_DOPRI5_B, _DOPRI5_BHAT)]),
    order=5, error_order=4,
    # Continuous extension of order 4: Hairer's DOPRI5 code (dense output coefficients d1..d7,
    # HNW I, §II.6, "Dense output for DOPRI5"), with d2 = 0.
    dense_d=np.array([float(F(-12715105075, 11282082432)), 0.0,
                      float(F(87487479700, 32700410799)), float(F(-10690763975, 1880347072)),
                      float(F(701980252875, 199316789632)), float(F(-1453857185, 822651844)),
                      float(F(69997945, 29380423))]),
    source="Dormand & Prince, J. Comp. Appl. Math. 6 (1980) 19-26, Table 2; HNW I, Table 5.2")

# Ralston's second-order method, the one of least error bound (α = 2/3). Ralston (1962),
# "Runge-Kutta methods with minimum error bounds", Math. Comp. 16, 431–437.
RALSTON = ButcherTableau(
    name="ralston", c=_f(["0", "2/3"]), A=_f([["0", "0"], ["2/3", "0"]]), b=_f(["1/4", "3/4"]),
    order=2, source="Ralston, Math. Comp. 16 (1962) 431-437")

# Heun's method of order 3 (Heun 1900). HNW I, §II.1.
HEUN3 = ButcherTableau(
    name="heun3",
    c=_f(["0", "1/3", "2/3"]),
    A=_f([["0", "0", "0"],
          ["1/3", "0", "0"],
          ["0", "2/3", "0"]]),
    b=_f(["1/4", "0", "3/4"]),
    order=3, source="Heun (1900); Hairer, Nørsett & Wanner, Solving ODEs I, §II.1")

# The strong-stability-preserving third-order method of Shu & Osher (1988), J. Comput. Phys.
# 77, 439–471 (their third-order TVD scheme), as a Butcher tableau (three convex Euler steps).
SSPRK3 = ButcherTableau(
    name="ssprk3",
    c=_f(["0", "1", "1/2"]),
    A=_f([["0", "0", "0"],
          ["1", "0", "0"],
          ["1/4", "1/4", "0"]]),
    b=_f(["1/6", "1/6", "2/3"]),
    order=3, source="Shu & Osher, J. Comput. Phys. 77 (1988) 439-471")

# Heun–Euler 2(1): Heun's trapezoidal predictor-corrector propagated, explicit Euler embedded
# (b̂ = 1, 0); torchdiffeq's "adaptive_heun". Not FSAL as printed: the stage f(t + h, y_new)
# is appended (module docstring). HNW I, §II.4 (embedded formulas).
HEUN_EULER = ButcherTableau(
    name="heun_euler",
    c=_f(["0", "1"]),
    A=_f([["0", "0"],
          ["1", "0"]]),
    b=_f(["1/2", "1/2"]),
    b_err=_f(["-1/2", "1/2"]),
    order=2, error_order=1,
    source="Hairer, Nørsett & Wanner, Solving ODEs I, §II.4 (Heun's method with Euler embedded)")

# Runge–Kutta–Fehlberg 4(5). Fehlberg (1969), NASA TR R-315; HNW I, §II.4 ("RKF45").
# b4 = 25/216, 0, 1408/2565, 2197/4104, −1/5, 0 (order 4) and
# b5 = 16/135, 0, 6656/12825, 28561/56430, −9/50, 2/55 (order 5).
# Design note: Fehlberg propagated the order-4 solution; we propagate the order-5 one (local
# extrapolation), as dopri5, bosh3 and tsit5 do here, so that ``order`` is 5; the step
# exponent −1/(error_order + 1) = −1/5 is the one Fehlberg's order-4 error estimate calls for.
# Not FSAL: the stage f(t + h, y_new) is appended (module docstring).
_RKF_B4 = [F(25, 216), F(0), F(1408, 2565), F(2197, 4104), F(-1, 5), F(0)]
_RKF_B5 = [F(16, 135), F(0), F(6656, 12825), F(28561, 56430), F(-9, 50), F(2, 55)]
FEHLBERG45 = ButcherTableau(
    name="fehlberg45",
    c=_f(["0", "1/4", "3/8", "12/13", "1", "1/2"]),
    A=_f([["0", "0", "0", "0", "0", "0"],
          ["1/4", "0", "0", "0", "0", "0"],
          ["3/32", "9/32", "0", "0", "0", "0"],
          ["1932/2197", "-7200/2197", "7296/2197", "0", "0", "0"],
          ["439/216", "-8", "3680/513", "-845/4104", "0", "0"],
          ["-8/27", "2", "-3544/2565", "1859/4104", "-11/40", "0"]]),
    b=np.array([float(x) for x in _RKF_B5]),
    b_err=np.array([float(x - y) for x, y in zip(_RKF_B5, _RKF_B4)]),
    order=5, error_order=4,
    source="Fehlberg, NASA TR R-315 (1969); HNW I, §II.4")

# Tsitouras 5(4), FSAL, with its own continuous extension of order 4. Ch. Tsitouras (2011),
# "Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying assumption",
# Comput. Math. Appl. 62, 770–775: the coefficients as published, to 16 digits, and the
# dense-output polynomials bᵢ(θ). The tests check every order condition at 1e-14. The error
# weights are b − b̂ with
# b̂ − b = −0.00178001105222577714, −0.0008164344596567469, 0.007880878010261995,
# −0.1447110071732629, 0.5823571654525552, −0.45808210592918697, 1/66.
_TSIT5_B = [0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
            -3.290069515436081, 2.324710524099774, 0.0]
_TSIT5_BHAT_MINUS_B = [-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
                       -0.1447110071732629, 0.5823571654525552, -0.45808210592918697, 1 / 66]
TSIT5 = ButcherTableau(
    name="tsit5",
    c=np.array([0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0]),
    A=np.array([
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.161, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [-0.008480655492356989, 0.335480655492357, 0.0, 0.0, 0.0, 0.0, 0.0],
        [2.8971530571054935, -6.359448489975075, 4.3622954328695815, 0.0, 0.0, 0.0, 0.0],
        [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525,
         0.0, 0.0, 0.0],
        [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
         -0.028269050394068383, 0.0, 0.0],
        _TSIT5_B]),
    b=np.array(_TSIT5_B),
    b_err=-np.array(_TSIT5_BHAT_MINUS_B),
    order=5, error_order=4,
    # bᵢ(θ) = Σⱼ P[i, j] θ^(j+1); rows i = 1 … 7.
    dense_P=np.array([
        [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        [0.0, 0.1317, -0.2234, 0.1017],
        [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
        [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
        [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
        [0.0, 1.5, -4.0, 2.5]]),
    source="Tsitouras, Comput. Math. Appl. 62 (2011) 770-775")

METHODS = {tab.name: tab for tab in (EULER, MIDPOINT, RALSTON, HEUN3, SSPRK3, RK4, HEUN_EULER,
                                     BOSH3, FEHLBERG45, DOPRI5, TSIT5)}
"""Method name → :class:`ButcherTableau`."""


def get_tableau(method):
    """Return the tableau named ``method``.

    Raises
    ------
    ValueError
        If ``method`` is not one of ``METHODS``: the message lists the valid names and, for
        the names of scipy, torchdiffeq and diffrax (``"RK45"``, ``"tsit5"``, ``"adams"``,
        ...) or a typo, says what to use (``pyode.suggest``).
    """
    if isinstance(method, ButcherTableau):
        return method
    try:
        return METHODS[method]
    except (KeyError, TypeError):
        hint = method_hint(method, METHODS)
        raise ValueError(f"method={method!r} is not known"
                         + (f" ({hint})" if hint else "")
                         + f"; valid methods: {', '.join(sorted(METHODS))}") from None
