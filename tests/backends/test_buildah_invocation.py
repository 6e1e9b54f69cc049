"""buildah settings from facts (driver × isolation) and the invocations, against golden files."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest
from anybuild.backends.buildah import BuildahSettings, Isolation, StorageDriver, buildah_invocation, buildah_settings
from anybuild.config import BackendName
from anybuild.environment.facts import FactValue
from tests.backends.golden import check_golden
from tests.backends.scenarios import facts

REQUEST = BuildRequest(
    context=Path("/src/moltbook/api"),
    dockerfile=Path("/src/moltbook/api/Dockerfile"),
    tags=("127.0.0.1:5000/acme/api:dev",),
    build_args={"NODE_ENV": "production"},
    push=True,
    insecure_registries=("127.0.0.1:5000",),
    registry_mirrors={"docker.io": ("127.0.0.1:5000",)},
)

DRIVERS: dict[str, dict[str, FactValue]] = {
    "overlay": {"buildah_overlay": True},
    "fuse": {"buildah_overlay": False, "dev_fuse": True},
    "vfs": {"buildah_overlay": False, "dev_fuse": False},
}
ISOLATIONS: dict[str, dict[str, FactValue]] = {
    "oci": {"uid": 0, "cap_sys_admin": True},
    "rootless": {"uid": 1000, "cap_sys_admin": False, "userns_works": True},
    "chroot": {"uid": 0, "cap_sys_admin": False},
}


@pytest.mark.parametrize("isolation", list(ISOLATIONS))
@pytest.mark.parametrize("driver", list(DRIVERS))
def test_buildah_invocation_each_driver_and_isolation_matches_golden(driver: str, isolation: str) -> None:
    settings = buildah_settings(facts(**DRIVERS[driver], **ISOLATIONS[isolation]))
    expected_driver = {"overlay": StorageDriver.OVERLAY, "fuse": StorageDriver.FUSE_OVERLAYFS, "vfs": StorageDriver.VFS}
    assert settings.driver is expected_driver[driver]
    assert settings.isolation is Isolation(isolation)
    check_golden(f"buildah-{driver}-{isolation}", buildah_invocation(REQUEST, settings).render())


@pytest.mark.parametrize(
    ("cgroup", "tools", "runtime"),
    [("hybrid", {"tool_crun": "1.8"}, "runc"), ("v2", {"tool_crun": "1.8"}, "crun"), ("v2", {}, "runc")],
    ids=["hybrid-runc", "v2-crun", "v2-no-crun"],
)
def test_buildah_runtime_runc_on_hybrid_cgroups(cgroup: str, tools: dict[str, FactValue], runtime: str) -> None:
    assert buildah_settings(facts(cgroup_version=cgroup, **tools)).runtime == runtime


def test_buildah_invocation_outputs_load_and_private_storage_match_golden() -> None:
    settings = BuildahSettings(
        driver=StorageDriver.VFS,
        isolation=Isolation.CHROOT,
        root=Path("/tmp/b/root"),
        runroot=Path("/tmp/b/run"),
        signature_policy=Path("/tmp/b/policy.json"),
    )
    request = BuildRequest(
        context=Path("/c"), dockerfile=Path("/c/Dockerfile"), load=True, output="oci:/out/layout", target="t"
    )
    check_golden("buildah-vfs-chroot-output-load", buildah_invocation(request, settings).render())


def test_podman_invocation_uses_build_subcommand() -> None:
    settings = buildah_settings(facts(tool_podman="4.3.1"), tool=BackendName.PODMAN)
    argv = buildah_invocation(REQUEST, settings).commands[0].argv
    assert argv[:1] == ("podman",)
    assert "build" in argv
    assert "bud" not in argv


@pytest.mark.parametrize("tool", [BackendName.BUILDAH, BackendName.PODMAN])
def test_buildah_refuses_several_platforms_as_environmental(tool: BackendName) -> None:
    from anybuild.errors import BackendError

    request = BuildRequest(context=Path("/c"), dockerfile=Path("/c/Dockerfile"), platform="linux/amd64,linux/arm64")
    with pytest.raises(BackendError, match="one platform at a time") as info:
        buildah_invocation(request, BuildahSettings(tool=tool))
    assert info.value.environmental and "--backend builtin" in (info.value.hint or "")
