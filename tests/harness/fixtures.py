"""Session-scoped pytest fixtures starting real components on 127.0.0.1 (see
tests/harness/README.md). Under xdist every worker gets its own set; only the
debootstrap cache is shared (file lock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.bases import BaseImages, cache_dir
from tests.harness.buildah import Buildah, running_buildah
from tests.harness.dockerd import Dockerd, running_dockerd
from tests.harness.overlay import mounted_overlay, overlay_dockerd_failure_log
from tests.harness.registry import Registry, running_registry
from tests.harness.tlsca import make_test_ca

__all__ = [
    "auth_registry",
    "base_images",
    "buildah",
    "dockerd",
    "nested_overlay",
    "overlay_dockerd_failure",
    "registry",
    "tls_registry",
]


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Plain-HTTP Distribution registry; also the docker.io mirror for dockerd and buildah."""
    with running_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Registry with htpasswd Basic auth (.username, .password)."""
    with running_registry(tmp_path_factory.mktemp("auth-registry"), auth=True) as running:
        yield running


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Registry over HTTPS with a certificate from a test CA (.ca_cert)."""
    work = tmp_path_factory.mktemp("tls-registry")
    ca = make_test_ca(work / "ca")
    with running_registry(work / "registry", tls=ca) as running:
        yield running


@pytest.fixture(scope="session")
def base_images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> BaseImages:
    """busybox pushed now; debian and node on first .debian() / .node() call."""
    return BaseImages(mirror_host=registry.host, work=tmp_path_factory.mktemp("base-images"), cache=cache_dir())


@pytest.fixture(scope="session")
def dockerd(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """Private dockerd using `registry` as its docker.io mirror."""
    with running_dockerd(tmp_path_factory.mktemp("dockerd"), mirror_host=registry.host) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def buildah(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    """buildah with private storage (vfs) and `registry` as its docker.io mirror."""
    with running_buildah(tmp_path_factory.mktemp("buildah"), mirror_host=registry.host) as instance:
        yield instance


@pytest.fixture(scope="session")
def nested_overlay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Merged directory of an overlay mount, unmounted at session end."""
    with mounted_overlay(tmp_path_factory.mktemp("overlay")) as merged:
        yield merged


@pytest.fixture(scope="session")
def overlay_dockerd_failure(nested_overlay: Path) -> str:
    """Log of dockerd --storage-driver overlay2 run with its data root inside `nested_overlay`."""
    return overlay_dockerd_failure_log(nested_overlay)
