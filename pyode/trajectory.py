"""Recording the accepted steps of a forward solve (what the discrete and checkpointed adjoints
keep in memory).

:class:`StepRecorder` is an ``on_step`` hook of ``pyode.solvers.integrate_adaptive`` /
``integrate_fixed``. Per sample of the batch it keeps the accepted steps in order: their start
``t``, signed size ``h`` and end ``t_new`` (three floats a step), the state at the start of
every ``every``-th step (the checkpoints), and optionally the Runge–Kutta stages ``K`` of every
step. The memory is what separates the gradient methods (README, "Gradient methods"):

* ``StepRecorder(B)`` — the checkpointed adjoint: 3·N floats + N states of D floats (N
  accepted steps, one checkpoint per step);
* ``StepRecorder(B, every=k)`` — 3·N + ⌈N/k⌉·D floats;
* ``StepRecorder(B, stages=True)`` — the discrete adjoint: 3·N + N·(s + 1)·D floats (the
  state and the s stages of every step).
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class SampleSteps:
    """The accepted steps of one sample, in the order they were taken.

    Attributes
    ----------
    t, h, t_new : ndarray, shape (N,)
        Start, signed size and end of every step (units of t). ``t_new`` equals ``t + h``
        except where the integrator landed a step exactly on an output time.
    y : ndarray, shape (M, D)
        The state at the start of steps 0, every, 2·every, … (M = ⌈N / every⌉).
    K : ndarray, shape (N, s, D), or None
        The stages of every step (only when recorded with ``stages=True``).
    every : int
    """

    t: np.ndarray
    h: np.ndarray
    t_new: np.ndarray
    y: np.ndarray
    K: np.ndarray
    every: int

    @property
    def n_steps(self):
        """N, the number of accepted steps."""
        return self.t.shape[0]


class StepRecorder:
    """``on_step`` hook that records the accepted steps of every sample of a batch.

    Parameters
    ----------
    B : int
        Number of samples (rows of ``y0``).
    every : int
        Keep the state at the start of every ``every``-th accepted step (≥ 1).
    stages : bool
        Also keep the stages ``K`` of every step (the discrete adjoint needs them, with
        ``every=1``).

    Raises
    ------
    ValueError
        ``every`` is not a positive int.
    """

    def __init__(self, B, every=1, stages=False):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.every = int(every)
        self.stages = bool(stages)
        self._t = [[] for _ in range(B)]
        self._h = [[] for _ in range(B)]
        self._t_new = [[] for _ in range(B)]
        self._y = [[] for _ in range(B)]
        self._K = [[] for _ in range(B)]

    def __call__(self, rows, t, h, t_new, y, K):
        """Record one pass of accepted steps (the ``on_step`` contract of the integrators)."""
        for j, b in enumerate(rows):
            if len(self._t[b]) % self.every == 0:
                self._y[b].append(np.array(y[j]))
            if self.stages:
                self._K[b].append(np.array(K[:, j]))
            self._t[b].append(float(t[j]))
            self._h[b].append(float(h[j]))
            self._t_new[b].append(float(t_new[j]))

    def sample(self, b):
        """The :class:`SampleSteps` of sample ``b``."""
        return SampleSteps(t=np.array(self._t[b]), h=np.array(self._h[b]),
                           t_new=np.array(self._t_new[b]), y=np.array(self._y[b]),
                           K=np.array(self._K[b]) if self.stages else None, every=self.every)
