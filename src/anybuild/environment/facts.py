"""Facts about the machine, each with the evidence it was read from.

A :class:`Fact` is one observation (``uid = 0``) and its ``evidence``: the file,
variable, command or syscall result it came from (``/proc/self/status: Uid: 0``).
:class:`Facts` is an immutable, keyed collection of them. Well-known keys are the
members of :class:`FactKey`; facts about things named at run time (a registry
host) use a dotted string key such as ``registry.ghcr.io.credentials``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Fact", "FactKey", "FactValue", "Facts", "Topic", "registry_credentials_key"]

FactValue = str | int | bool | None | tuple[str, ...]


class Topic(StrEnum):
    """The groups of the doctor's table, in display order."""

    PLACE = "place"
    PRIVILEGES = "privileges"
    BUILDER = "builder"
    STORAGE = "storage"
    DOCKER = "docker"
    TOOLS = "tools"
    ACCESS = "access"


class FactKey(StrEnum):
    """Well-known fact names. The value type is given in each comment."""

    # place: where anybuild runs
    IN_CONTAINER = "container.inside"  # bool
    CONTAINER_MARKERS = "container.markers"  # tuple[str, ...] of marker descriptions
    CGROUP_VERSION = "cgroup.version"  # "v1" | "v2" | "hybrid" | None
    KUBERNETES = "kubernetes.pod"  # bool
    WORKSPACE = "workspace.kind"  # "devpod" | "codespaces" | "gitpod" | "coder" | ... | None
    CI = "ci.kind"  # "github-actions" | "gitlab-ci" | "jenkins" | "ci" | None
    # privileges
    UID = "user.uid"  # int
    CAP_SYS_ADMIN = "cap.sys_admin"  # bool
    CAP_SYS_CHROOT = "cap.sys_chroot"  # bool
    CAP_SETUID = "cap.setuid"  # bool
    CAP_MKNOD = "cap.mknod"  # bool
    MAX_USER_NAMESPACES = "userns.max"  # int | None
    USERNS_WORKS = "userns.works"  # bool (a real `unshare --user` attempt)
    APPARMOR_RESTRICTS_USERNS = "userns.apparmor_restricted"  # bool | None
    SECCOMP = "seccomp.mode"  # "disabled" | "strict" | "filter" | None
    DEV_FUSE = "dev.fuse"  # bool
    # the built-in builder, tried where it would run (anybuild.builder.host, anybuild.builder.trial)
    BUILDER_NAMESPACE = "builder.userns"  # "identity" | "subuid" | "single" | "none" (its own user namespace)
    BUILDER_SANDBOXES = "builder.sandboxes"  # tuple[str, ...]: "KIND: ok" | "KIND: cannot start: WHY"
    BUILDER_SANDBOX = "builder.sandbox"  # str | None: the sandbox a build will run RUN steps in
    BUILDER_SNAPSHOTTER = "builder.snapshotter"  # str
    BUILDER_OWNERS = "builder.owners"  # str: which owners files can really have
    BUILDER_PERMISSION_CHECKS = "builder.permission_checks"  # bool: USER's file permissions enforced in RUN
    BUILDER_PLATFORMS = "builder.platforms"  # tuple[str, ...]: "linux/arm64: userns-binfmt" | "…: cannot: WHY"
    # storage: filesystem type and whether overlay with an upper dir there works
    ANYBUILD_DATA_DIR = "storage.anybuild.dir"  # str
    ANYBUILD_FSTYPE = "storage.anybuild.fstype"  # str | None
    ANYBUILD_OVERLAY = "storage.anybuild.overlay"  # bool | None (None: not tried)
    DOCKER_DATA_ROOT = "storage.docker.dir"  # str: the daemon's data root (reported, configured or default)
    DOCKER_ROOT_FSTYPE = "storage.docker.fstype"  # str | None
    DOCKER_ROOT_OVERLAY = "storage.docker.overlay"  # bool | None
    BUILDAH_STORAGE_DIR = "storage.buildah.dir"  # str
    BUILDAH_FSTYPE = "storage.buildah.fstype"  # str | None
    BUILDAH_OVERLAY = "storage.buildah.overlay"  # bool | None
    TMPFS_OVERLAY = "storage.tmpfs.overlay"  # bool | None
    # docker daemon
    DOCKER_HOST = "docker.host"  # str (unix:///var/run/docker.sock by default)
    DOCKER_CONTEXT = "docker.context"  # str | None
    DOCKER_REACHABLE = "docker.reachable"  # bool (answered /_ping)
    DOCKER_VERSION = "docker.version"  # str | None
    DOCKER_STORAGE_DRIVER = "docker.storage_driver"  # str | None
    DOCKER_ROOT_DIR = "docker.root_dir"  # str | None
    DOCKER_ROOTLESS = "docker.rootless"  # bool | None
    DOCKER_ERROR = "docker.error"  # str | None: why the daemon cannot build
    DOCKER_CLI = "docker.cli"  # str | None: path of the docker client used
    DOCKER_BUILDX = "docker.buildx"  # str | None: buildx version
    DOCKER_CLIENTS = "docker.clients"  # tuple[str, ...] of "PATH=VERSION", every docker on PATH
    # tools on PATH: value is the version string (or "unknown"), None when absent
    TOOL_DOCKER = "tool.docker"
    TOOL_BUILDAH = "tool.buildah"
    TOOL_PODMAN = "tool.podman"
    TOOL_CRUN = "tool.crun"
    TOOL_RUNC = "tool.runc"
    TOOL_PROOT = "tool.proot"
    TOOL_FUSE_OVERLAYFS = "tool.fuse-overlayfs"
    TOOL_NEWUIDMAP = "tool.newuidmap"
    TOOL_KUBECTL = "tool.kubectl"
    TOOL_KANIKO = "tool.kaniko"
    # access to remote builders and registries
    KUBE_CREDENTIALS = "kubernetes.credentials"  # "in-cluster" | "kubeconfig" | None
    KUBE_NAMESPACE = "kubernetes.namespace"  # str | None
    GITHUB_TOKEN = "github.token"  # noqa: S105 - bool: present or not, never the value
    GITHUB_REPOSITORY = "github.repository"  # str | None: "owner/name"
    KUBE_CAN_CREATE_JOBS = "kubernetes.can_create_jobs"  # bool | None (only with --online)
    GITHUB_REPOSITORY_ACCESS = "github.repository_access"  # bool | None (only with --online)
    GITHUB_TOKEN_SCOPES = "github.token_scopes"  # noqa: S105 - str | None: what the API says the token may do (--online)
    GITHUB_WORKFLOW = "github.workflow"  # bool | None: the workflow is on the default branch (--online)
    GITHUB_ACTIONS_ENABLED = "github.actions_enabled"  # bool | None: Actions is enabled (--online)


def registry_credentials_key(host: str) -> str:
    """The fact key telling whether credentials for registry *host* are present."""
    return f"registry.{host}.credentials"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fact:
    """One observation and where it came from."""

    key: str
    value: FactValue
    evidence: str
    topic: Topic = Topic.PLACE

    def to_dict(self) -> dict[str, Any]:
        value: Any = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"key": str(self.key), "topic": str(self.topic), "value": value, "evidence": self.evidence}


@dataclass(frozen=True, slots=True)
class Facts:
    """An immutable collection of facts, looked up by key. Later facts win."""

    items: tuple[Fact, ...] = ()
    _index: Mapping[str, Fact] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {str(f.key): f for f in self.items})

    @classmethod
    def of(cls, facts: Iterable[Fact]) -> Facts:
        return cls(tuple(facts))

    @classmethod
    def from_values(cls, values: Mapping[str, FactValue], *, evidence: str = "given") -> Facts:
        """Facts from plain values (for tests and for ``--fact`` style overrides)."""
        return cls(tuple(Fact(key=k, value=v, evidence=evidence) for k, v in values.items()))

    def with_facts(self, *facts: Fact) -> Facts:
        return Facts(self.items + facts)

    def get(self, key: str) -> Fact | None:
        return self._index.get(str(key))

    def value(self, key: str, default: FactValue = None) -> FactValue:
        fact = self._index.get(str(key))
        return default if fact is None else fact.value

    def flag(self, key: str) -> bool:
        """True only when the fact is present and exactly ``True``."""
        return self.value(key) is True

    def text(self, key: str) -> str | None:
        value = self.value(key)
        return value if isinstance(value, str) else None

    def number(self, key: str) -> int | None:
        value = self.value(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def evidence(self, key: str) -> str:
        fact = self._index.get(str(key))
        return "" if fact is None else fact.evidence

    def __iter__(self) -> Iterator[Fact]:
        return iter(self._index.values())

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._index

    def by_topic(self) -> dict[Topic, list[Fact]]:
        groups: dict[Topic, list[Fact]] = {t: [] for t in Topic}
        for fact in self:
            groups[fact.topic].append(fact)
        return {t: fs for t, fs in groups.items() if fs}

    def to_dict(self) -> dict[str, Any]:
        return {str(f.key): f.to_dict() for f in self}
