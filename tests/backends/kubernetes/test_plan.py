"""The planner's choice of the cluster, what a plan prints of it, and what the backend refuses up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.backends.catalog import availability_checks
from anybuild.backends.kubernetes.backend import KubernetesBackend
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import BackendError
from anybuild.planner import plan_build
from tests.harness.registry import Registry
from tests.test_e2e_moltbook import _repository


def _facts(values: dict[str, object]) -> Facts:
    return Facts.from_values(values, evidence="test")  # type: ignore[arg-type]


def test_planner_takes_the_cluster_when_no_local_backend_can_build() -> None:
    facts = _facts({FactKey.KUBE_CREDENTIALS: "in-cluster", FactKey.KUBE_NAMESPACE: "devpods"})
    plan = plan_build(facts, order=(BackendName.DOCKER, BackendName.KUBERNETES), checks=availability_checks())
    assert plan.first is not None and plan.first.backend is BackendName.KUBERNETES
    assert "in-cluster credentials, namespace devpods" in plan.first.reason
    assert plan.exclusion(BackendName.DOCKER) is not None


def test_planner_leaves_the_cluster_out_when_it_may_not_create_jobs() -> None:
    facts = _facts({FactKey.KUBE_CREDENTIALS: "kubeconfig", FactKey.KUBE_CAN_CREATE_JOBS: False})
    plan = plan_build(facts, order=(BackendName.KUBERNETES,), checks=availability_checks())
    excluded = plan.exclusion(BackendName.KUBERNETES)
    assert not plan.candidates and excluded is not None and "may not create Jobs" in excluded.reason


@pytest.mark.parametrize(("extra", "words"), [
    ({"push": False}, "builds only to push"),
    ({"output": "oci:/tmp/x"}, "cannot --load or --output"),
])
def test_what_kaniko_cannot_do_is_refused_before_connecting(tmp_path: Path, extra: dict[str, object],
                                                            words: str) -> None:
    values: dict[str, object] = {"context": tmp_path, "dockerfile": tmp_path / "Dockerfile",
                                 "tags": ("registry.local/acme/x:1",), "push": True}
    values.update(extra)
    backend = KubernetesBackend(env={"HOME": str(tmp_path)}, connector=lambda _s: pytest.fail("connected"))
    with pytest.raises(BackendError) as caught:
        backend.build(BuildRequest(**values), ListSink())  # type: ignore[arg-type]
    assert words in caught.value.message and caught.value.environmental


def test_plan_show_manifests_prints_valid_jobs_for_every_image(registry: Registry, tmp_path: Path) -> None:
    repo = _repository(tmp_path, registry)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "KUBECONFIG": str(tmp_path / "none")}
    env.pop("GITHUB_ACTIONS", None)
    env.pop("GITHUB_REF", None)
    done = subprocess.run([sys.executable, "-m", "anybuild", "plan", "--backend", "kubernetes", "--show-manifests",
                           "--json"], cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["kubernetes"]
    kinds = [m["kind"] for m in found["manifests"]]
    assert kinds == ["Secret", "Job", "Job"]
    for manifest in found["manifests"]:
        kubernetes_validate.validate(manifest, "1.34", strict=True)
    destinations = {arg for m in found["manifests"][1:] for arg in
                    m["spec"]["template"]["spec"]["containers"][0]["args"] if arg.startswith("--destination=")}
    assert f"--destination={registry.host}/acme/moltbook-api:1.2.3" in destinations
    assert f"--destination={registry.host}/acme/moltbook-frontend:latest" in destinations
    assert found["manifests"][0]["data"] == {".dockerconfigjson": "***"}


def test_build_with_the_cluster_and_no_credentials_says_how_to_get_them(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    done = subprocess.run([sys.executable, "-m", "anybuild", "build", str(context), "-t", "registry.local/x:1",
                           "--push", "--backend", "kubernetes", "--namespace", "builds"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    printed = done.stdout + done.stderr  # the summary (stdout) ends with the error and its hint
    assert "no Kubernetes credentials" in printed and "hint: set KUBECONFIG" in printed
    assert "Traceback" not in printed
