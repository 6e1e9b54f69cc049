"""Facts of typical machines, as plain values (for planner and backend tests)."""

from __future__ import annotations

from anybuild.environment.facts import FactKey, Facts, FactValue

_BASE: dict[str, FactValue] = {
    FactKey.UID: 0,
    FactKey.CAP_SYS_ADMIN: True,
    FactKey.CAP_SYS_CHROOT: True,
    FactKey.USERNS_WORKS: True,
    FactKey.CGROUP_VERSION: "hybrid",
    FactKey.DEV_FUSE: True,
    FactKey.TOOL_DOCKER: "28.2.2",
    FactKey.DOCKER_CLI: "/usr/local/bin/docker",
    FactKey.DOCKER_CLIENTS: ("/usr/local/bin/docker=28.2.2", "/usr/bin/docker=20.10.24+dfsg1"),
    FactKey.TOOL_BUILDAH: "1.28.2",
    FactKey.TOOL_RUNC: "1.1.5",
    FactKey.TOOL_FUSE_OVERLAYFS: "1.10",
    FactKey.BUILDAH_OVERLAY: True,
    FactKey.DOCKER_HOST: "unix:///var/run/docker.sock",
}


def facts(**changes: FactValue) -> Facts:
    values = dict(_BASE)
    for key, value in changes.items():
        values[FactKey[key.upper()]] = value
    return Facts.from_values(values)


def daemon_up(**changes: FactValue) -> Facts:
    values: dict[str, FactValue] = {
        "docker_reachable": True,
        "docker_version": "24.0.7",
        "docker_storage_driver": "overlay2",
        "docker_root_dir": "/var/lib/docker",
        "docker_root_fstype": "ext4",
        "docker_root_overlay": True,
    }
    return facts(**{**values, **changes})


def daemon_on_nested_overlay(**changes: FactValue) -> Facts:
    values: dict[str, FactValue] = {
        "docker_reachable": False,
        "docker_data_root": "/var/lib/docker",
        "docker_root_fstype": "overlay",
        "docker_root_overlay": False,
        "docker_error": 'level=error msg="failed to mount overlay: invalid argument" storage-driver=overlay2',
    }
    return facts(**{**values, **changes})
