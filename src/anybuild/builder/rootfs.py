"""Unpacking image layers into a private root filesystem, safely.

:func:`unpack_layer` applies one layer tar (gzip, zstd or plain, read as a
stream) to a root directory with the OCI changeset semantics:

- ``.wh.NAME`` deletes ``NAME`` from the lower layers; ``.wh..wh..opq`` empties
  its directory of everything the lower layers put there;
- hard links, symlinks (any value, dangling or absolute: symlinks are stored,
  never followed when writing), FIFOs and device nodes;
- ownership is applied where the ids are real here and *recorded* otherwise
  (:mod:`anybuild.builder.owners`: on the file, or by path for symlinks and the
  like); device nodes are created where ``mknod`` is allowed and recorded otherwise;
  setuid/setgid/sticky bits and ``SCHILY.xattr.*`` extended attributes are kept.

Every path goes through :class:`~anybuild.builder.inroot.RootDir`, so no entry
can write outside the root. Entries whose name or hard-link target climbs above
the root (``../x``) are refused with :class:`~anybuild.errors.IntegrityError`,
as Docker refuses them.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import zstandard

from anybuild.builder.inroot import NO_SPACE, RootDir, clean_relative, remove_at, write_all
from anybuild.builder.owners import DEVICE_XATTR, Ownership
from anybuild.errors import IntegrityError

__all__ = [
    "OPAQUE",
    "OVERLAY_OPAQUE_XATTR",
    "WHITEOUT_PREFIX",
    "RecordedMeta",
    "UnpackOptions",
    "UnpackReport",
    "decompressed",
    "is_whiteout",
    "unpack_layer",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackOptions:
    """What the unpacking process is allowed to do (probed once, passed in)."""

    ownership: Ownership
    mknod: bool  # try to create device nodes (recorded where the kernel refuses)
    xattrs: bool = True
    # write whiteouts as overlayfs does (a 0:0 character device, the opaque attribute ``=y``)
    # instead of applying them: the directory becomes an overlay lower layer (anybuild.builder.stack)
    overlay_whiteouts: bool = False
    opaque_xattr: str = OVERLAY_OPAQUE_XATTR  # ``user.overlay.opaque`` for an overlay mounted in a user namespace
    # called as the work goes (entries, chunks of files): what it raises stops it (the build's cancellation)
    interrupted: Callable[[], None] = field(default=lambda: None, compare=False)
    # ADD --chown of a local archive: every entry gets this owner (BuildKit >= 0.23, moby/buildkit#5987)
    chown: tuple[int, int] | None = None

    @classmethod
    def for_current_process(cls) -> UnpackOptions:
        ownership = Ownership.for_current_process()
        return cls(ownership=ownership, mknod=ownership.full)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedMeta:
    """Ownership or a device node that could not be applied on disk, kept for the layers."""

    uid: int
    gid: int
    mode: int
    device: tuple[str, int, int] | None = None  # ("char" | "block", major, minor)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackReport:
    entries: int
    recorded: dict[str, RecordedMeta] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # human notes: "usr/bin/x: xattr security.foo not kept (EPERM)"
    dirs: frozenset[str] = frozenset()  # the directories the layer has an entry for


def _gzip_reader(stream: IO[bytes]) -> IO[bytes]:
    """ISA-L inflates several times faster than zlib (same bytes out); zlib when it is missing."""
    try:
        from isal import igzip
    except ImportError:
        return cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    return cast(IO[bytes], igzip.IGzipFile(fileobj=stream, mode="rb"))  # type: ignore[no-untyped-call]


def _inflate_errors() -> tuple[type[Exception], ...]:
    try:
        from isal import isal_zlib
    except ImportError:
        return (zlib.error,)
    return (zlib.error, cast(type[Exception], isal_zlib.error))


_BAD_LAYER: tuple[type[Exception], ...] = (tarfile.TarError, EOFError, gzip.BadGzipFile, zstandard.ZstdError,
                                            *_inflate_errors())


def decompressed(stream: IO[bytes]) -> IO[bytes]:
    """The uncompressed byte stream of a layer blob, detected from its magic bytes."""
    head = stream.read(4)
    chained = io.BufferedReader(_Chained(head, stream), buffer_size=_CHUNK)
    if head.startswith(_GZIP_MAGIC):
        return _gzip_reader(chained)
    if head.startswith(_ZSTD_MAGIC):
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(chained, read_across_frames=True))
    return chained


class _Chained(io.RawIOBase):
    """Bytes already read (the magic) followed by the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def unpack_layer(stream: IO[bytes], root: RootDir, options: UnpackOptions, *,
                 lowers: Sequence[Path] = (), keep: Callable[[str], bool] | None = None,
                 limit: int | None = None) -> UnpackReport:
    """Apply one layer (a tar stream, compressed or not) to *root*.

    With ``overlay_whiteouts`` *root* is the layer's own directory and *lowers* the directories of
    the layers below it, bottom first: a hard link to a file of a lower layer copies that file up into
    *root* first, as overlayfs does when containerd applies such a layer onto its mounted parents.

    With *keep* only the entries whose relative path it accepts are applied, and no whiteout: the
    caller has merged the layers already and names the entries that survive (builder.cache.sparse).
    With *limit* only the first *limit* members are read.
    """
    state = _State(root=root, options=options, lowers=tuple(lowers), keep=keep)
    try:
        with tarfile.open(fileobj=decompressed(stream), mode="r|") as archive:
            for member in archive:
                state.apply(member, archive)
                if limit is not None and state.count >= limit:
                    break
    except _BAD_LAYER as exc:
        raise IntegrityError(
            f"layer is not a valid tar stream: {exc}",
            hint="check that the blob is a layer (tar, tar+gzip or tar+zstd) and was fully downloaded",
        ) from exc
    state.finish()
    return UnpackReport(entries=state.count, recorded=state.recorded, skipped=tuple(state.skipped),
                        dirs=frozenset(rel for rel, _ in state.dirs))


@dataclass(slots=True)
class _State:
    root: RootDir
    options: UnpackOptions
    lowers: tuple[Path, ...] = ()
    count: int = 0
    written: set[str] = field(default_factory=set)
    dirs: list[tuple[str, tarfile.TarInfo]] = field(default_factory=list)
    recorded: dict[str, RecordedMeta] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    keep: Callable[[str], bool] | None = None

    def apply(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self.count += 1
        if self.count % 64 == 0:
            self.options.interrupted()
        if self.options.chown is not None:
            member.uid, member.gid = self.options.chown
        rel = clean_relative(member.name)
        if rel is None:
            raise IntegrityError(
                f"layer entry {member.name!r} points outside the image root",
                hint="the image is malformed or hostile; rebuild it or use another base image",
            )
        if rel == ".":
            return
        base = posixpath.basename(rel)
        if self.keep is not None and (base.startswith(WHITEOUT_PREFIX) or not self.keep(rel)):
            return
        try:
            if base == OPAQUE:
                self._opaque(posixpath.dirname(rel) or ".")
            elif base.startswith(WHITEOUT_PREFIX):
                self._whiteout(posixpath.join(posixpath.dirname(rel), base[len(WHITEOUT_PREFIX) :]))
            else:
                self._entry(rel, member, archive)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise  # the disk is full, not the layer wrong (the builder reports it as such)
            raise IntegrityError(
                f"cannot unpack layer entry {member.name!r}: {exc.strerror or exc}",
                hint="the layer conflicts with the files below it (a file where a directory is "
                "needed, a symlink loop or a missing hard-link target)",
            ) from exc

    # -- whiteouts ---------------------------------------------------------------------------

    def _whiteout(self, rel: str) -> None:
        clean = clean_relative(rel)
        if clean is None or clean == ".":
            raise IntegrityError(f"whiteout for {rel!r} points outside the image root")
        if not self.options.overlay_whiteouts:
            self.root.remove(clean)
            return
        with self.root.parent(clean, create=True) as (fd, name):
            if _lstat_at(fd, name) is not None:
                remove_at(fd, name)
            os.mknod(name, stat.S_IFCHR | 0o600, 0, dir_fd=fd)

    def _opaque(self, rel: str) -> None:
        fd = self.root.open_dir(rel, create=True)
        try:
            if self.options.overlay_whiteouts:
                self._set_opaque(fd, ".")
                return
            self._empty_except_written(fd, rel)
        finally:
            os.close(fd)

    def _set_opaque(self, fd: int, name: str) -> None:
        readable = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            os.setxattr(readable, self.options.opaque_xattr, b"y")
        finally:
            os.close(readable)

    def _empty_except_written(self, dir_path_fd: int, rel: str) -> None:
        readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_path_fd)
        try:
            names = [entry.name for entry in os.scandir(readable)]
        finally:
            os.close(readable)
        for name in names:
            child = name if rel == "." else f"{rel}/{name}"
            if child not in self.written:
                remove_at(dir_path_fd, name)
                continue
            info = os.stat(name, dir_fd=dir_path_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=dir_path_fd)
                try:
                    self._empty_except_written(sub, child)
                finally:
                    os.close(sub)

    # -- entries ---------------------------------------------------------------------------

    def _mark_written(self, rel: str) -> None:
        while rel not in ("", ".") and rel not in self.written:
            self.written.add(rel)
            rel = posixpath.dirname(rel)

    def _entry(self, rel: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self._mark_written(rel)
        with self.root.parent(rel, create=True) as (fd, name):
            existing = _lstat_at(fd, name)
            if member.isdir():
                replaced = existing is not None and not stat.S_ISDIR(existing.st_mode)
                if replaced:
                    remove_at(fd, name)
                if existing is None or replaced:
                    os.mkdir(name, 0o700, dir_fd=fd)
                if replaced and self.options.overlay_whiteouts and existing is not None and is_whiteout(existing):
                    self._set_opaque(fd, name)  # deleted, then made again: nothing below shows through
                self._owner(fd, name, rel, member)
                self.dirs.append((rel, member))  # mode and times once the children are in
                return
            if existing is not None:
                remove_at(fd, name)
            if member.isreg():
                self._file(fd, name, rel, member, archive)
            elif member.issym():
                os.symlink(member.linkname, name, dir_fd=fd)
                self._owner(fd, name, rel, member)
                os.utime(name, ns=_times(member), dir_fd=fd, follow_symlinks=False)
            elif member.islnk():
                self._hardlink(fd, name, member)
            elif member.isfifo():
                os.mkfifo(name, 0o600, dir_fd=fd)
                self._owner(fd, name, rel, member)
                os.chmod(name, member.mode & 0o7777, dir_fd=fd)
                os.utime(name, ns=_times(member), dir_fd=fd, follow_symlinks=False)
            elif member.ischr() or member.isblk():
                self._device(fd, name, rel, member)
            else:
                self.skipped.append(f"{rel}: tar entry type {member.type!r} not supported, skipped")

    def _file(self, fd: int, name: str, rel: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        source = archive.extractfile(member)
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=fd)
        try:
            if source is not None:
                while chunk := source.read(_CHUNK):
                    write_all(out, chunk)
                    self.options.interrupted()
            self._owner(out, None, rel, member)
            os.fchmod(out, member.mode & 0o7777)  # after chown, which clears setuid bits
            self._xattrs(out, rel, member)
            os.utime(out, ns=_times(member))
        finally:
            os.close(out)

    def _hardlink(self, fd: int, name: str, member: tarfile.TarInfo) -> None:
        target = clean_relative(member.linkname)
        if target is None or target == ".":
            raise IntegrityError(
                f"hard link {member.name!r} -> {member.linkname!r} points outside the image root",
                hint="the image is malformed or hostile; rebuild it or use another base image",
            )
        missing = IntegrityError(
            f"hard link {member.name!r} -> {member.linkname!r}: the target is neither in this layer nor in "
            "the layers below it (deleted by a whiteout, or never there)",
            hint="the image is malformed; rebuild it or use another base image",
        )
        if self.options.overlay_whiteouts:
            self._copy_up(target, missing)
        try:
            with self.root.parent(target) as (tfd, tname):
                os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise missing from None

    def _copy_up(self, target: str, missing: IntegrityError) -> None:
        """Make a hard-link *target* that only a lower layer has a file of this layer's directory (overlay)."""
        here = self.root.lstat(target)
        if here is not None:
            if is_whiteout(here):
                raise missing  # deleted earlier in this very layer
            return
        found = _merged_lookup((self.root.host_path("."), *reversed(self.lowers)), target)
        if found is None:
            raise missing
        info = found.lstat()
        with self.root.parent(target, create=True) as (fd, name):
            if stat.S_ISREG(info.st_mode):
                _copy_file(found, fd, name, info)
            elif stat.S_ISLNK(info.st_mode):
                os.symlink(found.readlink(), name, dir_fd=fd)
                with contextlib.suppress(OSError):
                    os.chown(name, info.st_uid, info.st_gid, dir_fd=fd, follow_symlinks=False)
                os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=fd, follow_symlinks=False)
            else:
                raise IntegrityError(f"hard link to {target!r}, a special file of a lower layer, is not supported",
                                     hint="rebuild the image without that hard link")

    def _device(self, fd: int, name: str, rel: str, member: tarfile.TarInfo) -> None:
        kind = "char" if member.ischr() else "block"
        file_type = stat.S_IFCHR if kind == "char" else stat.S_IFBLK
        try:
            if not self.options.mknod:
                raise PermissionError(errno.EPERM, "mknod not tried")
            os.mknod(name, file_type | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=fd)
        except PermissionError:  # no CAP_MKNOD, or a user namespace: an empty file stands in for it
            if not self._device_placeholder(fd, name, kind, member):
                self.recorded[rel] = RecordedMeta(uid=member.uid, gid=member.gid, mode=member.mode & 0o7777,
                                                  device=(kind, member.devmajor, member.devminor))
                return
        self._owner(fd, name, rel, member)
        os.chmod(name, member.mode & 0o7777, dir_fd=fd)
        os.utime(name, ns=_times(member), dir_fd=fd, follow_symlinks=False)

    def _device_placeholder(self, fd: int, name: str, kind: str, member: tarfile.TarInfo) -> bool:
        """An empty file marked as the device node (owners.DEVICE_XATTR); False where none can be kept."""
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            value = f"{kind[0]} {member.devmajor} {member.devminor}".encode()
            os.setxattr(out, DEVICE_XATTR, value)
            os.fchmod(out, member.mode & 0o7777)
        except OSError:
            os.close(out)
            os.unlink(name, dir_fd=fd)
            return False
        os.close(out)
        return True

    def _owner(self, fd: int, name: str | None, rel: str, member: tarfile.TarInfo) -> None:
        kept = self.options.ownership.give(fd if name is None else name, member.uid, member.gid,
                                           dir_fd=None if name is None else fd)
        if not kept:  # a symlink or FIFO whose owner cannot be real here
            self.recorded[rel] = RecordedMeta(uid=member.uid, gid=member.gid, mode=member.mode & 0o7777)

    def _xattrs(self, fd: int, rel: str, member: tarfile.TarInfo) -> None:
        if not self.options.xattrs:
            return
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key.removeprefix("SCHILY.xattr.")
            try:
                os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EINVAL):
                    raise
                self.skipped.append(f"{rel}: xattr {attr} not kept ({errno.errorcode.get(exc.errno, exc.errno)})")

    def finish(self) -> None:
        """Directory modes and times, deepest first, once every child is written."""
        for rel, member in reversed(self.dirs):
            try:
                fd = self.root.open_dir(posixpath.dirname(rel) or ".", follow=False)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # a directory above it was removed or replaced later in the same layer
                raise
            try:
                name = posixpath.basename(rel)
                info = _lstat_at(fd, name)
                if info is None or not stat.S_ISDIR(info.st_mode):
                    continue  # replaced later in the same layer
                dir_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                try:
                    os.fchmod(dir_fd, member.mode & 0o7777)
                    self._xattrs(dir_fd, rel, member)
                    os.utime(dir_fd, ns=_times(member))
                finally:
                    os.close(dir_fd)
            finally:
                os.close(fd)


def _merged_lookup(layers: Sequence[Path], rel: str) -> Path | None:
    """Where *rel* is in the overlay of *layers* (top first), as overlayfs looks it up: a whiteout hides
    the name below it, an opaque directory what is below it, a non-directory ends the path. None: no such
    entry (a path through a symlink counts as none: hard-link targets name files, not routes)."""
    parts = rel.split("/")
    candidates = list(layers)
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        below: list[Path] = []
        for directory in candidates:
            path = directory / part
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if is_whiteout(info):
                break
            if last:
                return None if stat.S_ISDIR(info.st_mode) else path
            if not stat.S_ISDIR(info.st_mode):
                break
            below.append(path)
            if _opaque(path):
                break
        if not below:
            return None
        candidates = below
    return None


def _opaque(path: Path) -> bool:
    for attr in (OVERLAY_OPAQUE_XATTR, "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _copy_file(source: Path, fd: int, name: str, info: os.stat_result) -> None:
    """A copy of a lower layer's file: contents, owner, mode, extended attributes and times."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            while chunk := os.read(src, _CHUNK):
                write_all(out, chunk)
            with contextlib.suppress(OSError):  # the ids are this machine's own: only a narrower map refuses
                os.fchown(out, info.st_uid, info.st_gid)
            os.fchmod(out, stat.S_IMODE(info.st_mode))
            for attr in os.listxattr(src):  # recorded owners (user.*), capabilities, overlay attributes
                with contextlib.suppress(OSError):
                    os.setxattr(out, attr, os.getxattr(src, attr))
            os.utime(out, ns=(info.st_atime_ns, info.st_mtime_ns))
        finally:
            os.close(out)
    finally:
        os.close(src)


def is_whiteout(info: os.stat_result) -> bool:
    """Whether *info* is an overlayfs whiteout (a 0:0 character device)."""
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _lstat_at(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    ns = int(member.mtime * 1_000_000_000)
    return ns, ns


def iter_members(stream: IO[bytes]) -> Iterator[tarfile.TarInfo]:
    """The entries of a layer stream, without unpacking (for tests and inspection)."""
    with tarfile.open(fileobj=decompressed(stream), mode="r|") as archive:
        yield from archive
