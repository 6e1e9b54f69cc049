"""COPY and ADD staged in memory (builder.stack): the same image whether a step is staged in memory,
made again on disk after filling the tmpfs, or written to the data directory; a later build that
stacks on an in-memory layer unpacks it from its blob."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from anybuild.backends.base import BuildRequest, BuildResult, ListSink
from anybuild.builder.build import MEMORY_STAGING_ENV, BuildEnvironment, build_image, memory_staging
from anybuild.builder.stack import MEMORY_LIMIT, LayerSnapshots, chain_ids
from anybuild.errors import UsageError
from anybuild.oci.digest import Digest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the stacked snapshotter needs overlay mounts (root)")


@pytest.fixture
def busybox(base_images: Any) -> dict[str, str]:
    return {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}

DOCKERFILE = """\
FROM busybox:1.36
COPY big.bin /data/
COPY a.txt /app/
ARG FLAVOUR=plain
RUN cat /app/a.txt > /copied && echo "$FLAVOUR" >> /copied && wc -c < /data/big.bin >> /copied
"""


def _context(path: Path) -> Path:
    path.mkdir()
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "big.bin").write_bytes(os.urandom(1024 * 1024))
    (path / "a.txt").write_text("alpha\n")
    return path


def _build(context: Path, data: Path, named: dict[str, str], out: Path, *, memory: str | None = None,
           flavour: str = "plain") -> tuple[BuildResult, list[Digest], Path]:
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(data), "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop(MEMORY_STAGING_ENV, None)
    if memory is not None:
        env[MEMORY_STAGING_ENV] = memory
    result = build_image(BuildRequest(context=context, dockerfile=context / "Dockerfile", output=f"oci:{out}",
                                      build_args={"FLAVOUR": flavour}),
                         ListSink(), BuildEnvironment(env=env, named_images=named))
    assert result.digest is not None
    blobs = out / "blobs" / "sha256"
    manifest = json.loads((blobs / result.digest.removeprefix("sha256:")).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    return result, [Digest.parse(d) for d in config["rootfs"]["diff_ids"]], blobs


def _file_in_last_layer(blobs: Path, digest: str, name: str) -> bytes:
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())
    layer = gzip.decompress((blobs / manifest["layers"][-1]["digest"].removeprefix("sha256:")).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def test_memory_staging_size_from_the_environment() -> None:
    assert memory_staging({}) == MEMORY_LIMIT
    assert memory_staging({MEMORY_STAGING_ENV: "64MB"}) == 64 * 1024 * 1024
    assert memory_staging({MEMORY_STAGING_ENV: "0"}) == 0
    with pytest.raises(UsageError, match=MEMORY_STAGING_ENV):
        memory_staging({MEMORY_STAGING_ENV: "lots"})


@pytest.mark.root
@needs_root
def test_copy_staged_in_memory_same_image_as_on_disk_and_unpacked_later(tmp_path: Path,
                                                                         busybox: dict[str, str]) -> None:
    context = _context(tmp_path / "ctx")
    data = tmp_path / "data"

    staged, diff_ids, _ = _build(context, data, busybox, tmp_path / "staged")
    full, _, _ = _build(context, tmp_path / "data-small", busybox, tmp_path / "full", memory="256KB")
    on_disk, _, _ = _build(context, tmp_path / "data-disk", busybox, tmp_path / "disk", memory="0")

    assert staged.digest == full.digest == on_disk.digest
    chains = chain_ids(diff_ids)  # busybox, COPY big.bin, COPY a.txt, RUN
    snapshots = LayerSnapshots(data / "snapshots")
    assert [snapshots.has(c) for c in chains] == [True, False, False, True]  # the COPY layers stayed in memory
    small = LayerSnapshots(tmp_path / "data-small" / "snapshots")
    assert [small.has(c) for c in chains] == [True, True, True, True]  # the tmpfs filled: made again on disk
    assert list((data / "tmp").iterdir()) == []  # the build's tmpfs unmounted, its scratch removed

    # A later build whose RUN misses stacks on both COPY layers: they are unpacked from their blobs.
    again, again_ids, blobs = _build(context, data, busybox, tmp_path / "again", flavour="other")
    fresh, _, _ = _build(context, tmp_path / "data-fresh", busybox, tmp_path / "fresh", memory="0", flavour="other")

    assert again.cache_hits == 2  # both COPY steps
    assert again.digest == fresh.digest != staged.digest
    assert [snapshots.has(c) for c in chain_ids(again_ids)] == [True, True, True, True]
    assert _file_in_last_layer(blobs, again.digest or "", "copied") == b"alpha\nother\n1048576\n"


@pytest.mark.root
@needs_root
def test_build_on_a_full_data_directory_fails_no_space_left_with_a_hint(tmp_path: Path,
                                                                        busybox: dict[str, str]) -> None:
    """The COPY is staged in memory, its 16 MB layer does not fit in the data directory: the step is
    made again on disk, fails the same way, and the build says the disk is full (no traceback)."""
    import subprocess

    from anybuild.errors import BuildFailed

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox:1.36\nCOPY big.bin /data/\n")
    (context / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], check=True)
    try:
        with pytest.raises(BuildFailed) as failed:
            _build(context, data, busybox, tmp_path / "out")
        assert "no space left on device" in failed.value.message
        assert "ANYBUILD_DATA_DIR" in failed.value.hint
        assert list((data / "tmp").iterdir()) == []  # scratch and mounts cleaned up
    finally:
        subprocess.run(["umount", str(data)], check=True)
