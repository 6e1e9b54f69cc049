"""examples/moltbook's frontend built for real through docker and through buildah, pushed, and pulled back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.backends.buildah import BuildahBackend, BuildahSettings, Isolation, StorageDriver
from anybuild.backends.docker import DockerBackend, DockerMode
from anybuild.process import SubprocessRunner
from tests.backends.images import manifest_digest
from tests.harness.bases import BaseImages
from tests.harness.buildah import Buildah
from tests.harness.dockerd import Dockerd
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.root]

FRONTEND = Path(__file__).resolve().parents[2] / "examples" / "moltbook" / "frontend"


@pytest.fixture
def frontend(tmp_path: Path) -> Path:
    if not (FRONTEND / "Dockerfile").is_file():
        pytest.skip(f"{FRONTEND} is missing")
    return Path(shutil.copytree(FRONTEND, tmp_path / "frontend"))


def _request(context: Path, registry: Registry, tag: str) -> BuildRequest:
    return BuildRequest(
        context=context,
        dockerfile=context / "Dockerfile",
        tags=(f"{registry.host}/acme/moltbook-frontend:{tag}",),
        push=True,
        insecure_registries=(registry.host,),
        registry_mirrors={"docker.io": (registry.host,)},
    )


def test_moltbook_frontend_docker_pushed_pulled_back_and_served(
    frontend: Path, dockerd: Dockerd, registry: Registry, base_images: BaseImages
) -> None:
    backend = DockerBackend(
        mode=DockerMode.BUILDKIT, cli="/usr/bin/docker", host=dockerd.host, network="host", env=dict(dockerd.env)
    )
    result = backend.build(_request(frontend, registry, "docker"), ListSink())
    ref = result.references[0]
    assert result.digest == manifest_digest(registry.url, "acme/moltbook-frontend", "docker")
    dockerd.docker("rmi", ref)
    dockerd.docker("pull", ref)
    pulled = dockerd.docker("run", "--rm", "--network", "host", ref, "sh", "-c", "id -u; ls /srv/www")
    assert pulled.stdout.split() == ["10001", "app.js", "index.html", "style.css"]


def test_moltbook_frontend_buildah_pushed_and_pulled_back(
    frontend: Path, buildah: Buildah, registry: Registry, base_images: BaseImages
) -> None:
    settings = BuildahSettings(
        driver=StorageDriver.VFS,
        isolation=Isolation.CHROOT,
        root=buildah.root,
        runroot=buildah.runroot,
        signature_policy=buildah.policy,
    )
    backend = BuildahBackend(settings=settings, runner=SubprocessRunner(), env=dict(buildah.env), timeout=300)
    result = backend.build(_request(frontend, registry, "buildah"), ListSink())
    ref = result.references[0]
    assert result.digest == manifest_digest(registry.url, "acme/moltbook-frontend", "buildah")
    buildah.run("rmi", "--force", ref)
    buildah.run("pull", "--tls-verify=false", ref)
    inspect = buildah.run("inspect", "--format", "{{.OCIv1.Config.User}} {{.OCIv1.Config.WorkingDir}}", ref)
    assert inspect.stdout.split() == ["10001:10001", "/srv/www"]
