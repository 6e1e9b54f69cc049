"""Plan, then apply: the Jobs and the Secret one run creates, as plain data (pure).

Every object carries ``app.kubernetes.io/managed-by=anybuild`` and the run's id
(``anybuild.dev/run``), so a run deletes what it made, and ``anybuild cluster
gc`` finds what a killed client left. The manifests are what is sent to the API
server, byte for byte; tests validate them against Kubernetes' schemas and
compare them with golden files.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anybuild.backends.kubernetes.scripts import PULL_SCRIPT, RECEIVE_SCRIPT, WAIT_SCRIPT
from anybuild.backends.kubernetes.settings import KubernetesSettings
from anybuild.redaction import REDACTED

__all__ = [
    "EXECUTOR",
    "INIT",
    "LABEL_IMAGE",
    "LABEL_MANAGED_BY",
    "LABEL_RUN",
    "MANAGED_BY",
    "WORKSPACE",
    "ContextArtifact",
    "JobSpec",
    "docker_config_json",
    "job_manifest",
    "job_name",
    "kaniko_args",
    "new_run_id",
    "receive_command",
    "redact_manifest",
    "run_selector",
    "secret_manifest",
]

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "anybuild"
LABEL_RUN = "anybuild.dev/run"
LABEL_IMAGE = "anybuild.dev/image"
LABEL_PLATFORM = "anybuild.dev/platform"
ANNOTATION_REFERENCES = "anybuild.dev/references"
WORKSPACE = "/workspace"
DOCKER_CONFIG = "/kaniko/.docker"
INIT = "context"  # the init container's name
EXECUTOR = "kaniko"  # the executor container's name
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def new_run_id() -> str:
    """Eight lower-case hex digits: short enough for names, unique enough per cluster and day."""
    return secrets.token_hex(4)


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-._")
    return value or "x"


def job_name(image: str, run_id: str, platform: str | None = None) -> str:
    """``anybuild-<image>-<run>[-<arch>]``, a DNS label (63 characters at most)."""
    suffix = f"-{run_id}" + (f"-{_DNS_LABEL.sub('-', platform.split('/', 1)[-1].lower())}" if platform else "")
    stem = _DNS_LABEL.sub("-", image.lower()).strip("-") or "image"
    return f"anybuild-{stem}"[: 63 - len(suffix)].rstrip("-") + suffix


def run_selector(run_id: str | None = None) -> str:
    """The label selector of everything anybuild made (of one run, with *run_id*)."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY}" + (f",{LABEL_RUN}={run_id}" if run_id else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextArtifact:
    """The build context pushed as a blob to a registry, for the init container to pull by digest."""

    registry: str  # host[:port]
    repository: str  # path within the registry
    digest: str  # sha256:…
    size: int
    scheme: str = "https"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """One image on one platform: everything its Job needs, already resolved."""

    image: str  # the image's name in anybuild.toml (or the context directory's)
    run_id: str
    namespace: str
    destinations: tuple[str, ...]  # full references Kaniko pushes to
    dockerfile: str = "Dockerfile"  # inside the uploaded tree, beside context/
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: str | None = None  # "linux/arm64": a node of that architecture, no emulation
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    no_cache: bool = False
    secret_name: str | None = None  # the dockerconfigjson Secret mounted for Kaniko
    artifact: ContextArtifact | None = None  # None: the context comes over exec

    @property
    def name(self) -> str:
        return job_name(self.image, self.run_id, self.platform)


def kaniko_args(spec: JobSpec, settings: KubernetesSettings) -> list[str]:
    """The executor's arguments: context, Dockerfile, one destination per tag, and the build's options."""
    args = [
        f"--context=dir://{WORKSPACE}/build/context",
        f"--dockerfile={WORKSPACE}/build/{spec.dockerfile}",
        *(f"--destination={ref}" for ref in spec.destinations),
        "--digest-file=/dev/termination-log",
    ]
    if spec.platform:
        args.append(f"--custom-platform={spec.platform}")
    if spec.target:
        args.append(f"--target={spec.target}")
    args += [f"--build-arg={key}={value}" for key, value in spec.build_args.items()]
    args += [f"--label={key}={value}" for key, value in sorted(spec.labels.items())]
    if settings.cache_repo and not spec.no_cache:
        args += ["--cache=true", f"--cache-repo={settings.cache_repo}"]
    for registry, mirrors in sorted(spec.registry_mirrors.items()):
        for mirror in mirrors:
            if registry in ("docker.io", "index.docker.io"):
                args.append(f"--registry-mirror={mirror}")
            else:
                args.append(f"--registry-map={registry}={mirror}")
    for host in spec.insecure_registries:
        args += [f"--insecure-registry={host}", f"--skip-tls-verify-registry={host}"]
    return args


def _labels(spec: JobSpec) -> dict[str, str]:
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN: spec.run_id, LABEL_IMAGE: _label_value(spec.image)}
    if spec.platform:
        labels[LABEL_PLATFORM] = _label_value(spec.platform.replace("/", "-"))
    return labels


def _init_container(spec: JobSpec, settings: KubernetesSettings) -> dict[str, Any]:
    env = [{"name": "WORKSPACE", "value": WORKSPACE}]
    mounts: list[dict[str, Any]] = [{"name": "workspace", "mountPath": WORKSPACE}]
    if spec.artifact is None:
        script = WAIT_SCRIPT
    else:
        script = PULL_SCRIPT
        artifact = spec.artifact
        env += [
            {"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG},
            {"name": "CONTEXT_SCHEME", "value": artifact.scheme},
            {"name": "CONTEXT_REGISTRY", "value": artifact.registry},
            {"name": "CONTEXT_REPOSITORY", "value": artifact.repository},
            {"name": "CONTEXT_DIGEST", "value": artifact.digest},
            {"name": "CONTEXT_SIZE", "value": str(artifact.size)},
        ]
        if spec.secret_name:
            mounts.append({"name": "docker-config", "mountPath": DOCKER_CONFIG, "readOnly": True})
    return {
        "name": INIT,
        "image": settings.image,
        "command": ["sh", "-c", script],
        "env": env,
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
    }


def job_manifest(spec: JobSpec, settings: KubernetesSettings) -> dict[str, Any]:
    """The ``batch/v1`` Job of *spec*."""
    labels = _labels(spec)
    executor: dict[str, Any] = {
        "name": EXECUTOR,
        "image": settings.image,
        "args": kaniko_args(spec, settings),
        "env": [{"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG}],
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if spec.secret_name:
        executor["volumeMounts"].append({"name": "docker-config", "mountPath": DOCKER_CONFIG, "readOnly": True})
    if settings.resources:
        executor["resources"] = {kind: dict(values) for kind, values in settings.resources.items()}
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {"sizeLimit": settings.context_size_limit}},
    ]
    if spec.secret_name:
        volumes.append({"name": "docker-config", "secret": {
            "secretName": spec.secret_name, "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}})
    node_selector = dict(settings.node_selector)
    if spec.platform:
        parts = spec.platform.split("/")
        node_selector["kubernetes.io/os"] = parts[0]
        if len(parts) > 1:
            node_selector["kubernetes.io/arch"] = parts[1]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "initContainers": [_init_container(spec, settings)],
        "containers": [executor],
        "volumes": volumes,
    }
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if node_selector:
        pod["nodeSelector"] = node_selector
    if settings.tolerations:
        pod["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_REFERENCES: ",".join(spec.destinations)},
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "activeDeadlineSeconds": settings.deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def receive_command(size: int, sha256_hex: str) -> list[str]:
    """The command run over exec in the init container to receive the context tar."""
    return ["sh", "-c", RECEIVE_SCRIPT, "receive", str(size), sha256_hex]


def docker_config_json(auths: Mapping[str, tuple[str, str]]) -> str:
    """A Docker ``config.json`` for Kaniko: host -> (username, password)."""
    entries: dict[str, dict[str, str]] = {}
    for host, (username, password) in sorted(auths.items()):
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        entries[host] = {"username": username, "password": password, "auth": token}
    return json.dumps({"auths": entries}, separators=(",", ":"), sort_keys=True)


def secret_manifest(name: str, namespace: str, run_id: str, config_json: str) -> dict[str, Any]:
    """The run's ``kubernetes.io/dockerconfigjson`` Secret (deleted when the run ends)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_RUN: run_id},
        },
        "data": {".dockerconfigjson": base64.b64encode(config_json.encode()).decode()},
    }


def redact_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit to print: a Secret's data (base64 of the passwords) masked."""
    copy = json.loads(json.dumps(manifest))
    if copy.get("kind") == "Secret":
        for section in ("data", "stringData"):
            if isinstance(copy.get(section), dict):
                copy[section] = dict.fromkeys(copy[section], REDACTED)
    return dict(copy)
