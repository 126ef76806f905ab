"""Exceptions raised when an integration cannot go on, and the warnings of the adjoint.

Every solver failure is a :class:`SolverError`; its message names the time ``t`` reached, the
step size ``dt`` tried (in the units of ``t``) and the number of function evaluations ``nfev``,
and says what to try (STYLE.md §11). :class:`AdjointReconstructionWarning` (a UserWarning)
says that a backsolve gradient is not to be trusted, and which method to use instead.
"""


class SolverError(RuntimeError):
    """Base class of the integration failures.

    Attributes
    ----------
    t : float
        Time reached when the solver gave up (units of ``t``).
    dt : float
        Step size last tried (units of ``t``, signed with the direction of integration).
    nfev : int
        Evaluations of the vector field made so far (for the failing sample).
    sample : int or None
        Row of the batch that failed (None for a 1-D problem).
    """

    hint = ""

    def __init__(self, what, t, dt, nfev, sample=None):
        self.what = what
        self.t = float(t)
        self.dt = float(dt)
        self.nfev = int(nfev)
        self.sample = None if sample is None else int(sample)
        where = "" if sample is None else f" in sample {self.sample} of the batch"
        msg = f"{what}{where} at t={self.t:.10g} (dt={self.dt:.3g}, nfev={self.nfev})"
        if self.hint:
            msg += f": {self.hint}"
        super().__init__(msg)


def in_backward_solve(exc, note=""):
    """The :class:`SolverError` ``exc`` of a backward (adjoint) solve, saying so.

    Returns a new exception of the same class whose message starts with "In the backward
    (adjoint) solve" (``t`` is then a time of the backward integration) and ends with
    ``note``, for the caller to ``raise ... from exc``.
    """
    new = type(exc)("In the backward (adjoint) solve: " + exc.what[:1].lower() + exc.what[1:],
                    exc.t, exc.dt, exc.nfev, exc.sample)
    if note:
        new.args = (f"{new.args[0]}; {note}",)
    return new


class StepSizeUnderflowError(SolverError):
    """The adaptive step size shrank below the spacing of floating-point numbers near ``t``."""

    hint = ("the solution may blow up here (finite-time singularity) or the problem is stiff; "
            "check the field, loosen rtol/atol, or stop the integration before this time")


class Float32TimeResolutionError(StepSizeUnderflowError):
    """A float32 kernel's step fell below the float32 resolution of t.

    The float32 kernels (Numba CPU and CUDA) keep t in float32, whose spacing near t is
    ε₃₂·|t| (ε₃₂ = 2⁻²³ ≈ 1.2e-7: about 1e-3 at t = 1e4). A problem that needs smaller steps
    there (y' = −3e4 (y − 1) on t = [1e4, 1e4 + 1]) cannot be solved in float32 time, though
    float64 solves it. Raised in place of :class:`StepSizeUnderflowError` (a subclass, so
    ``except StepSizeUnderflowError`` still catches it) when a float64 step of the same size
    would have moved t.
    """

    @property
    def hint(self):
        eps = 2.0 ** -23
        return (f"the step fell below the float32 resolution of t (eps32*|t| = "
                f"{eps * abs(self.t):.1g}; steps under 10*eps32*|t| = "
                f"{10 * eps * abs(self.t):.1g} cannot move t): the float32 kernels keep t in "
                "float32. Solve in float64 (y0.astype(np.float64), and an nn field built with "
                "dtype=np.float64), or, for a field that does not read t, shift t to start at 0; "
                "if float64 fails here too, the solution may blow up here or the problem is stiff")


class NonFiniteError(SolverError):
    """The state or the derivative became NaN or infinite."""

    hint = ("the vector field returned NaN/inf (or the state overflowed); check the field near "
            "this time and state, or stop the integration before it")


class TooManyStepsError(SolverError):
    """The step count reached ``options['max_num_steps']``."""

    hint = ("raise options['max_num_steps'], loosen rtol/atol, or check whether the problem is "
            "stiff (explicit Runge-Kutta methods need tiny steps on stiff problems)")


class AdjointReconstructionWarning(UserWarning):
    """The backsolve adjoint re-integrated y backward and did not find the forward solution.

    ``adjoint_method="backsolve"`` (Chen et al. 2018, Alg. 1) does not store y(t): it runs the
    state backward from y(T) next to the adjoint. On contracting (dissipative) dynamics that
    backward run is unstable: a tiny error in y(T) grows like exp(∫|λ|dt), the reconstructed
    y(t) drifts away from the forward solution and the parameter gradient, an integral along
    it, can be wrong although the forward pass is accurate. The warning is raised when, at an
    output time, the reconstruction differs from the stored forward state by more than
    ``pyode.adjoint.RECONSTRUCTION_WARN_FACTOR`` (100) × (atol + rtol·|y|) with the adjoint
    tolerances (adaptive methods only: fixed-step solves are not held to rtol/atol). The fix:
    ``adjoint_method="checkpoint"`` (or ``"discrete"`` / ``"forward"``).
    """


class CudaUnavailableError(RuntimeError):
    """``backend="cuda"`` was asked for but no CUDA device can be used (the message says how to
    run the CUDA kernels on the numba-cuda simulator instead)."""


class SaveFormatError(ValueError):
    """A file given to :func:`pyode.nn.load` or :func:`pyode.load_checkpoint` is not one it can
    read: not an ``.npz``, an ``.npz`` pyode did not write, the other kind of pyode file (a
    model where a checkpoint is expected or the reverse), a newer format version, or damaged.
    The message names the file, what is wrong and what to do.

    Attributes
    ----------
    path : str
        The file that was read.
    problem : str
        What is wrong with it, without the file name and without ``fix``.
    fix : str or None
        What to do, in terms of pyode's functions (``"read it with pyode.nn.load(path)"``); a
        command-line tool that wraps the reader can put its own option in its place.
    found : str or None
        The kind of pyode file found when it is the other kind (``"pyode.model"`` or
        ``"pyode.checkpoint"``), else None.
    """

    def __init__(self, path, problem, fix=None, found=None):
        self.path = str(path)
        self.problem = str(problem)
        self.fix = fix
        self.found = found
        message = f"{self.path}: {self.problem}"
        super().__init__(message if fix is None else f"{message}; {fix}")

    def __reduce__(self):            # pickle (multiprocessing) with all four arguments
        return type(self), (self.path, self.problem, self.fix, self.found)
