"""The environment facts the diagnosis rules read, named in one place.

``diagnose_log(lines, facts)`` takes an optional ``Mapping[str, object]`` of facts
about the machine the build ran on (produced by ``anybuild doctor``'s probes, or
written by hand as JSON for ``anybuild diagnose --facts FILE``). Every key is
optional; a rule that needs a fact it does not get falls back to what the log
alone says. The keys, and the values they hold:

=====================================  ==========================================================
``docker.storage_driver``              str: the daemon's storage driver (``overlay2``, ``vfs``, ...)
``docker.data_root``                   str: the daemon's data root (``/var/lib/docker``)
``docker.data_root_fs``                str: filesystem type under the data root (``overlay``, ``ext4``)
``build.storage_fs``                   str: filesystem type under the builder's storage of any
                                       backend (buildah's graph root, the built-in builder's cache)
``mounts``                             Mapping[str, str]: mount point -> filesystem type
                                       (``{"/": "overlay", "/tmp": "tmpfs"}``); names the
                                       filesystem that filled up
``context.has_node_modules``           bool: the build context holds a ``node_modules`` directory
``dockerignore.excludes_node_modules`` bool: ``.dockerignore`` excludes ``node_modules``
``dockerignore.excluded_paths``        Sequence[str]: context paths ``.dockerignore`` excludes
``dockerfile.path``                    str: the Dockerfile of the failed build
``dockerfile.lines``                   Sequence[str]: its lines, to quote the failing instruction
``kernel.max_user_namespaces``         int: ``/proc/sys/user/max_user_namespaces``
``host.arch``                          str: the machine's platform (``linux/amd64``)
=====================================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

__all__ = [
    "OVERLAY_FS_TYPES",
    "Fact",
    "fact_bool",
    "fact_str",
    "fact_strings",
    "filesystem_of",
    "storage_on_overlay",
]

OVERLAY_FS_TYPES = frozenset({"overlay", "overlayfs", "overlay2", "fuse-overlayfs", "aufs"})


class Fact(StrEnum):
    """Keys of the facts mapping (see the module docstring for their values)."""

    DOCKER_STORAGE_DRIVER = "docker.storage_driver"
    DOCKER_DATA_ROOT = "docker.data_root"
    DOCKER_DATA_ROOT_FS = "docker.data_root_fs"
    BUILD_STORAGE_FS = "build.storage_fs"
    MOUNTS = "mounts"
    CONTEXT_HAS_NODE_MODULES = "context.has_node_modules"
    DOCKERIGNORE_EXCLUDES_NODE_MODULES = "dockerignore.excludes_node_modules"
    DOCKERIGNORE_EXCLUDED_PATHS = "dockerignore.excluded_paths"
    DOCKERFILE_PATH = "dockerfile.path"
    DOCKERFILE_LINES = "dockerfile.lines"
    KERNEL_MAX_USER_NAMESPACES = "kernel.max_user_namespaces"
    HOST_ARCH = "host.arch"


def fact_str(facts: Mapping[str, object], key: Fact) -> str | None:
    value = facts.get(key)
    return value if isinstance(value, str) and value else None


def fact_bool(facts: Mapping[str, object], key: Fact) -> bool | None:
    value = facts.get(key)
    return value if isinstance(value, bool) else None


def fact_strings(facts: Mapping[str, object], key: Fact) -> tuple[str, ...]:
    value = facts.get(key)
    if isinstance(value, str) or not isinstance(value, Sequence):
        return ()
    return tuple(str(item) for item in value)


def storage_on_overlay(facts: Mapping[str, object]) -> bool | None:
    """True when the builder's storage sits on overlayfs, None when unknown."""
    known = [fact_str(facts, key) for key in (Fact.DOCKER_DATA_ROOT_FS, Fact.BUILD_STORAGE_FS)]
    values = [v.lower() for v in known if v]
    if not values:
        return None
    return any(v in OVERLAY_FS_TYPES for v in values)


def filesystem_of(path: str, facts: Mapping[str, object]) -> tuple[str, str] | None:
    """(mount point, fs type) of the mount holding *path*, from the ``mounts`` fact."""
    mounts = facts.get(Fact.MOUNTS)
    if not isinstance(mounts, Mapping) or not path.startswith("/"):
        return None
    best: tuple[str, str] | None = None
    for point, fstype in mounts.items():
        point_s = str(point).rstrip("/") or "/"
        inside = point_s in ("/", path) or path.startswith(point_s + "/")
        if inside and (best is None or len(point_s) > len(best[0])):
            best = (point_s, str(fstype))
    return best
