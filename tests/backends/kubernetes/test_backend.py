"""A Kaniko Job per image in the fake cluster: the uploaded context really built (by the stand-in), pushed to the
real registry, the digest reported and checked, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.backends.base import ListSink
from anybuild.backends.builtin import BuiltinBackend
from anybuild.dockerfile.dockerignore import DockerIgnore, find_ignore_file, select_context_files
from tests.backends.images import manifest_digest
from tests.backends.kubernetes.conftest import backend_for, image_tree, push_request
from tests.harness.bases import BaseImages
from tests.harness.kubeapi.server import FakeCluster
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow]


def test_job_builds_the_uploaded_context_and_the_registry_serves_the_digest(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    (frontend / ".dockerignore").write_text("notes.txt\n")
    (frontend / "notes.txt").write_text("not for the image\n")
    sink = ListSink()
    with backend_for(fake_cluster, tmp_path / "home", namespace="builds") as backend:
        result = backend.build(push_request(frontend, registry, "frontend:k8s"), sink)

    assert result.digest == manifest_digest(registry.url, "acme/frontend", "k8s")
    assert result.references == (f"{registry.host}/acme/frontend:k8s",)
    assert fake_cluster.leftovers() == {}, "a Job, pod or Secret was left behind"
    [pod] = list((fake_cluster.controller.root / "pods").iterdir())
    uploaded = pod / "volumes" / "workspace" / "build" / "context"
    selected = select_context_files(frontend, DockerIgnore.from_file(find_ignore_file(frontend)))
    assert sorted(str(p.relative_to(uploaded)) for p in uploaded.rglob("*") if not p.is_dir()) == selected
    assert "notes.txt" not in selected
    assert any("context uploaded over exec" in line for line in sink.lines)
    assert any("v5.channel.k8s.io" in line for line in sink.lines)
    assert any("built-in builder stands in for Kaniko" in line for line in sink.lines), sink.lines

    local = BuiltinBackend().build(push_request(frontend, registry, "frontend:local"), ListSink())
    assert local.digest == manifest_digest(registry.url, "acme/frontend", "local")
    in_cluster = image_tree(f"{registry.host}/acme/frontend:k8s", tmp_path / "k8s", registry.host)
    built_here = image_tree(f"{registry.host}/acme/frontend:local", tmp_path / "local", registry.host)
    assert in_cluster == built_here
    assert "srv/www/index.html" in in_cluster


def test_two_platforms_run_one_job_per_architecture_and_push_the_index(
    fake_cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    fake_cluster.faults.node_arches = ("amd64", "arm64")
    context = tmp_path / "multi"
    context.mkdir()
    (context / "hello.txt").write_text("hello\n")
    (context / "Dockerfile").write_text('FROM scratch\nCOPY hello.txt /hello.txt\nCMD ["/hello.txt"]\n')
    sink = ListSink()
    with backend_for(fake_cluster, tmp_path / "home") as backend:
        result = backend.build(push_request(context, registry, "multi:1", platform="linux/amd64,linux/arm64"), sink)
    import httpx

    from tests.backends.images import MANIFEST_TYPES

    response = httpx.get(f"{registry.url}/v2/acme/multi/manifests/1", headers={"Accept": MANIFEST_TYPES})
    index = response.json()
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert result.digest == response.headers["Docker-Content-Digest"]
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    jobs = [m for m in fake_cluster.created if m.get("kind") == "Job"]
    selectors = sorted(j["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"] for j in jobs)
    assert selectors == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        manifest = httpx.get(f"{registry.url}/v2/acme/multi/manifests/1-linux-{arch}",
                             headers={"Accept": MANIFEST_TYPES}).json()
        config = httpx.get(f"{registry.url}/v2/acme/multi/blobs/{manifest['config']['digest']}").json()
        assert config["architecture"] == arch, "the Job of that platform did not build for it"
        assert any(line.startswith(f"[linux/{arch}] ") for line in sink.lines)
    assert fake_cluster.leftovers() == {}
