"""Recording ``chown`` in a RUN where the pod grants one uid (stdlib only; loaded by the sandbox init).

In a user namespace that maps a single id, or with no namespace at all (proot), a
RUN's ``chown node:node /app`` fails with EINVAL or EPERM where Docker's succeeds,
and the layer would lose the owner. The sandbox's init installs a seccomp filter
in the command before it runs that turns ``chown``, ``lchown``, ``fchown`` and
``fchownat`` into *user notifications* (Linux 5.5+), and this module's
:class:`Recorder` answers them from outside the command:

- the target is found as the command named it — relative to its working
  directory or directory descriptor (``/proc/PID/cwd``, ``/proc/PID/fd/N``), or to
  the build's root filesystem for an absolute path — and opened with
  ``openat2(RESOLVE_IN_ROOT)``, so no symlink leads outside the root filesystem;
- ids that exist here are given for real (and any earlier record removed); the
  others are recorded on the file as the ``user.anybuild.owner`` attribute the
  layer writer reads (:mod:`anybuild.builder.owners`), or, for a symlink, in a
  list the builder merges into its path map;
- a command running as a user other than root (``USER node`` where the pod has
  one uid) gets what the kernel would give it: EPERM for a change it could not
  make, success otherwise;
- a target outside the root filesystem (a cache or bind mount) is left to the kernel.

The command then sees ``chown`` succeed, as it does under Docker.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import platform
import select
import socket
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Recorder", "install_filter", "receive_listener", "send_listener"]

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_USER_NOTIF = 0x7FC00000
_USER_NOTIF_FLAG_CONTINUE = 1
_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
_NOTIF_ID_VALID = 0x40082102  # _IOW('!', 2, __u64)
_NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, nr, arch, ip, args[6]
_RESP = struct.Struct("=QqiI")  # id, val, error, flags
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000
_O_PATH = 0o10000000
_RESOLVE_IN_ROOT = 0x10
_UNCHANGED = 0xFFFFFFFF

_SECCOMP_RET_ERRNO = 0x00050000
# (audit arch, seccomp syscall, openat2, {syscall: (name, path argument?, follows symlinks?)})
_ARCHES = {
    "x86_64": (0xC000003E, 317, 437, {92: ("chown", True, True), 93: ("fchown", False, True),
                                       94: ("lchown", True, False), 260: ("fchownat", True, True)}),
    "aarch64": (0xC00000B7, 277, 437, {55: ("fchown", False, True), 54: ("fchownat", True, True)}),
}
_STATX = {"x86_64": 332, "aarch64": 291}


def _arch() -> tuple[int, int, int, dict[int, tuple[str, bool, bool]]]:
    machine = platform.machine()
    if machine not in _ARCHES:
        raise OSError(errno.ENOSYS, f"recording chown is not supported on {machine}")
    return _ARCHES[machine]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _filter(*, notify: bool, no_statx: bool) -> bytes:
    audit, _, _, calls = _arch()
    code = [(_BPF_LD_W_ABS, 0, 0, 4)]  # seccomp_data.arch
    code.append((_BPF_JEQ_K, 1, 0, audit))  # this architecture: go on; else allow
    code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    code.append((_BPF_LD_W_ABS, 0, 0, 0))  # seccomp_data.nr
    if no_statx:  # proot does not translate statx's path: ENOSYS makes libc and libuv use fstatat
        code.append((_BPF_JEQ_K, 0, 1, _STATX[platform.machine()]))
        code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS))
    numbers = sorted(calls) if notify else []
    for index, number in enumerate(numbers):
        code.append((_BPF_JEQ_K, len(numbers) - index, 0, number))  # jump to the notify return
    code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    if numbers:
        code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_USER_NOTIF))
    return b"".join(struct.pack("=HBBI", *instr) for instr in code)


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(*, no_new_privs: bool, notify: bool = True, no_statx: bool = False) -> int | None:
    """Notify on every chown of this process and its children (*notify*: return the listener fd), and
    answer ``statx`` with ENOSYS (*no_statx*, under proot)."""
    _, seccomp, _, _ = _arch()
    libc = _libc()
    if no_new_privs and libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    program = _filter(notify=notify, no_statx=no_statx)
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _Prog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    flags = _SECCOMP_FILTER_FLAG_NEW_LISTENER if notify else 0
    fd = libc.syscall(seccomp, _SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(err)}")
    return int(fd) if notify else None


def send_listener(sock: socket.socket, fd: int) -> None:
    socket.send_fds(sock, [b"L"], [fd])


def receive_listener(sock: socket.socket) -> int | None:
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    return fds[0] if fds else None


class _How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@dataclass(slots=True, kw_only=True)
class Recorder:
    """Answers the chown notifications of one RUN (see the module's doc)."""

    rootfs: str  # the build's root filesystem, as this process sees it
    listener: int
    ownership: Any  # anybuild.builder.owners.Ownership of this process (loaded by file, as this module is)
    logical_uid: int = 0  # who the command is in the image (USER), whatever it runs as here
    logical_groups: frozenset[int] = frozenset({0})
    guest_paths: bool = False  # proot: absolute paths are the command's view, not this process's
    symlinks: list[tuple[str, int, int]] = field(default_factory=list)  # (path in rootfs, uid, gid)
    handled: int = 0
    _libc: ctypes.CDLL = field(default_factory=_libc)
    _root_fd: int = -1

    def open(self) -> None:
        self._root_fd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        for fd in (self._root_fd, self.listener):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._root_fd = -1

    def drain(self, timeout_ms: int = 2000) -> None:
        """Answer what is still pending until no process uses the filter (the command has ended)."""
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        while True:
            events = poller.poll(timeout_ms)
            if not events or not any(event & select.POLLIN for _, event in events):
                return  # POLLHUP (no process left) or nothing more to answer
            self.one()

    def one(self) -> None:
        """Answer one notification (the listener is readable)."""
        self._one()

    def _one(self) -> None:
        buffer = bytearray(_NOTIF.size)
        try:
            fcntl.ioctl(self.listener, _NOTIF_RECV, buffer)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR):
                return  # the process was killed before we could look
            raise
        notif_id, pid, _flags, nr, _arch_id, _ip, *args = _NOTIF.unpack(buffer)
        try:
            error, keep_going = self._handle(pid, nr, args, notif_id)
        except OSError as exc:
            error, keep_going = exc.errno or errno.EIO, False
        response = _RESP.pack(notif_id, 0, -error if error else 0, _USER_NOTIF_FLAG_CONTINUE if keep_going else 0)
        with contextlib.suppress(OSError):  # the process may be gone already
            fcntl.ioctl(self.listener, _NOTIF_SEND, response)
        self.handled += 1

    def _valid(self, notif_id: int) -> bool:
        try:
            fcntl.ioctl(self.listener, _NOTIF_ID_VALID, struct.pack("=Q", notif_id))
        except OSError:
            return False
        return True

    def _string(self, pid: int, address: int) -> str:
        """The NUL-terminated string at *address* in *pid*'s memory (a page at a time, PATH_MAX at most)."""
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = b""
            while b"\0" not in data and len(data) < 4096:
                at = address + len(data)
                chunk = os.pread(mem, 4096 - at % 4096, at)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(mem)
        return os.fsdecode(data.split(b"\0", 1)[0])

    def _handle(self, pid: int, nr: int, args: list[int], notif_id: int) -> tuple[int, bool]:
        """(errno or 0, whether the kernel should run the call after all)."""
        _, _, _, calls = _arch()
        name, has_path, follow = calls[nr]
        if name == "fchown":
            target = self._open_fd(pid, args[0])
            uid, gid = args[1] & _UNCHANGED, args[2] & _UNCHANGED
            shown = None
        else:
            dirfd = ctypes.c_int32(args[0] & 0xFFFFFFFF).value if name == "fchownat" else _AT_FDCWD
            index = 1 if name == "fchownat" else 0
            path = self._string(pid, args[index]) if has_path else ""
            uid, gid = args[index + 1] & _UNCHANGED, args[index + 2] & _UNCHANGED
            flags = args[4] if name == "fchownat" else 0
            if name == "fchownat" and not path and flags & _AT_EMPTY_PATH:
                target, shown = self._open_fd(pid, dirfd), None
            else:
                follow = follow and not flags & _AT_SYMLINK_NOFOLLOW
                located = self._locate(pid, dirfd, path)
                if located is None:
                    return 0, True  # outside the root filesystem: the kernel decides
                target, shown = self._open_in_root(located, follow=follow), located
        if not self._valid(notif_id):
            os.close(target)
            return errno.ESRCH, False
        try:
            return self._chown(target, shown, uid, gid), False
        finally:
            os.close(target)

    def _open_fd(self, pid: int, fd: int) -> int:
        return os.open(f"/proc/{pid}/fd/{fd}", _O_PATH | os.O_CLOEXEC)

    def _locate(self, pid: int, dirfd: int, path: str) -> str | None:
        """*path* (as the command named it) as a path relative to the root filesystem; None outside it."""
        if path.startswith("/"):
            prefix = self.rootfs.rstrip("/") + "/"
            if self.guest_paths and path.startswith(prefix):
                return path[len(prefix):]  # proot translated it before the filter saw it
            return path.lstrip("/")  # the command's root is the root filesystem
        where = f"/proc/{pid}/cwd" if dirfd == _AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
        try:
            base = str(Path(where).readlink())
        except OSError:
            return None
        root = self.rootfs.rstrip("/")
        if base != root and not base.startswith(root + "/"):
            return None
        base = base[len(root):].lstrip("/")
        return f"{base}/{path}" if base else path

    def _open_in_root(self, rel: str, *, follow: bool) -> int:
        how = _How(flags=_O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW), mode=0, resolve=_RESOLVE_IN_ROOT)
        _, _, openat2, _ = _arch()
        fd = self._libc.syscall(openat2, self._root_fd, os.fsencode(rel or "."), ctypes.byref(how),
                                ctypes.sizeof(how))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), rel)
        return int(fd)

    def _current(self, fd: int, info: os.stat_result) -> tuple[int, int]:
        """The file's owner in the image: its record, else what its ids on disk stand for."""
        if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(OSError, ValueError):
                value = os.getxattr(f"/proc/self/fd/{fd}", self.ownership.XATTR).decode()
                uid, _, gid = value.partition(":")
                return int(uid), int(gid)
        image: tuple[int, int] = self.ownership.image(info.st_uid, info.st_gid)
        return image

    def _chown(self, fd: int, shown: str | None, uid: int, gid: int) -> int:
        info = os.fstat(fd)
        old_uid, old_gid = self._current(fd, info)
        new_uid = old_uid if uid == _UNCHANGED else uid
        new_gid = old_gid if gid == _UNCHANGED else gid
        allowed_groups = self.logical_groups | {old_gid}
        unprivileged = self.logical_uid != 0  # what the kernel allows a user without CAP_CHOWN:
        if unprivileged and (old_uid != self.logical_uid or new_uid != old_uid or new_gid not in allowed_groups):
            return errno.EPERM
        regular = stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)
        on_disk = self.ownership.disk(new_uid, new_gid)
        if on_disk is not None:  # real here: given, and any record of another owner dropped
            if (info.st_uid, info.st_gid) != on_disk and self._libc.fchownat(fd, b"", *on_disk, _AT_EMPTY_PATH) != 0:
                return ctypes.get_errno()
            if regular:
                with contextlib.suppress(OSError):
                    os.removexattr(f"/proc/self/fd/{fd}", self.ownership.XATTR)
            return 0
        if regular:
            os.setxattr(f"/proc/self/fd/{fd}", self.ownership.XATTR, f"{new_uid}:{new_gid}".encode())
        elif shown is not None:
            self.symlinks.append((shown, new_uid, new_gid))
        return 0
