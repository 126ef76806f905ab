"""Butcher tableaus of the explicit Runge–Kutta methods, in textbook form.

A method is only data: nodes ``c`` (with c₁ = 0), the strictly lower-triangular stage matrix
``A``, weights ``b`` and, for embedded pairs, the error weights ``b_err = b − b̂`` (the
difference between the propagated solution and the embedded one, so Σ b_err = 0). The solver
runs every method through one stage loop (``pyode.solvers.rk_step``).

Dense output
------------
Every adaptive method here is FSAL (first same as last: the last stage is f(t + h, y_new)), so
the step's end derivative is free and the continuous extension is written as

    y(t + θh) = y + h Σᵢ bᵢ(θ) kᵢ,   bᵢ(θ) = Σⱼ P[i, j] θ^(j+1),   θ ∈ [0, 1].

By default ``P`` is the cubic Hermite interpolant through (y, k₁) and (y_new, k_s) (HNW I,
§II.6, eq. (6.7)); a method may add its own continuous extension — for dopri5 the order-4 one of
Dormand & Prince / Hairer (``d`` coefficients below), which adds d·θ²(1 − θ)² to the Hermite
polynomial.
"""
from dataclasses import dataclass, field
from fractions import Fraction as F

import numpy as np

from .suggest import method_hint

# Tolerance of the construction checks: tableau entries are ratios of small integers, so the
# invariants hold to a few ulps.
_CHECK_TOL = 1e-14


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
    source : str
        Where the numbers come from (paper, table, page).

    Raises
    ------
    ValueError
        If shapes disagree, A is not strictly lower triangular, rows of A do not sum to c,
        Σ b ≠ 1, Σ b_err ≠ 0, or an adaptive method is not FSAL.
    """

    name: str
    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    order: int
    b_err: np.ndarray = None
    error_order: int = None
    dense_d: np.ndarray = None
    source: str = ""
    fsal: bool = field(init=False)
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
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)
        # FSAL is derived, not declared: the last stage is evaluated at (t + h, y_new).
        fsal = s > 1 and c[-1] == 1.0 and np.array_equal(A[-1], b) and b[-1] == 0.0
        object.__setattr__(self, "fsal", bool(fsal))
        if self.b_err is not None:
            b_err = np.asarray(self.b_err, dtype=np.float64)
            if b_err.shape != (s,):
                raise ValueError(f"{self.name}: b_err has shape {b_err.shape}, need ({s},)")
            if abs(b_err.sum()) > _CHECK_TOL:
                raise ValueError(f"{self.name}: error weights b_err must sum to 0, "
                                 f"got {b_err.sum()!r}")
            if self.error_order is None:
                raise ValueError(f"{self.name}: an embedded pair needs error_order")
            if not fsal:
                raise ValueError(f"{self.name}: adaptive methods must be FSAL here (dense output "
                                 "uses the free end derivative)")
            object.__setattr__(self, "b_err", b_err)
            object.__setattr__(self, "P", self._dense_matrix())
        else:
            object.__setattr__(self, "P", None)

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
        plus, when ``dense_d`` is given, h·(θ² − 2θ³ + θ⁴)·Σ dᵢ kᵢ.
        """
        s = self.n_stages
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

METHODS = {tab.name: tab for tab in (EULER, MIDPOINT, RK4, BOSH3, DOPRI5)}
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
