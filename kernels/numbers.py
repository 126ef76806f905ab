"""The numbers a kernel works with, in one typed array ``cst``, and the packed tableau.

Every number the step formulas (``kernels.step``) and the drivers use comes from ``cst``, a
1-D array of the working dtype, by the named slots ``C_*`` below, never from a Python float
literal: a float32 kernel then does its arithmetic in float32 (a literal would be float64).
The NumPy batch driver for Python fields (``pyode.solvers``) builds the same array, so both
drivers compute with the same numbers.
"""
import numpy as np

from .codes import MAX_FACTOR, MIN_FACTOR, SAFETY, UNDERFLOW_ULPS
from .mlp import C_ONE, C_THREE, C_ZERO  # noqa: F401  (slots 0, 1, 2: kernels.mlp's)

(C_RTOL, C_FIRST_STEP, C_MAX_STEPS, C_EXPONENT, C_INV_ORDER, C_N_PARTS, C_FSAL, C_STEP_SIZE,
 C_SAFETY, C_MIN_FACTOR, C_MAX_FACTOR, C_ERR_FLOOR, C_ULP_EPS, C_ULP_TINY, C_H_SMALL, C_H_DEFAULT,
 C_CENTI, C_HUNDRED, C_D_TINY, C_MILLI, C_FIXED_SHRINK, C_HALF, C_PARTS) = range(3, 26)
#: C_PARTS … C_PARTS + 4: the boundaries of the error norm's parts (``kernels.step.scaled_norm``):
#: part p holds the state components cst[C_PARTS + p] … cst[C_PARTS + p + 1] − 1.
N_PARTS_MAX = 4
N_CONSTANTS = C_PARTS + N_PARTS_MAX + 1


def forward_parts(D):
    """Norm parts of a forward solve: one part, all D components."""
    return (0, D, D, D, D), 1


def adjoint_parts(Z, D, P_theta, with_time, seminorm):
    """Norm parts of a backward state [z, a, a_θ, a_t] (Z = D with z, 0 without; P_theta = P
    when a_θ is in the state): each part its own RMS, the maximum of them; the seminorm keeps
    z and a only (``kernels.step.scaled_norm``)."""
    bounds = (0, Z, Z + D, Z + D + P_theta, Z + D + P_theta + (1 if with_time else 0))
    return bounds, 2 if seminorm else 4


def constants(dtype, tab, rtol, opts, parts, t_dtype=None):
    """The ``cst`` array (module docstring) of one solve.

    Parameters
    ----------
    dtype : the working (state) dtype
    tab : pyode ButcherTableau
    rtol : float
    opts : dict of the solver options (first_step, max_num_steps, step_size)
    parts : (bounds (5,), n_parts) of :func:`forward_parts` / :func:`adjoint_parts`
    t_dtype : the dtype of the time variable (default ``dtype``): the step floor is 10 ulps
        of t
    """
    info = np.finfo(dtype)
    t_info = np.finfo(dtype if t_dtype is None else t_dtype)
    q = tab.error_order or 1
    bounds, n_parts = parts
    cst = np.zeros(N_CONSTANTS, dtype=dtype)
    cst[C_ZERO], cst[C_ONE], cst[C_THREE] = 0.0, 1.0, 3.0
    cst[C_RTOL] = rtol
    cst[C_FIRST_STEP] = opts.get("first_step") or 0.0
    cst[C_MAX_STEPS] = opts.get("max_num_steps", 0)
    cst[C_EXPONENT] = -1.0 / (q + 1)              # step factor ∝ ‖err‖^(−1/(q+1))
    cst[C_INV_ORDER] = 1.0 / (q + 1)
    cst[C_N_PARTS] = n_parts
    cst[C_FSAL] = 1.0 if tab.fsal else 0.0
    cst[C_STEP_SIZE] = opts.get("step_size", 0.0)
    cst[C_SAFETY], cst[C_MIN_FACTOR], cst[C_MAX_FACTOR] = SAFETY, MIN_FACTOR, MAX_FACTOR
    # The error floor of step_factor (1e-300 is 0 in float32) and min_step = 10(ε|t| + tiny),
    # ε of t's dtype; tiny of the coarser of the two dtypes (float64's is 0 in float32).
    cst[C_ERR_FLOOR] = 1e-300 if dtype == np.float64 else info.tiny
    cst[C_ULP_EPS] = UNDERFLOW_ULPS * t_info.eps
    cst[C_ULP_TINY] = UNDERFLOW_ULPS * max(t_info.tiny, info.tiny)
    # Hairer's initial step (kernels.step.initial_step_probe / initial_step_choice).
    cst[C_H_SMALL], cst[C_H_DEFAULT], cst[C_CENTI] = 1e-5, 1e-6, 0.01
    cst[C_HUNDRED], cst[C_D_TINY], cst[C_MILLI] = 100.0, 1e-15, 1e-3
    cst[C_FIXED_SHRINK] = 1.0 - 1e-12 if dtype == np.float64 else 1.0 - 4 * info.eps
    cst[C_HALF] = 0.5                             # bisection towards a non-finite stage
    cst[C_PARTS:C_PARTS + N_PARTS_MAX + 1] = bounds
    return cst


def pack_tableau(tab, dtype):
    """(s, s + 7) array ``c | A | b | b_err | P`` of the working dtype (P: the (s, 4)
    dense-output matrix of ``pyode.tableaus``)."""
    s = tab.n_stages
    b_err = tab.b_err if tab.b_err is not None else np.zeros(s)
    P = tab.P if tab.P is not None else np.zeros((s, 4))
    return np.ascontiguousarray(np.column_stack([tab.c, tab.A, tab.b, b_err, P]), dtype=dtype)
