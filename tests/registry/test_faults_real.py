"""Faults between anybuild and a real registry, injected by a loopback proxy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anybuild.errors import RegistryError
from anybuild.oci import Descriptor, LayoutStore, Manifest, Platform
from anybuild.registry import Reference, RegistryClient, RetryPolicy
from tests.harness.registry import Registry

from ..oci.images import make_image
from .faultproxy import Fault, fault_proxy

AMD64 = Platform.parse("linux/amd64")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _store(tmp_path: Path, name: str, size: int = 300_000) -> tuple[LayoutStore, Descriptor]:
    store = LayoutStore.create(tmp_path / name)
    return store, make_image(store, [{f"{name}/a": os.urandom(size)}, {f"{name}/b": os.urandom(size)}])


def test_push_survives_drop_429_and_503s_and_resumes(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _store(tmp_path, "faulty")
    faults = [
        Fault(method="HEAD", path="/blobs/", action="status", status=429, headers={"Retry-After": "2"}),
        Fault(method="PATCH", path="/blobs/uploads/", action="drop", skip=2),
        Fault(method="PUT", path="/manifests/", action="status", status=503, times=2),
    ]
    sleeps = Sleeps()
    with fault_proxy(registry.host, faults) as proxy:
        ref = Reference.parse(f"{proxy.host}/anybuild/faulty:1")
        with RegistryClient(sleep=sleeps, chunk_size=100_000) as client:
            client.push_image(store, descriptor, ref, workers=1)
    assert all(f.times == 0 for f in faults), "every fault fired"
    assert 2.0 in sleeps, "Retry-After: 2 was honoured"
    assert len(sleeps) == 4
    # the dropped PATCH was resumed from the registry's Range, not restarted
    patches = [s for s in proxy.seen if s.method == "PATCH"]
    dropped = next(i for i, s in enumerate(patches) if s.outcome == "dropped")
    assert patches[dropped + 1].headers["Content-Range"] == patches[dropped].headers["Content-Range"]
    assert patches[dropped].headers["Content-Range"].startswith("100000-")
    status_checks = [s for s in proxy.seen if s.method == "GET" and "/blobs/uploads/" in s.path]
    assert [s.outcome for s in status_checks] == ["204"]
    # the registry holds a valid image: pull it directly, every blob verified
    out = LayoutStore.create(tmp_path / "out")
    with RegistryClient() as client:
        result = client.pull_image(Reference.parse(f"{registry.host}/anybuild/faulty:1"), out, platform=AMD64)
    assert result.descriptor.digest == descriptor.digest


def test_monolithic_upload_dropped_is_retried(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _store(tmp_path, "mono")
    faults = [Fault(method="PUT", path="/blobs/uploads/", action="drop")]
    with fault_proxy(registry.host, faults) as proxy, RegistryClient(sleep=Sleeps()) as client:
        client.push_image(store, descriptor, Reference.parse(f"{proxy.host}/anybuild/mono:1"), workers=1)
    assert faults[0].times == 0
    with RegistryClient() as client:
        assert client.get_manifest(Reference.parse(f"{registry.host}/anybuild/mono:1")).digest == descriptor.digest


def test_pull_truncated_blob_is_retried_and_verified(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _store(tmp_path, "trunc")
    with RegistryClient() as client:
        client.push_image(store, descriptor, Reference.parse(f"{registry.host}/anybuild/trunc:1"))
    faults = [Fault(method="GET", path="/blobs/sha256:", action="truncate", times=2)]
    out = LayoutStore.create(tmp_path / "out")
    with fault_proxy(registry.host, faults) as proxy, RegistryClient(sleep=Sleeps()) as client:
        result = client.pull_image(Reference.parse(f"{proxy.host}/anybuild/trunc:1"), out, platform=AMD64, workers=1)
    assert faults[0].times == 0
    manifest = Manifest.from_json(out.read_blob(result.descriptor))
    for layer in manifest.layers:
        out.verify_blob(layer)


def test_retries_exhausted_say_what_failed_and_leave_no_partial_files(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _store(tmp_path, "exhaust")
    with RegistryClient() as client:
        client.push_image(store, descriptor, Reference.parse(f"{registry.host}/anybuild/exhaust:1"))
    faults = [Fault(method="GET", path="/blobs/sha256:", action="truncate", times=1000)]
    out = LayoutStore.create(tmp_path / "out")
    sleeps = Sleeps()
    with fault_proxy(registry.host, faults) as proxy, \
            RegistryClient(sleep=sleeps, retry=RetryPolicy(attempts=3)) as client, \
            pytest.raises(RegistryError) as info:
        client.pull_image(Reference.parse(f"{proxy.host}/anybuild/exhaust:1"), out, platform=AMD64, workers=1)
    assert "gave up after 3 attempts" in info.value.message
    assert "download blob sha256:" in info.value.message
    assert info.value.hint
    assert sleeps == [0.5, 1.0]
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert out.index().manifests == ()


def test_manifest_put_503_forever_fails_with_status(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _store(tmp_path, "fivehundred", size=1000)
    faults = [Fault(method="PUT", path="/manifests/", action="status", status=503, times=100)]
    with fault_proxy(registry.host, faults) as proxy, \
            RegistryClient(sleep=Sleeps(), retry=RetryPolicy(attempts=2)) as client, \
            pytest.raises(RegistryError) as info:
        client.push_image(store, descriptor, Reference.parse(f"{proxy.host}/anybuild/f:1"))
    assert info.value.status == 503
    assert info.value.retryable
