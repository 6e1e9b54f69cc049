"""Two `anybuild build` processes sharing one data directory at once; W5, a no-change rebuild, timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from anybuild.builder.cache import StepStore
from tests.builder.test_cache_build import DOCKERFILE, make_context

EPOCH = "1700000000"


def anybuild(*args: str, data: Path, registry: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", "from anybuild.cli.main import main; main()", "build", *args, "--json",
            "--registry-mirror", registry.host, "--insecure-registry", registry.host]
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(data), "SOURCE_DATE_EPOCH": EPOCH}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    result: dict[str, Any] = json.loads(out)["images"][0]  # the one image of an anybuild.result/v1
    assert result["ok"], result
    return result


def test_cache_two_processes_share_one_data_dir(tmp_path: Path, base_images: Any, registry: Any) -> None:
    data = tmp_path / "data"
    contexts = [make_context(tmp_path / f"ctx{i}", DOCKERFILE.replace("hello", f"proc-{i}")) for i in range(2)]
    procs = [anybuild(str(c), "--output", f"oci:{tmp_path / f'out{i}'}", data=data, registry=registry)
             for i, c in enumerate(contexts)]
    first = [finish(p) for p in procs]
    assert first[0]["digest"] != first[1]["digest"]
    store = StepStore(data / "cache" / "steps")
    assert store.verify() == []
    assert len(store.entries()) == 14
    procs = [anybuild(str(c), data=data, registry=registry) for c in contexts]  # again, at once: all hits
    again = [finish(p) for p in procs]
    assert [r["cache_hits"] for r in again] == [7, 7]
    assert [r["digest"] for r in again] == [r["digest"] for r in first]


def test_cache_cli_flags_cache_to_from_and_no_cache(tmp_path: Path, base_images: Any, registry: Any) -> None:
    context = make_context(tmp_path / "ctx", "FROM busybox:1.36\nRUN head -c 64 /dev/urandom > /r\nCOPY a.txt /\n")
    repo = f"{registry.host}/cache/cli"
    first = finish(anybuild(str(context), "--cache-to", repo, data=tmp_path / "a", registry=registry))
    second = finish(anybuild(str(context), "--cache-from", repo, data=tmp_path / "b", registry=registry))
    assert [s["cached"] for s in second["steps"]] == [False, True, True]  # FROM, RUN, COPY
    assert second["digest"] == first["digest"]
    third = finish(anybuild(str(context), "--cache-from", repo, "--no-cache", data=tmp_path / "b", registry=registry))
    assert third["cache_hits"] == 0
    assert third["digest"] != first["digest"]  # the RUN really ran again


@pytest.mark.slow
def test_cache_w5_no_change_rebuild_hits_every_step(tmp_path: Path, base_images: Any, registry: Any) -> None:
    """W5-like: Debian, a RUN writing 3,000 files, a COPY of 2,000 files; build and push, then again.
    (Its speed is measured by bench/builders.py, not asserted here.)"""
    base_images.debian()
    context = tmp_path / "ctx"
    (context / "src").mkdir(parents=True)
    for i in range(2000):
        (context / "src" / f"f{i}.txt").write_text(f"file {i}\n")
    (context / "Dockerfile").write_text(
        "FROM debian:bookworm\n"
        "RUN mkdir /many && cd /many && for i in $(seq 1 3000); do echo $i > f$i; done\n"
        "COPY src /app/src\nCMD [\"ls\"]\n")
    args = (str(context), "-t", f"{registry.host}/cache/w5:1", "--push")
    first = finish(anybuild(*args, data=tmp_path / "data", registry=registry))
    second = finish(anybuild(*args, data=tmp_path / "data", registry=registry))
    assert second["cache_hits"] == 3
    assert [s["cached"] for s in second["steps"]] == [False, True, True, True]  # FROM, RUN, COPY, CMD
    assert second["digest"] == first["digest"]
