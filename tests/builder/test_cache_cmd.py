"""`anybuild cache ls|prune` on a data directory filled by real builds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from anybuild.builder.build import sweep_store
from anybuild.builder.cache import StepStore
from anybuild.builder.stack import LayerSnapshots
from anybuild.cli.cache_cmd import parse_size
from anybuild.cli.main import main
from anybuild.errors import UsageError
from anybuild.oci import LayoutStore, MediaType
from tests.builder.test_cache_build import DOCKERFILE, build, make_context


@pytest.fixture
def busybox(base_images: Any) -> dict[str, str]:
    return {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, _ = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("512MB", 512 * 1024**2), ("10g", 10 * 1024**3), ("1.5GiB", 3 * 1024**3 // 2), ("2 kb", 2048)],
    ids=["bytes", "mb", "g", "gib", "space"],
)
def test_parse_size_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "5XB", "-1"], ids=["empty", "word", "unit", "negative"])
def test_parse_size_malformed_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_cache_cmd_ls_and_prune_least_recently_used(tmp_path: Path, busybox: dict[str, str],
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("ANYBUILD_DATA_DIR", str(data))
    old = make_context(tmp_path / "old", DOCKERFILE.replace("hello", "old"))
    new = make_context(tmp_path / "new", DOCKERFILE.replace("hello", "new"))
    build(old, busybox, data)
    build(new, busybox, data)
    code, out = cli(["cache", "ls", "--json"], capsys)
    assert code == 0
    listing = json.loads(out)
    assert len(listing["entries"]) == 14
    assert listing["storage"] == StepStore(data / "cache" / "steps").usage() > 0
    snapshots = LayerSnapshots(data / "snapshots").usage()
    assert listing["snapshots"] == {"count": snapshots.count, "storage": snapshots.size}
    if os.geteuid() == 0:  # stacked overlay snapshots need root; without it the walk keeps none
        assert snapshots.count > 0
    newest = listing["entries"][:7]  # most recently used first: the second build's steps
    steps = [e["created_by"] for e in newest]
    assert "ENV GREETING=new" in steps and "ENV GREETING=old" not in steps
    new_size = sum(e["size"] for e in newest)

    code, out = cli(["cache", "prune", "--keep-storage", str(new_size), "--json"], capsys)
    assert code == 0
    assert json.loads(out)["entries"] > 0
    assert StepStore(data / "cache" / "steps").verify() == []
    assert build(new, busybox, data)[0].cache_hits == 7  # the recently used image survived
    assert build(old, busybox, data)[0].cache_hits < 7  # the old one lost its layers

    code, out = cli(["cache", "prune", "--all"], capsys)
    assert code == 0 and "removed" in out
    code, out = cli(["cache", "ls", "--json"], capsys)
    assert json.loads(out)["entries"] == [] and json.loads(out)["storage"] == 0
    assert json.loads(out)["snapshots"] == {"count": 0, "storage": 0}
    assert build(new, busybox, data)[0].cache_hits == 0  # base layers are unpacked again from their blobs


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []


def test_build_leaves_only_indexed_blobs_and_prune_all_frees_the_rest(tmp_path: Path, busybox: dict[str, str],
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("ANYBUILD_DATA_DIR", str(data))
    context = make_context(tmp_path / "ctx")
    build(context, busybox, data)
    store = LayoutStore.open(data / "store")
    # the built image and the busybox copied from its layout are named by nothing: swept after the build
    assert _files(data / "store" / "blobs") == sorted(d.hex for d in store.reachable()) == []
    assert _files(data / "cache" / "steps" / "blobs")  # the step cache kept its own link to each layer
    assert build(context, busybox, data)[0].cache_hits == 7

    snapshots = LayerSnapshots(data / "snapshots")
    orphan = store.write_bytes(b'{"orphan": true}', MediaType.OCI_CONFIG)
    with snapshots.in_use():  # a build is running: its blobs are named by nothing yet
        assert sweep_store(store, snapshots) is None
        code, out = cli(["cache", "prune", "--all", "--json"], capsys)
        assert code == 0 and json.loads(out)["store_blobs"] is None
        assert store.has_blob(orphan.digest)

    code, out = cli(["cache", "prune", "--all", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["store_blobs"] == 1 and json.loads(out)["store_freed"] == orphan.size
    assert _files(data / "store" / "blobs") == _files(data / "cache" / "steps" / "blobs") == []
