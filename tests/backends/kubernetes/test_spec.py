"""The Jobs and Secret a run creates: pure data, valid for the API server, strictly, on every 1.3x schema."""

from __future__ import annotations

import base64
import json
import re

import kubernetes_validate
import pytest

from anybuild.backends.kubernetes.settings import DEFAULT_IMAGE, KubernetesSettings
from anybuild.backends.kubernetes.spec import (
    ContextArtifact,
    JobSpec,
    docker_config_json,
    job_manifest,
    job_name,
    redact_manifest,
    secret_manifest,
)
from tests.backends.golden import check_golden

VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]

SETTINGS = KubernetesSettings(
    namespace="builds", service_account="builder", node_selector={"pool": "builds"},
    tolerations=({"key": "builds", "operator": "Exists", "effect": "NoSchedule"},),
    image_pull_secrets=("mirror-pull",), resources={"requests": {"cpu": "2", "memory": "4Gi"},
                                                   "limits": {"memory": "8Gi"}},
    cache_repo="ghcr.io/acme/cache",
)


def _spec(**overrides: object) -> JobSpec:
    values: dict[str, object] = {
        "image": "api", "run_id": "0a1b2c3d", "namespace": "builds",
        "destinations": ("ghcr.io/acme/moltbook-api:main", "ghcr.io/acme/moltbook-api:sha-1a2b3c4"),
        "build_args": {"NODE_ENV": "production"}, "labels": {"org.opencontainers.image.revision": "1a2b3c4"},
        "target": "runtime", "platform": "linux/arm64", "insecure_registries": ("registry.local:5000",),
        "registry_mirrors": {"docker.io": ("mirror.gcr.io",), "quay.io": ("quay-mirror.local",)},
        "secret_name": "anybuild-registry-0a1b2c3d",
    }
    values.update(overrides)
    return JobSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("upload", ["exec", "registry"])
def test_job_manifest_validates_strictly_on_every_1_3x_schema(version: str, upload: str) -> None:
    artifact = ContextArtifact(registry="ghcr.io", repository="acme/moltbook-api-context",
                               digest="sha256:" + "c" * 64, size=1234) if upload == "registry" else None
    manifest = job_manifest(_spec(artifact=artifact), SETTINGS)
    assert kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_secret_manifest_validates_strictly_on_every_1_3x_schema(version: str) -> None:
    manifest = secret_manifest("anybuild-registry-0a1b2c3d", "builds", "0a1b2c3d",
                               docker_config_json({"ghcr.io": ("bot", "hunter2-secret")}))
    assert kubernetes_validate.validate(manifest, version, strict=True)


def test_job_manifest_golden() -> None:
    check_golden("kubernetes-job", json.dumps(job_manifest(_spec(), SETTINGS), indent=2) + "\n")


def test_job_manifest_has_the_bounds_labels_and_destinations_the_issue_asks_for() -> None:
    manifest = job_manifest(_spec(), SETTINGS)
    spec, pod = manifest["spec"], manifest["spec"]["template"]["spec"]
    assert (spec["backoffLimit"], spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"]) == (0, 600, 3600)
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "anybuild"
    assert manifest["metadata"]["labels"]["anybuild.dev/run"] == "0a1b2c3d"
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"pool": "builds", "kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}
    assert pod["volumes"][0] == {"name": "workspace", "emptyDir": {"sizeLimit": "2Gi"}}
    executor = pod["containers"][0]
    assert executor["image"] == DEFAULT_IMAGE and "@sha256:" in DEFAULT_IMAGE
    args = executor["args"]
    assert "--destination=ghcr.io/acme/moltbook-api:main" in args
    assert "--destination=ghcr.io/acme/moltbook-api:sha-1a2b3c4" in args
    assert "--digest-file=/dev/termination-log" in args
    assert "--cache=true" in args and "--cache-repo=ghcr.io/acme/cache" in args
    assert "--registry-mirror=mirror.gcr.io" in args and "--registry-map=quay.io=quay-mirror.local" in args
    assert "--build-arg=NODE_ENV=production" in args and "--target=runtime" in args


def test_no_cache_leaves_the_registry_cache_off() -> None:
    args = job_manifest(_spec(no_cache=True), SETTINGS)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--cache") for a in args)


@pytest.mark.parametrize("image", ["api", "Front_End.v2", "x" * 80, "---"])
def test_job_names_are_dns_labels_of_63_characters_at_most(image: str) -> None:
    for platform in (None, "linux/arm64/v8"):
        name = job_name(image, "0a1b2c3d", platform)
        assert len(name) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert name.endswith("-0a1b2c3d" + ("-arm64-v8" if platform else ""))


def test_secret_holds_a_docker_config_and_prints_redacted() -> None:
    password = "hunter2-secret"
    manifest = secret_manifest("s", "builds", "0a1b2c3d", docker_config_json({"ghcr.io": ("bot", password)}))
    config = json.loads(base64.b64decode(manifest["data"][".dockerconfigjson"]))
    assert config["auths"]["ghcr.io"]["password"] == password
    assert base64.b64decode(config["auths"]["ghcr.io"]["auth"]).decode() == f"bot:{password}"
    printed = json.dumps(redact_manifest(manifest))
    assert password not in printed
    assert manifest["data"][".dockerconfigjson"] not in printed
    assert base64.b64encode(password.encode()).decode() not in printed
