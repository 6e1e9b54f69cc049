"""Content digests (``sha256:…``, ``sha512:…``) and streaming verification.

A :class:`Digest` is a value; :class:`DigestingWriter`-style hashing is done with
:class:`Hasher`, which counts bytes as it hashes so that both the size and the
digest of a blob are checked (:meth:`Hasher.verify`) before anything trusts it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from anybuild.errors import IntegrityError

__all__ = ["CHUNK_SIZE", "Digest", "DigestAlgorithm", "Hasher"]

CHUNK_SIZE = 1024 * 1024


class DigestAlgorithm(StrEnum):
    """Algorithms the OCI image spec registers."""

    SHA256 = "sha256"
    SHA512 = "sha512"

    @property
    def hex_length(self) -> int:
        return 64 if self is DigestAlgorithm.SHA256 else 128

    def new(self) -> hashlib._Hash:
        return hashlib.new(self.value)


_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX = re.compile(r"^[a-f0-9]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """``algorithm:hex``; ``str(digest)`` is the canonical form."""

    algorithm: DigestAlgorithm
    hex: str

    def __post_init__(self) -> None:
        if len(self.hex) != self.algorithm.hex_length or not _HEX.match(self.hex):
            raise ValueError(f"{self.hex!r} is not a {self.algorithm} hex digest")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex digits, as Docker shows image ids."""
        return self.hex[:12]

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 hex>``; raise IntegrityError naming the problem."""
        match = _DIGEST.match(text)
        if match is None:
            raise IntegrityError(
                f"invalid digest format: {text!r}",
                hint="write a digest as ALGORITHM:HEX, e.g. sha256:" + "0" * 64,
            )
        name, hex_part = match.groups()
        try:
            algorithm = DigestAlgorithm(name)
        except ValueError:
            raise IntegrityError(
                f"unsupported digest algorithm {name!r} in {text!r}",
                hint="use sha256 or sha512",
            ) from None
        if len(hex_part) != algorithm.hex_length or not _HEX.match(hex_part):
            raise IntegrityError(
                f"invalid {algorithm} digest {text!r}: expected {algorithm.hex_length} lowercase hex digits",
                hint="copy the digest again; it may be truncated",
            )
        return cls(algorithm=algorithm, hex=hex_part)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: DigestAlgorithm = DigestAlgorithm.SHA256) -> Digest:
        return cls(algorithm=algorithm, hex=hashlib.new(algorithm.value, data).hexdigest())

    @classmethod
    def of_stream(
        cls, stream: BinaryIO, algorithm: DigestAlgorithm = DigestAlgorithm.SHA256
    ) -> tuple[Digest, int]:
        """Digest and size of everything left in *stream*."""
        hasher = Hasher(algorithm)
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
        return hasher.digest(), hasher.size

    @classmethod
    def of_file(cls, path: Path, algorithm: DigestAlgorithm = DigestAlgorithm.SHA256) -> Digest:
        with path.open("rb") as stream:
            return cls.of_stream(stream, algorithm)[0]


class Hasher:
    """Hashes and counts bytes; :meth:`verify` checks both against expectations."""

    def __init__(self, algorithm: DigestAlgorithm = DigestAlgorithm.SHA256) -> None:
        self.algorithm = algorithm
        self._hash = algorithm.new()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def update_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.update(chunk)

    def digest(self) -> Digest:
        return Digest(algorithm=self.algorithm, hex=self._hash.hexdigest())

    def verify(self, *, digest: Digest, size: int | None, what: str) -> None:
        """Raise IntegrityError unless the bytes seen have this *digest* and *size*."""
        if size is not None and self.size != size:
            raise IntegrityError(
                f"{what}: size mismatch: expected {size} bytes, got {self.size} ({digest})",
                hint="the transfer was truncated or the source is corrupt; retry, "
                "and if it persists, re-push the image",
            )
        actual = self.digest()
        if actual != digest:
            raise IntegrityError(
                f"{what}: digest mismatch: expected {digest}, got {actual}",
                hint="the content is corrupt or was tampered with; retry, "
                "and if it persists, re-push the image",
            )
