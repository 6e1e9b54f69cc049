"""Through the command line, against the fake cluster: examples/moltbook built as parallel Kaniko Jobs, the
registry password never printed, Ctrl-C and SIGKILL (then `anybuild cluster gc`), plan --show-manifests,
doctor --online."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from anybuild.result import load_result_schema
from tests.backends.images import manifest_digest
from tests.harness.bases import BaseImages
from tests.harness.kubeapi.server import FakeCluster
from tests.harness.registry import Registry
from tests.test_e2e_moltbook import _repository

pytestmark = [pytest.mark.slow]


def _env(fake: FakeCluster, tmp_path: Path, registry: Registry | None = None) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(fake.kubeconfig), "HOME": str(home),
           "ANYBUILD_DATA_DIR": str(tmp_path / "data"), "DOCKER_CONFIG": str(home / ".docker")}
    for name in ("GITHUB_ACTIONS", "GITHUB_REF", "ANYBUILD_REGISTRY_AUTH", "ANYBUILD_REGISTRY_PASSWORD"):
        env.pop(name, None)
    if registry is not None and registry.password:
        (home / ".docker").mkdir(exist_ok=True)
        token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    return env


def _anybuild(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anybuild", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def _frontend_args(frontend: Path, push_to: Registry, mirror: Registry, tag: str) -> list[str]:
    return ["build", str(frontend), "-t", f"{push_to.host}/acme/frontend:{tag}", "--push", "--backend", "kubernetes",
            "--insecure-registry", push_to.host, "--insecure-registry", mirror.host,
            "--registry-mirror", f"docker.io={mirror.host}", "--progress", "plain"]


def test_build_all_push_runs_both_images_as_parallel_jobs(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, tmp_path: Path
) -> None:
    base_images.node()
    repo = _repository(tmp_path, registry)
    done = _anybuild(repo, _env(fake_cluster, tmp_path), "build", "--all", "--push", "--backend", "kubernetes",
                     "--json", "--progress", "plain")
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    jsonschema.validate(result, load_result_schema())
    images = {image["name"]: image for image in result["images"]}
    assert result["jobs"] == 4
    for name in ("api", "frontend"):
        image = images[name]
        assert image["backend"] == "kubernetes"
        assert manifest_digest(registry.url, f"acme/moltbook-{name}", "1.2.3") == image["digest"]
        assert any(line.startswith(f"[{name}] INFO[") for line in done.stderr.splitlines()), f"no [{name}] lines"
    api, frontend = images["api"]["timing"], images["frontend"]["timing"]
    assert api["started"] < frontend["finished"] and frontend["started"] < api["finished"]
    jobs = [m for m in fake_cluster.created if m.get("kind") == "Job"]
    assert len(jobs) == 2 and len({j["metadata"]["labels"]["anybuild.dev/run"] for j in jobs}) == 1
    for manifest in fake_cluster.created:
        if manifest.get("kind") in ("Job", "Secret"):
            kubernetes_validate.validate(manifest, "1.30", strict=True)
    assert fake_cluster.leftovers() == {}


def test_registry_password_is_in_no_line_error_manifest_or_result(
    fake_cluster: FakeCluster, registry: Registry, auth_registry: Registry, base_images: BaseImages,
    frontend: Path, tmp_path: Path
) -> None:
    env = _env(fake_cluster, tmp_path, auth_registry)
    password = auth_registry.password
    assert password
    done = _anybuild(tmp_path, env, *_frontend_args(frontend, auth_registry, registry, "secret"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    [secret] = [m for m in fake_cluster.created if m.get("kind") == "Secret"]
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert auth_registry.host in config["auths"], "the Secret does not carry the registry's credentials"
    assert fake_cluster.leftovers() == {}, "the Secret was not deleted"
    printed = done.stdout + done.stderr
    assert password not in printed
    assert base64.b64encode(password.encode()).decode() not in printed
    # A failing build's error and diagnosis: no password either.
    (frontend / "Dockerfile").write_text("FROM busybox:1.36\nRUN exit 7\n")
    failed = _anybuild(tmp_path, env, *_frontend_args(frontend, auth_registry, registry, "failed"), "--json")
    assert failed.returncode == 1, failed.stderr[-3000:]
    [image] = json.loads(failed.stdout)["images"]
    assert image["diagnosis"]["rule"] == "run-nonzero", image["diagnosis"]
    assert image["skipped_backends"] == [], "a Dockerfile error fell back to another backend"
    assert "exit status 7" in failed.stderr
    assert password not in failed.stdout + failed.stderr
    assert fake_cluster.leftovers() == {}
    # The manifests a plan prints.
    repo = _repository(tmp_path / "plan", registry)
    config_file = repo / "anybuild.toml"
    config_file.write_text(config_file.read_text().replace(f"{registry.host}/acme/", f"{auth_registry.host}/acme/"))
    plan = _anybuild(repo, env, "plan", "--backend", "kubernetes", "--show-manifests")
    assert plan.returncode == 0, plan.stderr
    assert password not in plan.stdout + plan.stderr
    assert '".dockerconfigjson": "***"' in plan.stdout


def _wait_for(predicate: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _executor_running(fake: FakeCluster) -> bool:
    return any(run.main and run.main[0].started for run in list(fake.controller.pods.values()))


def test_ctrl_c_during_the_build_deletes_the_jobs_and_the_secret(
    fake_cluster: FakeCluster, registry: Registry, auth_registry: Registry, base_images: BaseImages,
    frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.hold_executor = threading.Event()  # Kaniko "runs" until the test ends
    process = subprocess.Popen([sys.executable, "-m", "anybuild",
                                *_frontend_args(frontend, auth_registry, registry, "interrupted")],
                               cwd=tmp_path, env=_env(fake_cluster, tmp_path, auth_registry), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _executor_running(fake_cluster))
        assert fake_cluster.objects("secrets") and fake_cluster.objects("jobs")
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert fake_cluster.leftovers() == {}


def test_client_killed_then_cluster_gc_removes_what_it_left(
    fake_cluster: FakeCluster, registry: Registry, auth_registry: Registry, base_images: BaseImages,
    frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.hold_executor = threading.Event()
    env = _env(fake_cluster, tmp_path, auth_registry)
    process = subprocess.Popen([sys.executable, "-m", "anybuild",
                                *_frontend_args(frontend, auth_registry, registry, "killed")],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _executor_running(fake_cluster))
    finally:
        process.kill()
        process.wait()
    left = fake_cluster.leftovers()
    assert left.get("jobs") and left.get("secrets") and left.get("pods")
    young = _anybuild(tmp_path, env, "cluster", "gc", "--json")
    assert young.returncode == 0, young.stderr
    assert json.loads(young.stdout)["objects"] == [], "gc removed what is younger than its threshold"
    done = _anybuild(tmp_path, env, "cluster", "gc", "--older-than", "0s")
    assert done.returncode == 0, done.stderr
    assert "deleted job anybuild-" in done.stdout and "deleted secret anybuild-registry-" in done.stdout
    assert fake_cluster.leftovers() == {}


def test_doctor_online_reports_context_namespace_version_and_permissions(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    fake_cluster.faults.denied.update({("create", "pods", "exec"), ("delete", "secrets", "")})
    done = _anybuild(tmp_path, _env(fake_cluster, tmp_path), "doctor", "--online", "--json")
    assert done.returncode in (0, 3), done.stderr
    cluster = json.loads(done.stdout)["cluster"]
    assert cluster["namespace"] == "builds" and cluster["server_version"].startswith("v1.36")
    assert "context fake at https://127.0.0.1:" in cluster["where"]
    assert not cluster["ok"] and cluster["denied"] == ["delete secrets", "create pods/exec"]
    assert 'resources: ["secrets"]' in cluster["fix"] and "registry" in cluster["note"]
    human = _anybuild(tmp_path, _env(fake_cluster, tmp_path), "doctor", "--online")
    assert "may not: delete secrets, create pods/exec" in human.stdout
