"""Container, Kubernetes, workspace and CI markers from prepared trees and env mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.environment.facts import FactKey, Facts
from anybuild.environment.place import probe_place
from tests.environment.trees import EXT4_MOUNTINFO, OVERLAY_ROOT_MOUNTINFO, context, tree


def _facts(root: Path, env: dict[str, str] | None = None, hostname: str = "laptop") -> Facts:
    return Facts.of(probe_place(context(root, env, hostname=hostname)))


def test_place_bare_host_no_markers(tmp_path: Path) -> None:
    tree(tmp_path, {"/proc/1/cgroup": "0::/init.scope\n", "/proc/self/mountinfo": EXT4_MOUNTINFO})
    facts = _facts(tmp_path)
    assert facts.value(FactKey.IN_CONTAINER) is False
    assert facts.value(FactKey.KUBERNETES) is False
    assert facts.value(FactKey.WORKSPACE) is None
    assert facts.value(FactKey.CI) is None


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"/.dockerenv": ""}, "/.dockerenv exists"),
        ({"/run/.containerenv": ""}, "/run/.containerenv exists"),
        ({"/proc/1/cgroup": "12:pids:/kubepods/burstable/pod1/abc\n"}, "/proc/1/cgroup: 12:pids:/kubepods"),
        ({"/proc/1/mountinfo": OVERLAY_ROOT_MOUNTINFO}, "mountinfo: / is overlay"),
    ],
    ids=["dockerenv", "containerenv", "cgroup", "overlay-root"],
)
def test_place_container_marker_found_with_evidence(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    facts = _facts(tree(tmp_path, files))
    assert facts.value(FactKey.IN_CONTAINER) is True
    assert expected in facts.evidence(FactKey.IN_CONTAINER)


def test_place_kubernetes_service_account_token_detected(tmp_path: Path) -> None:
    tree(tmp_path, {"/var/run/secrets/kubernetes.io/serviceaccount/token": "eyJ..."})
    facts = _facts(tmp_path)
    assert facts.value(FactKey.KUBERNETES) is True
    assert "serviceaccount/token exists" in facts.evidence(FactKey.KUBERNETES)


def test_place_kubernetes_service_host_variable_detected(tmp_path: Path) -> None:
    facts = _facts(tmp_path, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert facts.value(FactKey.KUBERNETES) is True
    assert facts.evidence(FactKey.KUBERNETES) == "KUBERNETES_SERVICE_HOST=10.0.0.1"


@pytest.mark.parametrize(
    ("env", "hostname", "kind"),
    [
        ({"DEVPOD": "true"}, "x", "devpod"),
        ({}, "devpod-alice-1234", "devpod"),
        ({"CODESPACES": "true"}, "x", "codespaces"),
        ({"GITPOD_WORKSPACE_ID": "abc"}, "x", "gitpod"),
        ({"CODER_WORKSPACE_NAME": "dev"}, "x", "coder"),
        ({}, "acme-workspace-7f9c", "workspace"),
    ],
    ids=["devpod-var", "devpod-host", "codespaces", "gitpod", "coder", "workspace-host"],
)
def test_place_workspace_kind_detected(tmp_path: Path, env: dict[str, str], hostname: str, kind: str) -> None:
    facts = _facts(tmp_path, env, hostname)
    assert facts.value(FactKey.WORKSPACE) == kind


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"GITHUB_ACTIONS": "true", "CI": "true"}, "github-actions"),
        ({"GITLAB_CI": "true", "CI": "true"}, "gitlab-ci"),
        ({"JENKINS_URL": "http://ci"}, "jenkins"),
        ({"CI": "1"}, "ci"),
        ({"CI": "false"}, None),
    ],
    ids=["actions", "gitlab", "jenkins", "generic", "ci-false"],
)
def test_place_ci_kind_detected(tmp_path: Path, env: dict[str, str], kind: str | None) -> None:
    assert _facts(tmp_path, env).value(FactKey.CI) == kind


@pytest.mark.parametrize(
    ("mountinfo", "version"),
    [
        ("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "v2"),
        (
            "30 1 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
            "31 1 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            "hybrid",
        ),
        ("31 1 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "v1"),
    ],
    ids=["v2", "hybrid", "v1"],
)
def test_place_cgroup_version_from_mountinfo(tmp_path: Path, mountinfo: str, version: str) -> None:
    tree(tmp_path, {"/proc/self/mountinfo": mountinfo})
    assert _facts(tmp_path).value(FactKey.CGROUP_VERSION) == version
