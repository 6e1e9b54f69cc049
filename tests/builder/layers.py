"""Building layer tars in tests: a tiny, explicit description of each entry."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field

import zstandard


@dataclass(frozen=True)
class E:
    name: str
    kind: str = "file"  # file | dir | symlink | link | char | block | fifo
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    mtime: int = 1_700_000_000
    dev: tuple[int, int] = (0, 0)
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "link": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries: list[E], compression: str = "none") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TYPES[e.kind]
            info.mode = e.mode if e.kind != "dir" or e.mode != 0o644 else 0o755
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.link
            info.devmajor, info.devminor = e.dev
            info.pax_headers = dict(e.pax)
            if e.kind == "file":
                info.size = len(e.data)
                archive.addfile(info, io.BytesIO(e.data))
            else:
                archive.addfile(info)
    data = raw.getvalue()
    match compression:
        case "gzip":
            return gzip.compress(data)
        case "zstd":
            return zstandard.ZstdCompressor().compress(data)
        case _:
            return data
