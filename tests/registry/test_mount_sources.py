"""Pushes mount layers from the repository they were pulled from (a real registry on loopback)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.oci import LayoutStore, Manifest
from anybuild.registry import Reference, RegistryClient
from tests.harness.bases import BaseImages
from tests.harness.registry import Registry, RegistryRequest


def _busybox_layers(registry: Registry) -> list[str]:
    response = httpx.get(f"{registry.url}/v2/library/busybox/manifests/1.36",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                            "application/vnd.docker.distribution.manifest.v2+json"})
    response.raise_for_status()
    return [layer["digest"] for layer in response.json()["layers"]]


def _mounts(requests: list[RegistryRequest], repo: str) -> dict[str, tuple[str, int]]:
    """digest -> (from, status) of every mount request to *repo*."""
    found: dict[str, tuple[str, int]] = {}
    for request in requests:
        url = urlsplit(request.path)
        if request.method == "POST" and url.path == f"/v2/{repo}/blobs/uploads/":
            query = parse_qs(url.query)
            if "mount" in query:
                found[query["mount"][0]] = (query["from"][0], request.status)
    return found


def _uploaded(requests: list[RegistryRequest], repo: str) -> set[str]:
    """Digests whose upload to *repo* was completed (the final PUT ?digest=)."""
    done: set[str] = set()
    for request in requests:
        url = urlsplit(request.path)
        if request.method == "PUT" and url.path.startswith(f"/v2/{repo}/blobs/uploads/"):
            done.update(parse_qs(url.query).get("digest", []))
    return done


def test_build_push_base_layer_from_mirror_mounted_not_uploaded(
    tmp_path: Path, registry: Registry, base_images: BaseImages,
) -> None:
    base_layers = _busybox_layers(registry)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox:1.36\nRUN echo mounted > /m\n")
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", tags=(f"{registry.host}/acme/app:x",),
                           push=True, insecure_registries=(registry.host,),
                           registry_mirrors={"docker.io": (registry.host,)})
    before = len(registry.requests())
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")}
    result = build_image(request, ListSink(), BuildEnvironment(env=env))
    requests = registry.requests()[before:]

    mounts = _mounts(requests, "acme/app")
    uploaded = _uploaded(requests, "acme/app")
    assert base_layers
    for digest in base_layers:
        assert mounts.get(digest) == ("library/busybox", 201)
        assert digest not in uploaded
    assert len(uploaded) == 2  # the RUN layer and the config: what the registry did not hold
    served = httpx.get(f"{registry.url}/v2/acme/app/manifests/x",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert served.headers["Docker-Content-Digest"] == result.digest
    for digest in base_layers:
        assert httpx.head(f"{registry.url}/v2/acme/app/blobs/{digest}").status_code == 200


@pytest.mark.parametrize(("source", "mount_status"), [
    pytest.param("{host}/nowhere/empty", 202, id="source-lacks-blob"),
    pytest.param("other.test:5000/library/busybox", None, id="other-host"),
])
def test_push_image_known_source_unusable_falls_back_to_upload(
    registry: Registry, base_images: BaseImages, source: str, mount_status: int | None,
) -> None:
    store = LayoutStore.open(base_images.busybox_layout)
    descriptor = store.resolve("1.36")
    manifest = Manifest.from_json(store.read_blob(descriptor), media_type=descriptor.media_type)
    layer = str(manifest.layers[0].digest)
    repo = f"acme/fallback-{'a' if mount_status else 'b'}"
    origin = Reference.parse(source.format(host=registry.host))
    before = len(registry.requests())
    with RegistryClient() as client:
        client.push_image(store, descriptor, Reference.parse(f"{registry.host}/{repo}:1"), sources={layer: origin})
    requests = registry.requests()[before:]

    mounts = _mounts(requests, repo)
    assert mounts.get(layer, (None, None))[1] == mount_status
    assert layer in _uploaded(requests, repo)
    assert httpx.head(f"{registry.url}/v2/{repo}/blobs/{layer}").status_code == 200
