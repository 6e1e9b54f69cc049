"""The layer writer's own tar framing gives exactly tarfile's bytes (PAX format, stream mode).

anybuild writes headers itself for the common entry (several times faster than tarfile's
general path, which dominated writing a 30,000-file layer) and falls back to
``TarInfo.tobuf`` for the rest; the bytes, and the 1 MiB chunks the compressor is fed,
must stay what ``tarfile.open(mode="w|", format=PAX_FORMAT)`` produces, or layer digests
would change with the code path.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from anybuild.builder.layer import _TarOut, tar_header


def entry(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.uname = info.gname = ""
    info.mtime = 1_700_000_000
    for key, value in fields.items():
        setattr(info, key, value)
    return info


CASES = {
    "file": entry("etc/motd", size=6, mode=0o644),
    "setuid-file": entry("usr/bin/su", size=10, mode=0o4755, uid=0, gid=0),
    "dir-without-slash": entry("var/lib", tarfile.DIRTYPE, mode=0o755),
    "dir-with-slash": entry("var/lib/", tarfile.DIRTYPE, mode=0o700, uid=33, gid=33),
    "symlink": entry("bin", tarfile.SYMTYPE, linkname="usr/bin", mode=0o777),
    "hardlink": entry("usr/bin/b", tarfile.LNKTYPE, linkname="usr/bin/a"),
    "char-device": entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
    "block-device": entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
    "fifo": entry("run/pipe", tarfile.FIFOTYPE, mode=0o600),
    "whiteout": entry("etc/.wh.old", mode=0, mtime=0),
    "name-100": entry("n" * 100),
    "name-101-pax": entry("n" * 101),
    "dir-name-100-with-slash-pax": entry("d" * 100, tarfile.DIRTYPE),
    "non-ascii-pax": entry("srv/café.txt"),
    "surrogate-name-pax": entry("srv/bad\udcff"),
    "long-link-pax": entry("l", tarfile.SYMTYPE, linkname="t" * 120),
    "big-uid-pax": entry("f", uid=2**21, gid=5),
    "uid-edge": entry("f", uid=2**21 - 1, gid=2**21 - 2),
    "xattr-pax": entry("usr/bin/ping", size=1, pax_headers={"SCHILY.xattr.security.capability": "\x01\x00"}),
    "owner-name-pax": entry("f", uname="root"),
    "float-mtime-pax": entry("f", mtime=1.5),
    "zero-everything": entry("z", mode=0, mtime=0, uid=0, gid=0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tar_header_equals_tarfile_pax_header(name: str) -> None:
    info = CASES[name]
    assert tar_header(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class Recorder(io.RawIOBase):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(data))
        return len(data)


def test_tar_stream_same_bytes_and_chunks_as_tarfile(tmp_path: Path) -> None:
    files = {"small": b"hello\n", "empty": b"", "block": b"b" * 512, "big": os.urandom(3 * 1024 * 1024 + 17)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    infos = [entry("d", tarfile.DIRTYPE, mode=0o755), *(entry(f"d/{n}", size=len(d)) for n, d in files.items()),
             entry("d/link", tarfile.SYMTYPE, linkname="big"), entry("d/" + "long" * 40, size=0)]
    infos += [entry(f"many/{i}", size=0) for i in range(3000)]

    theirs = Recorder()
    with tarfile.open(fileobj=theirs, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1024 * 1024) as tar:
        tar.copybufsize = 1024 * 1024  # type: ignore[attr-defined]
        for info in infos:
            name = info.name.removeprefix("d/")
            if info.isreg() and name in files:
                with (tmp_path / name).open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    ours = Recorder()
    writer = _TarOut(ours)  # type: ignore[arg-type]
    for info in infos:
        name = info.name.removeprefix("d/")
        if info.isreg() and name in files:
            fd = os.open(tmp_path / name, os.O_RDONLY)
            try:
                writer.addfile(info, fd)
            finally:
                os.close(fd)
        else:
            writer.addfile(info)
    writer.close()

    assert [len(c) for c in ours.chunks] == [len(c) for c in theirs.chunks]
    assert ours.chunks == theirs.chunks


def test_tar_stream_file_shorter_than_header_says_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    writer = _TarOut(Recorder())  # type: ignore[arg-type]
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="changed while the layer was written"):
            writer.addfile(entry("f", size=10), fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", ["file", "setuid-file", "dir-without-slash", "symlink", "hardlink", "char-device",
                                  "fifo", "whiteout", "name-100", "uid-edge", "zero-everything"])
def test_tar_header_common_entries_take_the_fast_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = CASES[name].tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def refuse(*_args: object) -> bytes:
        raise AssertionError("tarfile's general path was used")

    monkeypatch.setattr(tarfile.TarInfo, "tobuf", refuse)
    assert tar_header(CASES[name]) == expected
