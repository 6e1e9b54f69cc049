"""The one module that runs subprocesses.

Everything in anybuild that starts a program goes through a :class:`Runner`, so
tests inject a recording or scripted one and the real :class:`SubprocessRunner`
is the single place that logs commands (secrets redacted), enforces timeouts,
streams output lines and translates ``OSError`` / timeouts into
:class:`~anybuild.errors.BackendError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from anybuild.cancellation import Cancellation, cleaning_up
from anybuild.errors import BackendError
from anybuild.redaction import redact, secrets_from_env

__all__ = ["Completed", "LineCallback", "Runner", "SubprocessRunner", "format_command"]

LineCallback = Callable[[str], None]

log = logging.getLogger("anybuild.process")


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """A finished command. With streaming, ``stdout`` holds stdout and stderr merged."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float | None = None,
        stdin: str | None = None,
        on_line: LineCallback | None = None,
    ) -> Completed:
        """Run *argv*; never raises for a non-zero exit, raises BackendError when it cannot run.

        With *on_line*, stdout and stderr are merged and each line is passed to it as it
        arrives (without its newline)."""
        ...


def format_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The command as a shell line with known and pattern-like secrets masked."""
    return redact(shlex.join(argv), secrets_from_env(env or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class SubprocessRunner:
    """The real runner: ``subprocess.Popen`` in its own process group.

    With a *cancel*, a command still running when it is set is ended within a second (its process
    group: SIGTERM, then SIGKILL after a grace) and :class:`~anybuild.errors.Interrupted` is raised;
    one asked for after it is set is refused, unless the calling thread is cleaning up
    (:func:`~anybuild.cancellation.cleaning_up`: a ``runc delete``, an unmount).
    """

    default_timeout: float | None = None
    logger: logging.Logger = field(default=log)
    cancel: Cancellation | None = None

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float | None = None,
        stdin: str | None = None,
        on_line: LineCallback | None = None,
    ) -> Completed:
        args = tuple(str(a) for a in argv)
        limit = timeout if timeout is not None else self.default_timeout
        cancel = None if self.cancel is None or cleaning_up() else self.cancel
        if cancel is not None:
            cancel.check(f"before running {Path(args[0]).name}")
        self.logger.debug("run: %s", format_command(args, env))
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                args,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if on_line is not None else subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendError(
                f"cannot run {args[0]}: {exc.strerror or exc}",
                backend=Path(args[0]).name,
                hint=f"install {Path(args[0]).name} or put it on PATH",
            ) from exc
        with proc:
            try:
                if on_line is None:
                    out, err = _collect(proc, stdin, limit, cancel)
                else:
                    out, err = _stream(proc, stdin, on_line, limit, cancel), ""
            except subprocess.TimeoutExpired as exc:
                _kill(proc)
                raise BackendError(
                    f"{format_command(args, env)} did not finish within {limit:g} s",
                    backend=Path(args[0]).name,
                    hint="check that the tool is not waiting for a hung daemon or a prompt",
                ) from exc
            except _Cancelled:
                _kill(proc, grace=_CANCEL_GRACE)
                assert cancel is not None
                raise cancel.error(f"while {Path(args[0]).name} ran") from None
            except BaseException:
                _kill(proc)
                raise
        seconds = time.monotonic() - started
        self.logger.debug("exit %s after %.2fs: %s", proc.returncode, seconds, args[0])
        return Completed(argv=args, returncode=proc.returncode, stdout=out or "", stderr=err or "", seconds=seconds)


class _Cancelled(Exception):
    """Internal: the cancellation was set while the command ran."""


_POLL = 0.2  # how often a wait looks at the cancellation
_GRACE = 3.0  # between SIGTERM and SIGKILL for a command that ran out of time
_CANCEL_GRACE = 1.0  # ... for one stopped by a cancellation: a sandbox init ends its tree at once


def _waited(proc: subprocess.Popen[str], limit: float | None, cancel: Cancellation | None,
            step: Callable[[float | None], object]) -> None:
    """Call *step(seconds)* (which returns once the process is done or raises TimeoutExpired) until the
    process ends; TimeoutExpired after *limit*, _Cancelled as soon as *cancel* is set."""
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise subprocess.TimeoutExpired(proc.args, limit or 0)
        wait = left if cancel is None else (_POLL if left is None else min(_POLL, left))
        try:
            step(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _collect(proc: subprocess.Popen[str], stdin: str | None, limit: float | None,
             cancel: Cancellation | None) -> tuple[str, str]:
    result: list[tuple[str, str]] = []
    first = [stdin]

    def step(seconds: float | None) -> None:
        given, first[0] = first[0], None  # communicate() takes the input once; a retry continues it
        out, err = proc.communicate(given, timeout=seconds)
        result.append((out, err))

    _waited(proc, limit, cancel, step)
    return result[0]


def _stream(proc: subprocess.Popen[str], stdin: str | None, on_line: LineCallback, limit: float | None,
            cancel: Cancellation | None) -> str:
    lines: list[str] = []
    assert proc.stdout is not None

    def pump(stream: IO[str]) -> None:
        for raw in stream:
            text = raw.rstrip("\n")
            lines.append(text)
            on_line(text)

    reader = threading.Thread(target=pump, args=(proc.stdout,), daemon=True)
    reader.start()
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    try:
        _waited(proc, limit, cancel, lambda seconds: proc.wait(timeout=seconds))
    except (subprocess.TimeoutExpired, _Cancelled) as exc:
        _kill(proc, grace=_CANCEL_GRACE if isinstance(exc, _Cancelled) else _GRACE)
        reader.join(timeout=5)
        raise
    reader.join(timeout=5)
    return "\n".join(lines) + ("\n" if lines else "")


def _kill(proc: subprocess.Popen[str], *, grace: float = _GRACE) -> None:
    """End the command's process group: SIGTERM first (a sandbox init then ends what it started), SIGKILL
    after *grace* seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
