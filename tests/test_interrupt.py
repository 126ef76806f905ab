"""pyode.interrupt: SIGINT / SIGTERM recorded and raised, swallowed interrupts raised again by
check(), deferral in shielded(), nothing done outside the main thread.

Signals are sent to this very process with ``os.kill(os.getpid(), ...)``. A regression that
let a SIGINT through to Python's default handler would raise KeyboardInterrupt inside pytest
and end the whole session, so each test turns an unexpected KeyboardInterrupt into a failure
(``_no_stray_interrupt``). SIGTERM is only sent while a handler other than the default one is
in place, so that a regression cannot kill the test process.
"""
import contextlib
import os
import signal
import threading
import time

import pytest

from pyode import interrupt

WAIT_S = 2.0       # sleep after os.kill: Python runs the handler as soon as the sleep is cut


def _send(signum):
    """Send ``signum`` to this process and give its Python handler the chance to run."""
    os.kill(os.getpid(), signum)
    time.sleep(WAIT_S)          # interrupted at once when the handler raises


@contextlib.contextmanager
def _no_stray_interrupt():
    try:
        yield
    except KeyboardInterrupt:
        pytest.fail("a KeyboardInterrupt escaped: the signal reached the wrong handler")


@pytest.fixture(autouse=True)
def _handlers_restored():
    before = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
    yield
    assert {s: signal.getsignal(s) for s in interrupt.SIGNALS} == before


def test_sigint_raises_keyboard_interrupt_and_is_recorded():
    with _no_stray_interrupt(), interrupt.catch():
        assert interrupt.requested() is None
        interrupt.check()                             # nothing recorded: no raise
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGINT)
        assert time.perf_counter() - start < WAIT_S   # raised at once, not after the sleep
        assert interrupt.requested() == signal.SIGINT
        assert interrupt.describe(interrupt.requested()) == "Ctrl-C"


def test_sigterm_is_handled_like_ctrl_c():
    with _no_stray_interrupt(), interrupt.catch():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        with pytest.raises(KeyboardInterrupt):
            _send(signal.SIGTERM)
        assert interrupt.requested() == signal.SIGTERM
        assert interrupt.describe(signal.SIGTERM) == "SIGTERM"


def test_swallowed_interrupt_is_raised_again_by_check():
    """Where a C callback swallows the handler's KeyboardInterrupt (numba's compiler, ctypes),
    the request stays recorded and the next check() raises it."""
    with _no_stray_interrupt(), interrupt.catch():
        try:                                          # what the ctypes callback does
            _send(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()


def test_handler_called_directly_and_exception_caught_elsewhere():
    with _no_stray_interrupt(), interrupt.catch():
        handler = signal.getsignal(signal.SIGINT)
        with contextlib.suppress(KeyboardInterrupt):
            handler(signal.SIGINT, None)
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()


def test_outermost_catch_forgets_earlier_requests():
    with _no_stray_interrupt():
        with interrupt.catch(), contextlib.suppress(KeyboardInterrupt):
            _send(signal.SIGINT)
        assert interrupt.requested() == signal.SIGINT     # still readable after the block
        with interrupt.catch():
            assert interrupt.requested() is None
            interrupt.check()


def test_shielded_defers_until_the_block_ends():
    done = []
    with _no_stray_interrupt(), interrupt.catch():
        with pytest.raises(KeyboardInterrupt):
            with interrupt.shielded():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)          # the handler runs here and must not raise
                os.kill(os.getpid(), signal.SIGINT)   # a third Ctrl-C: still deferred
                time.sleep(0.05)
                done.append("written")
        assert done == ["written"]        # the block finished, then the interrupt came
        assert interrupt.requested() == signal.SIGINT


def test_shielded_block_that_exits_keeps_its_exit():
    """The pattern of the examples: the handler's writes end with SystemExit(130) inside the
    shield; a Ctrl-C during the writes must not replace it."""
    with _no_stray_interrupt(), interrupt.catch():
        with pytest.raises(SystemExit) as info:
            with interrupt.shielded():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                raise SystemExit(interrupt.EXIT_STATUS)
        assert info.value.code == 130
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()             # the request is still on record


def test_shielded_without_catch_delivers_to_the_previous_handler():
    got = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with _no_stray_interrupt():
            with interrupt.shielded():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                assert got == []              # deferred
            assert got == [signal.SIGTERM]    # delivered when the block ended
            done = []
            with pytest.raises(KeyboardInterrupt):
                with interrupt.shielded():    # SIGINT: Python's default raises after the block
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)
                    done.append("written")
            assert done == ["written"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.catch():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_it_does_nothing():
    seen = {}

    def worker():
        try:
            with interrupt.catch():
                seen["handler"] = signal.getsignal(signal.SIGINT)
                interrupt.check()
                with interrupt.shielded():
                    seen["shielded"] = True
        except Exception as exc:          # signal.signal would raise ValueError here
            seen["error"] = exc

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert "error" not in seen, seen.get("error")
    assert seen == {"handler": before, "shielded": True}


def test_exit_status_and_names():
    assert interrupt.EXIT_STATUS == 130
    assert interrupt.describe(None) == ""
    assert set(interrupt.SIGNALS) == {signal.SIGINT, signal.SIGTERM}
