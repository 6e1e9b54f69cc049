"""Process plumbing for the test harness: ports, start/stop, readiness waits, mounts.

Every component the harness starts runs in its own session (process group) with its
output in a log file, so teardown can kill the whole group and a failed readiness
wait can show the log tail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "HarnessError",
    "free_port",
    "log_tail",
    "mounts_under",
    "port_open",
    "remove_tree",
    "require_binary",
    "require_root",
    "run",
    "start",
    "stop",
    "unavailable",
    "unmount_under",
    "wait_until",
]


class HarnessError(RuntimeError):
    """A component of the harness failed to start or stop (a bug or a broken machine)."""


def unavailable(reason: str) -> NoReturn:
    """Skip the test needing a missing component; under CI=true fail loudly instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"harness component unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, package: str) -> str:
    """Absolute path of `name`, or skip (fail in CI) naming the Debian package to install."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        unavailable(f"{name} not found: install Debian package {package} (scripts/install-test-deps.sh)")
    return found


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"{what} needs root")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def start(
    argv: Sequence[str],
    *,
    log_path: Path,
    stdout_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session; stderr goes to log_path, stdout too unless stdout_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(log_path.open("ab"))
        out = stack.enter_context(stdout_path.open("ab")) if stdout_path is not None else err
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll `ready` until true; raise HarnessError with the log tail on exit or timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            tail = log_tail(log_path) if log_path else ""
            raise HarnessError(f"{what} exited with status {proc.returncode} before ready:\n{tail}")
        if time.monotonic() > deadline:
            tail = log_tail(log_path) if log_path else ""
            raise HarnessError(f"{what} not ready after {timeout:.0f}s:\n{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def stop(proc: subprocess.Popen[bytes], *, timeout: float = 15.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left of it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # The leader may be gone while children (containerd, shims) still hold the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,  # noqa: A002 (as in subprocess.run)
    timeout: float = 300.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output; on failure show both streams."""
    result = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    if check and result.returncode != 0:
        raise HarnessError(
            f"command failed with status {result.returncode}: {' '.join(argv)}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def processes(match: Callable[[list[bytes]], bool]) -> list[int]:
    """The live processes (not zombies) whose argv (as /proc/PID/cmdline lists it) *match* accepts."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and match(argv):
            found.append(int(entry.name))
    return found


def _unescape_mountinfo(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = str(root.resolve())
    found: list[Path] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(root: Path) -> None:
    """Unmount everything at or below `root`; lazily if a mount is busy."""
    for _ in range(3):
        points = mounts_under(root)
        if not points:
            return
        for point in points:
            done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    left = mounts_under(root)
    if left:
        raise HarnessError(f"could not unmount {', '.join(map(str, left))}")


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts anything below `path`."""
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)
