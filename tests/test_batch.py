"""Building several images: parallelism, independence of failures, fail-fast, order."""

from __future__ import annotations

import threading
from pathlib import Path

import jsonschema
import pytest

from anybuild.batch import build_images, default_jobs
from anybuild.config import ImageSpec
from anybuild.errors import BuildFailed
from anybuild.result import ImageOutcome, load_result_schema


def _spec(name: str) -> ImageSpec:
    return ImageSpec(name=name, context=Path("/ctx"), dockerfile=Path("/ctx/Dockerfile"), repository=f"x/{name}")


def _ok(spec: ImageSpec) -> ImageOutcome:
    return ImageOutcome(
        name=spec.name, ok=True, backend="builtin", digest="sha256:" + "0" * 64,
        references=(f"{spec.repository}:dev",), started=1.0, finished=2.0,
    )


def test_build_images_runs_in_parallel_up_to_jobs() -> None:
    barrier = threading.Barrier(2, timeout=10)

    def build(spec: ImageSpec) -> ImageOutcome:
        barrier.wait()  # only passes when both builds run at the same time
        return _ok(spec)

    result = build_images([_spec("api"), _spec("frontend")], build, jobs=2)
    assert result.ok
    assert [i.name for i in result.images] == ["api", "frontend"]


def test_build_images_one_failure_leaves_others_built() -> None:
    def build(spec: ImageSpec) -> ImageOutcome:
        if spec.name == "api":
            raise BuildFailed("RUN npm ci exited 1", hint="fix the command", diagnosis={"rule": "run-failed"})
        return _ok(spec)

    result = build_images([_spec("api"), _spec("frontend")], build, jobs=2)
    assert not result.ok
    api, frontend = result.images
    assert not api.ok
    assert api.error is not None and api.error["kind"] == "build"
    assert api.diagnosis == {"rule": "run-failed"}
    assert frontend.ok


def test_build_images_fail_fast_cancels_not_started() -> None:
    built: list[str] = []

    def build(spec: ImageSpec) -> ImageOutcome:
        built.append(spec.name)
        if spec.name == "a":
            raise BuildFailed("boom")
        return _ok(spec)

    result = build_images([_spec("a"), _spec("b"), _spec("c")], build, jobs=1, fail_fast=True)
    assert built == ["a"]
    assert [i.ok for i in result.images] == [False, False, False]
    assert result.images[1].error is not None and result.images[1].error["kind"] == "cancelled"


def test_build_images_bug_propagates() -> None:
    def build(spec: ImageSpec) -> ImageOutcome:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        build_images([_spec("a")], build, jobs=1)


def test_run_result_validates_against_published_schema() -> None:
    def build(spec: ImageSpec) -> ImageOutcome:
        if spec.name == "bad":
            raise BuildFailed("failed")
        return _ok(spec)

    result = build_images([_spec("good"), _spec("bad")], build, jobs=2)
    jsonschema.validate(result.to_dict(), load_result_schema())


def test_run_result_schema_rejects_success_without_backend() -> None:
    broken = {
        "schema": "anybuild.result/v1", "ok": True, "jobs": 1, "started": "2026-01-01T00:00:00.000Z",
        "finished": "2026-01-01T00:00:01.000Z", "seconds": 1.0,
        "images": [_ok(_spec("a")).to_dict() | {"backend": None}],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, load_result_schema())


def test_run_result_overlapping_reports_concurrent_pairs() -> None:
    a = ImageOutcome(name="a", ok=True, backend="builtin", started=0.0, finished=5.0)
    b = ImageOutcome(name="b", ok=True, backend="builtin", started=1.0, finished=2.0)
    c = ImageOutcome(name="c", ok=True, backend="builtin", started=6.0, finished=7.0)
    from anybuild.result import RunResult

    assert RunResult(images=(a, b, c), started=0.0, finished=7.0).overlapping() == [("a", "b")]


@pytest.mark.parametrize(("images", "cpus", "expected"), [(1, 8, 1), (2, 2, 2), (5, 2, 2), (5, 8, 5), (3, 1, 2)])
def test_default_jobs_caps_by_images_and_cores(images: int, cpus: int, expected: int) -> None:
    assert default_jobs(images, cpus) == expected
