"""Filesystem snapshots and their differences: the portable snapshotter.

Three parts, as in the style guide:

- :func:`scan` (effect) walks a root and records each entry's metadata in a
  :class:`Snapshot`. Regular files modified "racily" (in the same clock window
  as the scan, like git's racy-clean index entries) also get a content digest,
  because a later write within the same timestamp tick would not show in the
  metadata.
- :func:`diff` (pure, given a digest function for the *after* tree) compares
  two snapshots into a :class:`Changeset`: added and modified paths, deleted
  paths (top-most only: they become ``.wh.`` whiteouts) and opaque directories
  (a directory removed and created again: ``.wh..wh..opq``). Content is hashed
  only where metadata cannot decide. A directory created again may get the
  freed inode number straight back (ext4 does, often), so a directory's inode
  *generation* (``FS_IOC_GETVERSION``, changed on every reuse by ext4, xfs and
  btrfs) is compared too: otherwise the same RUN would give an opaque marker in
  one build and whiteouts in the next, two digests for one tree.
- :func:`~anybuild.builder.layer.write_layer` (effect) turns a changeset into a
  deterministic layer tar.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import stat
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from anybuild.builder.owners import read_record

__all__ = ["Changeset", "Entry", "Kind", "Snapshot", "diff", "file_digest", "path_key", "scan"]

RACY_WINDOW_NS = 2_000_000_000
_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    SOCKET = "socket"

    @classmethod
    def of(cls, mode: int) -> Kind:
        for test, kind in (
            (stat.S_ISREG, cls.FILE), (stat.S_ISDIR, cls.DIR), (stat.S_ISLNK, cls.SYMLINK),
            (stat.S_ISCHR, cls.CHAR), (stat.S_ISBLK, cls.BLOCK), (stat.S_ISFIFO, cls.FIFO),
        ):
            if test(mode):
                return kind
        return cls.SOCKET


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """The metadata of one path, as ``lstat`` saw it."""

    kind: Kind
    mode: int  # permission and setuid/setgid/sticky bits
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    nlink: int = 1
    rdev: int = 0
    link: str | None = None
    digest: str | None = None  # set for racily modified regular files
    generation: int | None = None  # a directory's inode generation, where the filesystem tells it
    record: tuple[int, int] | None = None  # the owner recorded on it (anybuild.builder.owners), when scanned

    @classmethod
    def of_stat(cls, info: os.stat_result, *, link: str | None = None, digest: str | None = None,
                generation: int | None = None, record: tuple[int, int] | None = None) -> Entry:
        kind = Kind.of(info.st_mode)
        return cls(
            kind=kind, mode=stat.S_IMODE(info.st_mode), uid=info.st_uid, gid=info.st_gid,
            size=info.st_size if kind is Kind.FILE else 0, mtime_ns=info.st_mtime_ns,
            ctime_ns=info.st_ctime_ns, ino=info.st_ino, nlink=info.st_nlink, rdev=info.st_rdev,
            link=link, digest=digest, generation=generation, record=record,
        )

    def same_inode(self, other: Entry) -> bool:
        """The same inode, not another one given the same number (when generations are known)."""
        if self.ino != other.ino:
            return False
        return self.generation is None or other.generation is None or self.generation == other.generation

    def same_metadata(self, other: Entry) -> bool:
        """Equal in everything a user can observe or set (not inode or ctime)."""
        return (
            self.kind is other.kind and self.mode == other.mode and self.uid == other.uid
            and self.gid == other.gid and self.size == other.size and self.mtime_ns == other.mtime_ns
            and self.rdev == other.rdev and self.link == other.link and self.record == other.record
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Every path under a root (relative, ``/``-separated, the root itself excluded)."""

    entries: Mapping[str, Entry]
    taken_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Changeset:
    """What changed between two snapshots; each tuple sorted in layer order."""

    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()  # top-most deleted paths only
    opaque: tuple[str, ...] = ()  # directories whose lower contents are all hidden

    @property
    def empty(self) -> bool:
        return not (self.added or self.modified or self.deleted or self.opaque)

    @property
    def written(self) -> tuple[str, ...]:
        """Paths whose current content goes into the layer, in layer order."""
        return tuple(sorted((*self.added, *self.modified), key=path_key))


def path_key(path: str) -> tuple[str, ...]:
    """Layer order: a directory, then its children, then its later siblings (as Go's Walk)."""
    return tuple(path.split("/"))


def file_digest(path: str | Path) -> str:
    """sha256 of a regular file, read without following a final symlink."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, 1024 * 1024):
            digest.update(chunk)
    finally:
        os.close(fd)
    return "sha256:" + digest.hexdigest()


def scan(
    root: Path,
    *,
    exclude: Collection[str] = (),
    clock: Callable[[], int] = time.time_ns,
    racy_window_ns: int = RACY_WINDOW_NS,
    records: bool = False,
) -> Snapshot:
    """Walk *root* (never following symlinks) into a :class:`Snapshot`.

    *exclude* names relative paths skipped with everything below them (sandbox
    mount points that must not become part of a layer). *records*: read the owner
    recorded on each file and directory (a builder that cannot give every owner).
    """
    taken = clock()
    racy_after = taken - racy_window_ns
    skip = set(exclude)
    entries: dict[str, Entry] = {}
    top = os.open(root, _DIR_FLAGS)
    try:
        for rel, info, generation in _walk(top, "", skip):
            full = f"{root}/{rel}"
            link = str(Path(full).readlink()) if stat.S_ISLNK(info.st_mode) else None
            digest = None
            if stat.S_ISREG(info.st_mode) and max(info.st_mtime_ns, info.st_ctime_ns) >= racy_after:
                digest = file_digest(full)
            record = read_record(full) if records and not link else None
            entries[rel] = Entry.of_stat(info, link=link, digest=digest, generation=generation, record=record)
    finally:
        os.close(top)
    return Snapshot(entries=entries, taken_ns=taken)


def _generation(fd: int) -> int | None:
    """The inode generation of the open directory *fd*, or ``None`` where the filesystem keeps none (tmpfs)."""
    try:
        return int.from_bytes(fcntl.ioctl(fd, _FS_IOC_GETVERSION, bytes(8))[:4], sys.byteorder)  # an int
    except OSError:
        return None


def _walk(fd: int, prefix: str, skip: set[str]) -> Iterator[tuple[str, os.stat_result, int | None]]:
    """(path, lstat, generation for a directory) below the open directory *fd*, parents first, sorted.

    Each directory is opened once, for its generation and its listing.
    """
    with os.scandir(fd) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        rel = f"{prefix}/{child.name}" if prefix else child.name
        if rel in skip:
            continue
        info = child.stat(follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            yield rel, info, None
            continue
        inner = os.open(child.name, _DIR_FLAGS, dir_fd=fd)
        try:
            yield rel, info, _generation(inner)
            yield from _walk(inner, rel, skip)
        finally:
            os.close(inner)


@dataclass(slots=True)
class _Acc:
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)


def diff(before: Snapshot, after: Snapshot, *, digest: Callable[[str], str] | None = None) -> Changeset:
    """The changes that turn *before* into *after*.

    *digest* hashes a path of the *after* tree; it is called only for regular
    files whose metadata matches but whose sameness metadata cannot prove (racy
    files, or a new inode or ctime with a known previous digest). Without it,
    such files count as modified.
    """
    old, new = before.entries, after.entries
    acc = _Acc()
    opaque: set[str] = set()
    replaced: set[str] = set()  # paths now of another type: nothing below them needs a whiteout
    for path in sorted(new, key=path_key):
        entry = new[path]
        if _under(path, opaque):
            acc.added.append(path)
            continue
        previous = old.get(path)
        if previous is None:
            acc.added.append(path)
        elif previous.kind is not entry.kind:
            acc.modified.append(path)
            replaced.add(path)
        elif entry.kind is Kind.DIR and not previous.same_inode(entry):
            acc.opaque.append(path)
            acc.added.append(path)
            opaque.add(path)
        elif _changed(path, previous, entry, digest):
            acc.modified.append(path)
    covered = opaque | replaced
    for path in sorted(old, key=path_key):
        if path in new or _under(path, covered):
            continue
        acc.deleted.append(path)
        covered.add(path)
    return Changeset(added=tuple(acc.added), modified=tuple(acc.modified), deleted=tuple(acc.deleted),
                     opaque=tuple(acc.opaque))


def _changed(path: str, old: Entry, new: Entry, digest: Callable[[str], str] | None) -> bool:
    if not old.same_metadata(new):
        return True
    if old.kind is Kind.DIR:
        return False  # a directory's content is its entries, compared path by path
    if new.nlink > old.nlink:
        return True  # a new hard link to it: the layer must hold both names to keep them linked
    if new.nlink < old.nlink and old.ino == new.ino:
        # Only a link to it was removed (which moves ctime): the file itself is what it was,
        # as an overlay upper directory sees it too. Compare content where a digest is known.
        return old.digest is not None and digest is not None and digest(path) != old.digest
    untouched = old.ino == new.ino and old.ctime_ns == new.ctime_ns
    if untouched and old.digest is None:
        return False
    if old.kind is not Kind.FILE or old.digest is None or digest is None:
        return not untouched
    return digest(path) != old.digest


def _under(path: str, parents: set[str]) -> bool:
    if not parents:
        return False
    head = posixpath.dirname(path)
    while head:
        if head in parents:
            return True
        head = posixpath.dirname(head)
    return False
