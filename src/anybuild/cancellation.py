"""One cancellation for the whole process: SIGINT, SIGTERM and SIGHUP stop everything, and only once.

The command line makes one :class:`Cancellation` and passes it down (constructor
seams: the :class:`~anybuild.process.SubprocessRunner`, the builder's environment,
the registry client, the batch of builds, the cluster and GitHub backends);
:func:`handle_signals` sets it from the three signals. Everything long-running
observes it within a second and stops:

- a build checks it between steps, before each output and before each push;
- a subprocess (a RUN's sandbox, runc, ``cp``) is ended, its process group with it;
- a transfer stops at its next chunk, and a request blocked on a silent registry
  has its socket shut down (:meth:`Cancellation.on_cancel`);
- the batch starts no new build and waits for the running ones to clean up.

What stops raises :class:`~anybuild.errors.Interrupted`, whose exit code is
128 + the signal (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). Clean-up runs in
``finally`` blocks as it always did; a second Ctrl-C while it runs only says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from anybuild.errors import Interrupted

__all__ = ["SIGNALS", "Cancellation", "cleaning_up", "cleanup", "handle_signals", "signum_of"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_thread = threading.local()


@contextlib.contextmanager
def cleanup() -> Iterator[None]:
    """Mark the calling thread as cleaning up for the block: what it runs is not stopped by a cancellation.

    The undoing of a stopped RUN (``runc delete``, unmounting, removing its directories) must run to
    its end after the cancellation that stopped it, and a subprocess runner cannot tell such a
    command from work: the thread says so (a thread's state, like a decimal context).
    """
    _thread.depth = getattr(_thread, "depth", 0) + 1
    try:
        yield
    finally:
        _thread.depth -= 1


def cleaning_up() -> bool:
    """Whether the calling thread is in a :func:`cleanup` block."""
    return getattr(_thread, "depth", 0) > 0


def signum_of(interrupt: KeyboardInterrupt) -> int:
    """The signal a KeyboardInterrupt stands for (:func:`handle_signals` names it; a bare one is Ctrl-C)."""
    name = interrupt.args[0] if interrupt.args and isinstance(interrupt.args[0], str) else ""
    try:
        return int(signal.Signals[name]) if name else int(signal.SIGINT)
    except KeyError:
        return int(signal.SIGINT)


class Cancellation:
    """Set once (by a signal, or by whoever owns it); observed by every thread of the work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next = 0
        self.signum: int | None = None
        self._detach: Callable[[], None] = lambda: None

    def cancel(self, signum: int = signal.SIGINT) -> bool:
        """Set it (the first time only; True then) and run the callbacks registered so far."""
        with self._lock:
            if self._event.is_set():
                return False
            self.signum = signum
            self._event.set()
            callbacks, self._callbacks = list(self._callbacks.values()), {}
        for callback in callbacks:
            with contextlib.suppress(Exception):  # one failing hook must not keep the others from running
                callback()
        return True

    def set(self) -> None:
        """As :class:`threading.Event` spells it (a Ctrl-C)."""
        self.cancel()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to *timeout* seconds; True as soon as it is set."""
        return self._event.wait(timeout)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "SIGINT"

    def error(self, what: str = "") -> Interrupted:
        """The :class:`Interrupted` to raise: *what* was stopped, by which signal."""
        doing = f" {what}" if what else ""
        return Interrupted(f"interrupted by {self.signal_name}{doing}", signum=self.signum or signal.SIGINT,
                           hint="run the command again")

    def check(self, what: str = "") -> None:
        """Raise :meth:`error` if set."""
        if self._event.is_set():
            raise self.error(what)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run *callback* when it is set (at once if it is already); returns the call that unregisters it."""
        with self._lock:
            if not self._event.is_set():
                key = self._next
                self._next += 1
                self._callbacks[key] = callback

                def forget() -> None:
                    with self._lock:
                        self._callbacks.pop(key, None)

                return forget
        callback()
        return lambda: None

    def child(self) -> Cancellation:
        """A cancellation set whenever this one is (with its signal), and also on its own: the platforms of
        one build stop together when one of them fails, without stopping the rest of the process."""
        linked = Cancellation()

        def follow() -> None:
            linked.cancel(self.signum or signal.SIGINT)

        linked._detach = self.on_cancel(follow)
        return linked

    def detach(self) -> None:
        """Unlink a :meth:`child` from its parent (when the work it stood for is over)."""
        self._detach()
        self._detach = lambda: None

    def sleep(self, seconds: float) -> None:
        """Sleep, unless it is set: then raise (a back-off between retries is cut short)."""
        if self._event.wait(seconds):
            raise self.error()


_STILL = b"anybuild: still cleaning up after the interruption (sandboxes, mounts, temporary files); " \
         b"it ends in a few seconds\n"


@contextlib.contextmanager
def handle_signals(cancellation: Cancellation, *, interrupt_main: bool = False,
                   write: Callable[[bytes], object] = lambda data: os.write(2, data)) -> Iterator[Cancellation]:
    """While the block runs (in the main thread): SIGINT, SIGTERM and SIGHUP set *cancellation*.

    The first signal says what happens; with *interrupt_main* it also raises KeyboardInterrupt in the
    main thread, for work the main thread does itself (following a GitHub run, a pull). A signal
    after the first only says that clean-up is still going: it never cuts it short. Previous
    handlers come back afterwards. Elsewhere than in the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield cancellation
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        if cancellation.cancel(signum):
            write(f"anybuild: {signal.Signals(signum).name}: stopping; removing what was started "
                  f"(a second Ctrl-C does not skip that)\n".encode())
            if interrupt_main:
                raise KeyboardInterrupt(signal.Signals(signum).name)
        else:
            write(_STILL)

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        yield cancellation
    finally:
        if not cancellation.is_set():  # once stopping, a late Ctrl-C still only says so, up to the exit
            for sig, old in previous.items():
                signal.signal(sig, old)
