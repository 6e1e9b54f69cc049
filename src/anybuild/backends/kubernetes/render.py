"""What ``anybuild plan --backend kubernetes --show-manifests`` prints: the exact Jobs and Secret a build would
create for the images of anybuild.toml (the Secret's data redacted), without creating anything."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anybuild.backends.kubernetes.settings import KubernetesSettings, UploadMode
from anybuild.backends.kubernetes.spec import (
    ContextArtifact,
    JobSpec,
    docker_config_json,
    job_manifest,
    new_run_id,
    redact_manifest,
    secret_manifest,
)
from anybuild.config import Config, ImageSpec
from anybuild.errors import AnybuildError
from anybuild.registry.credentials import CredentialResolver
from anybuild.registry.reference import Reference

__all__ = ["planned_manifests"]


def _namespace(settings: KubernetesSettings, env: Mapping[str, str]) -> tuple[str, str]:
    from anybuild.backends.kubernetes.client import connect

    try:
        cluster = connect(kubeconfig=settings.kubeconfig, context=settings.context, namespace=settings.namespace,
                          env=env, home=Path(env.get("HOME") or "/root"))
    except AnybuildError as exc:
        return settings.namespace or "default", f"no cluster configured ({exc.message})"
    try:
        return cluster.namespace, cluster.description
    finally:
        cluster.close()


def planned_manifests(config: Config, images: Sequence[ImageSpec], settings: KubernetesSettings, *,
                      env: Mapping[str, str], git: Any, platform: str | None = None) -> dict[str, Any]:
    """The manifests, and where they would go (nothing is sent to the cluster)."""
    from anybuild.tags.image import compute_image_metadata

    namespace, where = _namespace(settings, env)
    run_id = new_run_id()
    now = datetime.now(tz=UTC)
    mirrors = {host: r.mirrors for host, r in config.registries.items() if r.mirrors}
    insecure = tuple(host for host, r in config.registries.items() if r.insecure)
    hosts: set[str] = set()
    jobs = []
    secret_name = settings.registry_secret or f"anybuild-registry-{run_id}"
    for spec in images:
        metadata = compute_image_metadata(config, spec, git, now)
        destinations = tuple(metadata.references)
        hosts.update(Reference.parse(ref).domain for ref in destinations)
        artifact = None
        if settings.upload is UploadMode.REGISTRY and destinations:
            target = Reference.parse(settings.context_repository or Reference.parse(destinations[0]).repository)
            artifact = ContextArtifact(registry=target.domain, repository=target.path,
                                       digest="sha256:<the context's digest, at build time>", size=0)
        wanted = platform or (spec.platforms[0] if spec.platforms else None)
        platforms: list[str | None] = [p.strip() for p in (wanted or "").split(",") if p.strip()] or [None]
        for one in platforms:
            job = JobSpec(image=spec.name, run_id=run_id, namespace=namespace, destinations=destinations,
                          dockerfile="Dockerfile", build_args=dict(spec.args), labels=dict(metadata.labels),
                          target=spec.target, platform=one, insecure_registries=insecure, registry_mirrors=mirrors,
                          secret_name=secret_name, artifact=artifact)
            jobs.append(job_manifest(job, settings))
    manifests: list[dict[str, Any]] = []
    if not settings.registry_secret:
        resolver = CredentialResolver(env=env, home=Path(env.get("HOME") or "/root"))
        auths = {}
        for host in sorted(hosts):
            found = resolver.resolve(host)
            if found is not None and (found.password or found.identity_token):
                auths[host] = (found.username or "<token>", found.password or found.identity_token)
        manifests.append(redact_manifest(secret_manifest(secret_name, namespace, run_id, docker_config_json(auths))))
    manifests += jobs
    return {"where": where, "namespace": namespace, "run": run_id, "manifests": manifests}
