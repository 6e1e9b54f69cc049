"""Writing a changeset as a deterministic layer tar, compressed as it streams.

The tar holds, in path order (a directory before its children, as Go's
``filepath.Walk`` and so BuildKit order them): every added or modified path,
the parent directories of every change (BuildKit includes them; the root is
never an entry), ``.wh.NAME`` whiteouts for deleted paths and
``.wh..wh..opq`` markers for replaced directories. Ownership is the file's own
(or the one recorded where it could not be real, :mod:`anybuild.builder.owners`), user and
group names are empty, mtimes are clamped to ``SOURCE_DATE_EPOCH`` when given,
long names use PAX headers, and regular files sharing an inode within the layer
become hard links to the first of them. Only ``security.capability`` is kept
from extended attributes, as Docker does.

The tar is hashed (diff id) and compressed (digest and size) while it is written:
no layer is ever held in memory. Compression runs on a second thread fed through a
small bounded queue of 1 MiB chunks, so reading files, tar framing and the diff id
overlap with deflate (zlib, ISA-L and zstd release the GIL while they work).

gzip uses ISA-L (``isal``) when it is importable, else stdlib zlib, behind one
:class:`GzipCodec` seam. The gzip member is written here, not by a library: a fixed
header (mtime 0, no file name, OS "unknown"), raw deflate, CRC-32 and length, so the
bytes depend only on the tar, the codec and its level.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import queue
import stat
import struct
import tarfile
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import IO, BinaryIO, Protocol, cast

import zstandard

from anybuild.builder.inroot import RootDir
from anybuild.builder.owners import Ownership, read_device
from anybuild.builder.rootfs import OPAQUE, WHITEOUT_PREFIX, RecordedMeta
from anybuild.builder.snapshot import Changeset, path_key

__all__ = ["Compression", "GzipCodec", "LayerBlob", "default_gzip_codec", "tar_header", "write_layer"]

_KEPT_XATTRS = ("security.capability",)
_CHUNK = 1 << 20  # bytes handed to the compressor at once
_QUEUE_DEPTH = 4  # chunks in flight between the tar writer and the compressor
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, OS unknown


class Compression(StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerBlob:
    """A written layer: compressed digest and size, and the uncompressed diff id."""

    digest: str
    diff_id: str
    size: int
    compression: Compression
    entries: int




class _Digesting:
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        pass  # the caller owns the target

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Deflater(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GzipCodec:
    """A raw-deflate implementation and the level to use it at (the seam between ISA-L and zlib)."""

    name: str
    level: int
    deflater: Callable[[int], _Deflater]  # level -> a raw deflate (wbits -15) compressor
    crc32: Callable[[bytes, int], int]

    @classmethod
    def stdlib(cls, level: int = 6) -> GzipCodec:
        return cls(name="zlib", level=level, crc32=zlib.crc32,
                   deflater=lambda lvl: zlib.compressobj(lvl, zlib.DEFLATED, -zlib.MAX_WBITS))

    @classmethod
    def isal(cls, level: int = 2) -> GzipCodec | None:
        """ISA-L (levels 0-3; 2, the default, is within ~12% of zlib's 6 in size at >10x its speed)."""
        try:
            from isal import isal_zlib
        except ImportError:
            return None
        return cls(name="isal", level=level, crc32=isal_zlib.crc32,
                   deflater=lambda lvl: isal_zlib.compressobj(lvl, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS))


def default_gzip_codec(env: Mapping[str, str] | None = None) -> GzipCodec:
    """ISA-L when installed, else zlib; ``ANYBUILD_GZIP_LEVEL`` in *env* overrides the level."""
    fast = GzipCodec.isal()
    codec = fast if fast is not None else GzipCodec.stdlib()
    value = (env or {}).get("ANYBUILD_GZIP_LEVEL", "").strip()
    if value.isdigit():
        top = 3 if codec.name == "isal" else 9
        return GzipCodec(name=codec.name, level=min(int(value), top), deflater=codec.deflater,
                         crc32=codec.crc32)
    return codec


class _GzipWriter:
    """One gzip member around raw deflate from *codec*, written to *target*."""

    def __init__(self, target: IO[bytes], codec: GzipCodec) -> None:
        self.target, self.codec = target, codec
        self.deflate = codec.deflater(codec.level)
        self.crc, self.length = 0, 0
        target.write(_GZIP_HEADER)

    def write(self, data: bytes) -> int:
        self.crc = self.codec.crc32(data, self.crc)
        self.length += len(data)
        if out := self.deflate.compress(data):
            self.target.write(out)
        return len(data)

    def close(self) -> None:
        self.target.write(self.deflate.flush())
        self.target.write(struct.pack("<II", self.crc, self.length & 0xFFFFFFFF))


class _Stream(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


class _Pipeline:
    """Coalesces writes into chunks and hands them to *sink* on a worker thread (bounded queue).

    ``close()`` waits for the worker and raises its error; leaving the ``with`` block on an
    error stops the worker without finishing *sink*.
    """

    def __init__(self, sink: _Stream, *, threaded: bool) -> None:
        self.sink = sink
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.error: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.worker = threading.Thread(target=self._run, name="anybuild-compress", daemon=True) if threaded else None
        if self.worker is not None:
            self.worker.start()

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.sink.write(chunk)
                except BaseException as exc:  # re-raised by the producer
                    self.error = exc

    def _hand(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        if self.worker is None:
            self.sink.write(chunk)
        else:
            self.queue.put(chunk)

    def write(self, data: bytes) -> int:
        self.pending.append(bytes(data))
        self.pending_size += len(data)
        if self.pending_size >= _CHUNK:
            self._hand(b"".join(self.pending))
            self.pending, self.pending_size = [], 0
        return len(data)

    def flush(self) -> None:
        pass

    def _stop(self) -> None:
        if self.worker is not None and self.worker.is_alive():
            self.queue.put(None)
            self.worker.join()

    def close(self) -> None:
        if self.pending:
            self._hand(b"".join(self.pending))
            self.pending, self.pending_size = [], 0
        self._stop()
        if self.error is not None:
            raise self.error
        self.sink.close()

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop()


_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_USTAR_MAGIC = tarfile.POSIX_MAGIC  # b"ustar\x0000"
_NO_DEVICE = b"\0" * 16
_EMPTY_OWNER_NAMES = b"\0" * 64


def _octal(value: int, digits: int) -> bytes:
    return b"%0*o\0" % (digits - 1, value)


def tar_header(info: tarfile.TarInfo) -> bytes:
    """The header ``info.tobuf(PAX_FORMAT, "utf-8", "surrogateescape")`` gives, built directly when no
    PAX record is needed (ASCII names within ustar's fields, empty owner names, numbers that fit): the
    common case, several times faster than tarfile's general path. Equality is held by a test."""
    name = info.name + "/" if info.type == tarfile.DIRTYPE and not info.name.endswith("/") else info.name
    fast = (not info.pax_headers and not info.uname and not info.gname and name.isascii()
            and info.linkname.isascii() and len(name) <= 100 and len(info.linkname) <= 100
            and 0 <= info.uid < 8**7 and 0 <= info.gid < 8**7 and 0 <= info.size < 8**11
            and isinstance(info.mtime, int) and 0 <= info.mtime < 8**11)
    if not fast or not isinstance(info.mtime, int):  # (the second test is for the type checker)
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    device = (_octal(info.devmajor, 8) + _octal(info.devminor, 8)
              if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE) else _NO_DEVICE)
    raw = name.encode("ascii")
    link = info.linkname.encode("ascii")
    header = b"".join((
        raw, b"\0" * (100 - len(raw)), _octal(info.mode & 0o7777, 8), _octal(info.uid, 8), _octal(info.gid, 8),
        _octal(info.size, 12), _octal(info.mtime, 12), b"        ", info.type, link, b"\0" * (100 - len(link)),
        _USTAR_MAGIC, _EMPTY_OWNER_NAMES, device, b"\0" * 167,  # prefix (155) and the block's padding
    ))
    checksum = b"%06o\0" % sum(header)  # the checksum field counts as eight spaces
    return header[:148] + checksum + header[155:]


class _TarOut:
    """A tar stream writer with the exact bytes and chunking of ``tarfile.open(mode="w|",
    format=PAX_FORMAT, bufsize=1 MiB)``: headers, file data read from descriptors, padding to
    blocks, the end-of-archive blocks and the padding to a record; written in 1 MiB chunks."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.offset = 0

    def _write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) > _CHUNK:
            self.sink.write(bytes(self.buffer[:_CHUNK]))
            del self.buffer[:_CHUNK]

    def addfile(self, info: tarfile.TarInfo, fd: int | None = None) -> None:
        header = tar_header(info)
        self._write(header)
        self.offset += len(header)
        if fd is None or info.type not in tarfile.REGULAR_TYPES:
            return
        remaining = info.size
        while remaining:
            chunk = os.read(fd, min(remaining, _CHUNK))
            if not chunk:
                raise OSError(f"{info.name} changed while the layer was written (shorter than {info.size} bytes)")
            self._write(chunk)
            remaining -= len(chunk)
        blocks, rest = divmod(info.size, _BLOCK)
        if rest:
            self._write(b"\0" * (_BLOCK - rest))
            blocks += 1
        self.offset += blocks * _BLOCK

    def close(self) -> None:
        self._write(b"\0" * (_BLOCK * 2))
        self.offset += _BLOCK * 2
        if rest := self.offset % _RECORD:
            self._write(b"\0" * (_RECORD - rest))
        if self.buffer:
            self.sink.write(bytes(self.buffer))
            self.buffer.clear()


def write_layer(
    changes: Changeset,
    root: RootDir,
    out: BinaryIO,
    *,
    source_date_epoch: int | None = None,
    recorded: Mapping[str, RecordedMeta] | None = None,
    ownership: Ownership | None = None,
    compression: Compression = Compression.GZIP,
    gzip: GzipCodec | None = None,
    threaded: bool = True,
    check: Callable[[], None] = lambda: None,
) -> LayerBlob:
    """Write *changes* (read from *root*) to *out* as a layer; return its digests.

    *gzip* is the codec for ``Compression.GZIP`` (default: :func:`default_gzip_codec`);
    *threaded* False compresses on the calling thread (same bytes, no overlap). *check* is called
    between entries; what it raises (a cancellation) stops the write.
    """
    plan = _plan(changes)
    compressed = _Digesting(out)
    target = cast(IO[bytes], compressed)
    sink: _Stream
    match compression:
        case Compression.GZIP:
            sink = _GzipWriter(target, gzip or default_gzip_codec())
        case Compression.ZSTD:
            sink = cast(IO[bytes], zstandard.ZstdCompressor(level=3).stream_writer(target, closefd=False))
        case Compression.NONE:
            sink = compressed
    writer = _EntryWriter(root=root, epoch=source_date_epoch, recorded=recorded or {},
                          ownership=ownership if ownership is not None and not ownership.full else None)
    with _Pipeline(sink, threaded=threaded and compression is not Compression.NONE) as pipeline:
        uncompressed = _Digesting(cast(IO[bytes], pipeline))
        tar = _TarOut(cast(IO[bytes], uncompressed))
        for index, (name, kind) in enumerate(plan):
            if index % 32 == 0:
                check()
            writer.add(tar, name, kind)
        tar.close()
        pipeline.close()
    out.flush()
    return LayerBlob(digest=compressed.digest, diff_id=uncompressed.digest, size=compressed.size,
                     compression=compression, entries=len(plan))


def _plan(changes: Changeset) -> list[tuple[str, str]]:
    """(name, kind) of every tar entry in order; kind is "path", "whiteout" or "opaque"."""
    entries: dict[str, str] = dict.fromkeys(changes.written, "path")
    for path in changes.deleted:
        head, name = posixpath.split(path)
        entries[posixpath.join(head, WHITEOUT_PREFIX + name)] = "whiteout"
    for path in changes.opaque:
        entries[posixpath.join(path, OPAQUE)] = "opaque"
    for name in list(entries):
        head = posixpath.dirname(name)
        while head and head not in entries:
            entries[head] = "path"
            head = posixpath.dirname(head)
    return sorted(entries.items(), key=lambda item: path_key(item[0]))


@dataclass(slots=True, kw_only=True)
class _EntryWriter:
    root: RootDir
    epoch: int | None
    recorded: Mapping[str, RecordedMeta]
    ownership: Ownership | None  # None: every owner on disk is the image's (see owners.Ownership.full)
    links: dict[tuple[int, int], str] | None = None

    def _mtime(self, seconds: float) -> int:
        value = int(seconds)
        if self.epoch is not None:
            value = min(value, self.epoch)
        return max(value, 0)

    def add(self, tar: _TarOut, name: str, kind: str) -> None:
        if self.links is None:
            self.links = {}
        if kind != "path":
            info = tarfile.TarInfo(name)
            info.mode = 0
            info.mtime = self.epoch if self.epoch is not None else 0
            info.uname = info.gname = ""
            tar.addfile(info)
            return
        dir_fd, base = self.root.borrow_parent(name, follow=False)  # used only until this entry is written
        st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        uid, gid = st.st_uid, st.st_gid
        if self.ownership is not None:
            uid, gid = self.ownership.owner_of(base, uid, gid, dir_fd=dir_fd)
        if (meta := self.recorded.get(name)) is not None:
            uid, gid, info.mode = meta.uid, meta.gid, meta.mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = self._mtime(st.st_mtime)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(base, dir_fd=dir_fd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        elif stat.S_ISREG(mode) and self.ownership is not None and (device := read_device(
                f"/proc/self/fd/{dir_fd}/{base}")) is not None:  # a device node the kernel refused to make
            info.type = tarfile.CHRTYPE if device[0] == "char" else tarfile.BLKTYPE
            info.devmajor, info.devminor = device[1], device[2]
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type = tarfile.LNKTYPE
                info.linkname = self.links[key]
            else:
                if st.st_nlink > 1:
                    self.links[key] = name
                self._add_file(tar, info, dir_fd, base, st)
                return
        else:
            return  # sockets are never part of a layer (Docker skips them too)
        if stat.S_ISDIR(mode):
            info.pax_headers = self._xattrs(dir_fd, base, directory=True)
        tar.addfile(info)

    def _add_file(self, tar: _TarOut, info: tarfile.TarInfo, dir_fd: int, base: str,
                  st: os.stat_result) -> None:
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            current = os.fstat(fd)
            if (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                raise OSError(f"{info.name} changed while the layer was written")
            info.type = tarfile.REGTYPE
            info.size = current.st_size
            info.pax_headers = self._xattrs(fd, None, directory=False)
            tar.addfile(info, fd)
        finally:
            os.close(fd)

    def _xattrs(self, fd: int, base: str | None, *, directory: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        target: int | str = fd
        opened = -1
        if base is not None:
            opened = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                             | (os.O_DIRECTORY if directory else 0), dir_fd=fd)
            target = opened
        try:
            for attr in _KEPT_XATTRS:
                with contextlib.suppress(OSError):
                    value = os.getxattr(target, attr)
                    headers["SCHILY.xattr." + attr] = value.decode("utf-8", "surrogateescape")
        finally:
            if opened >= 0:
                os.close(opened)
        return headers
