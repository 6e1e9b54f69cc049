import json
import tarfile
from pathlib import Path

import pytest

from anybuild.errors import IntegrityError
from anybuild.oci import ImageConfig, LayoutStore, Manifest, read_docker_archive, write_docker_archive

from .images import make_image


def test_archive_write_has_docker_and_oci_entries(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "src")
    descriptor = make_image(store, [{"a": b"1"}, {"b": b"2"}])
    archive = tmp_path / "img.tar"
    write_docker_archive(store, descriptor, archive, ["example/app:1"])
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert {"manifest.json", "repositories", "oci-layout", "index.json"} <= names
    assert manifest[0]["RepoTags"] == ["example/app:1"]
    assert all(layer in names for layer in manifest[0]["Layers"])
    assert list(repositories) == ["example/app"]


def test_archive_roundtrip_preserves_config_and_layers(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "src")
    descriptor = make_image(store, [{"a": b"1"}, {"b": b"2"}])
    original = Manifest.from_json(store.read_blob(descriptor))
    archive = tmp_path / "img.tar"
    write_docker_archive(store, descriptor, archive, ["x:1"])
    target = LayoutStore.create(tmp_path / "dst")
    [image] = read_docker_archive(archive, target)
    imported = Manifest.from_json(target.read_blob(image.descriptor))
    assert image.repo_tags == ("x:1",)
    assert imported.config.digest == original.config.digest
    assert [layer.digest for layer in imported.layers] == [layer.digest for layer in original.layers]
    assert {layer.media_type for layer in imported.layers} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    ImageConfig.from_json(target.read_blob(imported.config))


def test_archive_read_missing_layer_raises(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "src")
    descriptor = make_image(store, [{"a": b"1"}])
    archive = tmp_path / "img.tar"
    write_docker_archive(store, descriptor, archive)
    broken = tmp_path / "broken.tar"
    with tarfile.open(archive) as src, tarfile.open(broken, "w") as dst:
        layer = json.load(src.extractfile("manifest.json"))[0]["Layers"][0]  # type: ignore[arg-type]
        for member in src.getmembers():
            if member.name != layer:
                dst.addfile(member, src.extractfile(member))
    with pytest.raises(IntegrityError, match="missing from the archive"):
        read_docker_archive(broken, LayoutStore.create(tmp_path / "dst"))


def test_archive_read_not_a_tar_raises(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"nope")
    with pytest.raises(IntegrityError, match="cannot read docker archive"):
        read_docker_archive(tmp_path / "x.tar", LayoutStore.create(tmp_path / "dst"))


def test_archive_write_failure_leaves_no_file(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "src")
    descriptor = make_image(store, [{"a": b"1"}])
    manifest = Manifest.from_json(store.read_blob(descriptor))
    store.blob_path(manifest.layers[0].digest).unlink()
    with pytest.raises(IntegrityError, match="missing"):
        write_docker_archive(store, descriptor, tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
    assert list(tmp_path.glob(".out.tar*")) == []
