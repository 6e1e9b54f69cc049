"""plan_build: order of preference, reasons for choices and exclusions, --backend override."""

from __future__ import annotations

from anybuild.backends.base import Verdict
from anybuild.backends.catalog import availability_checks
from anybuild.config import BackendName, BuildSettings, Config, ImageSpec, RegistrySettings
from anybuild.environment.facts import Facts
from anybuild.planner import plan_build, push_registries
from tests.backends.scenarios import daemon_on_nested_overlay, daemon_up, facts

DOCKER, BUILDAH, BUILTIN, PODMAN = BackendName.DOCKER, BackendName.BUILDAH, BackendName.BUILTIN, BackendName.PODMAN


def _plan(f: Facts, order: tuple[BackendName, ...], override: BackendName | None = None):  # type: ignore[no-untyped-def]
    checks = {k: v for k, v in availability_checks().items() if k in (DOCKER, BUILDAH, PODMAN)}
    return plan_build(f, order=order, checks=checks, override=override)


def test_planner_working_daemon_docker_planned_first() -> None:
    plan = _plan(daemon_up(), (DOCKER, BUILDAH))
    assert [c.backend for c in plan.candidates] == [DOCKER, BUILDAH]
    assert "answers at unix:///var/run/docker.sock" in plan.candidates[0].reason
    assert plan.exclusions == ()


def test_planner_nested_overlay_daemon_excluded_with_fix() -> None:
    plan = _plan(daemon_on_nested_overlay(), (DOCKER, BUILDAH))
    assert [c.backend for c in plan.candidates] == [BUILDAH]
    excluded = plan.exclusion(DOCKER)
    assert excluded is not None
    assert "overlay2 cannot mount" in excluded.reason
    assert any("failed to mount overlay: invalid argument" in e for e in excluded.evidence)
    assert "mount an emptyDir or tmpfs at /var/lib/docker" in excluded.fix
    assert "start dockerd with --storage-driver fuse-overlayfs" in excluded.fix


def test_planner_daemon_up_on_overlay_storage_excluded() -> None:
    plan = _plan(daemon_up(docker_root_fstype="overlay", docker_root_overlay=False), (DOCKER, BUILDAH))
    excluded = plan.exclusion(DOCKER)
    assert excluded is not None
    assert "failed to mount overlay: invalid argument" in excluded.reason


def test_planner_order_of_policy_kept() -> None:
    plan = _plan(daemon_up(), (BUILDAH, DOCKER))
    assert [c.backend for c in plan.candidates] == [BUILDAH, DOCKER]


def test_planner_override_only_that_backend_others_excluded_by_override() -> None:
    plan = _plan(daemon_up(), (DOCKER, BUILDAH), override=BUILDAH)
    assert [c.backend for c in plan.candidates] == [BUILDAH]
    excluded = plan.exclusion(DOCKER)
    assert excluded is not None
    assert excluded.reason == "--backend buildah was given"


def test_planner_override_unavailable_backend_empty_plan_with_reason() -> None:
    plan = _plan(facts(tool_buildah=None), (DOCKER, BUILDAH), override=BUILDAH)
    assert plan.candidates == ()
    excluded = plan.exclusion(BUILDAH)
    assert excluded is not None
    assert excluded.reason == "buildah is not on PATH"
    assert not plan.can_build_locally


def test_planner_nothing_works_no_local_candidate() -> None:
    plan = _plan(facts(tool_buildah=None, tool_docker=None), (DOCKER, BUILDAH, PODMAN))
    assert plan.candidates == ()
    assert {e.backend for e in plan.exclusions} == {DOCKER, BUILDAH, PODMAN}
    assert all(e.fix for e in plan.exclusions)


def test_planner_rootless_without_userns_buildah_excluded() -> None:
    plan = _plan(facts(uid=1000, userns_works=False), (BUILDAH,))
    excluded = plan.exclusion(BUILDAH)
    assert excluded is not None
    assert "user namespaces" in excluded.reason


def test_planner_missing_check_excluded_not_crashing() -> None:
    plan = plan_build(facts(), order=(BackendName.GITHUB,), checks={})
    assert plan.exclusions[0].reason == "no availability check for github"


def test_planner_kubernetes_without_credentials_excluded_with_the_fix() -> None:
    # The kubernetes backend loads lazily; without cluster credentials it says so, and how to get them.
    verdict: Verdict = availability_checks()[BackendName.KUBERNETES](facts())
    assert not verdict.ok
    assert verdict.reason == "no Kubernetes credentials (no kubeconfig, not in a pod)"
    assert "KUBECONFIG" in verdict.fix


def test_planner_to_dict_lists_everything() -> None:
    data = _plan(daemon_on_nested_overlay(), (DOCKER, BUILDAH)).to_dict()
    assert data["order"] == ["docker", "buildah"]
    assert data["candidates"][0]["backend"] == "buildah"
    assert data["exclusions"][0]["backend"] == "docker"


def test_push_registries_from_config(tmp_path: object) -> None:
    from pathlib import Path

    image = ImageSpec(name="api", context=Path("."), dockerfile=Path("Dockerfile"), repository="ghcr.io/acme/api")
    local = ImageSpec(name="w", context=Path("."), dockerfile=Path("D"), repository="127.0.0.1:5000/acme/w")
    hub = ImageSpec(name="h", context=Path("."), dockerfile=Path("D"), repository="acme/h")
    config = Config(
        file=None,
        root=Path("."),
        build=BuildSettings(),
        images=(image, local, hub),
        registries={"quay.io": RegistrySettings(host="quay.io")},
    )
    assert push_registries(config) == ("ghcr.io", "127.0.0.1:5000", "quay.io")
    assert push_registries(None) == ()


def test_planner_podman_only_where_buildah_missing() -> None:
    both = _plan(facts(tool_podman="4.3.1"), (BUILDAH, PODMAN))
    assert [c.backend for c in both.candidates] == [BUILDAH]
    excluded = both.exclusion(PODMAN)
    assert excluded is not None
    assert "buildah is present and preferred" in excluded.reason
    only = _plan(facts(tool_podman="4.3.1", tool_buildah=None), (BUILDAH, PODMAN))
    assert [c.backend for c in only.candidates] == [PODMAN]
    assert only.candidates[0].reason.startswith("podman 4.3.1 with overlay storage")


def test_planner_failed_trial_mount_on_ext4_does_not_exclude_working_daemon() -> None:
    plan = _plan(daemon_up(uid=1000, docker_root_overlay=False), (DOCKER,))
    assert [c.backend for c in plan.candidates] == [DOCKER]
