"""The docker backend's invocation per mode, against golden files, and its mode choice from facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, SecretSpec
from anybuild.backends.docker import DockerMode, docker_invocation, docker_mode
from anybuild.errors import BackendError
from tests.backends.golden import check_golden
from tests.backends.scenarios import facts

REQUEST = BuildRequest(
    context=Path("/src/moltbook/api"),
    dockerfile=Path("/src/moltbook/api/Dockerfile"),
    tags=("127.0.0.1:5000/acme/api:dev", "127.0.0.1:5000/acme/api:sha-1234567"),
    build_args={"NODE_ENV": "production"},
    target="runtime",
    platform="linux/amd64",
    push=True,
)


@pytest.mark.parametrize("mode", list(DockerMode), ids=str)
def test_docker_invocation_push_matches_golden(mode: DockerMode) -> None:
    invocation = docker_invocation(REQUEST, mode=mode, cli="/usr/bin/docker", host="unix:///run/d.sock")
    check_golden(f"docker-{mode}-push", invocation.render())


def test_docker_invocation_buildx_secret_no_cache_load_matches_golden() -> None:
    request = BuildRequest(
        context=Path("/src/app"),
        dockerfile=Path("/src/app/Dockerfile"),
        tags=("app:dev",),
        secrets=(SecretSpec(id="npmrc", src=Path("/home/u/.npmrc")), SecretSpec(id="token", env="NPM_TOKEN")),
        no_cache=True,
        load=True,
    )
    check_golden("docker-buildx-secret-load", docker_invocation(request, mode=DockerMode.BUILDX).render())


def test_docker_invocation_classic_with_secret_refused_as_environmental() -> None:
    request = BuildRequest(context=Path("/c"), dockerfile=Path("/c/Dockerfile"), secrets=(SecretSpec(id="s", env="X"),))
    with pytest.raises(BackendError, match="cannot pass build secrets") as info:
        docker_invocation(request, mode=DockerMode.CLASSIC)
    assert info.value.environmental


@pytest.mark.parametrize("mode", [DockerMode.BUILDKIT, DockerMode.CLASSIC])
def test_docker_build_refuses_several_platforms_as_environmental(mode: DockerMode) -> None:
    request = BuildRequest(context=Path("/c"), dockerfile=Path("/c/Dockerfile"), platform="linux/amd64,linux/arm64")
    with pytest.raises(BackendError, match="one image, not an index of several platforms") as info:
        docker_invocation(request, mode=mode)
    assert info.value.environmental and "--backend builtin" in (info.value.hint or "")
    buildx = docker_invocation(request, mode=DockerMode.BUILDX)  # a buildx builder may make the index
    assert any("linux/amd64,linux/arm64" in command.argv for command in buildx.commands)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"docker_buildx": "0.12.1"}, (DockerMode.BUILDX, "/usr/local/bin/docker")),
        ({}, (DockerMode.BUILDKIT, "/usr/bin/docker")),
        ({"docker_clients": ("/usr/local/bin/docker=28.2.2",)}, (DockerMode.CLASSIC, "/usr/local/bin/docker")),
    ],
    ids=["buildx", "old-client-buildkit", "classic"],
)
def test_docker_mode_chosen_from_facts(changes: dict[str, object], expected: tuple[DockerMode, str]) -> None:
    assert docker_mode(facts(**changes)) == expected  # type: ignore[arg-type]
