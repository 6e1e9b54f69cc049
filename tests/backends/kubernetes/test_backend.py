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
