"""Fixtures: the fake cluster (tests/harness/kubeapi) with anybuild's built-in builder standing in for Kaniko."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest
from anybuild.backends.kubernetes.backend import KubernetesBackend
from anybuild.backends.kubernetes.settings import KubernetesSettings
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Manifest
from anybuild.oci.platform import Platform
from anybuild.registry.client import RegistryClient
from anybuild.registry.reference import Reference
from tests.builder.imagetree import file_tree, unpack_to
from tests.harness.kubeapi.kaniko import BuiltinStandInForKaniko
from tests.harness.kubeapi.server import FakeCluster, running_fake_cluster
from tests.harness.registry import Registry

FRONTEND = Path(__file__).resolve().parents[3] / "examples" / "moltbook" / "frontend"


@pytest.fixture(scope="session")
def kaniko_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One built-in builder data directory per worker, shared by the stand-in's builds (its cache)."""
    return tmp_path_factory.mktemp("stand-in-kaniko")


@pytest.fixture
def stand_in(kaniko_data: Path) -> BuiltinStandInForKaniko:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the built-in builder standing in for Kaniko needs root for its RUN sandbox here")
    return BuiltinStandInForKaniko(kaniko_data)


@pytest.fixture
def fake_cluster(tmp_path: Path, stand_in: BuiltinStandInForKaniko) -> Iterator[FakeCluster]:
    with running_fake_cluster(tmp_path / "fake", stand_in) as fake:
        yield fake


@pytest.fixture
def frontend(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FRONTEND, tmp_path / "frontend"))


def kube_env(fake: FakeCluster, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {"KUBECONFIG": str(fake.kubeconfig), "HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def backend_for(fake: FakeCluster, home: Path, **settings: object) -> KubernetesBackend:
    values: dict[str, object] = {"unschedulable_grace_seconds": 2}
    values.update(settings)
    return KubernetesBackend(KubernetesSettings(**values), env=kube_env(fake, home),  # type: ignore[arg-type]
                             sleep=lambda _s: None)


def push_request(context: Path, registry: Registry, tag: str, **extra: object) -> BuildRequest:
    values: dict[str, object] = {
        "context": context, "dockerfile": context / "Dockerfile", "tags": (f"{registry.host}/acme/{tag}",),
        "push": True, "insecure_registries": (registry.host,), "registry_mirrors": {"docker.io": (registry.host,)},
    }
    values.update(extra)
    return BuildRequest(**values)  # type: ignore[arg-type]


def image_tree(reference: str, work: Path, insecure: str) -> dict[str, tuple[object, ...]]:
    """The file tree of an image in the registry, pulled and unpacked."""
    store = LayoutStore.create(work / "store")
    with RegistryClient(insecure=frozenset({insecure})) as client:
        pulled = client.pull_image(Reference.parse(reference), store, platform=Platform.parse("linux/amd64"))
    manifest = Manifest.from_json(store.read_blob(pulled.descriptor))
    unpack_to(store, manifest, work / "root")
    return file_tree(work / "root")
