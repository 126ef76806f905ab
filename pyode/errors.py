"""Exceptions raised when an integration cannot go on.

Every solver failure is a :class:`SolverError`; its message names the time ``t`` reached, the
step size ``dt`` tried (in the units of ``t``) and the number of function evaluations ``nfev``,
and says what to try (STYLE.md §11).
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
    """

    hint = ""

    def __init__(self, what, t, dt, nfev):
        self.t = float(t)
        self.dt = float(dt)
        self.nfev = int(nfev)
        msg = f"{what} at t={self.t:.10g} (dt={self.dt:.3g}, nfev={self.nfev})"
        if self.hint:
            msg += f": {self.hint}"
        super().__init__(msg)


class StepSizeUnderflowError(SolverError):
    """The adaptive step size shrank below the spacing of floating-point numbers near ``t``."""

    hint = ("the solution may blow up here (finite-time singularity) or the problem is stiff; "
            "check the field, loosen rtol/atol, or stop the integration before this time")


class NonFiniteError(SolverError):
    """The state or the derivative became NaN or infinite."""

    hint = ("the vector field returned NaN/inf (or the state overflowed); check the field near "
            "this time and state, or stop the integration before it")


class TooManyStepsError(SolverError):
    """The step count reached ``options['max_num_steps']``."""

    hint = ("raise options['max_num_steps'], loosen rtol/atol, or check whether the problem is "
            "stiff (explicit Runge-Kutta methods need tiny steps on stiff problems)")
