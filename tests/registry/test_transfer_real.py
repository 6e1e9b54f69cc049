"""Against real `docker-registry` instances on loopback (the harness fixtures)."""

from __future__ import annotations

import base64
import filecmp
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from anybuild.errors import RegistryAuthError, RegistryError
from anybuild.oci import (
    Descriptor,
    Digest,
    Index,
    LayoutStore,
    Manifest,
    MediaType,
    Platform,
    read_docker_archive,
    write_docker_archive,
)
from anybuild.registry import CredentialResolver, Credentials, Reference, RegistryClient, RetryPolicy
from tests.harness.bases import BaseImages
from tests.harness.buildah import Buildah
from tests.harness.dockerd import Dockerd
from tests.harness.registry import Registry

from ..oci.images import make_image

AMD64 = Platform.parse("linux/amd64")


def _client(registry: Registry, chunk_size: int = 0) -> RegistryClient:
    creds = Credentials(username=registry.username or "", password=registry.password) if registry.password else None
    return RegistryClient(credentials=lambda host: creds, chunk_size=chunk_size)


def _image(tmp_path: Path, name: str = "src", layers: int = 3, size: int = 50_000) -> tuple[LayoutStore, Descriptor]:
    store = LayoutStore.create(tmp_path / name)
    files = [{f"data/{name}-{i}": os.urandom(size)} for i in range(layers)]
    return store, make_image(store, files, tag="latest")


def _blob_puts(registry: Registry, since: int) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in registry.requests()[since:]
            if r.method in ("PUT", "PATCH") and "/blobs/uploads/" in r.path]


def test_push_pull_roundtrip_through_auth_registry_is_bit_identical(auth_registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path)
    ref = Reference.parse(f"{auth_registry.host}/anybuild/roundtrip:1")
    with _client(auth_registry) as client:
        client.push_image(store, descriptor, ref)
    out = LayoutStore.create(tmp_path / "out")
    with _client(auth_registry) as client:
        result = client.pull_image(ref, out, platform=AMD64, tag="1")
    assert result.served_by == auth_registry.host
    assert result.descriptor.digest == descriptor.digest
    manifest = Manifest.from_json(out.read_blob(result.descriptor))
    for blob in (result.descriptor, manifest.config, *manifest.layers):
        assert filecmp.cmp(store.blob_path(blob.digest), out.blob_path(blob.digest), shallow=False)


def test_pull_without_credentials_from_auth_registry_says_log_in(auth_registry: Registry, tmp_path: Path) -> None:
    ref = Reference.parse(f"{auth_registry.host}/anybuild/roundtrip:1")
    with RegistryClient() as client, pytest.raises(RegistryAuthError) as info:
        client.pull_image(ref, LayoutStore.create(tmp_path / "o"), platform=AMD64)
    assert info.value.status == 401
    assert "log in" in info.value.hint


def test_push_wrong_password_is_auth_error_without_secret(auth_registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, layers=1)
    creds = Credentials(username=auth_registry.username or "", password="wrong-password-xyz")
    with RegistryClient(credentials=lambda host: creds) as client, pytest.raises(RegistryAuthError) as info:
        client.push_image(store, descriptor, Reference.parse(f"{auth_registry.host}/anybuild/x:1"))
    assert "wrong-password-xyz" not in json.dumps(info.value.to_dict())


def test_push_again_uploads_zero_blob_bytes(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "again")
    ref = Reference.parse(f"{registry.host}/anybuild/again:1")
    with _client(registry) as client:
        client.push_image(store, descriptor, ref)
    before = len(registry.requests())
    with _client(registry) as client:
        result = client.push_image(store, descriptor, Reference.parse(f"{registry.host}/anybuild/again:2"))
        assert client.stats.bytes_uploaded == 0
    assert result.blobs == {"existing": 4}
    assert _blob_puts(registry, before) == []
    heads = [r.path for r in registry.requests()[before:] if r.method == "HEAD"]
    assert heads[0] == "/v2/anybuild/again/manifests/2"  # a new tag: not there yet, so the blobs are checked
    assert len([h for h in heads if "/blobs/" in h]) == 4


def test_copy_within_registry_mounts_instead_of_uploading(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "copysrc")
    src = Reference.parse(f"{registry.host}/anybuild/copy-src:1")
    with _client(registry) as client:
        client.push_image(store, descriptor, src)
    before = len(registry.requests())
    dst = Reference.parse(f"{registry.host}/anybuild/copy-dst:1")
    with _client(registry) as client:
        result = client.copy_image(src, dst, LayoutStore.create(tmp_path / "scratch"))
        assert client.stats.bytes_uploaded == 0
        assert client.stats.bytes_downloaded == 0
    assert result.blobs == {"mounted": 4}
    new = registry.requests()[before:]
    mounts = [r for r in new if r.method == "POST" and "mount=" in r.path]
    assert len(mounts) == 4 and all(r.status == 201 for r in mounts)
    assert _blob_puts(registry, before) == []
    with _client(registry) as client:
        assert client.get_manifest(dst).digest == descriptor.digest


def test_chunked_push_roundtrip(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "chunked", layers=2, size=300_000)
    ref = Reference.parse(f"{registry.host}/anybuild/chunked:1")
    before = len(registry.requests())
    with _client(registry, chunk_size=100_000) as client:
        client.push_image(store, descriptor, ref)
    patches = [r for r in registry.requests()[before:] if r.method == "PATCH"]
    assert len(patches) >= 6
    out = LayoutStore.create(tmp_path / "out")
    with _client(registry) as client:
        result = client.pull_image(ref, out, platform=AMD64)
    assert result.descriptor.digest == descriptor.digest


def test_pull_from_mirror_reports_mirror(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "mirror", layers=1)
    with _client(registry) as client:
        client.push_image(store, descriptor, Reference.parse(f"{registry.host}/library/mirrored:1"))
        result = client.pull_image(Reference.parse("mirrored:1"), LayoutStore.create(tmp_path / "o"),
                                   platform=AMD64, mirrors=("127.0.0.1:9", registry.host))
    assert result.served_by == registry.host
    assert result.failed_sources and result.failed_sources[0].startswith("127.0.0.1:9")


def test_tls_registry_verified_with_ca_bundle(tls_registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "tls", layers=1)
    ref = Reference.parse(f"{tls_registry.host}/anybuild/tls:1")
    with RegistryClient(ca_bundle=tls_registry.ca_cert) as client:
        client.push_image(store, descriptor, ref)
        assert client.http.base_url(tls_registry.host).startswith("https://")
        assert client.get_manifest(ref).digest == descriptor.digest


def test_tls_registry_untrusted_ca_is_clear_error(tls_registry: Registry) -> None:
    with RegistryClient(retry=RetryPolicy(attempts=1)) as client, pytest.raises(RegistryError) as info:
        client.get_manifest(Reference.parse(f"{tls_registry.host}/anybuild/tls:1"))
    assert "TLS certificate" in info.value.message and "not trusted" in info.value.message
    assert "--insecure-registry" in info.value.hint


def test_tls_registry_named_insecure_skips_verification(tls_registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "insecure", layers=1)
    ref = Reference.parse(f"{tls_registry.host}/anybuild/insecure:1")
    with RegistryClient(insecure=frozenset({tls_registry.host})) as client:
        client.push_image(store, descriptor, ref)
        assert client.http.base_url(tls_registry.host).startswith("https://")


def test_index_push_pull_platform_and_copy_all(registry: Registry, tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "multi")
    amd = make_image(store, [{"arch": b"amd64"}], tag=None)
    arm = make_image(store, [{"arch": b"arm64"}], tag=None)
    index = Index(manifests=(
        replace(amd, platform=Platform.parse("linux/amd64")),
        replace(arm, platform=Platform.parse("linux/arm64")),
    ))
    index_descriptor = store.write_bytes(index.to_json(), MediaType.OCI_INDEX)
    ref = Reference.parse(f"{registry.host}/anybuild/multi:1")
    with _client(registry) as client:
        client.push_image(store, index_descriptor, ref)
        assert client.get_manifest(ref).digest == index_descriptor.digest
        pulled = client.pull_image(ref, LayoutStore.create(tmp_path / "arm"), platform=Platform.parse("linux/arm64/v8"))
        assert pulled.descriptor.digest == arm.digest
        copied = client.copy_image(ref, Reference.parse(f"{registry.host}/anybuild/multi-copy:1"),
                                   LayoutStore.create(tmp_path / "scratch"))
    assert copied.descriptor.digest == index_descriptor.digest
    assert copied.blobs.get("mounted") == 4  # a config and a layer per platform


def test_docker_archive_loads_in_dockerd_and_pulled_image_runs(
    registry: Registry, dockerd: Dockerd, base_images: BaseImages, tmp_path: Path
) -> None:
    busybox = Reference.parse(base_images.busybox)
    out = LayoutStore.create(tmp_path / "bb")
    with _client(registry) as client:
        pulled = client.pull_image(busybox, out, platform=AMD64)
        # and push it under a new name, for `docker pull`
        client.push_image(out, pulled.descriptor, Reference.parse(f"{registry.host}/anybuild/bb:pushed"))
    archive = tmp_path / "bb.tar"
    write_docker_archive(out, pulled.descriptor, archive, ["anybuild/bb:archived"])
    docker = dockerd.docker
    assert "anybuild/bb:archived" in docker("load", "-i", str(archive)).stdout
    assert docker("run", "--rm", "anybuild/bb:archived", "echo", "from-archive").stdout.strip() == "from-archive"
    docker("pull", f"{registry.host}/anybuild/bb:pushed")
    ran = docker("run", "--rm", f"{registry.host}/anybuild/bb:pushed", "echo", "from-registry")
    assert ran.stdout.strip() == "from-registry"
    # and the other way: what `docker save` writes, anybuild reads and pushes
    saved = tmp_path / "saved.tar"
    docker("save", "-o", str(saved), "anybuild/bb:archived")
    imported = LayoutStore.create(tmp_path / "imported")
    [image] = read_docker_archive(saved, imported)
    assert image.repo_tags == ("anybuild/bb:archived",)
    with _client(registry) as client:
        client.push_image(imported, image.descriptor, Reference.parse(f"{registry.host}/anybuild/bb:resaved"))
    ran = docker("run", "--rm", f"{registry.host}/anybuild/bb:resaved", "echo", "from-save")
    assert ran.stdout.strip() == "from-save"


def test_buildah_pulls_what_we_pushed(registry: Registry, buildah: Buildah, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "forbuildah", layers=2)
    ref = Reference.parse(f"{registry.host}/anybuild/forbuildah:1")
    with _client(registry) as client:
        client.push_image(store, descriptor, ref)
    done = buildah.run("pull", "--tls-verify=false", str(ref))
    assert descriptor.digest.hex[:12] in done.stdout or done.returncode == 0
    inspect = buildah.run("inspect", "--type", "image", str(ref))
    assert json.loads(inspect.stdout)["FromImageDigest"] == str(descriptor.digest)


def test_credential_resolver_docker_config_against_auth_registry(auth_registry: Registry, tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    (tmp_path / ".docker/config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    resolver = CredentialResolver(env={}, home=tmp_path)
    with RegistryClient(credentials=resolver.resolve) as client:
        client.ping(auth_registry.host)
        absent = Digest.of_bytes(b"nothing here")
        assert client.blob_exists(Reference.parse(f"{auth_registry.host}/anybuild/none"), absent) is False


def test_push_unchanged_is_one_manifest_head_changed_pushes_again(auth_registry: Registry, tmp_path: Path) -> None:
    """Issue 23: a push of what the tag already names is one HEAD of the manifest; another image
    under the same tag is pushed in full (its new blobs uploaded, the tag moved)."""
    store, descriptor = _image(tmp_path, layers=2)
    ref = Reference.parse(f"{auth_registry.host}/noop/app:1")
    with _client(auth_registry) as client:
        client.push_image(store, descriptor, ref)
    since = len(auth_registry.requests())
    with _client(auth_registry) as client:
        result = client.push_image(store, descriptor, ref)
    again = [(r.method, r.path, r.status) for r in auth_registry.requests()[since:] if r.status != 401]
    assert again == [("HEAD", "/v2/noop/app/manifests/1", 200)]
    assert result.descriptor == descriptor

    other_store, other = _image(tmp_path, name="other", layers=1)
    since = len(auth_registry.requests())
    with _client(auth_registry) as client:
        client.push_image(other_store, other, ref)
    assert len(_blob_puts(auth_registry, since)) == 2  # its layer and its config
    with _client(auth_registry) as client:
        assert client.head_manifest(ref) == other.digest
