"""The local step store: entries and blobs, verification, pruning, concurrent writers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from anybuild.builder.cache import CacheEntry, StepStore
from anybuild.errors import IntegrityError
from anybuild.oci.config import ContainerConfig, History
from anybuild.oci.layout import LayoutStore
from anybuild.oci.mediatype import MediaType


def entry(layers: LayoutStore, name: str, content: bytes | None) -> CacheEntry:
    layer = layers.write_bytes(content, MediaType.OCI_LAYER_GZIP) if content is not None else None
    return CacheEntry(key="sha256:" + name * 64, history=History(created_by=f"RUN make {name}"),
                      config=ContainerConfig(env=("A=1",)), layer=layer,
                      diff_id="sha256:" + "f" * 64 if layer is not None else None)


@pytest.fixture
def layers(tmp_path: Path) -> LayoutStore:
    return LayoutStore.create(tmp_path / "build-store")


def test_store_put_then_get_links_blob_into_another_build_store(tmp_path: Path, layers: LayoutStore) -> None:
    store = StepStore(tmp_path / "steps")
    stored = entry(layers, "a", b"layer-a")
    store.put(stored, layers)
    other = LayoutStore.create(tmp_path / "other-store")
    assert store.get(stored.key, other) == stored
    assert stored.layer is not None and other.has_blob(stored.layer.digest)
    assert store.get("sha256:" + "9" * 64, other) is None
    assert store.verify() == []


def test_store_entry_json_round_trips_without_layer(layers: LayoutStore) -> None:
    stored = entry(layers, "b", None)
    assert CacheEntry.from_json(stored.to_json()) == stored
    with pytest.raises(IntegrityError):
        CacheEntry.from_json(b'{"key": 1}')


def test_store_verify_reports_corrupt_and_missing_blob(tmp_path: Path, layers: LayoutStore) -> None:
    store = StepStore(tmp_path / "steps")
    corrupt, missing = entry(layers, "c", b"layer-c"), entry(layers, "d", b"layer-d")
    store.put(corrupt, layers)
    store.put(missing, layers)
    assert corrupt.layer is not None and missing.layer is not None
    path = store.blob_path(corrupt.layer.digest)
    path.unlink()  # a hard link to the build store's blob: replace, do not write through it
    path.write_bytes(b"tampered")
    store.blob_path(missing.layer.digest).unlink()
    problems = store.verify()
    assert len(problems) == 2
    assert store.get(missing.key, layers) is None  # an entry without its blob is a miss


def test_store_prune_keep_storage_removes_least_recently_used(tmp_path: Path, layers: LayoutStore) -> None:
    store = StepStore(tmp_path / "steps")
    old, new = entry(layers, "e", b"x" * 100), entry(layers, "1", b"y" * 100)
    store.put(old, layers)
    store.put(new, layers)
    os.utime(store.entries_dir / f"{old.key[7:]}.json", (1, 1))
    assert old.layer is not None
    layers.blob_path(old.layer.digest).unlink()  # the cache holds old's last link; new's is shared
    result = store.prune(keep_storage=150)
    assert (result.entries, result.blobs, result.freed) == (1, 1, 100)
    assert [e.entry.key for e in store.entries()] == [new.key]
    result = store.prune(everything=True)
    assert (result.entries, result.blobs, result.freed) == (1, 1, 0)  # the layout still links new's blob
    assert store.entries() == [] and store.usage() == 0


def test_store_prune_release_removes_least_recently_used_until_enough_is_gone(tmp_path: Path,
                                                                               layers: LayoutStore) -> None:
    store = StepStore(tmp_path / "steps")
    old, new = entry(layers, "e", b"x" * 100), entry(layers, "1", b"y" * 100)
    store.put(old, layers)
    store.put(new, layers)
    os.utime(store.entries_dir / f"{old.key[7:]}.json", (1, 1))
    assert store.prune(release=1).entries == 1  # one byte asked for: the older entry goes, whole
    assert [e.entry.key for e in store.entries()] == [new.key]


def test_store_concurrent_writers_same_and_different_keys(tmp_path: Path, layers: LayoutStore) -> None:
    store = StepStore(tmp_path / "steps")
    entries = [entry(layers, name, name.encode() * 1000) for name in "0123456789"]
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for i in range(len(entries)):
                item = entries[(i + offset) % len(entries)]
                store.put(item, layers)
                assert store.get(item.key, layers) == item
        except BaseException as exc:  # collected and asserted
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.entries()) == 10
    assert store.verify() == []
    assert not [p for p in store.root.rglob(".*") if p.name != ".lock"]  # no temporary files left
