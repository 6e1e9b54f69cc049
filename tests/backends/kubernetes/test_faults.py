"""What goes wrong in a cluster, each ending in a clear error (or a recovery) and nothing left behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from anybuild.backends.base import ListSink
from anybuild.backends.kubernetes.client import ClusterError
from anybuild.backends.kubernetes.settings import DEFAULT_IMAGE
from anybuild.errors import BuildFailed
from tests.backends.images import manifest_digest
from tests.backends.kubernetes.conftest import backend_for, push_request
from tests.harness.bases import BaseImages
from tests.harness.kubeapi.server import FakeCluster
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow]


def _build(fake: FakeCluster, registry: Registry, context: Path, home: Path, tag: str, **settings: object) -> ListSink:
    sink = ListSink()
    with backend_for(fake, home, **settings) as backend:
        backend.build(push_request(context, registry, tag), sink)
    return sink


def test_forbidden_exec_sends_the_context_through_the_registry(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.denied.add(("create", "pods", "exec"))
    sink = _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:artifact")
    assert any("pods/exec is not allowed here" in line for line in sink.lines)
    assert any("context pushed as an OCI artifact" in line for line in sink.lines)
    assert not any(path.endswith("/exec") for _, path in fake_cluster.requests or ())
    assert manifest_digest(registry.url, "acme/frontend", "artifact")
    assert fake_cluster.leftovers() == {}


def test_exec_dropped_mid_upload_is_retried_into_the_same_pod(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    (frontend / "public" / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: several frames
    fake_cluster.faults.drop_exec_after = 300_000
    sink = _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:retried")
    assert any("context upload to" in line and "retrying (1/2)" in line for line in sink.lines), sink.lines
    execs = [path for method, path in fake_cluster.requests or () if path.split("?")[0].endswith("/exec")]
    assert len(execs) == 2
    assert len({path.split("/pods/")[1].split("/")[0] for path in execs}) == 1, "the retry went to another pod"
    assert manifest_digest(registry.url, "acme/frontend", "retried")
    assert fake_cluster.leftovers() == {}


def test_v4_only_server_gets_the_context_checked_by_size_and_sha256(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.exec_protocols = ("v4.channel.k8s.io",)
    sink = _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:v4")
    assert any("v4.channel.k8s.io" in line for line in sink.lines)
    assert manifest_digest(registry.url, "acme/frontend", "v4")
    assert fake_cluster.leftovers() == {}


def test_watch_answered_410_gone_lists_again_and_goes_on(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.gone_first_watch = True
    _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:gone")
    assert not fake_cluster.faults.gone_first_watch, "the 410 was never served"
    assert manifest_digest(registry.url, "acme/frontend", "gone")
    assert fake_cluster.leftovers() == {}


def test_image_pull_backoff_fails_within_seconds_quoting_the_event(
    fake_cluster: FakeCluster, registry: Registry, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.unpullable_images.add(DEFAULT_IMAGE)
    began = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:pull")
    assert time.monotonic() - began < 15
    assert "ImagePullBackOff" in caught.value.message or "ErrImagePull" in caught.value.message
    assert f'Failed to pull image "{DEFAULT_IMAGE}"' in caught.value.message
    assert "executor image" in caught.value.hint
    assert fake_cluster.leftovers() == {}


def test_unschedulable_fails_after_the_grace_period_with_the_scheduler_message(
    fake_cluster: FakeCluster, registry: Registry, frontend: Path, tmp_path: Path
) -> None:
    sink = ListSink()
    with backend_for(fake_cluster, tmp_path / "home") as backend, pytest.raises(ClusterError) as caught:
        backend.build(push_request(frontend, registry, "frontend:arm", platform="linux/arm64"), sink)
    assert "didn't match Pod's node affinity/selector" in caught.value.message
    assert "no node can run the build" in caught.value.message
    assert "node_selector" in caught.value.hint
    assert fake_cluster.leftovers() == {}


def test_restricted_pod_security_is_named_with_what_to_change(
    fake_cluster: FakeCluster, registry: Registry, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.pod_security["builds"] = "restricted"
    with pytest.raises(ClusterError) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:pss")
    assert 'PodSecurity level "restricted"' in caught.value.message
    assert "Kaniko runs as root" in caught.value.message
    assert "pod-security.kubernetes.io/enforce=baseline" in caught.value.hint
    assert fake_cluster.leftovers() == {}


def test_quota_exhausted_is_named(fake_cluster: FakeCluster, registry: Registry, frontend: Path,
                                  tmp_path: Path) -> None:
    fake_cluster.faults.quota_exceeded = True
    with pytest.raises(ClusterError) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:quota")
    assert "exceeded quota" in caught.value.message and "quota" in caught.value.hint
    assert fake_cluster.leftovers() == {}


def test_oom_killed_executor_is_reported_with_the_limit_to_raise(
    fake_cluster: FakeCluster, registry: Registry, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.oom = True
    with pytest.raises(BuildFailed) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:oom")
    assert "OOMKilled" in caught.value.message
    assert "resources.limits.memory" in caught.value.hint
    assert fake_cluster.leftovers() == {}


def test_missing_permission_is_reported_with_the_rule_before_anything_is_created(
    fake_cluster: FakeCluster, registry: Registry, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.denied.add(("create", "jobs", ""))
    with pytest.raises(ClusterError) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:rbac")
    assert "may not create jobs (batch)" in caught.value.message
    assert 'apiGroups: ["batch"]' in caught.value.hint and 'verbs: ["create"]' in caught.value.hint
    assert not [p for m, p in fake_cluster.requests or () if m == "POST" and "selfsubjectaccessreviews" not in p]
    assert fake_cluster.leftovers() == {}


def test_log_stream_dropped_mid_build_loses_and_repeats_no_line(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    fake_cluster.faults.drop_logs_after = 2
    sink = _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:logs")
    assert fake_cluster.faults.drop_logs_after is None, "the stream was never dropped"
    [(_pod, logged)] = [(pod, lines) for pod, name, lines in fake_cluster.controller.finished_logs if name == "kaniko"]
    relayed = [line for line in sink.lines if not line.startswith("anybuild:")]
    assert len(logged) > 3
    assert relayed == logged
    assert fake_cluster.leftovers() == {}


def test_executor_failure_is_a_build_failure_with_kanikos_error(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    dockerfile = frontend / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("USER 10001:10001", "RUN exit 3\nUSER 10001:10001"))
    with pytest.raises(BuildFailed) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:broken")
    assert "error building image" in caught.value.message
    assert caught.value.diagnosis and caught.value.diagnosis["exit_code"] == 1
    assert any("exit" in line or "error" in line for line in caught.value.diagnosis["log_tail"])
    assert fake_cluster.leftovers() == {}


def test_deadline_exceeded_is_reported_with_the_setting_to_raise(
    fake_cluster: FakeCluster, registry: Registry, frontend: Path, tmp_path: Path
) -> None:
    import threading

    fake_cluster.faults.hold_executor = threading.Event()  # Kaniko never finishes
    with pytest.raises(BuildFailed) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:slow", deadline_seconds=2)
    assert "ran past its deadline" in caught.value.message
    assert "deadline_seconds" in caught.value.hint
    assert fake_cluster.leftovers() == {}


def test_a_digest_the_registry_does_not_serve_is_an_integrity_error(
    fake_cluster: FakeCluster, registry: Registry, base_images: BaseImages, frontend: Path, tmp_path: Path
) -> None:
    from anybuild.errors import IntegrityError
    from tests.harness.kubeapi.simulation import ExecutorExit, ExecutorRun

    honest = fake_cluster.controller.executor

    def lying(run: ExecutorRun) -> ExecutorExit:
        honest(run)
        return ExecutorExit(exit_code=0, message="sha256:" + "0" * 64, reason="Completed")

    fake_cluster.controller.executor = lying
    with pytest.raises(IntegrityError) as caught:
        _build(fake_cluster, registry, frontend, tmp_path / "home", "frontend:lie")
    assert "sha256:" + "0" * 64 in caught.value.message and "in the registry" in caught.value.message
    assert fake_cluster.leftovers() == {}
