"""Kubernetes credentials, GitHub token and repository, registry credentials: presence only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from anybuild.environment.access import github_repository, probe_access, registry_credentials
from anybuild.environment.facts import FactKey, Facts, registry_credentials_key
from tests.environment.trees import context, tree

SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_access_in_cluster_credentials_and_namespace(tmp_path: Path) -> None:
    tree(tmp_path, {f"{SA}/token": "eyJhbGciOi.x.y", f"{SA}/namespace": "builds\n"})
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOME": str(tmp_path / "home"), "PATH": "/nonexistent"}
    facts = Facts.of(probe_access(context(tmp_path, env)))
    assert facts.value(FactKey.KUBE_CREDENTIALS) == "in-cluster"
    assert facts.value(FactKey.KUBE_NAMESPACE) == "builds"
    assert "eyJ" not in json.dumps(facts.to_dict())


def test_access_kubeconfig_without_kubectl_assumes_default_namespace(tmp_path: Path) -> None:
    tree(tmp_path, {"/home/.kube/config": "apiVersion: v1\nkind: Config\n"})
    facts = Facts.of(probe_access(context(tmp_path)))
    assert facts.value(FactKey.KUBE_CREDENTIALS) == "kubeconfig"
    assert facts.value(FactKey.KUBE_NAMESPACE) == "default"


def test_access_no_kubernetes_credentials_named(tmp_path: Path) -> None:
    facts = Facts.of(probe_access(context(tmp_path)))
    assert facts.value(FactKey.KUBE_CREDENTIALS) is None
    assert ".kube/config" in facts.evidence(FactKey.KUBE_CREDENTIALS)


def test_access_github_token_present_value_never_shown(tmp_path: Path) -> None:
    token = "ghp_" + "a" * 36
    env = {"GITHUB_TOKEN": token, "HOME": str(tmp_path), "PATH": "/nonexistent"}
    facts = Facts.of(probe_access(context(tmp_path, env)))
    assert facts.value(FactKey.GITHUB_TOKEN) is True
    assert token not in json.dumps(facts.to_dict())


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("git@github.com:acme/moltbook.git", "acme/moltbook"),
        ("https://github.com/acme/moltbook", "acme/moltbook"),
        ("https://x-access-token:t@github.com/acme/api.git", "acme/api"),
        ("https://gitlab.com/acme/moltbook.git", None),
    ],
    ids=["ssh", "https", "token-url", "not-github"],
)
def test_access_github_repository_from_origin_remote(tmp_path: Path, url: str, repo: str | None) -> None:
    tree(tmp_path, {"/.git/config": f'[core]\n\tbare = false\n[remote "origin"]\n\turl = {url}\n'})
    (tmp_path / "sub").mkdir()
    assert github_repository(tmp_path / "sub")[0] == repo


@pytest.mark.parametrize(
    ("config", "present"),
    [
        ({"auths": {"ghcr.io": {"auth": "dXNlcjpwYXNz"}}}, True),
        ({"auths": {"https://ghcr.io": {"auth": "dXNlcjpwYXNz"}}}, True),
        ({"credHelpers": {"ghcr.io": "gh"}}, True),
        ({"auths": {"quay.io": {"auth": "dXNlcjpwYXNz"}}}, False),
        ({"credsStore": "desktop"}, None),
    ],
    ids=["auths", "auths-https", "helper", "other-host", "store-unknown"],
)
def test_access_registry_credentials_presence(tmp_path: Path, config: dict[str, object], present: bool | None) -> None:
    tree(tmp_path, {"/home/.docker/config.json": json.dumps(config)})
    fact = registry_credentials(context(tmp_path), "ghcr.io")
    assert fact.key == registry_credentials_key("ghcr.io")
    assert fact.value is present
    assert "dXNlcjpwYXNz" not in fact.evidence


def _github_api(request: httpx.Request) -> httpx.Response:
    assert request.headers["Authorization"] == "Bearer ghp_" + "b" * 36
    if request.url.path == "/repos/acme/moltbook":
        return httpx.Response(200, json={"full_name": "acme/moltbook", "permissions": {"push": True}})
    return httpx.Response(404, json={"message": "Not Found"})


@pytest.mark.parametrize(("repo", "access"), [("acme/moltbook", True), ("acme/other", False)], ids=["push", "404"])
def test_access_online_github_repository_access(tmp_path: Path, repo: str, access: bool) -> None:
    env = {"GITHUB_TOKEN": "ghp_" + "b" * 36, "GITHUB_REPOSITORY": repo, "PATH": "/nonexistent", "HOME": str(tmp_path)}
    ctx = replace(context(tmp_path, env), online=True, http_transport=httpx.MockTransport(_github_api))
    fact = Facts.of(probe_access(ctx)).get(FactKey.GITHUB_REPOSITORY_ACCESS)
    assert fact is not None
    assert fact.value is access
    assert "ghp_" not in fact.evidence


def test_access_online_kubectl_can_i_answer_read(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        '#!/bin/sh\ncase "$1" in config) echo builds ;; auth) echo "$*" > "$HOME/args"; echo yes ;; esac\n'
    )
    kubectl.chmod(0o755)
    tree(tmp_path, {"/home/.kube/config": "apiVersion: v1\n"})
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home")}
    facts = Facts.of(probe_access(replace(context(tmp_path, env), online=True)))
    assert facts.value(FactKey.KUBE_NAMESPACE) == "builds"
    assert facts.value(FactKey.KUBE_CAN_CREATE_JOBS) is True
    assert (tmp_path / "home/args").read_text().startswith("auth can-i create jobs --namespace builds")


def test_access_offline_makes_no_online_facts(tmp_path: Path) -> None:
    assert FactKey.KUBE_CAN_CREATE_JOBS not in Facts.of(probe_access(context(tmp_path)))
