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
        self._count = np.zeros(B, dtype=np.int64)  # steps recorded per sample
        self._passes = []                          # per pass: rows, t, h, t_new, ckpt, y, K
        self._index = None                         # per-sample view, built on first read

    def __call__(self, rows, t, h, t_new, y, K):
        """Record one pass of accepted steps (the ``on_step`` contract of the integrators).

        One array copy per pass for the whole batch (never a loop over the rows): the rows,
        their step times, the checkpoint states of the rows whose step count is a multiple of
        ``every``, and the stages.
        """
        rows = np.asarray(rows)
        ckpt = self._count[rows] % self.every == 0
        self._count[rows] += 1
        self._passes.append((rows.copy(), np.array(t, dtype=np.float64),
                             np.array(h, dtype=np.float64), np.array(t_new, dtype=np.float64),
                             ckpt, np.array(y[ckpt]),
                             np.array(np.swapaxes(K, 0, 1)) if self.stages else None))
        self._index = None

    def _build(self):
        """All passes joined and sorted by sample (stable: each sample's steps stay in order)."""
        rows, t, h, t_new, ckpt, y, K = zip(*self._passes) if self._passes else ([],) * 7
        join = (lambda parts: np.concatenate(parts)) if self._passes else (lambda p: None)
        rows, t, h, t_new, ckpt = (join(x) for x in (rows, t, h, t_new, ckpt))
        y = join(y)
        K = join(K) if self.stages else None
        order = np.argsort(rows, kind="stable")
        starts = np.searchsorted(rows[order], np.arange(self._count.size + 1))
        ck_rows = rows[ckpt]
        ck_order = np.argsort(ck_rows, kind="stable")
        ck_starts = np.searchsorted(ck_rows[ck_order], np.arange(self._count.size + 1))
        self._index = (t[order], h[order], t_new[order], starts, y[ck_order], ck_starts,
                       None if K is None else K[order])

    def joined(self):
        """Every sample's steps, joined in sample order (each sample's in the order taken).

        Returns
        -------
        t, h, t_new : ndarray, shape (N_total,)
        starts : ndarray of int, shape (B + 1,)
            Sample b's steps are ``starts[b]:starts[b + 1]``.
        y : ndarray, shape (M_total, D)
            The checkpoints, sample by sample (with ``every=1``: the state at every step start,
            aligned with ``t``).
        K : ndarray, shape (N_total, s, D), or None
        """
        if not self._passes:
            raise ValueError("no steps recorded")
        if self._index is None:
            self._build()
        t, h, t_new, starts, y, _, K = self._index
        return t, h, t_new, starts, y, K

    def sample(self, b):
        """The :class:`SampleSteps` of sample ``b``."""
        if not self._passes:
            empty = np.zeros(0)
            return SampleSteps(t=empty, h=empty, t_new=empty, y=np.zeros((0, 0)),
                               K=None, every=self.every)
        if self._index is None:
            self._build()
        t, h, t_new, starts, y, ck_starts, K = self._index
        steps = slice(starts[b], starts[b + 1])
        return SampleSteps(t=t[steps], h=h[steps], t_new=t_new[steps],
                           y=y[ck_starts[b]:ck_starts[b + 1]],
                           K=None if K is None else K[steps], every=self.every)
