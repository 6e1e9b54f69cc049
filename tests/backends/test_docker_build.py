"""Real builds through the docker backend against the test dockerd, pushed to the test registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.backends.docker import DockerBackend, DockerMode
from anybuild.config import BackendName
from anybuild.errors import BuildFailed
from anybuild.process import SubprocessRunner
from tests.backends.images import hello_project, manifest_digest
from tests.harness.bases import BaseImages
from tests.harness.dockerd import Dockerd
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _backend(dockerd: Dockerd, mode: DockerMode) -> DockerBackend:
    return DockerBackend(
        mode=mode,
        cli="/usr/bin/docker",
        host=dockerd.host,
        network="host",  # the test daemon runs with --bridge=none
        runner=SubprocessRunner(),
        env=dict(dockerd.env),
        timeout=300,
    )


@pytest.mark.parametrize("mode", [DockerMode.BUILDKIT, DockerMode.CLASSIC], ids=str)
def test_docker_build_busybox_pushed_digest_matches_registry(
    tmp_path: Path, dockerd: Dockerd, registry: Registry, base_images: BaseImages, mode: DockerMode
) -> None:
    project = hello_project(tmp_path / "hello")
    tag = f"{registry.host}/test/hello:docker-{mode}"
    sink = ListSink()
    result = _backend(dockerd, mode).build(
        BuildRequest(context=project, dockerfile=project / "Dockerfile", tags=(tag,), push=True), sink
    )
    assert result.backend is BackendName.DOCKER
    assert result.sandbox == str(mode)
    assert result.digest == manifest_digest(registry.url, "test/hello", f"docker-{mode}")
    assert result.references == (tag,)
    assert sink.lines  # output was streamed
    run = dockerd.docker("run", "--rm", "--network", "host", tag)
    assert run.stdout == "hello from anybuild\n"


def test_docker_build_failing_run_build_failed_with_step(
    tmp_path: Path, dockerd: Dockerd, base_images: BaseImages
) -> None:
    project = hello_project(tmp_path / "bad", run="echo about to fail && false")
    with pytest.raises(BuildFailed) as info:
        _backend(dockerd, DockerMode.BUILDKIT).build(
            BuildRequest(context=project, dockerfile=project / "Dockerfile", tags=("bad:1",)), ListSink()
        )
    assert "echo about to fail && false" in info.value.message
    assert "exit code: 1" in info.value.message
    assert info.value.diagnosis is not None
    assert info.value.diagnosis["backend"] == "docker"
