"""Opt-in: a real build in a real cluster. Set ANYBUILD_E2E_KUBECONFIG (a kubeconfig) and ANYBUILD_E2E_REGISTRY
(a repository to push to, e.g. ghcr.io/you/anybuild-e2e, with credentials in your Docker config); optionally
ANYBUILD_E2E_NAMESPACE. See docs/backends/kubernetes.md."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.backends.kubernetes.backend import KubernetesBackend
from anybuild.backends.kubernetes.client import api_path
from anybuild.backends.kubernetes.settings import KubernetesSettings
from anybuild.backends.kubernetes.spec import run_selector
from anybuild.registry.client import RegistryClient
from anybuild.registry.credentials import CredentialResolver
from anybuild.registry.reference import Reference

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KUBECONFIG = os.environ.get("ANYBUILD_E2E_KUBECONFIG")
REGISTRY = os.environ.get("ANYBUILD_E2E_REGISTRY")


@pytest.mark.skipif(not KUBECONFIG or not REGISTRY,
                    reason="ANYBUILD_E2E_KUBECONFIG and ANYBUILD_E2E_REGISTRY are not set (a real cluster and "
                           "a repository to push to)")
def test_real_cluster_builds_pushes_and_leaves_nothing(tmp_path: Path) -> None:
    assert KUBECONFIG and REGISTRY
    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text(f"built by anybuild's kubernetes backend at {time.time()}\n")
    (context / "Dockerfile").write_text("FROM busybox:1.36\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n")
    env = {**os.environ, "KUBECONFIG": KUBECONFIG}
    tag = f"{REGISTRY}:e2e-{int(time.time())}"
    settings = KubernetesSettings(namespace=os.environ.get("ANYBUILD_E2E_NAMESPACE") or None)
    sink = ListSink()
    with KubernetesBackend(settings, env=env) as backend:
        result = backend.build(BuildRequest(context=context, dockerfile=context / "Dockerfile", tags=(tag,),
                                            push=True), sink)
        cluster = backend.cluster()
        left = {kind: cluster.request("GET", api_path(kind, cluster.namespace),
                                      query=[("labelSelector", run_selector(backend.run_id))]).get("items")
                for kind in ("jobs", "secrets")}
    assert left == {"jobs": [], "secrets": []}, left
    resolver = CredentialResolver(env=env, home=Path.home())
    with RegistryClient(credentials=resolver.resolve) as client:
        assert str(client.get_manifest(Reference.parse(tag)).digest) == result.digest
    assert any("hello.txt" in line or "RUN cat" in line for line in sink.lines)
