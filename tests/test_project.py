"""Project builds: tags from git, one plan per image, fallback, diagnosis, parallel outcomes.

Backends and the diagnosis are injected through ProjectSeams (the seam), so the
orchestration is tested without a real builder; real builds are in tests/builder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from anybuild.backends.base import BuildRequest, BuildResult, ListSink, LogSink, Verdict
from anybuild.config import BackendName, Config, parse_config
from anybuild.environment.facts import Facts
from anybuild.errors import BackendError, BuildFailed, ConfigError, UsageError
from anybuild.gitstate import GitState
from anybuild.planner import Plan, plan_build
from anybuild.project import ProjectOptions, ProjectSeams, build_project, select_images
from anybuild.result import load_result_schema

SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32


def _config(tmp_path: Path) -> Config:
    for name in ("api", "frontend"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text("FROM busybox\n")
    return parse_config(
        {
            "project": {"name": "moltbook"},
            "build": {"backends": ["docker", "buildah"]},
            "tags": {"rules": ["type=ref,event=branch", "type=semver,pattern={{version}}", "type=sha"]},
            "registries": {"docker.io": {"mirrors": ["127.0.0.1:5000"]}, "127.0.0.1:5000": {"insecure": True}},
            "images": {
                "api": {"repository": "127.0.0.1:5000/acme/api", "args": {"NODE_ENV": "production"}},
                "frontend": {"repository": "127.0.0.1:5000/acme/frontend"},
            },
        },
        file=tmp_path / "anybuild.toml",
        root=tmp_path,
    )


TAG_PUSH = GitState(event="push", ref="refs/tags/v1.2.3", sha=SHA, tags=("v1.2.3",),
                    commit_time=datetime(2026, 11, 1, tzinfo=UTC), default_branch="main")
BRANCH_PUSH = GitState(event="push", ref="refs/heads/main", sha=SHA, branch="main",
                       commit_time=datetime(2026, 11, 1, tzinfo=UTC), default_branch="main")


@dataclass
class Recording:
    """A backend that records what it was asked, and fails as told."""

    name: BackendName
    fail: dict[str, Exception] = field(default_factory=dict)
    requests: list[BuildRequest] = field(default_factory=list)
    barrier: threading.Barrier | None = None

    def available(self, facts: Facts) -> Verdict:
        return Verdict(ok=True, reason="test")

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        self.requests.append(request)
        if self.barrier is not None:
            self.barrier.wait()
        image = request.context.name
        sink.line(f"building {image}")
        if image in self.fail:
            sink.line("npm ERR! code ENOTEMPTY")
            raise self.fail[image]
        return BuildResult(backend=self.name, digest=DIGEST, references=request.tags, size=10, layers=1,
                           started=1.0, finished=2.0)


@dataclass
class Finding:
    title: str
    other_backend_helps: bool

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "test-rule", "title": self.title, "remedy": "do the fix"}


def _seams(backends: dict[BackendName, Recording], *, helps: bool = False,
           sinks: dict[str, ListSink] | None = None, clock: Any = None) -> ProjectSeams:
    def plan(_spec: Any) -> Plan:
        checks = {name: (lambda facts, b=b: b.available(facts)) for name, b in backends.items()}
        return plan_build(Facts(()), order=tuple(backends), checks=checks)

    def diagnose(lines: Sequence[str]) -> list[Finding]:
        return [Finding("nested overlay", helps)] if any("ENOTEMPTY" in line for line in lines) else []

    collected = sinks if sinks is not None else {}

    def sink_for(name: str) -> LogSink:
        return collected.setdefault(name, ListSink())

    return ProjectSeams(plan=plan, backends=lambda name: backends[name], diagnose=diagnose, sink_for=sink_for,
                        clock=clock or (lambda: 1_764_300_000.0))


def test_build_project_tag_push_tags_labels_and_mirrors(tmp_path: Path) -> None:
    config = _config(tmp_path)
    docker = Recording(BackendName.DOCKER)
    result = build_project(config, config.images, ProjectOptions(push=True, jobs=2), git=TAG_PUSH,
                           seams=_seams({BackendName.DOCKER: docker}))
    assert result.ok
    api = next(r for r in docker.requests if r.context.name == "api")
    assert set(api.tags) == {"127.0.0.1:5000/acme/api:1.2.3", "127.0.0.1:5000/acme/api:latest",
                             "127.0.0.1:5000/acme/api:sha-0123456"}
    assert api.labels["org.opencontainers.image.version"] == "1.2.3"
    assert api.labels["org.opencontainers.image.revision"] == SHA
    assert api.build_args == {"NODE_ENV": "production"}
    assert api.registry_mirrors == {"docker.io": ("127.0.0.1:5000",)}
    assert api.insecure_registries == ("127.0.0.1:5000",)
    assert api.push
    outcome = result.images[0]
    assert outcome.backend == "docker"
    assert all(ref.endswith("@" + DIGEST) for ref in outcome.references)
    jsonschema.validate(result.to_dict(), load_result_schema())


def test_build_project_images_build_concurrently(tmp_path: Path) -> None:
    config = _config(tmp_path)
    docker = Recording(BackendName.DOCKER, barrier=threading.Barrier(2, timeout=10))
    result = build_project(config, config.images, ProjectOptions(jobs=2), git=BRANCH_PUSH,
                           seams=_seams({BackendName.DOCKER: docker}, clock=time.time))
    assert result.ok
    assert result.overlapping() == [("api", "frontend")]


def test_build_project_failure_has_diagnosis_and_others_still_build(tmp_path: Path) -> None:
    config = _config(tmp_path)
    docker = Recording(BackendName.DOCKER, fail={"api": BuildFailed("RUN npm ci exited 1")})
    buildah = Recording(BackendName.BUILDAH)
    result = build_project(config, config.images, ProjectOptions(jobs=2), git=BRANCH_PUSH,
                           seams=_seams({BackendName.DOCKER: docker, BackendName.BUILDAH: buildah}))
    assert not result.ok
    api, frontend = result.images
    assert not api.ok
    assert api.diagnosis is not None and api.diagnosis["title"] == "nested overlay"
    assert api.error is not None and api.error["hint"] == "do the fix"
    assert buildah.requests == []  # the diagnosis says another backend would not help: no fallback
    assert frontend.ok
    jsonschema.validate(result.to_dict(), load_result_schema())


def test_build_project_environmental_failure_falls_back(tmp_path: Path) -> None:
    config = _config(tmp_path)
    docker = Recording(BackendName.DOCKER, fail={"api": BackendError("daemon gone", environmental=True)})
    buildah = Recording(BackendName.BUILDAH)
    sinks: dict[str, ListSink] = {}
    result = build_project(config, config.images[:1], ProjectOptions(), git=BRANCH_PUSH,
                           seams=_seams({BackendName.DOCKER: docker, BackendName.BUILDAH: buildah}, sinks=sinks))
    (api,) = result.images
    assert api.ok and api.backend == "buildah"
    assert api.skipped_backends == ({"backend": "docker", "reason": "daemon gone"},)
    assert any("falling back to buildah" in line for line in sinks["api"].lines)


def test_build_project_push_without_any_tag_is_an_error(tmp_path: Path) -> None:
    config = _config(tmp_path)
    detached = GitState(event="push", ref="", sha="")
    docker = Recording(BackendName.DOCKER)
    result = build_project(config, config.images[:1], ProjectOptions(push=True), git=detached,
                           seams=_seams({BackendName.DOCKER: docker}))
    (api,) = result.images
    assert not api.ok
    assert api.error is not None and "no tag" in api.error["message"]
    assert docker.requests == []


def test_select_images_by_name_all_and_unknown(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert [s.name for s in select_images(config, [], all_images=True)] == ["api", "frontend"]
    assert [s.name for s in select_images(config, ["frontend"], all_images=False)] == ["frontend"]
    with pytest.raises(ConfigError, match="no image named 'fronted'"):
        select_images(config, ["fronted"], all_images=False)
    with pytest.raises(UsageError):
        select_images(config, ["api"], all_images=True)
    with pytest.raises(UsageError):
        select_images(config, [], all_images=False)
