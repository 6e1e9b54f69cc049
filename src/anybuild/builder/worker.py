"""One build run by a worker process inside the builder's own user namespace.

:func:`build_in_namespace` starts ``python -m anybuild.builder.worker`` through the
user namespace launcher (:mod:`anybuild.builder.userns`), hands it the request,
and relays what it says: each output line to the sink as it comes, then the
:class:`~anybuild.backends.base.BuildResult`, or the error, which is raised here as
if the build had run in this process. The namespace and every mount made in it end
with the worker, whatever ends it (it dies with this process too).

Messages travel on a pipe of their own (never stdout, which RUN output could
reach): each is a 4-byte length and a pickle, between two processes of the same
program.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import IO, Any

from anybuild.backends.base import BuildRequest, BuildResult, LogSink
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.host import BuildNamespace
from anybuild.builder.sandbox.model import USERNS_ENV
from anybuild.builder.userns import FAILURE_EXIT, FAILURE_PREFIX, launcher_argv
from anybuild.cancellation import Cancellation, handle_signals, signum_of
from anybuild.errors import AnybuildError, BackendError, Interrupted
from anybuild.process import SubprocessRunner

__all__ = ["WorkerJob", "build_in_namespace", "main"]

_LENGTH = struct.Struct("=I")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerJob:
    """What the worker needs: the request and the build environment's plain values."""

    request: BuildRequest
    env: dict[str, str]
    sandbox: str | None = None
    named_images: dict[str, str] = field(default_factory=dict)
    docker_media_types: bool = False
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    strict: bool = False


def _plain(request: BuildRequest) -> BuildRequest:
    """The request with plain dicts (read-only mappings do not pickle)."""
    return dataclasses.replace(request, build_args=dict(request.build_args), labels=dict(request.labels),
                               registry_mirrors={k: tuple(v) for k, v in request.registry_mirrors.items()})


def _send(out: IO[bytes], lock: threading.Lock, message: tuple[str, Any]) -> None:
    data = pickle.dumps(message)
    with lock:
        out.write(_LENGTH.pack(len(data)) + data)
        out.flush()


def _messages(stream: IO[bytes]) -> Any:
    while True:
        head = stream.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(head)
        yield pickle.loads(stream.read(size))  # noqa: S301 - from our own worker, over a private pipe


def build_in_namespace(request: BuildRequest, sink: LogSink, environment: BuildEnvironment,
                       namespace: BuildNamespace) -> BuildResult:
    """Run the build in a worker in *namespace* (a map: identity, subuid or single)."""
    assert namespace.mapping is not None
    env = {**environment.env, USERNS_ENV: namespace.mapping}  # the builder knows where it runs
    job = WorkerJob(request=_plain(request), env=env, sandbox=environment.sandbox,
                    named_images=dict(environment.named_images), docker_media_types=environment.docker_media_types,
                    cache_from=tuple(environment.cache_from), cache_to=environment.cache_to,
                    strict=environment.strict)
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "anybuild.builder.worker", str(write_end)]
    with contextlib.ExitStack() as stack:
        try:  # in a session of its own: a signal reaches it from this process's cancellation, and only so
            proc = subprocess.Popen(launcher_argv(sys.executable, namespace.mapping, command), env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    pass_fds=(write_end,), start_new_session=True)
        except OSError as exc:
            os.close(read_end)
            raise BackendError(f"cannot start the builder's worker: {exc.strerror}", backend="builtin") from exc
        finally:
            os.close(write_end)
        stack.callback(_reap, proc)
        cancel = environment.cancel  # forwarded as the signal it was: the worker stops its build and says so
        stack.callback(cancel.on_cancel(lambda: _signal(proc, cancel.signum or signal.SIGINT)))
        messages = stack.enter_context(os.fdopen(read_end, "rb"))
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.extend(proc.stderr.read().decode(errors="replace")
                                                                .splitlines() if proc.stderr else []),
                                  daemon=True)
        reader.start()
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(pickle.dumps(job))
            proc.stdin.close()
        outcome: tuple[str, Any] | None = None
        try:
            for kind, value in _messages(messages):
                if kind == "line":
                    sink.line(value)
                else:
                    outcome = (kind, value)
        except KeyboardInterrupt:
            raise Interrupted("the build was interrupted; its namespace, mounts and temporary files went with it",
                              hint="run the build again") from None
        proc.wait()
        reader.join(timeout=5)
        if proc.stderr is not None and not reader.is_alive():
            proc.stderr.close()
    if outcome is not None and outcome[0] == "result":
        result: BuildResult = outcome[1]
        return result
    if outcome is not None and outcome[0] == "error":
        raise outcome[1]
    said = next((line.removeprefix(FAILURE_PREFIX).strip() for line in errors if line.startswith(FAILURE_PREFIX)),
                None)
    if proc.returncode == FAILURE_EXIT and said is not None:
        raise BackendError(f"the builder could not enter its {namespace.mapping} user namespace: {said}",
                           backend="builtin", hint="run `anybuild doctor`; ANYBUILD_USERNS=none builds without one")
    detail = outcome[1] if outcome is not None else "\n".join(errors[-30:]) or f"exit status {proc.returncode}"
    raise RuntimeError(f"the builder's worker failed (exit {proc.returncode}):\n{detail}")


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str]) -> int:
    out = os.fdopen(int(argv[1]), "wb")
    lock = threading.Lock()
    job: WorkerJob = pickle.load(sys.stdin.buffer)  # noqa: S301 - from the process that started us

    class _Sink:
        def line(self, text: str) -> None:
            _send(out, lock, ("line", text))

    cancel = Cancellation()
    environment = BuildEnvironment(env=job.env, sandbox=job.sandbox, named_images=job.named_images,
                                   docker_media_types=job.docker_media_types, cache_from=job.cache_from,
                                   cache_to=job.cache_to, strict=job.strict, cancel=cancel,
                                   runner=SubprocessRunner(cancel=cancel))
    try:
        with handle_signals(cancel, write=lambda _data: None):  # the process that started it says it
            result = build_image(job.request, _Sink(), environment)
    except AnybuildError as exc:
        _send(out, lock, ("error", exc))
    except KeyboardInterrupt as exc:
        _send(out, lock, ("error", Interrupted("the build was interrupted", signum=signum_of(exc),
                                               hint="run the build again")))
    except BaseException:  # a bug: its traceback goes back to the process that shows it
        _send(out, lock, ("crash", traceback.format_exc()))
        return 70
    else:
        _send(out, lock, ("result", result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
