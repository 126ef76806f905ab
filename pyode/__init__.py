"""pyode: a from-scratch Neural ODE engine.

Layers with analytic Jacobian-vector and vector-Jacobian products (:mod:`pyode.nn`), explicit
Runge–Kutta solvers (:func:`odeint`), the adjoint method of Chen et al. (2018,
arXiv:1806.07366) (:func:`odeint_adjoint`), a finite-difference gradient checker
(:func:`gradcheck`) and Numba kernels (:mod:`pyode.kernels`).
"""
from . import losses, nn, optim
from .adjoint import AdjointGradients, odeint_adjoint
from .errors import NonFiniteError, SolverError, StepSizeUnderflowError, TooManyStepsError
from .gradcheck import gradcheck
from .solvers import SolveInfo, odeint
from .tableaus import METHODS, ButcherTableau

__version__ = "0.1.0"

__all__ = [
    "nn", "optim", "losses", "odeint", "odeint_adjoint", "gradcheck", "METHODS",
    "ButcherTableau", "SolveInfo", "AdjointGradients", "SolverError", "StepSizeUnderflowError",
    "NonFiniteError", "TooManyStepsError",
]
