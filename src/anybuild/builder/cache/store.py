"""The local step cache: entries by key and their layer blobs, shared by concurrent builds.

Layout under the data directory (``cache/steps``)::

    .lock                  flock: shared while a build reads or writes, exclusive to prune
    entries/HEX.json       one entry per step key (written atomically, mtime = last use)
    blobs/sha256/HEX       layer blobs (content-addressed, renamed into place when complete)

An entry holds what a step produced: its layer (descriptor and diff id; none
for a step that changed no file), its history entry and the config, author
and CMD flag after it. A hit applies the layer instead of running the step.
Blobs are written before the entry that names them, and pruning holds the
exclusive lock, so every entry a build can see has its blob.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anybuild.errors import IntegrityError
from anybuild.oci.config import ContainerConfig, History
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.digest import Digest, Hasher
from anybuild.oci.layout import LayoutStore, unlink_counting

__all__ = ["CacheEntry", "PruneResult", "StepStore", "StoredEntry", "key_hex"]


@contextlib.contextmanager
def flocked(directory: Path, mode: int) -> Iterator[None]:
    """Hold ``flock(mode)`` on *directory*/.lock (made if missing) for the block: how the stores that
    concurrent builds share take turns."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def key_hex(key: str) -> str:
    return key.removeprefix("sha256:")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheEntry:
    key: str
    history: History
    config: ContainerConfig
    layer: Descriptor | None = None
    diff_id: str | None = None
    author: str = ""
    cmd_set: bool = False

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "key": self.key, "history": self.history.to_dict(), "config": self.config.to_dict(),
            "author": self.author, "cmd_set": self.cmd_set,
        }
        if self.layer is not None:
            data["layer"] = self.layer.to_dict()
            data["diff_id"] = self.diff_id
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, what: str = "cache entry") -> CacheEntry:
        try:
            doc = json.loads(data)
            layer = Descriptor.from_dict(doc["layer"], f"{what} layer") if doc.get("layer") else None
            return cls(key=str(doc["key"]), history=History.from_dict(doc["history"], what),
                       config=ContainerConfig.from_dict(doc["config"], what), layer=layer,
                       diff_id=str(doc["diff_id"]) if layer is not None else None,
                       author=str(doc.get("author", "")), cmd_set=bool(doc.get("cmd_set", False)))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{what} is corrupt: {exc}", hint="run `anybuild cache prune --all`") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEntry:
    entry: CacheEntry
    size: int  # bytes of its layer blob
    last_used: float
    created_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    entries: int
    blobs: int
    freed: int


def _parse_size(entry: CacheEntry) -> int:
    return entry.layer.size if entry.layer is not None else 0


@dataclass(frozen=True, slots=True)
class StepStore:
    """The step cache at *root*; every method is safe to call from many processes and threads."""

    root: Path

    @property
    def entries_dir(self) -> Path:
        return self.root / "entries"

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / str(digest.algorithm) / digest.hex

    def _locked(self, mode: int) -> contextlib.AbstractContextManager[None]:
        return flocked(self.root, mode)

    def _place(self, source: Path, target: Path) -> None:
        """Hard-link *source* (a complete blob) to *target*; copy through a temporary name across devices.

        A link is created whole or not at all, so no reader sees a partial blob.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
            return
        except FileExistsError:
            return
        except OSError:
            pass  # another filesystem: copy
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
        staging = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
            staging.replace(target)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise

    def _write_entry(self, entry: CacheEntry) -> None:
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".entry-", dir=self.entries_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(entry.to_json())
            Path(tmp).replace(self.entries_dir / f"{key_hex(entry.key)}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, entry: CacheEntry, layers: LayoutStore) -> None:
        """Record *entry*, taking its layer blob from *layers* (a build's blob store)."""
        with self._locked(fcntl.LOCK_SH):
            if entry.layer is not None:
                self._place(layers.blob_path(entry.layer.digest), self.blob_path(entry.layer.digest))
            self._write_entry(entry)

    def put_blob(self, entry: CacheEntry, blob: Path) -> None:
        """Record *entry* whose (verified) layer blob is the file *blob* (from a registry)."""
        with self._locked(fcntl.LOCK_SH):
            if entry.layer is not None:
                self._place(blob, self.blob_path(entry.layer.digest))
            self._write_entry(entry)

    def get(self, key: str, layers: LayoutStore) -> CacheEntry | None:
        """The entry of *key* with its blob linked into *layers*, or None (a miss)."""
        path = self.entries_dir / f"{key_hex(key)}.json"
        with self._locked(fcntl.LOCK_SH):
            try:
                entry = CacheEntry.from_json(path.read_bytes(), f"cache entry {key_hex(key)[:12]}")
            except (FileNotFoundError, IntegrityError):
                return None  # absent, or unreadable: the step runs and its entry is written again
            if entry.layer is not None:
                blob = self.blob_path(entry.layer.digest)
                if not blob.is_file():
                    return None
                if not layers.has_blob(entry.layer.digest):
                    self._place(blob, layers.blob_path(entry.layer.digest))
            with contextlib.suppress(OSError):
                os.utime(path)  # last use, for prune
        return entry

    def has(self, key: str) -> bool:
        return (self.entries_dir / f"{key_hex(key)}.json").is_file()

    def read(self, key: str) -> CacheEntry:
        return CacheEntry.from_json((self.entries_dir / f"{key_hex(key)}.json").read_bytes())

    def entries(self) -> list[StoredEntry]:
        """Every entry, most recently used first."""
        found: list[StoredEntry] = []
        if not self.entries_dir.is_dir():
            return found
        for path in self.entries_dir.glob("*.json"):
            try:
                entry = CacheEntry.from_json(path.read_bytes(), str(path))
                used = path.stat().st_mtime
            except (FileNotFoundError, IntegrityError):
                continue
            found.append(StoredEntry(entry=entry, size=_parse_size(entry), last_used=used,
                                     created_by=entry.history.created_by))
        return sorted(found, key=lambda e: (-e.last_used, e.entry.key))

    def verify(self) -> list[str]:
        """Problems found: entries whose blob is missing or does not match its digest."""
        problems: list[str] = []
        with self._locked(fcntl.LOCK_SH):
            for stored in self.entries():
                layer = stored.entry.layer
                if layer is None:
                    continue
                blob = self.blob_path(layer.digest)
                if not blob.is_file():
                    problems.append(f"{stored.entry.key}: blob {layer.digest} missing")
                    continue
                hasher = Hasher(layer.digest.algorithm)
                with blob.open("rb") as handle:
                    while chunk := handle.read(1024 * 1024):
                        hasher.update(chunk)
                try:
                    hasher.verify(digest=layer.digest, size=layer.size, what=str(layer.digest))
                except IntegrityError as exc:
                    problems.append(f"{stored.entry.key}: {exc.message}")
        return problems

    def prune(self, *, keep_storage: int | None = None, release: int | None = None,
              everything: bool = False) -> PruneResult:
        """Remove least recently used entries until their blobs fit *keep_storage* bytes, or until
        *release* bytes of them are gone; then orphans."""
        removed = freed = blobs = 0
        with self._locked(fcntl.LOCK_EX):
            entries = self.entries()  # most recent first
            if release is not None:
                keep_storage = max(0, sum(stored.size for stored in entries) - release)
            kept_size = 0
            keep: list[StoredEntry] = []
            for stored in entries:
                if everything or (keep_storage is not None and kept_size + stored.size > keep_storage):
                    (self.entries_dir / f"{key_hex(stored.entry.key)}.json").unlink(missing_ok=True)
                    removed += 1
                    continue
                kept_size += stored.size
                keep.append(stored)
            wanted = {str(s.entry.layer.digest.hex) for s in keep if s.entry.layer is not None}
            blob_root = self.root / "blobs"
            if blob_root.is_dir():
                for blob in blob_root.glob("*/*"):
                    if blob.name not in wanted:
                        freed += unlink_counting(blob)  # a blob the layout store also links frees nothing yet
                        blobs += 1
        return PruneResult(entries=removed, blobs=blobs, freed=freed)

    def usage(self) -> int:
        blob_root = self.root / "blobs"
        return sum(p.stat().st_size for p in blob_root.glob("*/*")) if blob_root.is_dir() else 0
