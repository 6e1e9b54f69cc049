"""The in-sandbox init for the ``unshare`` and ``chroot`` sandboxes (stdlib only).

Run as ``python -I -S init.py SPEC.json`` by the host's Python, inside the new
namespaces (``unshare``) or directly as root (``chroot``). It makes the mounts
the spec lists (targets are host paths already resolved inside the rootfs),
sets the hostname and brings ``lo`` up when it owns those namespaces, then
``chroot``s, changes directory, drops to the build user and ``exec``s the
command. With ``"supervise": true`` (the ``chroot`` sandbox, which has no mount
namespace) it forks instead, waits for the command and unmounts everything.

It imports nothing from anybuild: it must start without the package on the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


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


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _make_mounts(spec: dict[str, Any]) -> list[str]:
    done: list[str] = []
    for mount in spec["mounts"]:
        target = mount["target"]
        match mount["kind"]:
            case "proc":
                _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            case "sys":
                _bind("/sys", target, readonly=True)
            case "dev":
                _setup_dev(target)
            case "tmpfs":
                _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
            case "bind":
                _bind(mount["source"], target, bool(mount.get("readonly")))
            case other:
                raise ValueError(f"unknown mount kind {other!r}")
        done.append(target)
    return done


def _enter(spec: dict[str, Any]) -> None:
    """chroot, chdir, drop privileges, exec: never returns."""
    os.chroot(spec["rootfs"])
    os.chdir("/")
    try:
        os.chdir(spec["cwd"])
    except OSError as exc:
        sys.stderr.write(f"anybuild sandbox: cannot enter working directory {spec['cwd']}: {exc.strerror}\n")
        os._exit(126)
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    env = dict(item.split("=", 1) for item in spec["env"] if "=" in item)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 - exec form, as Docker runs it
    except OSError as exc:
        sys.stderr.write(f"anybuild sandbox: exec {argv[0]!r}: {exc.strerror}\n")
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    mounted = _make_mounts(spec)
    if spec.get("hostname"):
        with contextlib.suppress(OSError):  # no UTS namespace of our own
            socket.sethostname(spec["hostname"])
    if spec.get("loopback"):
        _loopback_up()
    if not spec.get("supervise"):
        _enter(spec)
        return 127
    pid = os.fork()
    if pid == 0:
        _enter(spec)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    _, status = os.waitpid(pid, 0)
    for target in reversed(mounted):
        _libc.umount2(target.encode(), MNT_DETACH)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
