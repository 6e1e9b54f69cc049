"""Fallback on this machine: the nested-overlay daemon hands over to buildah; a failing RUN stops at once."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

from anybuild.backends.base import Backend, BuildRequest, ListSink
from anybuild.backends.buildah import BuildahBackend, BuildahSettings, Isolation, StorageDriver
from anybuild.backends.catalog import availability_checks
from anybuild.backends.docker import DockerBackend, DockerMode
from anybuild.backends.fallback import Diagnose, build_with_fallback
from anybuild.config import BackendName
from anybuild.environment.context import ProbeContext
from anybuild.environment.probe import collect_facts
from anybuild.errors import BuildFailed
from anybuild.planner import plan_build
from anybuild.process import SubprocessRunner
from tests.backends.images import hello_project, manifest_digest
from tests.harness.bases import BaseImages
from tests.harness.buildah import Buildah
from tests.harness.dockerd import Dockerd
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.root]

ORDER = (BackendName.DOCKER, BackendName.BUILDAH)


def _buildah(buildah: Buildah) -> BuildahBackend:
    settings = BuildahSettings(
        driver=StorageDriver.VFS,
        isolation=Isolation.CHROOT,
        root=buildah.root,
        runroot=buildah.runroot,
        signature_policy=buildah.policy,
    )
    return BuildahBackend(settings=settings, runner=SubprocessRunner(), env=dict(buildah.env), timeout=300)


def _real_diagnose() -> Diagnose | None:
    try:
        found = getattr(importlib.import_module("anybuild.diagnose"), "diagnose_log", None)
    except ImportError:
        return None
    return found if callable(found) else None


def _request(project: Path, registry: Registry, tag: str, push: bool = True) -> BuildRequest:
    host = registry.host
    return BuildRequest(
        context=project,
        dockerfile=project / "Dockerfile",
        tags=(f"{host}/test/fallback:{tag}",),
        push=push,
        insecure_registries=(host,),
        registry_mirrors={"docker.io": (host,)},
    )


def test_fallback_nested_overlay_daemon_builds_on_buildah_and_says_why(
    tmp_path: Path,
    nested_overlay: Path,
    overlay_dockerd_failure: str,
    buildah: Buildah,
    registry: Registry,
    base_images: BaseImages,
) -> None:
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text(json.dumps({"data-root": str(nested_overlay / "docker"), "storage-driver": "overlay2"}))
    log = tmp_path / "dockerd.log"
    log.write_text(overlay_dockerd_failure)
    ctx = ProbeContext(
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/docker.sock"},
        docker_daemon_config=daemon_json,
        docker_log=log,
    )
    facts = collect_facts(ctx, budget=30.0)  # the facts, not their speed, under a loaded CI
    plan = plan_build(facts, order=ORDER, checks=availability_checks())
    assert [c.backend for c in plan.candidates] == [BackendName.BUILDAH]
    used: list[BackendName] = []

    def factory(name: BackendName) -> Backend:
        used.append(name)
        assert name is BackendName.BUILDAH
        return _buildah(buildah)

    sink = ListSink()
    outcome = build_with_fallback(
        plan,
        _request(hello_project(tmp_path / "p"), registry, "nested"),
        sink,
        backends=factory,
        diagnose=_real_diagnose(),
    )
    assert used == [BackendName.BUILDAH]
    assert outcome.result.backend is BackendName.BUILDAH
    assert outcome.result.digest == manifest_digest(registry.url, "test/fallback", "nested")
    why = [line for line in sink.lines if line.startswith("anybuild: not using docker")]
    assert why and "overlay" in why[0], sink.lines[:5]
    assert any("evidence:" in line and "overlay" in line for line in sink.lines)
    assert outcome.skipped[0].backend is BackendName.DOCKER


def test_fallback_failing_run_fails_once_on_first_backend(
    tmp_path: Path, dockerd: Dockerd, buildah: Buildah, registry: Registry, base_images: BaseImages
) -> None:
    facts = collect_facts(ProbeContext(env={**os.environ, "DOCKER_HOST": dockerd.host}),
                          budget=30.0)  # the facts, not their speed, under a loaded CI
    plan = plan_build(facts, order=ORDER, checks=availability_checks())
    assert [c.backend for c in plan.candidates][:1] == [BackendName.DOCKER], plan.to_dict()
    calls: list[BackendName] = []

    def factory(name: BackendName) -> Backend:
        calls.append(name)
        if name is BackendName.DOCKER:
            return DockerBackend(
                mode=DockerMode.BUILDKIT,
                cli="/usr/bin/docker",
                host=dockerd.host,
                network="host",
                env=dict(dockerd.env),
                timeout=300,
            )
        return _buildah(buildah)

    project = hello_project(tmp_path / "bad", run="echo failing on purpose && exit 7")
    sink = ListSink()
    with pytest.raises(BuildFailed, match="exit code: 7") as info:
        build_with_fallback(
            plan, _request(project, registry, "bad", push=False), sink, backends=factory, diagnose=_real_diagnose()
        )
    assert calls == [BackendName.DOCKER]
    assert not any("falling back" in line for line in sink.lines)
    assert info.value.diagnosis is not None
