"""The step cache in real builds on an offline busybox base: hits, misses, secrets, concurrency."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from anybuild.backends.base import BuildRequest, BuildResult, ListSink, SecretSpec
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.cache import StepStore

EPOCH = "1700000000"
SECRET = "cache-s3cret-v4lue-never-on-disk"

DOCKERFILE = """\
FROM busybox:1.36
ENV GREETING=hello
RUN echo "$GREETING" > /greeting && mkdir -p /app
COPY a.txt /app/
COPY b.txt /app/
ARG FLAVOUR=plain
RUN echo "$FLAVOUR" > /flavour
RUN cat /app/a.txt /app/b.txt > /both
CMD ["cat", "/both"]
"""


@pytest.fixture
def busybox(base_images: Any) -> dict[str, str]:
    return {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}


def build(context: Path, named: dict[str, str], data: Path, **request: Any) -> tuple[BuildResult, ListSink]:
    env_extra = request.pop("env", {})
    cache: dict[str, Any] = {k: request.pop(k) for k in ("cache_from", "cache_to") if k in request}
    sink = ListSink()
    environment = BuildEnvironment(
        env={**os.environ, "ANYBUILD_DATA_DIR": str(data), "SOURCE_DATE_EPOCH": EPOCH, **env_extra},
        named_images=named, **cache,
    )
    result = build_image(BuildRequest(context=context, dockerfile=context / "Dockerfile", **request), sink,
                         environment)
    return result, sink


def make_context(path: Path, dockerfile: str = DOCKERFILE) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "Dockerfile").write_text(dockerfile)
    (path / "a.txt").write_text("alpha\n")
    (path / "b.txt").write_text("beta\n")
    return path


def cached(result: BuildResult) -> list[tuple[str, bool]]:
    """(instruction keyword, cached) of every step after FROM."""
    return [(s.name.split("] ", 1)[1].split(" ", 1)[0], s.cached) for s in result.steps if "] FROM " not in s.name]


def test_cache_rebuild_no_change_hits_every_step_same_digest(tmp_path: Path, busybox: dict[str, str]) -> None:
    context = make_context(tmp_path / "ctx")
    first, first_sink = build(context, busybox, tmp_path / "data")
    second, sink = build(context, busybox, tmp_path / "data")
    assert first.cache_hits == 0
    assert [c for _, c in cached(second)] == [True] * 7  # every step but the ARG (which has no result)
    assert second.cache_hits == 7
    assert second.digest == first.digest
    assert any(line.endswith(" CACHED") for line in sink.lines)
    # each step that ran says so with its time, as BuildKit's plain progress does; a cached one does not
    done = [line for line in first_sink.lines if re.fullmatch(r"#\[0 \d/8\] DONE \d+\.\ds", line)]
    assert len(done) == 7, first_sink.lines
    assert not [line for line in sink.lines if " DONE " in line]


def test_cache_rebuild_no_change_same_image_without_source_date_epoch(tmp_path: Path,
                                                                      busybox: dict[str, str]) -> None:
    """As with BuildKit, the image is dated by its last step: a fully cached rebuild an hour later is
    the same image (nothing new to push), while a changed step gives a new date and digest."""
    context = make_context(tmp_path / "ctx")
    now = [1_800_000_000.0]
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["ANYBUILD_DATA_DIR"] = str(tmp_path / "data")

    def run() -> tuple[BuildResult, dict[str, Any]]:
        environment = BuildEnvironment(env=env, named_images=busybox, clock=lambda: now[0])
        out = tmp_path / f"out-{now[0]:.0f}"
        result = build_image(BuildRequest(context=context, dockerfile=context / "Dockerfile", output=f"oci:{out}"),
                             ListSink(), environment)
        assert result.digest is not None
        store = out / "blobs" / "sha256"
        manifest = json.loads((store / result.digest.removeprefix("sha256:")).read_bytes())
        config = json.loads((store / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
        return result, config

    first, first_config = run()
    now[0] += 3600
    again, again_config = run()
    assert again_config == first_config
    now[0] += 3600
    (context / "b.txt").write_text("beta, changed\n")
    changed, changed_config = run()

    assert again.cache_hits == 7
    assert again.digest == first.digest
    assert first_config["created"] == first_config["history"][-1]["created"] == "2027-01-15T08:00:00Z"
    assert changed.digest != first.digest
    assert changed_config["created"] == changed_config["history"][-1]["created"] == "2027-01-15T10:00:00Z"


def test_cache_changed_context_file_misses_from_its_copy(tmp_path: Path, busybox: dict[str, str]) -> None:
    context = make_context(tmp_path / "ctx")
    first, _ = build(context, busybox, tmp_path / "data")
    (context / "b.txt").write_text("beta, changed\n")
    second, _ = build(context, busybox, tmp_path / "data")
    assert cached(second) == [("ENV", True), ("RUN", True), ("COPY", True), ("COPY", False), ("RUN", False),
                              ("RUN", False), ("CMD", False)]
    assert second.digest != first.digest
    (context / "b.txt").write_text("beta\n")  # back: every step hits again, same image
    third, _ = build(context, busybox, tmp_path / "data")
    assert third.cache_hits == 7
    assert third.digest == first.digest


def test_cache_changed_build_arg_misses_the_run_using_it(tmp_path: Path, busybox: dict[str, str]) -> None:
    context = make_context(tmp_path / "ctx")
    build(context, busybox, tmp_path / "data")
    second, _ = build(context, busybox, tmp_path / "data", build_args={"FLAVOUR": "spicy"})
    assert cached(second) == [("ENV", True), ("RUN", True), ("COPY", True), ("COPY", True), ("RUN", False),
                              ("RUN", False), ("CMD", False)]
    third, _ = build(context, busybox, tmp_path / "data", build_args={"FLAVOUR": "spicy"})
    assert third.cache_hits == 7


def test_cache_no_cache_runs_every_step(tmp_path: Path, busybox: dict[str, str]) -> None:
    context = make_context(tmp_path / "ctx")
    first, _ = build(context, busybox, tmp_path / "data")
    second, _ = build(context, busybox, tmp_path / "data", no_cache=True)
    assert second.cache_hits == 0
    assert second.digest == first.digest


def test_cache_secret_value_never_under_cache_dir(tmp_path: Path, busybox: dict[str, str]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    dockerfile = ("FROM busybox:1.36\n"
                  "RUN --mount=type=secret,id=pw cat /run/secrets/pw | wc -c > /length\n"
                  "RUN echo done > /done\n")
    context = make_context(tmp_path / "ctx", dockerfile)
    first, _ = build(context, busybox, tmp_path / "data", secrets=(SecretSpec(id="pw", src=secret),))
    assert first.cache_hits == 0
    secret.write_text(SECRET + "-rotated")  # a secret's value is not part of any key (as in BuildKit)
    second, _ = build(context, busybox, tmp_path / "data", secrets=(SecretSpec(id="pw", src=secret),))
    assert second.cache_hits == 2
    found = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert found == []


def test_cache_parallel_builds_share_one_store_consistently(tmp_path: Path, busybox: dict[str, str]) -> None:
    contexts = [make_context(tmp_path / f"ctx{i}", DOCKERFILE.replace("hello", f"hello-{i}")) for i in range(2)]
    results: dict[int, BuildResult] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i], _ = build(contexts[i], busybox, tmp_path / "data")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results[0].digest != results[1].digest
    store = StepStore(tmp_path / "data" / "cache" / "steps")
    assert store.verify() == []
    assert len(store.entries()) == 14
    again = [build(contexts[i], busybox, tmp_path / "data")[0] for i in range(2)]
    assert [r.cache_hits for r in again] == [7, 7]
    assert [r.digest for r in again] == [results[0].digest, results[1].digest]


MULTI = """\
FROM busybox:1.36 AS build
COPY a.txt /src/
RUN mkdir /out && tr a-z A-Z < /src/a.txt > /out/A.txt
FROM busybox:1.36
COPY b.txt /
COPY --from=build /out /out
RUN cat /out/A.txt /b.txt > /both
"""


def test_cache_multi_stage_hit_stage_materialized_for_copy_from(tmp_path: Path, busybox: dict[str, str]) -> None:
    context = make_context(tmp_path / "ctx", MULTI)
    build(context, busybox, tmp_path / "data")
    (context / "b.txt").write_text("beta, changed\n")  # the final stage misses; the build stage all hits
    second, _ = build(context, busybox, tmp_path / "data")
    assert [s.cached for s in second.steps if "] FROM " not in s.name] == [True, True, False, False, False]
    fresh, _ = build(context, busybox, tmp_path / "fresh", no_cache=True)  # the same image without a cache
    assert second.digest == fresh.digest
    (context / "a.txt").write_text("alpha, changed\n")  # the build stage's RUN output changes: COPY --from misses
    third, _ = build(context, busybox, tmp_path / "data")
    assert [s.cached for s in third.steps if "] FROM " not in s.name] == [False, False, True, False, False]
    assert third.digest == build(context, busybox, tmp_path / "fresh", no_cache=True)[0].digest
