"""The OCI image layout on disk (``oci-layout``, ``index.json``, ``blobs/ALG/HEX``).

Every write is atomic: content goes to a temporary file in the same directory,
is checked against its expected size and digest, flushed, and renamed into
place. A crash or a failed transfer never leaves a half-written blob or index.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from anybuild.errors import IntegrityError
from anybuild.files import atomic_write
from anybuild.oci.descriptor import Descriptor, canonical_json, load_json_object
from anybuild.oci.digest import CHUNK_SIZE, Digest, DigestAlgorithm, Hasher
from anybuild.oci.manifest import Index, Manifest, parse_document
from anybuild.oci.mediatype import MediaType

__all__ = ["REF_NAME", "BlobStore", "LayoutStore", "Swept", "atomic_write", "unlink_counting"]

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
_DOCUMENTS = frozenset(str(m) for m in MediaType if m.is_manifest or m.is_index)


class BlobStore(Protocol):
    """Content-addressed storage that images are read from and written to."""

    def has_blob(self, digest: Digest) -> bool: ...

    def open_blob(self, digest: Digest) -> BinaryIO: ...

    def write_blob(
        self, chunks: Iterable[bytes] | BinaryIO, *, expected: Descriptor | None = None,
        media_type: str = MediaType.OCI_LAYER,
    ) -> Descriptor: ...


def _chunks(source: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    if hasattr(source, "read"):
        reader: BinaryIO = source  # type: ignore[assignment]
        while chunk := reader.read(CHUNK_SIZE):
            yield chunk
    else:
        yield from source


@dataclass(frozen=True, slots=True)
class Swept:
    blobs: int
    freed: int  # bytes whose last link was removed (a blob also linked elsewhere frees nothing)


def unlink_counting(path: Path) -> int:
    """Remove *path*; the bytes that freed (0 while another hard link keeps the data)."""
    try:
        info = path.stat()
        path.unlink()
    except FileNotFoundError:
        return 0
    return info.st_size if info.st_nlink == 1 else 0


class LayoutStore:
    """An OCI image layout directory; implements :class:`BlobStore`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        """Serialise index.json updates between threads and processes."""
        with self._lock, (self.root / ".index.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @classmethod
    def create(cls, root: Path) -> LayoutStore:
        """Open *root* as a layout, creating an empty one if it does not exist."""
        store = cls(root)
        marker = root / "oci-layout"
        if not marker.exists():
            (root / "blobs").mkdir(parents=True, exist_ok=True)
            with atomic_write(marker) as stream:
                stream.write(canonical_json(_LAYOUT_VERSION))
        store._check_layout()
        if not (root / "index.json").exists():
            store._write_index(Index(manifests=()))
        return store

    @classmethod
    def open(cls, root: Path) -> LayoutStore:
        """Open an existing layout; raise IntegrityError if *root* is not one."""
        store = cls(root)
        store._check_layout()
        store.index()
        return store

    def _check_layout(self) -> None:
        marker = self.root / "oci-layout"
        try:
            data = load_json_object(marker.read_bytes(), f"{marker}")
        except FileNotFoundError:
            raise IntegrityError(
                f"{self.root} is not an OCI image layout (no oci-layout file)",
                hint="pass a directory written by `anybuild pull --output oci:DIR`, skopeo or buildah",
            ) from None
        if data.get("imageLayoutVersion") != "1.0.0":
            raise IntegrityError(
                f"{marker}: unsupported imageLayoutVersion {data.get('imageLayoutVersion')!r}",
                hint="anybuild reads image layout version 1.0.0",
            )

    # -- blobs ---------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / str(digest.algorithm) / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise IntegrityError(
                f"blob {digest} is missing from {self.root}",
                hint="the layout is incomplete; pull or build the image again",
            ) from None

    def read_blob(self, descriptor: Descriptor) -> bytes:
        """The whole blob, verified against *descriptor* (for documents, not big layers)."""
        with self.open_blob(descriptor.digest) as stream:
            data = stream.read()
        hasher = Hasher(descriptor.digest.algorithm)
        hasher.update(data)
        hasher.verify(digest=descriptor.digest, size=descriptor.size, what=f"blob {descriptor.digest}")
        return data

    def verify_blob(self, descriptor: Descriptor) -> None:
        hasher = Hasher(descriptor.digest.algorithm)
        with self.open_blob(descriptor.digest) as stream:
            hasher.update_all(_chunks(stream))
        hasher.verify(digest=descriptor.digest, size=descriptor.size, what=f"blob {descriptor.digest}")

    def write_blob(
        self, chunks: Iterable[bytes] | BinaryIO, *, expected: Descriptor | None = None,
        media_type: str = MediaType.OCI_LAYER,
    ) -> Descriptor:
        """Store a blob atomically; with *expected*, reject content of another size or digest."""
        algorithm = expected.digest.algorithm if expected else DigestAlgorithm.SHA256
        hasher = Hasher(algorithm)
        staging = self.root / "blobs" / str(algorithm)
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=staging)
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as stream:
                for chunk in _chunks(chunks):
                    hasher.update(chunk)
                    stream.write(chunk)
                    if expected is not None and hasher.size > expected.size:
                        break
                stream.flush()
                os.fsync(stream.fileno())
            if expected is not None:
                hasher.verify(digest=expected.digest, size=expected.size, what=f"blob {expected.digest}")
            digest = hasher.digest()
            tmp_path.replace(self.blob_path(digest))
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        if expected is not None:
            return expected
        return Descriptor(media_type=media_type, digest=digest, size=hasher.size)

    def write_bytes(self, data: bytes, media_type: str) -> Descriptor:
        return self.write_blob([data], media_type=media_type)

    # -- index.json ------------------------------------------------------------

    def index(self) -> Index:
        path = self.root / "index.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"{self.root} has no index.json", hint="the layout is incomplete") from None
        return Index.from_json(data, media_type=MediaType.OCI_INDEX, what=str(path))

    def _write_index(self, index: Index) -> None:
        with atomic_write(self.root / "index.json") as stream:
            stream.write(json.dumps(index.to_dict(), indent=2).encode() + b"\n")

    def put_manifest(self, descriptor: Descriptor, tag: str | None = None) -> Descriptor:
        """Record *descriptor* in index.json, named *tag* (replacing an entry of the same name)."""
        annotations = dict(descriptor.annotations)
        if tag:
            annotations[REF_NAME] = tag
        entry = Descriptor(
            media_type=descriptor.media_type, digest=descriptor.digest, size=descriptor.size,
            annotations=annotations, platform=descriptor.platform,
        )
        with self._index_lock():
            kept = [
                m for m in self.index().manifests
                if not (tag and m.annotations.get(REF_NAME) == tag)
                and not (not tag and m.digest == descriptor.digest and not m.annotations.get(REF_NAME))
            ]
            self._write_index(Index(manifests=(*kept, entry)))
        return entry

    def reachable(self) -> set[Digest]:
        """The blobs index.json reaches: its manifests, their configs and layers, nested indexes' too."""
        seen: set[Digest] = set()
        pending = list(self.index().manifests)
        while pending:
            descriptor = pending.pop()
            if descriptor.digest in seen:
                continue
            seen.add(descriptor.digest)
            if descriptor.media_type not in _DOCUMENTS:
                continue  # a config or a layer
            try:
                document = parse_document(self.read_blob(descriptor), media_type=descriptor.media_type,
                                          what=f"blob {descriptor.digest}")
            except (OSError, IntegrityError):
                continue  # a missing or foreign document keeps only itself
            if isinstance(document, Manifest):
                pending += [document.config, *document.layers]
                if document.subject is not None:
                    pending.append(document.subject)
            else:
                pending += document.manifests
        return seen

    def forget_all(self) -> None:
        """Empty index.json (its images' blobs become unreachable: :meth:`sweep` removes them)."""
        with self._index_lock():
            self._write_index(Index(manifests=()))

    def sweep(self) -> Swept:
        """Remove every blob index.json does not reach, and writes left by killed processes.

        The caller makes sure nothing is writing to the layout (a build holds a lock for that).
        """
        keep = {d.hex for d in self.reachable()}
        count = freed = 0
        for directory in (self.root / "blobs").iterdir() if (self.root / "blobs").is_dir() else ():
            for blob in directory.iterdir():
                if blob.name not in keep:
                    freed += unlink_counting(blob)
                    count += 1
        return Swept(blobs=count, freed=freed)

    def resolve(self, tag: str | None = None) -> Descriptor:
        """The index entry named *tag*; without a tag, the only entry."""
        entries = self.index().manifests
        if tag is not None:
            named = [m for m in entries if m.annotations.get(REF_NAME) == tag]
            if named:
                return named[-1]
            names = sorted({m.annotations.get(REF_NAME, "") for m in entries} - {""})
            raise IntegrityError(
                f"no image named {tag!r} in {self.root}",
                hint=f"use one of: {', '.join(names)}" if names else "the layout holds no named images",
            )
        if len(entries) != 1:
            raise IntegrityError(
                f"{self.root} holds {len(entries)} images; name one",
                hint="write oci:DIR:TAG to pick an image by its ref.name",
            )
        return entries[0]
