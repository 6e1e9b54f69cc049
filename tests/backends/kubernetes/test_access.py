"""Cluster credentials as kubectl finds them: kubeconfig lists and contexts, exec credential plugins, the
in-cluster service account of a devpod; and what is said when there are none or they are refused."""

from __future__ import annotations

import base64
import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from anybuild.backends.kubernetes.backend import KubernetesBackend
from anybuild.backends.kubernetes.client import ClusterError
from anybuild.backends.kubernetes.settings import KubernetesSettings
from tests.harness.kubeapi.server import FakeCluster, running_fake_cluster
from tests.harness.kubeapi.simulation import ExecutorExit, ExecutorRun


def _never(run: ExecutorRun) -> ExecutorExit:
    raise AssertionError("no build runs in these tests")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with running_fake_cluster(tmp_path / "fake", _never) as fake:
        yield fake


def _config(fake: FakeCluster) -> dict[str, object]:
    loaded = json.loads(fake.kubeconfig.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _check(env: dict[str, str], tmp_path: Path, **settings: object) -> str:
    backend = KubernetesBackend(KubernetesSettings(**settings), env=env,  # type: ignore[arg-type]
                                service_account=tmp_path / "no-service-account")
    with backend:
        checked = backend.check()
    assert checked.server_version.startswith("v1.36")
    return f"{checked.where} / {checked.namespace}"


def test_kubeconfig_list_and_a_named_context(cluster: FakeCluster, tmp_path: Path) -> None:
    config = _config(cluster)
    contexts = config["contexts"]
    assert isinstance(contexts, list)
    second = {"apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
              "clusters": [{"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:9"}}],
              "users": [{"name": "nobody", "user": {"token": "x"}}],
              "contexts": [{"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "nobody"}},
                           {"name": "staging", "context": {"cluster": "fake", "user": "builder",
                                                           "namespace": "staging"}}]}
    other = tmp_path / "second.yaml"
    other.write_text(json.dumps(second))
    env = {"KUBECONFIG": f"{other}:{cluster.kubeconfig}", "HOME": str(tmp_path)}
    where = _check(env, tmp_path, context="staging")
    assert where.startswith("context staging at https://127.0.0.1:") and where.endswith("/ staging")


def test_unknown_context_names_the_known_ones(cluster: FakeCluster, tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(cluster.kubeconfig), "HOME": str(tmp_path)}
    with pytest.raises(ClusterError) as caught:
        _check(env, tmp_path, context="prod")
    assert "prod" in caught.value.message and "fake" in caught.value.hint


def test_exec_credential_plugin_gives_the_token(cluster: FakeCluster, tmp_path: Path) -> None:
    plugin = tmp_path / "token-plugin"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": cluster.token}}
    plugin.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({credential!r}))\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = _config(cluster)
    config["users"] = [{"name": "builder", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "args": [],
        "interactiveMode": "Never"}}}]
    path = tmp_path / "exec.kubeconfig"
    path.write_text(json.dumps(config))
    where = _check({"KUBECONFIG": str(path), "HOME": str(tmp_path)}, tmp_path)
    assert where.endswith("/ builds")


def test_devpod_service_account_in_cluster(cluster: FakeCluster, tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(cluster.token)
    (account / "namespace").write_text("devpods")
    authority = _config(cluster)["clusters"][0]["cluster"]["certificate-authority-data"]  # type: ignore[index]
    (account / "ca.crt").write_bytes(base64.b64decode(str(authority)))
    address = urlsplit(cluster.url)
    env = {"KUBERNETES_SERVICE_HOST": str(address.hostname), "KUBERNETES_SERVICE_PORT": str(address.port),
           "HOME": str(tmp_path)}
    with KubernetesBackend(KubernetesSettings(), env=env, service_account=account) as backend:
        checked = backend.check()
    assert checked.where.startswith("in-cluster service account at https://127.0.0.1:")
    assert checked.namespace == "devpods"


def test_no_credentials_at_all_says_how_to_get_them(tmp_path: Path) -> None:
    backend = KubernetesBackend(KubernetesSettings(), env={"HOME": str(tmp_path)},
                                service_account=tmp_path / "none")
    with pytest.raises(ClusterError) as caught:
        backend.check()
    assert "no Kubernetes credentials" in caught.value.message and "KUBECONFIG" in caught.value.hint


def test_refused_token_is_a_clear_401(cluster: FakeCluster, tmp_path: Path) -> None:
    config = _config(cluster)
    config["users"] = [{"name": "builder", "user": {"token": "expired"}}]
    path = tmp_path / "bad.kubeconfig"
    path.write_text(json.dumps(config))
    with pytest.raises(ClusterError) as caught:
        _check({"KUBECONFIG": str(path), "HOME": str(tmp_path)}, tmp_path)
    assert caught.value.status == 401 and "log in again" in caught.value.hint
