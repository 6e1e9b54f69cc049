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

The command then sees ``chown`` succeed, as it does under Docker. ``mknod`` of a device node,
which the kernel refuses in a user namespace, is answered the same way: an empty file stands in
for the node, marked with the ``user.anybuild.device`` attribute the layer writer reads. What it cannot see is a
recorded owner: ``stat`` shows the ids on disk. So a program that replaces a file keeping its
owner — write a new file, ``fchown`` it to the owner ``stat`` showed, ``rename`` it over the old
one (useradd on /etc/shadow, ``sed -i``, editors) — would give the new file the ids it saw. The
recorder also watches ``rename``: a file it saw chowned to exactly the ids the replaced file shows
takes over that file's recorded owner. A plain ``mv`` (no chown) does not. And a chown to exactly
the ids ``stat`` shows of a file the command holds open with a recorded owner, beside it and named
after it (``shadow`` for ``shadow-``), is taken as copying that owner (shadow's backups): the record
is given instead.
"""

from __future__ import annotations

import contextlib
import ctypes
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
                                       94: ("lchown", True, False), 260: ("fchownat", True, True),
                                       82: ("rename", True, False), 264: ("renameat", True, False),
                                       316: ("renameat2", True, False), 133: ("mknod", True, False),
                                       259: ("mknodat", True, False)}),
    "aarch64": (0xC00000B7, 277, 437, {55: ("fchown", False, True), 54: ("fchownat", True, True),
                                        38: ("renameat", True, False), 276: ("renameat2", True, False),
                                        33: ("mknodat", True, False)}),
}
_RENAME_EXCHANGE = 2
_STATX = {"x86_64": 332, "aarch64": 291}


def _arch() -> tuple[int, int, int, dict[int, tuple[str, bool, bool]]]:
    machine = platform.machine()
    if machine not in _ARCHES:
        raise OSError(errno.ENOSYS, f"recording chown is not supported on {machine}")
    return _ARCHES[machine]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


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
    chowned: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # (dev, ino) -> ids asked
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
        if name.startswith("rename"):
            self._rename(pid, name, args)
            return 0, True  # the kernel renames
        if name.startswith("mknod"):
            return self._mknod(pid, name, args)
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
            if _UNCHANGED not in (uid, gid):
                uid, gid = self._copied_from_open_file(pid, target, (uid, gid))
            return self._chown(target, shown, uid, gid), False
        finally:
            os.close(target)

    def _copied_from_open_file(self, pid: int, target: int, asked: tuple[int, int]) -> tuple[int, int]:
        """The recorded owner of the one file *pid* holds open, beside *target* and named after it, whose
        ids as ``stat`` shows them are *asked* (the command copies that file's owner), else *asked*."""
        try:
            names = [entry.name for entry in Path(f"/proc/{pid}/fd").iterdir()]
            where, _, base = str(Path(f"/proc/self/fd/{target}").readlink()).rpartition("/")
        except OSError:
            return asked
        target_info = os.fstat(target)
        found: set[tuple[int, int]] = set()
        for name in names:
            try:
                fd = os.open(f"/proc/{pid}/fd/{name}", _O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                info = os.fstat(fd)
                if (info.st_dev, info.st_ino) == (target_info.st_dev, target_info.st_ino):
                    continue
                if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                    continue
                if self.ownership.image(info.st_uid, info.st_gid) != asked:
                    continue
                other_where, _, other = str(Path(f"/proc/self/fd/{fd}").readlink()).rpartition("/")
                if other_where != where or not (base.startswith(other) or other.startswith(base)):
                    continue
                recorded = self._record_of(fd)
                if recorded is not None and recorded != asked:
                    found.add(recorded)
            finally:
                os.close(fd)
        return found.pop() if len(found) == 1 else asked

    def _rename(self, pid: int, name: str, args: list[int]) -> None:
        """Before the kernel renames: hand the replaced file's recorded owner to its replacement, where
        the command kept that owner as ``stat`` showed it (see the module's doc)."""
        if name == "rename":
            old_dir, old, new_dir, new, flags = _AT_FDCWD, args[0], _AT_FDCWD, args[1], 0
        else:
            old_dir, old = ctypes.c_int32(args[0] & 0xFFFFFFFF).value, args[1]
            new_dir, new = ctypes.c_int32(args[2] & 0xFFFFFFFF).value, args[3]
            flags = args[4] if name == "renameat2" else 0
        if flags & _RENAME_EXCHANGE or not self.chowned:
            return
        old_at = self._locate(pid, old_dir, self._string(pid, old))
        new_at = self._locate(pid, new_dir, self._string(pid, new))
        if old_at is None or new_at is None:
            return
        try:
            source = self._open_in_root(old_at, follow=False)
        except OSError:
            return
        try:
            info = os.fstat(source)
            asked = self.chowned.get((info.st_dev, info.st_ino))
            if asked is None or not stat.S_ISREG(info.st_mode):
                return
            try:
                replaced = self._open_in_root(new_at, follow=False)
            except OSError:
                return
            try:
                old_info = os.fstat(replaced)
                kept = self._record_of(replaced) if stat.S_ISREG(old_info.st_mode) else None
                shown = self.ownership.image(old_info.st_uid, old_info.st_gid)
                if kept is not None and asked == shown and self._record_of(source) is None:
                    os.setxattr(f"/proc/self/fd/{source}", self.ownership.XATTR, f"{kept[0]}:{kept[1]}".encode())
            finally:
                os.close(replaced)
        finally:
            os.close(source)

    def _mknod(self, pid: int, name: str, args: list[int]) -> tuple[int, bool]:
        """A device node: an empty file stands in for it (owners.DEVICE_XATTR); anything else: the kernel."""
        dirfd, path, mode, dev = ((_AT_FDCWD, args[0], args[1], args[2]) if name == "mknod" else
                                  (ctypes.c_int32(args[0] & 0xFFFFFFFF).value, args[1], args[2], args[3]))
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFCHR, stat.S_IFBLK) or (kind == stat.S_IFCHR and dev == 0):
            return 0, True  # FIFOs, sockets and overlay whiteouts need no privilege
        if self.logical_uid != 0:
            return errno.EPERM, False  # without CAP_MKNOD, as under Docker
        located = self._locate(pid, dirfd, self._string(pid, path))
        if located is None:
            return 0, True
        parent, _, base = located.rpartition("/")
        umask = 0o022
        with contextlib.suppress(OSError, ValueError, StopIteration):
            status = Path(f"/proc/{pid}/status").read_text()
            umask = int(next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8)
        holder = self._open_in_root(parent or ".", follow=True)
        try:
            out = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          mode & 0o7777 & ~umask, dir_fd=holder)
        except OSError as exc:
            return exc.errno or errno.EIO, False
        finally:
            os.close(holder)
        try:
            letter = "c" if kind == stat.S_IFCHR else "b"
            os.setxattr(out, self.ownership.DEVICE_XATTR, f"{letter} {os.major(dev)} {os.minor(dev)}".encode())
        finally:
            os.close(out)
        return 0, False

    def _record_of(self, fd: int) -> tuple[int, int] | None:
        with contextlib.suppress(OSError, ValueError):
            uid, _, gid = os.getxattr(f"/proc/self/fd/{fd}", self.ownership.XATTR).decode().partition(":")
            return int(uid), int(gid)
        return None

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
            recorded = self._record_of(fd)
            if recorded is not None:
                return recorded
        image: tuple[int, int] = self.ownership.image(info.st_uid, info.st_gid)
        return image

    def _chown(self, fd: int, shown: str | None, uid: int, gid: int) -> int:
        info = os.fstat(fd)
        old_uid, old_gid = self._current(fd, info)
        if stat.S_ISREG(info.st_mode):  # for a rename that replaces a file with this one (see _rename)
            self.chowned[info.st_dev, info.st_ino] = (old_uid if uid == _UNCHANGED else uid,
                                                      old_gid if gid == _UNCHANGED else gid)
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
