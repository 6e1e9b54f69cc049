"""write_layer's gzip: ISA-L or zlib behind one seam, deterministic, streamed through a compressor thread."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from anybuild.builder.inroot import RootDir
from anybuild.builder.layer import Compression, GzipCodec, LayerBlob, default_gzip_codec, write_layer
from anybuild.builder.rootfs import decompressed
from anybuild.builder.snapshot import Changeset

EPOCH = 1_700_000_000
ISAL = GzipCodec.isal()


def _codecs() -> list[object]:
    isal = pytest.param(ISAL, id="isal", marks=pytest.mark.skipif(ISAL is None, reason="isal is not installed"))
    return [pytest.param(GzipCodec.stdlib(), id="zlib"), isal]


def make_tree(root: Path) -> Changeset:
    """A few MiB (several compressor chunks): random and zero data, text, a link and a directory."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "random.bin").write_bytes(hashlib.shake_256(b"seed").digest(3 << 20))
    (root / "data" / "zeros.bin").write_bytes(bytes(2 << 20))
    (root / "etc").mkdir()
    (root / "etc" / "conf").write_text("key = value\n" * 1000)
    os.symlink("../etc/conf", root / "data" / "conf")
    return Changeset(added=("data", "data/conf", "data/random.bin", "data/zeros.bin", "etc", "etc/conf"))


def write(root: Path, changes: Changeset, **options: object) -> tuple[LayerBlob, bytes]:
    out = io.BytesIO()
    with RootDir.open(root) as opened:
        blob = write_layer(changes, opened, out, source_date_epoch=EPOCH, **options)  # type: ignore[arg-type]
    return blob, out.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Changeset]:
    return tmp_path / "root", make_tree(tmp_path / "root")


@pytest.mark.parametrize("codec", _codecs())
def test_write_layer_gzip_twice_same_bytes_fixed_header(tree: tuple[Path, Changeset], codec: GzipCodec) -> None:
    root, changes = tree
    first, data = write(root, changes, gzip=codec)
    second, again = write(root, changes, gzip=codec)
    assert data == again and first == second
    assert data[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FEXTRA/FCOMMENT
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert first.digest == "sha256:" + hashlib.sha256(data).hexdigest() and first.size == len(data)


@pytest.mark.parametrize("codec", _codecs())
def test_write_layer_gunzip_equals_uncompressed_tar(tree: tuple[Path, Changeset], codec: GzipCodec) -> None:
    root, changes = tree
    plain_blob, tar = write(root, changes, compression=Compression.NONE)
    blob, data = write(root, changes, gzip=codec)
    assert gzip.decompress(data) == tar
    assert blob.diff_id == plain_blob.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert len(data) < len(tar) * 0.75  # the zeros and the text compress
    with tarfile.open(fileobj=decompressed(io.BytesIO(data)), mode="r|") as archive:
        assert [m.name for m in archive] == list(changes.added)


@pytest.mark.skipif(shutil.which("gzip") is None, reason="no gzip binary")
@pytest.mark.parametrize("codec", _codecs())
def test_write_layer_gzip_accepted_by_gzip_binary(tree: tuple[Path, Changeset], codec: GzipCodec) -> None:
    root, changes = tree
    _, tar = write(root, changes, compression=Compression.NONE)
    _, data = write(root, changes, gzip=codec)
    result = subprocess.run(["gzip", "-dc"], input=data, capture_output=True, check=True, timeout=60)
    assert result.stdout == tar


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD], ids=["gzip", "zstd"])
def test_write_layer_threaded_or_inline_same_bytes(tree: tuple[Path, Changeset], compression: Compression) -> None:
    root, changes = tree
    threaded = write(root, changes, compression=compression, gzip=GzipCodec.stdlib(1))
    inline = write(root, changes, compression=compression, gzip=GzipCodec.stdlib(1), threaded=False)
    assert threaded == inline


class _FailingOut(io.BytesIO):
    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() > 1 << 20:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_write_layer_output_fails_error_raised_from_compressor_thread(tree: tuple[Path, Changeset]) -> None:
    root, changes = tree
    with RootDir.open(root) as opened, pytest.raises(OSError, match="No space left"):
        write_layer(changes, opened, _FailingOut(), gzip=GzipCodec.stdlib(0))


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(None, None, id="unset"),
    pytest.param("1", 1, id="one"),
    pytest.param("9", 9, id="clamped"),
    pytest.param("fast", None, id="not-a-number"),
])
def test_default_gzip_codec_level_from_env(value: str | None, expected: int | None) -> None:
    env = {} if value is None else {"ANYBUILD_GZIP_LEVEL": value}
    codec = default_gzip_codec(env)
    assert codec.name == ("zlib" if ISAL is None else "isal")
    top = 3 if codec.name == "isal" else 9
    assert codec.level == (min(expected, top) if expected is not None else (6 if ISAL is None else 2))
