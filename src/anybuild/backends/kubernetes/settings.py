"""The kubernetes backend's settings: ``[backend.kubernetes]`` of anybuild.toml, then the command line.

The executor image is the maintained Kaniko fork's ``-debug`` variant, pinned
by digest: its ``/kaniko/executor`` builds, and its busybox (``/busybox``)
runs the init container that receives the build context, so one image is
pulled per node. The digest was found pinned, identically, in two public
repositories' build files (the search tool's ``code`` corpus, 2026): it is the
image index of ``ghcr.io/osscontainertools/kaniko:v1.28.5-debug``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

__all__ = ["DEFAULT_IMAGE", "KubernetesSettings", "UploadMode"]

DEFAULT_IMAGE = (
    "ghcr.io/osscontainertools/kaniko:v1.28.5-debug"
    "@sha256:d6d74217dc077acfd3094992e917c357080a2d3fdd1042a49e34e29a7e57c572"
)


class UploadMode(StrEnum):
    """How the build context reaches the pod."""

    AUTO = "auto"  # exec where allowed, else the registry
    EXEC = "exec"  # streamed into the init container over pods/exec
    REGISTRY = "registry"  # pushed as an OCI artifact, pulled by digest by the init container


@dataclass(frozen=True, slots=True, kw_only=True)
class KubernetesSettings:
    """Where and how the Jobs run; every field has a default that works on a plain cluster."""

    context: str | None = None  # kubeconfig context (default: the current one)
    kubeconfig: str | None = None  # a path or ':' list, for callers (anybuild.toml has none: $KUBECONFIG is the user's)
    namespace: str | None = None  # default: the context's, or the pod's own (in-cluster)
    image: str = DEFAULT_IMAGE
    service_account: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    registry_secret: str | None = None  # an existing kubernetes.io/dockerconfigjson Secret, used as it is
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # requests / limits
    ttl_seconds: int = 600  # ttlSecondsAfterFinished
    deadline_seconds: int = 3600  # activeDeadlineSeconds
    context_size_limit: str = "2Gi"  # the emptyDir's sizeLimit
    cache_repo: str | None = None  # Kaniko's --cache-repo (the cache is on when set)
    jobs: int = 4
    unschedulable_grace_seconds: int = 30
    upload: UploadMode = UploadMode.AUTO
    context_repository: str | None = None  # where context artifacts go (default: beside the image)

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> KubernetesSettings:
        """From the validated ``[backend.kubernetes]`` table (see anybuild.config)."""
        values = dict(table)
        if "upload" in values:
            values["upload"] = UploadMode(values["upload"])
        for key in ("tolerations", "image_pull_secrets"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def with_overrides(self, *, context: str | None = None, namespace: str | None = None) -> KubernetesSettings:
        """The command line's ``--kube-context`` and ``--namespace`` over the file's."""
        return replace(self, context=context or self.context, namespace=namespace or self.namespace)

    def to_dict(self) -> dict[str, Any]:
        return {
            "context": self.context, "kubeconfig": self.kubeconfig, "namespace": self.namespace,
            "image": self.image, "service_account": self.service_account,
            "node_selector": dict(self.node_selector), "tolerations": [dict(t) for t in self.tolerations],
            "image_pull_secrets": list(self.image_pull_secrets), "registry_secret": self.registry_secret,
            "resources": {k: dict(v) for k, v in self.resources.items()}, "ttl_seconds": self.ttl_seconds,
            "deadline_seconds": self.deadline_seconds, "context_size_limit": self.context_size_limit,
            "cache_repo": self.cache_repo, "jobs": self.jobs,
            "unschedulable_grace_seconds": self.unschedulable_grace_seconds, "upload": str(self.upload),
            "context_repository": self.context_repository,
        }
