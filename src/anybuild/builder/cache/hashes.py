"""Digests of build-context files remembered by their metadata, as git's index remembers them.

Every build keys its COPY and ``RUN --mount=type=bind`` steps by the digests of the
context files they read; reading a 2,000-file source tree on every rebuild costs
more than the rest of a no-change rebuild. :class:`ContextHashes` keeps, per
context directory, each file's digest with the ``(size, mtime, ctime, inode)`` it
had when read, and reads the file again only when one of them changed. ``ctime``
cannot be set by users and moves on every write, so an edit is always seen. A file
changed within one timestamp tick of being hashed is not remembered: its next change
could get the same timestamps (git calls such an entry "racily clean"). The tick is
guessed from the timestamps themselves: nanosecond ones (ext4, xfs, btrfs, tmpfs)
move with the kernel's coarse clock, every 1-10 ms, so :data:`FINE_SETTLE_NS` is ample;
whole-second ones (FAT, ext3, some network filesystems) need :data:`SETTLE_NS`.
A checkout or a generator that runs just before a build thus costs no second read.

The file (``DATA/cache/context/<hash of the context path>.json``) is written
atomically; a missing or unreadable one is an empty memory, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.builder.snapshot import file_digest
from anybuild.oci.layout import atomic_write

__all__ = ["FINE_SETTLE_NS", "SETTLE_NS", "ContextHashes", "settle_ns"]

SETTLE_NS = 2_000_000_000  # whole-second timestamps (FAT's are even 2 s)
FINE_SETTLE_NS = 100_000_000  # ten ticks of the slowest coarse clock (HZ=100)
_SECOND_NS = 1_000_000_000
_VERSION = 1

Entry = tuple[int, int, int, int, str]  # size, mtime_ns, ctime_ns, inode, sha256 hex


@dataclass(slots=True)
class ContextHashes:
    file: Path | None = None  # None: remembered for this process only
    entries: dict[str, Entry] = field(default_factory=dict)
    clock_ns: Callable[[], int] = time.time_ns
    reads: int = 0  # files actually read (for tests and figures)
    changed: bool = False
    # the platforms of one build hash in parallel: a file is read by one, and the other finds its digest
    # remembered (unless it changed within a tick of being read: then it is read again, as always)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_context(cls, directory: Path, context: Path) -> ContextHashes:
        name = hashlib.sha256(str(context.resolve()).encode()).hexdigest()[:32]
        return cls.load(directory / f"{name}.json")

    @classmethod
    def load(cls, file: Path) -> ContextHashes:
        try:
            doc = json.loads(file.read_bytes())
            entries = {str(k): (int(v[0]), int(v[1]), int(v[2]), int(v[3]), str(v[4]))
                       for k, v in doc["files"].items()} if doc.get("version") == _VERSION else {}
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            entries = {}
        return cls(file=file, entries=entries)

    def sha256(self, path: str | Path, rel: str, info: os.stat_result) -> str:
        """The hex SHA-256 of the regular file *path* (whose ``lstat`` is *info*)."""
        key = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        with self._lock:
            return self._sha256(path, rel, key)

    def _sha256(self, path: str | Path, rel: str, key: tuple[int, int, int, int]) -> str:
        known = self.entries.get(rel)
        if known is not None and known[:4] == key:
            return known[4]
        digest = file_digest(path).removeprefix("sha256:")
        self.reads += 1
        changed = max(key[1], key[2])
        if self.clock_ns() - changed > settle_ns(key[1], key[2]):
            self.entries[rel] = (*key, digest)
            self.changed = True
        elif self.entries.pop(rel, None) is not None:
            self.changed = True
        return digest

    def save(self) -> None:
        """Write the memory back (best effort: a read-only data directory only costs speed)."""
        if self.file is None or not self.changed:
            return
        with contextlib.suppress(OSError):
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.file) as stream:
                stream.write(json.dumps({"version": _VERSION, "files": self.entries}).encode())
            self.changed = False


def settle_ns(mtime_ns: int, ctime_ns: int) -> int:
    """How long after its last change a file's digest may be remembered, by its timestamps' grain.

    A timestamp with a fraction of a second proves a fine-grained filesystem; two whole
    seconds are (almost always) a coarse one, so they get the long wait.
    """
    if mtime_ns % _SECOND_NS or ctime_ns % _SECOND_NS:
        return FINE_SETTLE_NS
    return SETTLE_NS
