"""What a build made that must not outlive it, recorded under a lock held for the build's lifetime.

A build's scratch directory is ``DATA/tmp/build-XXXX/``: its stages' root filesystems and overlay
mounts, the RUN sandboxes' bundles, state and stubs, the tmpfs of its secrets (or their directory
in /dev/shm where no tmpfs can be mounted, recorded as `memory`). Beside it,
``build-XXXX.ledger`` records it and what the build starts that lives elsewhere: runc containers
(state root and id) and the process groups of RUN commands (leader pid and start time), appended
by whoever starts them (the sandbox init writes its own line). The build holds an exclusive
``flock`` on its ledger until it has undone all of it; a build killed outright (SIGKILL, the OOM
killer) loses the lock with its life.

:func:`recover_abandoned` (the next build, ``anybuild cache prune``) takes the lock of every ledger
nobody holds, and undoes what it lists: deletes the runc containers, kills the processes (the
recorded groups, and any process whose command line, root or working directory is in the scratch
directory, such as a command left running by a killed ``chroot`` or ``proot`` sandbox), unmounts
everything mounted below the scratch directory (deepest first), removes it and the ledger. Each
recovery is reported once, by whoever did it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anybuild.builder.sandbox.stubs import mount_points
from anybuild.cancellation import cleanup
from anybuild.errors import AnybuildError
from anybuild.leftovers import process_start
from anybuild.process import Runner

__all__ = ["LEDGER_SUFFIX", "Ledger", "Recovered", "process_start", "recover_abandoned"]

LEDGER_SUFFIX = ".ledger"
SHARED_MEMORY = Path("/dev/shm")
MEMORY_SECRETS_PREFIX = "anybuild-secrets-"
_PROC = Path("/proc")


@dataclass(slots=True)
class Ledger:
    """The record of one running build (see the module's doc); made by :meth:`open`, ended by :meth:`close`."""

    path: Path
    work: Path
    _fd: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, tmp: Path) -> Ledger:
        """A new scratch directory under *tmp*, its ledger written and locked before the directory exists
        (so that no recovery mistakes a starting build for an abandoned one)."""
        tmp.mkdir(parents=True, exist_ok=True)
        tmp = tmp.resolve()  # compared with the absolute mount points of mountinfo by the recovery
        while True:
            name = f"build-{secrets.token_hex(4)}"
            path = tmp / f"{name}{LEDGER_SUFFIX}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            break
        fcntl.flock(fd, fcntl.LOCK_EX)
        ledger = cls(path=path, work=tmp / name, _fd=fd)
        ledger.record("build", pid=os.getpid(), start=process_start(os.getpid()), work=str(ledger.work),
                      at=time.time())
        ledger.work.mkdir(mode=0o700)
        return ledger

    def record(self, kind: str, **fields: Any) -> None:
        """Append one line (one write: whole lines even from other processes appending)."""
        line = (json.dumps({"kind": kind, **fields}) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

    def runc(self, runtime: str, state: Path, container: str) -> None:
        self.record("runc", runtime=runtime, root=str(state), id=container)

    def close(self) -> None:
        """The build is over: the ledger goes (unless its directory could not be removed, a mount still in
        the way: then the next recovery tries again), and its lock with it."""
        if not self.work.exists():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered:
    """What was undone for one abandoned build."""

    work: Path
    pid: int | None  # the build's process, gone
    since: float | None  # when it started (epoch seconds)
    containers: int = 0
    processes: int = 0
    mounts: int = 0
    removed: bool = False

    def describe(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.containers, "runc container(s)"), (self.processes,
                 "process(es)"), (self.mounts, "mount(s)")) if n]
        if self.removed:
            parts.append(f"its directory {self.work}")
        when = f" (pid {self.pid}" + (f", started {time.strftime('%H:%M:%S', time.localtime(self.since))})"
                                      if self.since else ")") if self.pid else ""
        return f"cleaned up after a build that was killed{when}: " + (", ".join(parts) or "nothing was left")


def recover_abandoned(tmp: Path, *, runner: Runner, proc: Path = _PROC,
                      read_mountinfo: Callable[[], str] | None = None,
                      unmount: Callable[[Path], None] | None = None) -> list[Recovered]:
    """Undo what builds killed outright left under *tmp* (see the module's doc); what was done, per build.

    It is clean-up: a cancellation does not stop it half-way (:func:`~anybuild.cancellation.cleanup`).
    """
    found: list[Recovered] = []
    if not tmp.is_dir():
        return found
    tmp = tmp.resolve()  # mountinfo's points are absolute, symlinks resolved: never delete through a mount
    with cleanup():
        for path in sorted(tmp.glob(f"build-*{LEDGER_SUFFIX}")):
            with _abandoned(path) as entries:
                if entries is None:
                    continue
                found.append(_undo(path, entries, runner=runner, proc=proc,
                                   read_mountinfo=read_mountinfo or _mountinfo, unmount=unmount or _detach))
    return found


@contextlib.contextmanager
def _abandoned(path: Path) -> Iterator[list[dict[str, Any]] | None]:
    """The entries of a ledger nobody holds, under its lock; None when its build is alive (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None  # its build is running
            return
        if os.fstat(fd).st_nlink == 0:
            yield None  # undone by another recovery since we opened it
            return
        entries = []
        for line in Path(f"/proc/self/fd/{fd}").read_bytes().decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        yield entries
    finally:
        os.close(fd)


def _undo(path: Path, entries: list[dict[str, Any]], *, runner: Runner, proc: Path,
          read_mountinfo: Callable[[], str], unmount: Callable[[Path], None]) -> Recovered:
    header = next((e for e in entries if e.get("kind") == "build"), {})
    work = Path(str(header.get("work") or path.with_suffix("")))
    if work.parent != path.parent or not work.name.startswith("build-"):
        work = path.with_suffix("")  # a ledger names its own directory only
    containers = 0
    for entry in entries:
        if entry.get("kind") == "runc" and entry.get("root") and entry.get("id"):
            state = Path(str(entry["root"]))
            if state.is_relative_to(work) and (state / str(entry["id"])).exists():
                with contextlib.suppress(AnybuildError):  # a runtime gone missing: the kills below still run
                    runner.run([str(entry.get("runtime") or "runc"), "--root", str(state), "delete", "--force",
                                str(entry["id"])], timeout=30)
                containers += 1
    groups = {(int(e["pid"]), e.get("start")) for e in entries if e.get("kind") == "group" and e.get("pid")}
    killed = _kill_leftovers(work, groups, proc)
    for entry in entries:  # secret files kept in /dev/shm where no tmpfs could be mounted (see builder.build)
        memory = Path(str(entry.get("path") or ""))
        if entry.get("kind") == "memory" and memory.parent == SHARED_MEMORY \
                and memory.name.startswith(MEMORY_SECRETS_PREFIX) and not memory.is_symlink():
            shutil.rmtree(memory, ignore_errors=True)
    mounts = _unmount_below(work, read_mountinfo, unmount)
    removed = False
    if work.exists() and not [p for p in mount_points(read_mountinfo()) if _below(p, work)]:
        shutil.rmtree(work, ignore_errors=True)
        removed = not work.exists()
    if not work.exists():
        path.unlink(missing_ok=True)
    since = header.get("at")
    return Recovered(work=work, pid=header.get("pid"), since=float(since) if since else None, containers=containers,
                     processes=killed, mounts=mounts, removed=removed)


def _below(point: str, work: Path) -> bool:
    base = str(work)
    return point == base or point.startswith(base + "/")


def _leftovers(work: Path, groups: set[tuple[int, Any]], proc: Path) -> set[int]:
    """Processes of the abandoned build: in a recorded group (started with or after its leader), or with
    their command line, root or working directory in its scratch directory."""
    me = os.getpid()
    base = str(work)
    found: set[int] = set()
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            pgrp, start = int(fields[2]), int(fields[19])
        except (OSError, ValueError, IndexError):
            continue
        if any(pgrp == leader and (since is None or start >= int(since)) for leader, since in groups):
            found.add(pid)
            continue
        with contextlib.suppress(OSError):
            if base.encode() in (entry / "cmdline").read_bytes():
                found.add(pid)
                continue
        for link in ("root", "cwd"):
            with contextlib.suppress(OSError):
                if _below(str((entry / link).readlink()), work):
                    found.add(pid)
                    break
    return found


def _kill_leftovers(work: Path, groups: set[tuple[int, Any]], proc: Path) -> int:
    killed: set[int] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = {pid for pid in _leftovers(work, groups, proc) if _running(pid, proc)}
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed |= alive
        time.sleep(0.1)
    return len(killed)


def _running(pid: int, proc: Path) -> bool:
    try:
        state = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _mountinfo() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _detach(target: Path) -> None:
    from anybuild.builder.overlay import LibcMounter

    with contextlib.suppress(OSError):
        LibcMounter().unmount(target, detach=True)


def _unmount_below(work: Path, read_mountinfo: Callable[[], str], unmount: Callable[[Path], None]) -> int:
    done = 0
    for _ in range(3):  # a mount made over another shows up once the top one is gone
        below = [p for p in mount_points(read_mountinfo()) if _below(p, work)]
        if not below:
            break
        for point in sorted(set(below), key=lambda p: p.count("/"), reverse=True):
            unmount(Path(point))
            done += 1
    return done
