"""The in-sandbox init for the ``unshare``, ``chroot`` and ``proot`` sandboxes (stdlib only).

Run as ``python -I -S init.py SPEC.json`` by the host's Python. Modes:

- ``namespaces``: new mount, pid, ipc and uts (and, for ``--network=none``, net)
  namespaces of its own (root, or root in the build's user namespace, may make
  them); the command runs as pid 1 of the new pid namespace, so nothing it
  starts outlives it, and every mount dies with the namespace.
- ``chroot``: no namespaces; the mounts are made where the process is and undone
  when the command ends.
- ``proot``: no namespaces and no mounts; ``proot`` (argv given in the spec)
  emulates the chroot, the bind mounts and the ids with ptrace.

In the first two, ``/proc`` is a new procfs where the kernel allows it and the
pod's own ``/proc`` bound recursively where it does not (a pod's masked /proc
makes a new procfs "too revealing"). The command runs as its USER where that id
exists here, else as root with its USER's ownership recorded
(:mod:`anybuild.builder.sandbox.recorder` answers its ``chown`` calls).

The parent process stays outside the command: it forwards signals, answers the
recorder's notifications, waits, and writes a result document (``result`` in the
spec): the set-up error if the sandbox could not start (exit 125, nothing of the
command ran), how /proc was provided, and the symlinks whose owners were recorded.

It imports nothing from anybuild's package: it must start without it on the path
(:mod:`anybuild.builder.owners` and the recorder are loaded by file).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import importlib.util
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["SETUP_FAILED", "main"]

SETUP_FAILED = 125
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """The sandbox could not be made: nothing of the command ran."""


class MountError(SetupError):
    """One of the RUN's own mounts could not be made: the Dockerfile's doing, not the sandbox's."""


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_anybuild_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def _bind(source: str, target: str, readonly: bool) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        try:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        except OSError:
            # in a user namespace the source's locked flags must be kept
            locked = os.statvfs(source).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | locked)


def _setup_dev(target: str) -> None:
    dev = Path(target)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name in DEV_NODES:
        (dev / name).touch()
        _bind(f"/dev/{name}", str(dev / name), readonly=False)
    for sub in ("shm", "pts", "mqueue"):
        (dev / sub).mkdir(mode=0o755)
    _mount("shm", str(dev / "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    try:
        _mount("devpts", str(dev / "pts"), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
        (dev / "ptmx").symlink_to("pts/ptmx")
    except OSError:
        pass  # no private devpts here (some user namespaces): programs needing a pty will say so
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        (dev / name).symlink_to(link)


def _mount_proc(target: str) -> str:
    """A new procfs where the kernel allows one, else the pod's /proc bound (masks and all)."""
    try:
        _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES):
            raise
        _bind("/proc", target, readonly=False)
        return "bound"
    return "mounted"


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _make_mounts(spec: dict[str, Any], report: dict[str, Any]) -> list[str]:
    done: list[str] = []
    for mount in spec["mounts"]:
        target = mount["target"]
        try:
            match mount["kind"]:
                case "proc":
                    report["proc"] = _mount_proc(target)
                case "sys":
                    _bind("/sys", target, readonly=True)
                case "dev":
                    _setup_dev(target)
                case "tmpfs":
                    size = f",size={mount['size']}" if mount.get("size") else ""
                    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777{size}")
                case "bind":
                    _bind(mount["source"], target, bool(mount.get("readonly")))
                case other:
                    raise ValueError(f"unknown mount kind {other!r}")
        except OSError as exc:
            said = str(exc) if exc.filename is None else f"{exc.strerror}: {exc.filename}"
            if mount.get("own"):
                raise MountError(f"RUN --mount target {mount.get('guest') or target}: {said}") from exc
            raise SetupError(said) from exc
        done.append(target)
    return done


def _switch_ids(spec: dict[str, Any]) -> None:
    try:
        if sorted(os.getgroups()) != sorted(spec["groups"]):
            try:
                os.setgroups(spec["groups"])
            except PermissionError:
                # a user namespace that maps one id denies setgroups(2): the overflow group the
                # builder's user brought along stays, harmless, when no group but the primary one is wanted
                if set(spec["groups"]) - {spec["gid"]}:
                    raise
        if os.getgid() != spec["gid"]:
            os.setgid(spec["gid"])
        if os.getuid() != spec["uid"]:
            os.setuid(spec["uid"])
    except OSError as exc:
        raise SetupError(f"switching to uid {spec['uid']} gid {spec['gid']}: {exc.strerror}") from exc


def _exec(argv: list[str], env: dict[str, str]) -> None:
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 - exec form, as Docker runs it
    except OSError as exc:
        sys.stderr.write(f"anybuild sandbox: exec {argv[0]!r}: {exc.strerror}\n")
        sys.stderr.flush()
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


def _child(spec: dict[str, Any], status: int, channel: socket.socket | None, recorder: ModuleType | None) -> None:
    """Make the sandbox and exec the command: never returns."""
    report: dict[str, Any] = {}
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.setpgid(0, 0)  # its own process group: what it starts ends with it (see main)
        mode = spec["mode"]
        if mode != "proot":
            _make_mounts(spec, report)
            if spec.get("hostname"):
                with contextlib.suppress(OSError):  # no UTS namespace of our own
                    socket.sethostname(spec["hostname"])
            if spec.get("loopback"):
                _loopback_up()
        if recorder is not None:
            notify = channel is not None
            try:
                listener = recorder.install_filter(no_new_privs=mode == "proot" or bool(spec.get("no_new_privs")),
                                                   notify=notify, no_statx=mode == "proot")
            except OSError as exc:
                if mode == "proot" and not notify:
                    raise SetupError(f"a seccomp filter for proot: {exc.strerror}") from exc
                report["recorder"] = exc.strerror or str(exc)  # the build says chown cannot be recorded
                listener = None
            if channel is not None:
                if listener is not None:
                    recorder.send_listener(channel, listener)
                    os.close(listener)
                channel.close()
        os.write(status, (json.dumps(report) + "\n").encode())
        env = dict(item.split("=", 1) for item in spec["env"] if "=" in item)
        if mode == "proot":
            # proot emulates the uid and gid; the supplementary groups are the process's own, given
            # for real where the builder may (root): `id -G` then says what runc would
            if spec.get("groups") and sorted(os.getgroups()) != sorted(spec["groups"]):
                with contextlib.suppress(PermissionError):
                    os.setgroups(spec["groups"])
            _exec(spec["proot_argv"], env)
        try:
            os.chroot(spec["rootfs"])
        except OSError as exc:
            raise SetupError(f"chroot {spec['rootfs']}: {exc.strerror}") from exc
        os.chdir("/")
        try:
            os.chdir(spec["cwd"])
        except OSError as exc:
            sys.stderr.write(f"anybuild sandbox: cannot enter working directory {spec['cwd']}: {exc.strerror}\n")
            os._exit(126)
        if spec.get("ids") == "real":
            _switch_ids(spec)
        _exec(spec["argv"], env)
    except SetupError as exc:
        key = "mount_error" if isinstance(exc, MountError) else "setup_error"
        with contextlib.suppress(OSError):
            os.write(status, (json.dumps({"setup_error": str(exc), key: str(exc)}) + "\n").encode())
        os._exit(SETUP_FAILED)
    except BaseException as exc:  # a bug here must still end this process, and say why
        with contextlib.suppress(OSError):
            os.write(status, (json.dumps({"setup_error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        os._exit(SETUP_FAILED)
    os._exit(SETUP_FAILED)


def _unshare(spec: dict[str, Any]) -> None:
    flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS
    if spec.get("loopback"):
        flags |= _CLONE_NEWNET
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise SetupError(f"unshare(mount, pid, ipc, uts namespaces): {os.strerror(err)}")
    if _libc.mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
        err = ctypes.get_errno()
        raise SetupError(f"making / private in the new mount namespace: {os.strerror(err)}")


def _main_tracee(proot: int) -> int | None:
    """The process proot started for the command (its first child), once it exists."""
    try:
        children = Path(f"/proc/{proot}/task/{proot}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _others_in_group(group: int, keep: int) -> list[int]:
    """The processes of process group *group* but *keep* (what the command left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == keep:
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) == group:  # pgrp
                found.append(int(entry.name))
    return found


_PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(0xFF, 11, struct pidfd_info), its first (64-byte) version
_PIDFD_INFO_EXIT = 8


def _reaped_status(pidfd: int) -> int | None:
    """The wait status of the process behind *pidfd* once its parent has reaped it (Linux 6.15+)."""
    info = bytearray(64)
    struct.pack_into("=Q", info, 0, _PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, info)
    except OSError:
        return None
    if not struct.unpack_from("=Q", info, 0)[0] & _PIDFD_INFO_EXIT:
        return None
    return int(struct.unpack_from("=i", info, 60)[0])


def _zombie_status(pid: int) -> int | None:
    """The wait status of *pid* while it is a zombie not yet reaped (``exit_code``, field 52 of its stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[49]) if fields[0] == "Z" else None
    except (OSError, ValueError, IndexError):
        return None


class _Command:
    """The command under proot: proot's first child once proot runs (not before: the init's child forks
    nothing of its own after exec, but may before). The RUN ends when it does, and its wait status is the
    RUN's, not proot's (proot reports the last tracee that exited, which may be a leftover, and 0 or 255
    for a command killed by a signal)."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.pid = 0
        self.ended_at: float | None = None
        self.status: int | None = None

    def find(self, proot: int) -> int | None:
        """Its pidfd, once proot has started it. A command that ended before it was seen (a moment under
        load) counts as ended if it left anything running: the group holds more than proot, none of it
        proot's child."""
        main = _main_tracee(proot)
        if main is None and _others_in_group(proot, keep=proot):
            main = _main_tracee(proot)  # read again: it may have been started meanwhile
            if main is None:
                self.ended_at = time.monotonic()
                return None
        if main is not None:
            with contextlib.suppress(OSError):
                self.fd, self.pid = os.pidfd_open(main), main
        return self.fd

    def ended(self) -> None:
        self.ended_at = time.monotonic()
        self.status = _zombie_status(self.pid)  # proot may reap it first; then the kernel still knows

    def wait_status(self) -> int | None:
        """Its wait status, once proot has ended; None when unknown."""
        if self.fd is None:
            return None
        reaped = _reaped_status(self.fd)
        os.close(self.fd)
        self.fd = None
        return reaped if reaped is not None else self.status


def _wait(pid: int, reports: int, listener: int | None, serve: Any, *,
          proot: bool = False) -> tuple[int, bytes, int | None]:
    """Wait for *pid*, answering the recorder's notifications meanwhile; its wait status, what it reported
    on *reports* (read to its end: the command's exec closes it) and, under proot, the command's wait status.

    Under proot (*proot*), the RUN ends when the command does, as in a container whose pid 1 ends:
    proot waits for every tracee, so what the command left running (a daemon started with ``&``) is
    killed as soon as the command has ended (and again, should it have started more, until proot ends).
    """
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(reports, select.POLLIN)
    if listener is not None:
        poller.register(listener, select.POLLIN)
    said = bytearray()
    execd = False
    command = _Command()
    watching = False
    try:
        while True:
            looking = proot and execd and not watching and command.ended_at is None
            if looking and (found := command.find(pid)) is not None:
                poller.register(found, select.POLLIN)
                watching = True
            # under proot, once exec'd, the command is looked for without pause until seen (it may live a
            # millisecond); after it ended, what it left is killed again (it may have started more)
            seeking = proot and execd and not watching and command.ended_at is None
            timeout = 0 if seeking else (200 if proot and execd else None)
            try:
                events = dict(poller.poll(timeout))
            except InterruptedError:
                continue
            if events.get(reports, 0):
                chunk = os.read(reports, 65536)
                said += chunk
                if not chunk:
                    poller.unregister(reports)
                    execd = True
            if listener is not None and events.get(listener, 0) & select.POLLIN:
                serve()
                continue
            if listener is not None and events.get(listener, 0) & (select.POLLHUP | select.POLLERR):
                poller.unregister(listener)
                listener = None
            if events.get(pidfd, 0) & select.POLLIN:
                _, status = os.waitpid(pid, 0)
                if not execd:
                    with contextlib.suppress(OSError):
                        said += os.read(reports, 65536)
                return status, bytes(said), command.wait_status() if proot else None
            if watching and command.fd is not None and events.get(command.fd, 0) & select.POLLIN:
                poller.unregister(command.fd)
                watching = False
                command.ended()
            if command.ended_at is not None:
                for other in _others_in_group(pid, keep=pid):
                    with contextlib.suppress(OSError):
                        os.kill(other, signal.SIGKILL)
    finally:
        os.close(pidfd)
        if command.fd is not None:
            os.close(command.fd)


def _end_leftovers(pid: int) -> None:
    """What the command left running in its process group goes with it (without a pid namespace
    nothing else would end it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _remove_proot_files(proot: int, env: list[str]) -> None:
    """The loader proot keeps in $TMPDIR or /tmp (``prooted-PID-XXXXXX``): proot removes it when it
    exits, not when it is killed (a build stopped, a leftover group ended)."""
    tmp = next((item.split("=", 1)[1] for item in env if item.startswith("TMPDIR=")), "") or "/tmp"
    with contextlib.suppress(OSError):
        for path in Path(tmp).glob(f"prooted-{proot}-*"):
            with contextlib.suppress(OSError):
                path.unlink()


def _record_group(ledger: str | None, pid: int) -> None:
    """The command's process group goes into the build's ledger (anybuild.builder.ledger): if the build is
    killed outright, the next one ends what the command left running."""
    if not ledger:
        return
    try:
        start = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[19])
        fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except (OSError, ValueError, IndexError):
        return
    try:
        os.write(fd, (json.dumps({"kind": "group", "pid": pid, "start": start}) + "\n").encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a builder killed outright takes its RUN along
    spec = json.loads(Path(argv[1]).read_text())
    result_path = Path(spec["result"])
    result: dict[str, Any] = {"setup_error": None, "proc": None, "symlinks": [], "chowns": 0}
    here = Path(__file__).resolve().parent
    recorder: ModuleType | None = None
    parent_end: socket.socket | None = None
    child_end: socket.socket | None = None
    try:
        if spec.get("record") or spec["mode"] == "proot":
            recorder = _load("recorder", here / "recorder.py")
        if spec.get("record"):
            parent_end, child_end = socket.socketpair()
        if spec["mode"] == "namespaces":
            _unshare(spec)
    except (SetupError, OSError) as exc:
        result["setup_error"] = str(exc)
        result_path.write_text(json.dumps(result))
        return SETUP_FAILED
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        if parent_end is not None:
            parent_end.close()
        _child(spec, status_w, child_end, recorder)
    os.close(status_w)
    if child_end is not None:
        child_end.close()
    _record_group(spec.get("ledger"), pid)
    # Stopped from outside (Ctrl-C, a cancelled build): the command and everything it started go now. pid 1
    # of a namespace would ignore most signals, and the tracees of a killed proot would keep running.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda _signum, _frame: _end_leftovers(pid))
    listener = None
    serving = None
    if recorder is not None and parent_end is not None:
        parent_end.settimeout(None)
        with contextlib.suppress(OSError, IndexError):
            listener = recorder.receive_listener(parent_end)
        parent_end.close()
        if listener is not None:
            owners = _load("owners", here.parent / "owners.py")
            logical = spec.get("logical") or {}
            serving = recorder.Recorder(
                rootfs=spec["rootfs"], listener=listener, ownership=owners.Ownership.for_current_process(),
                logical_uid=int(logical.get("uid", 0)), logical_groups=frozenset(logical.get("groups", [0])),
                guest_paths=spec["mode"] == "proot")
            serving.open()
    command: int | None = None
    try:
        status, reports, command = _wait(pid, status_r, listener, serving.one if serving is not None else None,
                                         proot=spec["mode"] == "proot")
    finally:
        os.close(status_r)
        if spec["mode"] != "namespaces":
            _end_leftovers(pid)
        if spec["mode"] == "proot":
            _remove_proot_files(pid, spec["env"])
        if serving is not None:
            serving.drain()
            serving.close()
            result["symlinks"] = serving.symlinks
            result["chowns"] = serving.handled
    for line in reports.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            result.update(json.loads(line))
    if command is not None and not result["setup_error"]:
        status = command  # the command's own end, not proot's (see _Command)
    if spec["mode"] == "chroot":
        for mount in reversed(spec["mounts"]):
            _libc.umount2(mount["target"].encode(), MNT_DETACH)
    result_path.write_text(json.dumps(result))
    if result["setup_error"]:
        return SETUP_FAILED
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
