"""pyode: a from-scratch Neural ODE engine.

Layers with analytic Jacobian-vector and vector-Jacobian products (:mod:`pyode.nn`), explicit
Runge–Kutta solvers (:func:`odeint`), gradients of solves by four methods — the adjoint of
Chen et al. (2018, arXiv:1806.07366), a checkpointed adjoint, the discrete adjoint and forward
sensitivity (:func:`odeint_adjoint`, ``adjoint_method=``) — with a side-by-side comparison
(:func:`compare_gradients`), a finite-difference gradient checker (:func:`gradcheck`) and Numba
kernels (:mod:`pyode.kernels`).
"""


def _attach_source_kernels():
    """Make ``pyode.kernels`` importable from a source checkout too.

    Installed, ``kernels/`` is the subpackage ``pyode.kernels`` (setup.cfg maps it). When Python
    imports ``pyode/`` straight from the repository (e.g. ``python`` started in its root), the
    folder sits beside ``pyode/`` instead; attach it under the same name.
    """
    import importlib.util
    import pathlib
    import sys

    if importlib.util.find_spec(__name__ + ".kernels") is not None:
        return
    folder = pathlib.Path(__file__).resolve().parent.parent / "kernels"
    if not (folder / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(__name__ + ".kernels", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_attach_source_kernels()

from . import losses, nn, optim  # noqa: E402
from .adjoint import ADJOINT_METHODS, AdjointGradients, odeint_adjoint
from .compare import GradientComparison, compare_gradients
from .errors import (AdjointReconstructionWarning, CudaUnavailableError,
                     Float32TimeResolutionError, NonFiniteError, SolverError,
                     StepSizeUnderflowError, TooManyStepsError)
from .errors import SaveFormatError
from .gradcheck import gradcheck
from .protocol import VectorField
from .serialization import load_checkpoint, save_checkpoint
from .solvers import SolveInfo, odeint
from .tableaus import METHODS, ButcherTableau

__version__ = "0.1.0"

__all__ = [
    "nn", "optim", "losses", "odeint", "odeint_adjoint", "gradcheck", "METHODS",
    "ButcherTableau", "SolveInfo", "AdjointGradients", "SolverError", "StepSizeUnderflowError",
    "CudaUnavailableError", "Float32TimeResolutionError",
    "NonFiniteError", "TooManyStepsError", "ADJOINT_METHODS", "AdjointReconstructionWarning",
    "compare_gradients", "GradientComparison",
    "VectorField",
    "save_checkpoint", "load_checkpoint", "SaveFormatError",
]
