"""Numbers the kernels and the NumPy reference share: status codes, modes, controller constants.

This module is the bottom of pyode's layers: it imports nothing, so the kernels (``kernels/``)
and the public package (``pyode/``) both read their numbers here and neither imports the
other's internals to get them.
"""

# Step-size controller (HNW I, §II.4, eq. (4.13)); the same values as scipy's RK45.
SAFETY = 0.9            # aim a little below the error target so the next step is accepted
MIN_FACTOR = 0.2        # never shrink a step by more than 5x at once (error estimate unreliable)
MAX_FACTOR = 10.0       # never grow a step by more than 10x at once
DEFAULT_MAX_NUM_STEPS = 100_000   # attempted steps (accepted + rejected) per sample
UNDERFLOW_ULPS = 10     # a step below ~10 ulps of t cannot move t reliably: give up
# After a non-finite attempt, the next steps bisect towards the time where the field failed
# (pyode.solvers.integrate_adaptive, "non-finite stages"); this many bisecting accepted steps
# in a row and the failure is taken for the step's fault, not the time's, and forgotten.
BISECT_STEPS = 4

# Status of a sample's solve, as a kernel reports it (the wrappers in pyode turn it into a
# pyode.errors exception).
OK, UNDERFLOW, NONFINITE, TOO_MANY = 0, 1, 2, 3

# Right-hand sides of kernels.rk.rhs: f(t, y); the backsolve adjoint's [z, a, a_θ, a_t]
# system; the checkpointed adjoint's [a, a_θ, a_t] system (z = y(t) replayed).
FORWARD, AUGMENTED, CHECKPOINT = 0, 1, 2
