"""The one cancellation: set by real signals, once; observed by waits, checks and hooks."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from anybuild.cancellation import Cancellation, cleaning_up, cleanup, handle_signals, signum_of
from anybuild.errors import Interrupted


def test_cancellation_set_once_keeps_the_first_signal() -> None:
    cancel = Cancellation()
    assert cancel.cancel(signal.SIGTERM) is True
    assert cancel.cancel(signal.SIGINT) is False
    assert cancel.signum == signal.SIGTERM
    with pytest.raises(Interrupted, match="interrupted by SIGTERM while pushing") as info:
        cancel.check("while pushing")
    assert info.value.exit_code == 143 and info.value.to_dict()["signal"] == 15


def test_cancellation_hooks_run_once_at_cancel_or_at_once_when_late() -> None:
    cancel = Cancellation()
    calls: list[str] = []
    forget = cancel.on_cancel(lambda: calls.append("forgotten"))
    cancel.on_cancel(lambda: calls.append("early"))
    forget()
    cancel.on_cancel(lambda: 1 / 0)  # a failing hook does not stop the others
    cancel.on_cancel(lambda: calls.append("second"))
    cancel.cancel()
    cancel.cancel()
    cancel.on_cancel(lambda: calls.append("late"))
    assert calls == ["early", "second", "late"]


def test_cancellation_sleep_cut_short() -> None:
    cancel = Cancellation()
    threading.Timer(0.1, cancel.cancel).start()
    with pytest.raises(Interrupted):
        cancel.sleep(30)


def test_cleanup_marks_the_calling_thread_only() -> None:
    seen: list[bool] = []
    with cleanup():
        assert cleaning_up()
        thread = threading.Thread(target=lambda: seen.append(cleaning_up()))
        thread.start()
        thread.join()
    assert seen == [False] and not cleaning_up()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_handle_signals_real_signal_sets_it_and_a_second_says_still_cleaning(signum: signal.Signals) -> None:
    written: list[bytes] = []
    cancel = Cancellation()
    before = signal.getsignal(signal.SIGINT)
    with handle_signals(cancel, write=written.append):
        os.kill(os.getpid(), signum)
        assert cancel.wait(5)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):  # the handler runs in this (the main) thread, between bytecodes
            if len(written) == 2:
                break
            cancel.wait(0.01)
    assert cancel.signum == signum
    assert f"{signum.name}: stopping".encode() in written[0]
    assert b"still cleaning up" in written[1]
    assert signal.getsignal(signal.SIGINT) is not before  # kept: a late Ctrl-C only says so, up to the exit
    signal.signal(signal.SIGINT, before)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def test_handle_signals_interrupt_main_raises_named_keyboard_interrupt() -> None:
    cancel = Cancellation()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(KeyboardInterrupt) as info, handle_signals(cancel, interrupt_main=True,
                                                                  write=lambda _data: None):
        os.kill(os.getpid(), signal.SIGTERM)
        cancel.wait(5)
        for _ in range(100):
            cancel.wait(0.01)
    assert signum_of(info.value) == signal.SIGTERM
    assert signum_of(KeyboardInterrupt()) == signal.SIGINT
    for sig, old in previous.items():
        signal.signal(sig, old)


def test_handle_signals_untouched_when_not_cancelled() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with handle_signals(Cancellation()):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
