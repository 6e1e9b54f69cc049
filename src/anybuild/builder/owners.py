"""File owners in the image, whatever ids the builder is allowed to give files here.

Docker's layers carry every file's uid and gid. The builder gives a file its image
owner for real wherever it can: as root with every id mapped (a VM, a root pod in an
identity user namespace) nothing below is ever used. Where it cannot — a pod that
grants one uid (a user namespace with ``0 1000 1``, or no namespace at all), or an id
beyond a subuid range — the owner is *recorded* on the file itself, in the extended
attribute :data:`OWNER_XATTR` (``b"uid:gid"``), and the layer writer reads it back.
An attribute travels with the file where a path map would not: through renames,
``cp -a``, overlay copy-up and the layer snapshots shared between builds. Symlinks,
FIFOs and device nodes cannot carry a ``user.`` attribute; the caller keeps those in
its path map (:class:`~anybuild.builder.rootfs.RecordedMeta`).

:class:`Ownership` says which owners are real here (from ``/proc/self/uid_map``,
``gid_map`` and the effective capabilities) and translates between the ids on disk
and the ids in the image: without CAP_CHOWN, every file on disk belongs to the
builder's own user, and that user stands for root in the image.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEVICE_XATTR", "OWNER_XATTR", "IdRanges", "Ownership", "read_device", "read_record"]

OWNER_XATTR = "user.anybuild.owner"
# A device node the kernel would not let the builder make (a user namespace, no CAP_MKNOD): an empty
# regular file stands in for it, and this attribute says what it is (``b"c 1 3"``).
DEVICE_XATTR = "user.anybuild.device"
_CAP_CHOWN = 0
_NOT_KEPT = (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EINVAL)
_FULL = 4294967295


@dataclass(frozen=True, slots=True)
class IdRanges:
    """The ids that exist in this user namespace: ``(first, count)`` spans."""

    spans: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> IdRanges:
        """From a ``/proc/PID/uid_map`` text (``inside outside count`` per line)."""
        spans = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 3 and all(f.isdigit() for f in fields):
                spans.append((int(fields[0]), int(fields[2])))
        return cls(tuple(sorted(spans)))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and any(first <= value < first + count for first, count in self.spans)

    @property
    def everything(self) -> bool:
        return any(first == 0 and count >= _FULL for first, count in self.spans)

    def describe(self) -> str:
        if self.everything:
            return "every id"
        return ", ".join(str(first) if count == 1 else f"{first}-{first + count - 1}" for first, count in self.spans)


def _effective_caps(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Ownership:
    """Which owners files can really have here, and how the others are kept."""

    XATTR = OWNER_XATTR  # for code that loads this module by file (the sandbox's recorder)
    DEVICE_XATTR = DEVICE_XATTR

    uids: IdRanges
    gids: IdRanges
    chown: bool  # CAP_CHOWN: files can be given any mapped id
    own: tuple[int, int]  # the builder's euid and egid: the owner of what it creates

    @classmethod
    def for_current_process(cls, proc: Path = Path("/proc/self")) -> Ownership:
        def read(name: str) -> str:
            try:
                return (proc / name).read_text()
            except OSError:
                return ""

        uid_map, gid_map = read("uid_map"), read("gid_map")
        return cls(uids=IdRanges.parse(uid_map) if uid_map else IdRanges(((0, _FULL),)),
                   gids=IdRanges.parse(gid_map) if gid_map else IdRanges(((0, _FULL),)),
                   chown=bool(_effective_caps(read("status")) >> _CAP_CHOWN & 1),
                   own=(os.geteuid(), os.getegid()))

    @classmethod
    def real_root(cls) -> Ownership:
        """Root with every id: what a VM or a privileged container gives."""
        every = IdRanges(((0, _FULL),))
        return cls(uids=every, gids=every, chown=True, own=(0, 0))

    @property
    def full(self) -> bool:
        """Every owner is real here: nothing is ever recorded (and nothing need be read back)."""
        return self.chown and self.uids.everything and self.gids.everything

    def disk(self, uid: int, gid: int) -> tuple[int, int] | None:
        """The ids on disk that stand for the image owner *uid*:*gid*, or None where none can."""
        if self.chown:
            return (uid, gid) if uid in self.uids and gid in self.gids else None
        return self.own if (uid, gid) == (0, 0) else None

    def image(self, st_uid: int, st_gid: int) -> tuple[int, int]:
        """The image owner that a file owned by *st_uid*:*st_gid* on disk has (without a record)."""
        if self.chown:
            return st_uid, st_gid
        return (0, 0) if (st_uid, st_gid) == self.own else (st_uid, st_gid)

    def describe(self) -> str:
        if self.full:
            return "every owner is real"
        if not self.chown:
            return f"no chown: uid {self.own[0]} stands for root, other owners are recorded"
        return f"owners {self.uids.describe()} are real, the others are recorded"

    # -- files ----------------------------------------------------------------------------

    def give(self, target: int | str, uid: int, gid: int, *, dir_fd: int | None = None,
             follow: bool = False) -> bool:
        """Make *target* (an fd, or a name in *dir_fd*) belong to *uid*:*gid* in the image.

        Really where the ids exist here, else by recording them on the file. False when
        neither works (a symlink, FIFO or device node that cannot be chowned): the caller
        records it by path.
        """
        on_disk = self.disk(uid, gid)
        if on_disk is not None:
            try:
                if self.chown:
                    if isinstance(target, int):
                        os.fchown(target, *on_disk)
                    else:
                        os.chown(target, *on_disk, dir_fd=dir_fd, follow_symlinks=follow)
                if not self.full:
                    self._forget(target, dir_fd=dir_fd, follow=follow)
                return True
            except OSError as exc:
                if exc.errno not in _NOT_KEPT:
                    raise
        return self._record(target, uid, gid, dir_fd=dir_fd, follow=follow)

    def _path(self, target: int | str, dir_fd: int | None) -> int | str:
        if isinstance(target, int) or dir_fd is None:
            return target
        return f"/proc/self/fd/{dir_fd}/{target}"

    def _record(self, target: int | str, uid: int, gid: int, *, dir_fd: int | None, follow: bool) -> bool:
        try:
            if isinstance(target, int):
                os.setxattr(target, OWNER_XATTR, f"{uid}:{gid}".encode())
            else:
                os.setxattr(self._path(target, dir_fd), OWNER_XATTR, f"{uid}:{gid}".encode(), follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in _NOT_KEPT:
                raise
            return False
        return True

    def _forget(self, target: int | str, *, dir_fd: int | None, follow: bool) -> None:
        with contextlib.suppress(OSError):
            if isinstance(target, int):
                os.removexattr(target, OWNER_XATTR)
            else:
                os.removexattr(self._path(target, dir_fd), OWNER_XATTR, follow_symlinks=follow)

    def owner_of(self, target: int | str, st_uid: int, st_gid: int, *, dir_fd: int | None = None) -> tuple[int, int]:
        """The image owner of *target* (an fd, or a name in *dir_fd*, never followed), whose stat gave
        *st_uid*:*st_gid*: its record where it has one."""
        if not self.full:
            recorded = read_record(self._path(target, dir_fd))
            if recorded is not None:
                return recorded
        return self.image(st_uid, st_gid)


def read_device(target: int | str) -> tuple[str, int, int] | None:
    """("char" | "block", major, minor) when *target* stands in for a device node, else None."""
    try:
        value = os.getxattr(target, DEVICE_XATTR, follow_symlinks=False).decode("ascii", "replace").split()
    except OSError:
        return None
    if len(value) != 3 or value[0] not in ("c", "b") or not value[1].isdigit() or not value[2].isdigit():
        return None
    return ("char" if value[0] == "c" else "block"), int(value[1]), int(value[2])


def read_record(target: int | str) -> tuple[int, int] | None:
    """The owner recorded on *target* (an fd or a path, never followed), if any."""
    try:
        value = os.getxattr(target, OWNER_XATTR, follow_symlinks=False)
    except OSError:
        return None
    uid, sep, gid = value.decode("ascii", "replace").partition(":")
    if not sep or not uid.isdigit() or not gid.isdigit():
        return None
    return int(uid), int(gid)
