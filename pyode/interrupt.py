"""Ctrl-C and SIGTERM in training loops: stop after a completed iteration, save uncut.

Python's default handling of SIGINT (Ctrl-C) raises ``KeyboardInterrupt`` wherever the main
thread happens to be, and that goes wrong three ways in a long training run:

1. When the main thread is inside a callback from C — Numba's compiler and its cache loader
   call back into Python through ctypes — the exception is printed as "Exception ignored on
   calling ctypes callback function" and swallowed: the run trains on as if nothing happened.
2. SIGTERM, which ``timeout``, ``kill`` and Slurm send, ends the process at once: nothing of
   the run is saved.
3. A second Ctrl-C while the first one's handler writes the checkpoint cuts that write off.

:func:`catch` installs one handler for both signals that records the request and then raises
``KeyboardInterrupt``. The loop calls :func:`check` after each iteration: it raises
``KeyboardInterrupt`` again if a request was recorded, so a swallowed interrupt still stops the
run, at the end of a completed iteration. :func:`shielded` defers both signals while the final
checkpoint and figure are written. Typical use::

    from pyode import interrupt

    with interrupt.catch():
        try:
            for it in range(1, n_iters + 1):
                train_step()
                interrupt.check()            # a swallowed Ctrl-C stops the run here
        except KeyboardInterrupt:
            with interrupt.shielded():       # a second Ctrl-C waits until the files are written
                save_checkpoint()
                raise SystemExit(interrupt.EXIT_STATUS)

Signal handlers belong to the main thread (:func:`signal.signal` refuses to run anywhere
else), so in any other thread :func:`catch` and :func:`shielded` do nothing and :func:`check`
never raises.

Design decision: a handler that only sets a flag (the loop polls it; PyTorch Lightning's
``SignalConnector`` and many Slurm recipes do this) never cuts an iteration short, but it
leaves a run deaf to Ctrl-C for as long as one iteration takes — the first, which compiles the
Numba kernels, takes tens of seconds. A handler that only raises loses the interrupts that C
callbacks swallow. Recording *and* raising gets both: an immediate stop where Python can raise,
a stop at the end of the iteration where it cannot. The deferral of :func:`shielded` is done
in the Python handler rather than by blocking the signals (``signal.pthread_sigmask``): that is
POSIX-only, and an unblocked signal would arrive even when the shielded block leaves by
``SystemExit``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["EXIT_STATUS", "SIGNALS", "catch", "check", "requested", "shielded", "describe"]

#: Exit status of a run stopped by one of :data:`SIGNALS`: 128 + SIGINT, the shell's status of
#: a process ended by Ctrl-C (used for SIGTERM as well, so that scripts test a single value).
EXIT_STATUS = 128 + int(signal.SIGINT)
#: The signals :func:`catch` handles: Ctrl-C, and the polite stop of ``timeout``, ``kill`` and
#: Slurm (which sends SIGTERM before SIGKILL when a job runs out of time).
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    """What the handler has seen; one per process, like the signal handlers themselves."""

    def __init__(self):
        self.catch_depth = 0          # nested catch() blocks
        self.shield_depth = 0         # nested shielded() blocks
        self.requested = None         # first signal since the outermost catch() began
        self.deferred = None          # a signal that arrived inside shielded(), not delivered


_STATE = _State()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum, frame):
    """Record the request; raise KeyboardInterrupt unless a shielded block is running."""
    if _STATE.requested is None:
        _STATE.requested = signum
    if _STATE.shield_depth:
        if _STATE.deferred is None:
            _STATE.deferred = signum
        return
    raise KeyboardInterrupt


def _install(signals):
    """Put :func:`_handler` on ``signals``; return the handlers it replaced.

    A signal the process ignores (``SIG_IGN``: e.g. SIGINT of a job started in the background
    by a non-interactive shell, or under ``nohup``) stays ignored.
    """
    previous = {}
    for signum in signals:
        old = signal.getsignal(signum)
        if old is signal.SIG_IGN:
            continue
        signal.signal(signum, _handler)
        previous[signum] = old
    return previous


def _restore(previous):
    for signum, old in previous.items():
        # None: a handler not installed from Python; the default is the closest to it.
        signal.signal(signum, signal.SIG_DFL if old is None else old)


@contextlib.contextmanager
def catch(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Record SIGINT and SIGTERM and turn them into ``KeyboardInterrupt`` while the block runs.

    On entry the handler replaces those of ``signals`` (in the main thread only; elsewhere the
    block runs unchanged) and the outermost ``catch`` forgets earlier requests; on exit the
    previous handlers come back. The handler records the signal (:func:`requested`) and raises
    ``KeyboardInterrupt``, or, inside :func:`shielded`, defers it.

    Parameters
    ----------
    signals : tuple of int, optional
        Signal numbers to handle; default :data:`SIGNALS` (SIGINT and SIGTERM). Signals the
        process ignores at entry (``SIG_IGN``) are left ignored.

    Notes
    -----
    SIGTERM then stops a run the way Ctrl-C does, so a script's ``except KeyboardInterrupt``
    saves its state for both. SIGKILL cannot be caught; Slurm sends it some time after SIGTERM
    (``KillWait``, 30 s by default), so the final writes should be short.
    """
    if not _in_main_thread():
        yield
        return
    if _STATE.catch_depth == 0:
        _STATE.requested = None
    previous = _install(signals)
    _STATE.catch_depth += 1
    try:
        yield
    finally:
        _STATE.catch_depth -= 1
        _restore(previous)


def requested() -> int | None:
    """The first signal recorded since the outermost :func:`catch` began, or None."""
    return _STATE.requested


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal was recorded; call it after each iteration.

    The handler of :func:`catch` raises ``KeyboardInterrupt`` at once, but where the main
    thread runs a callback from C (Numba's compiler, ctypes) that exception is swallowed. This
    raises it again at a point where nothing can swallow it, so the run stops at the end of
    the iteration during which the signal came. Outside :func:`catch` it never raises.

    Raises
    ------
    KeyboardInterrupt
        A signal has been recorded (also one whose own ``KeyboardInterrupt`` was already
        raised: call this where an interrupt should end the loop, not after handling one).
    """
    if _STATE.requested is not None:
        raise KeyboardInterrupt


@contextlib.contextmanager
def shielded(signals: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Defer SIGINT and SIGTERM while the block runs (the final checkpoint and figure).

    A signal that arrives inside the block is recorded (:func:`requested`) but does not
    interrupt it. When the outermost shielded block finishes normally, the deferred signal is
    delivered to the handler then in place: under :func:`catch` that raises
    ``KeyboardInterrupt``; outside it, the handler the process had before (Python's default
    raises ``KeyboardInterrupt`` for SIGINT; the default for SIGTERM ends the process). When
    the block leaves by an exception — ``raise SystemExit(interrupt.EXIT_STATUS)`` at the end
    of a handler's writes — that exception goes on and the deferred signal is dropped (it
    stays recorded for :func:`requested`).

    Parameters
    ----------
    signals : tuple of int, optional
        Default :data:`SIGNALS`. Outside :func:`catch` they get a deferring handler for the
        duration of the block; under :func:`catch` its handler already defers them.

    Notes
    -----
    Deferring means a hung write (a stalled network file system) can no longer be stopped with
    Ctrl-C; Ctrl-\\ (SIGQUIT) and ``kill -9`` still stop the process. Main thread only, like
    :func:`catch`; elsewhere the block runs unchanged.
    """
    if not _in_main_thread():
        yield
        return
    previous = _install(signals) if _STATE.catch_depth == 0 else {}
    _STATE.shield_depth += 1
    try:
        yield
    except BaseException:
        if _STATE.shield_depth == 1:
            _STATE.deferred = None
        raise
    finally:
        _STATE.shield_depth -= 1
        if _STATE.shield_depth == 0:
            _restore(previous)
            if _STATE.catch_depth == 0:
                _STATE.requested = None
    if _STATE.shield_depth == 0 and _STATE.deferred is not None:
        signum, _STATE.deferred = _STATE.deferred, None
        signal.raise_signal(signum)


def describe(signum: int | None) -> str:
    """A short name of a signal for messages: ``"Ctrl-C"``, ``"SIGTERM"``; ``""`` for None."""
    if signum is None:
        return ""
    if signum == signal.SIGINT:
        return "Ctrl-C"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
