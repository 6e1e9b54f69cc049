import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from anybuild.errors import IntegrityError
from anybuild.oci import REF_NAME, Descriptor, Digest, LayoutStore, Manifest, MediaType

from .images import make_image


def test_layout_create_writes_marker_and_empty_index(tmp_path: Path) -> None:
    LayoutStore.create(tmp_path / "l")
    assert json.loads((tmp_path / "l/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((tmp_path / "l/index.json").read_text())["manifests"] == []


def test_layout_open_missing_marker_raises(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="not an OCI image layout"):
        LayoutStore.open(tmp_path)


def test_layout_write_blob_stores_by_digest(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    descriptor = store.write_blob([b"ab", b"c"], media_type=MediaType.OCI_LAYER)
    assert descriptor.digest == Digest.of_bytes(b"abc")
    assert store.blob_path(descriptor.digest).read_bytes() == b"abc"
    assert store.read_blob(descriptor) == b"abc"


def test_layout_write_blob_truncated_leaves_no_file(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    expected = Descriptor(media_type=MediaType.OCI_LAYER, digest=Digest.of_bytes(b"abcdef"), size=6)
    with pytest.raises(IntegrityError, match="size mismatch"):
        store.write_blob([b"abc"], expected=expected)
    assert sorted(p.name for p in (tmp_path / "blobs/sha256").iterdir()) == []


def test_layout_write_blob_wrong_content_leaves_no_file(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    expected = Descriptor(media_type=MediaType.OCI_LAYER, digest=Digest.of_bytes(b"abc"), size=3)
    with pytest.raises(IntegrityError, match="digest mismatch"):
        store.write_blob([b"abd"], expected=expected)
    assert not store.has_blob(expected.digest)
    assert list((tmp_path / "blobs/sha256").iterdir()) == []


def test_layout_write_blob_interrupted_stream_leaves_no_file(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)

    def chunks() -> Iterator[bytes]:
        yield b"abc"
        raise OSError("connection reset")

    with pytest.raises(OSError, match="reset"):
        store.write_blob(chunks())
    assert list((tmp_path / "blobs/sha256").iterdir()) == []


def test_layout_read_blob_corrupt_raises(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    descriptor = store.write_bytes(b"hello", MediaType.OCI_LAYER)
    store.blob_path(descriptor.digest).write_bytes(b"hellO")
    with pytest.raises(IntegrityError, match="digest mismatch"):
        store.read_blob(descriptor)


def test_layout_put_manifest_replaces_same_tag(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    first = make_image(store, [{"a": b"1"}], tag="v1")
    second = make_image(store, [{"a": b"2"}], tag="v1")
    make_image(store, [{"a": b"3"}], tag="v2")
    entries = store.index().manifests
    assert [m.annotations[REF_NAME] for m in entries] == ["v1", "v2"]
    assert store.resolve("v1").digest == second.digest != first.digest


def test_layout_resolve_unknown_tag_lists_names(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    make_image(store, [{"a": b"1"}], tag="v1")
    with pytest.raises(IntegrityError, match="no image named 'v9'") as info:
        store.resolve("v9")
    assert "v1" in info.value.hint


def test_layout_image_readable_by_manifest_parser(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    descriptor = make_image(store, [{"bin/a": b"x"}, {"bin/b": b"y"}])
    reopened = LayoutStore.open(tmp_path)
    manifest = Manifest.from_json(reopened.read_blob(reopened.resolve("latest")))
    manifest.require_image()
    assert len(manifest.layers) == 2
    for layer in manifest.layers:
        reopened.verify_blob(layer)
    assert reopened.resolve().digest == descriptor.digest


def test_layout_put_manifest_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = LayoutStore.create(tmp_path)
    descriptor = store.write_bytes(b"{}", MediaType.OCI_MANIFEST)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.put_manifest(descriptor, f"t{i}"), range(40)))
    names = {m.annotations[REF_NAME] for m in LayoutStore.open(tmp_path).index().manifests}
    assert names == {f"t{i}" for i in range(40)}


def test_index_descriptor_matches_bytes() -> None:
    from anybuild.oci import Index

    index = Index(manifests=(Descriptor(media_type=MediaType.OCI_MANIFEST, digest=Digest.of_bytes(b"m"), size=1),))
    assert index.descriptor().digest == Digest.of_bytes(index.to_json())


def _blob_names(store: LayoutStore) -> set[str]:
    return {p.name for p in (store.root / "blobs" / "sha256").iterdir()}


def test_layout_sweep_keeps_indexed_images_removes_the_rest(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path / "store")
    kept = make_image(store, [{"bin/a": b"x"}, {"bin/b": b"y"}], tag="base")
    indexed = _blob_names(store)
    orphan = make_image(store, [{"app/c": b"z" * 4096}], tag=None)
    parts = Manifest.from_json(store.read_blob(orphan))
    unshared = parts.config.size + sum(layer.size for layer in parts.layers) + len(b"partial")
    store.forget_all()
    store.put_manifest(kept, "base")  # the orphan is written but named by nothing, as a built image is
    (store.root / "blobs" / "sha256" / ".incoming-killed").write_bytes(b"partial")
    outside = tmp_path / "exported"
    os.link(store.blob_path(orphan.digest), outside)  # e.g. an --output oci:DIR link to the manifest

    swept = store.sweep()

    assert _blob_names(store) == indexed
    assert swept.blobs == 4  # the orphan's layer, config and manifest, and the killed write
    assert swept.freed == unshared  # not the manifest's bytes: another link holds them
    assert outside.read_bytes()  # that link still reads
    reopened = LayoutStore.open(store.root)
    Manifest.from_json(reopened.read_blob(reopened.resolve("base"))).require_image()
    for blob in Manifest.from_json(reopened.read_blob(kept)).layers:
        reopened.verify_blob(blob)


def test_layout_sweep_after_forget_all_empties_the_store(tmp_path: Path) -> None:
    store = LayoutStore.create(tmp_path)
    make_image(store, [{"bin/a": b"x"}], tag="base")
    store.forget_all()
    swept = store.sweep()
    assert swept.blobs == 3 and swept.freed > 0
    assert _blob_names(store) == set()
    assert store.index().manifests == ()
