"""Trimming the data directory when its filesystem runs short of free space (real builds, real statvfs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from anybuild.builder.cache import StepStore
from anybuild.builder.stack import LayerSnapshots
from anybuild.builder.trim import MIN_FREE_ENV, MinFree, min_free_space, trim_data_dir
from anybuild.errors import UsageError
from tests.builder.test_cache_build import build, make_context

GiB = 1024**3


@pytest.fixture
def busybox(base_images: Any) -> dict[str, str]:
    return {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}


@pytest.mark.parametrize(
    ("value", "total", "wanted"),
    [("", 50 * GiB, 5 * GiB), ("", 500 * GiB, 10 * GiB), ("20GB", 50 * GiB, 20 * GiB), ("15%", 500 * GiB, 75 * GiB),
     ("512MB", 1 * GiB, 512 * 1024**2)],
    ids=["default-10%", "default-capped", "size", "percent-uncapped", "small"],
)
def test_min_free_space_from_env(value: str, total: int, wanted: int) -> None:
    minimum = min_free_space({MIN_FREE_ENV: value} if value else {})
    assert minimum is not None and minimum.of(total) == wanted


@pytest.mark.parametrize("value", ["0", "0%", "0GB"])
def test_min_free_space_zero_turns_trimming_off(value: str) -> None:
    assert min_free_space({MIN_FREE_ENV: value}) is None


@pytest.mark.parametrize("value", ["lots", "150%", "-5%", "5XB"])
def test_min_free_space_malformed_names_the_variable(value: str) -> None:
    with pytest.raises(UsageError, match=MIN_FREE_ENV):
        min_free_space({MIN_FREE_ENV: value})


def test_trim_with_enough_free_space_removes_nothing(tmp_path: Path, busybox: dict[str, str]) -> None:
    data = tmp_path / "data"
    build(make_context(tmp_path / "ctx"), busybox, data)
    entries = len(StepStore(data / "cache" / "steps").entries())
    assert trim_data_dir(data, MinFree(size=1)) is None
    assert len(StepStore(data / "cache" / "steps").entries()) == entries > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="layer snapshots are stacked with overlay mounts, which need root")
def test_build_on_a_full_filesystem_trims_snapshots_then_steps(tmp_path: Path, busybox: dict[str, str]) -> None:
    data = tmp_path / "data"
    context = make_context(tmp_path / "ctx")
    build(context, busybox, data)
    assert LayerSnapshots(data / "snapshots").usage().count > 0

    # a minimum no filesystem can meet stands for a disk that is full
    result, sink = build(context, busybox, data, env={MIN_FREE_ENV: "100%"})

    assert result.cache_hits == 7  # the build itself used the cache; the trim came after it
    line = next(line for line in sink.lines if MIN_FREE_ENV in line)
    assert "removed" in line and "cached step(s)" in line
    assert LayerSnapshots(data / "snapshots").usage().count == 0
    left = StepStore(data / "cache" / "steps").entries()
    assert [e.entry.layer for e in left] == [None] * len(left)  # only steps without a layer (ENV, CMD) stay
    again, _ = build(context, busybox, data)
    assert again.cache_hits < 7 and again.digest == result.digest  # its RUNs and COPYs ran again, same image


def test_build_refuses_a_malformed_minimum_before_building(tmp_path: Path, busybox: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=MIN_FREE_ENV):
        build(make_context(tmp_path / "ctx"), busybox, tmp_path / "data", env={MIN_FREE_ENV: "lots"})
    assert not (tmp_path / "data" / "store").exists()
