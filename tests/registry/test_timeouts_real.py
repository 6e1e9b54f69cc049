"""Registry timeouts that say what hung, and cancellation of transfers, against a real registry behind a proxy.

The proxy (faultproxy.py) hangs a request (a registry that accepts and never answers), or moves the
bytes of an upload or a download slowly (a slow link, where bytes keep coming).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from anybuild.cancellation import Cancellation
from anybuild.errors import Interrupted, RegistryError, UsageError
from anybuild.oci import Descriptor, LayoutStore, Platform
from anybuild.registry import Reference, RegistryClient, RegistryTimeouts
from tests.harness.registry import Registry

from ..oci.images import make_image
from .faultproxy import Fault, fault_proxy

AMD64 = Platform.parse("linux/amd64")
QUICK = RegistryTimeouts(connect=1.0, read=1.0)


def _image(tmp_path: Path, name: str, size: int) -> tuple[LayoutStore, Descriptor]:
    store = LayoutStore.create(tmp_path / name)
    return store, make_image(store, [{f"{name}/blob": os.urandom(size)}])


def test_registry_timeouts_from_env_read_once_and_bad_values_refused() -> None:
    assert RegistryTimeouts.from_env({}) == RegistryTimeouts()
    found = RegistryTimeouts.from_env({RegistryTimeouts.CONNECT_ENV: "5", RegistryTimeouts.READ_ENV: "90s"})
    assert (found.connect, found.read) == (5.0, 90.0)
    assert found.per_request().read == 90.0 and found.per_request().write == 90.0
    assert found.finishing().read == 360.0  # the answer that completes an upload may take longer
    for bad in ("0", "-3", "soon", "inf"):
        with pytest.raises(UsageError, match=rf"{RegistryTimeouts.READ_ENV}='{bad}' is not a number of seconds"):
            RegistryTimeouts.from_env({RegistryTimeouts.READ_ENV: bad})


def test_registry_that_never_answers_fails_with_a_read_timeout_after_two_attempts(registry: Registry,
                                                                                   tmp_path: Path) -> None:
    faults = [Fault(method="GET", path="/manifests/", action="hang", times=10)]
    with fault_proxy(registry.host, faults) as proxy, RegistryClient(timeouts=QUICK) as client, \
            pytest.raises(RegistryError) as info:
        client.pull_image(Reference.parse(f"{proxy.host}/anybuild/dead:1"), LayoutStore.create(tmp_path / "o"),
                          platform=AMD64)
    assert "read timeout" in info.value.message and "sent nothing for 1 s" in info.value.message
    assert "gave up after 2 attempts" in info.value.message
    assert RegistryTimeouts.READ_ENV in info.value.hint
    assert [s.outcome for s in proxy.seen if "/manifests/" in s.path] == ["hung", "hung"]


def test_slow_upload_and_download_keep_going_past_the_read_timeout(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "slow", 600_000)  # ~3 s at 200 kB/s, with 1 s timeouts
    ref = f"{registry.host}/anybuild/slow:1"
    faults = [Fault(method="PUT", path="/blobs/uploads/", action="slow", rate=200_000, times=5),
              Fault(method="GET", path="/blobs/sha256:", action="slow", rate=200_000, times=5)]
    with fault_proxy(registry.host, faults) as proxy:
        through = Reference.parse(ref.replace(registry.host, proxy.host))
        started = time.monotonic()
        with RegistryClient(timeouts=QUICK) as client:
            client.push_image(store, descriptor, through, workers=1)
            pulled = client.pull_image(through, LayoutStore.create(tmp_path / "out"), platform=AMD64, workers=1)
    assert time.monotonic() - started > 4  # it was slow for real: longer than the timeouts, many times over
    assert pulled.descriptor.digest == descriptor.digest
    assert {s.outcome for s in proxy.seen if s.method == "PUT" and "/blobs/" in s.path} == {"201"}


def test_cancellation_stops_a_request_blocked_on_a_silent_registry_at_once(registry: Registry,
                                                                           tmp_path: Path) -> None:
    cancel = Cancellation()
    faults = [Fault(method="GET", path="/manifests/", action="hang", times=10)]
    with fault_proxy(registry.host, faults) as proxy, RegistryClient(cancel=cancel) as client:
        threading.Timer(0.5, cancel.cancel).start()
        started = time.monotonic()
        with pytest.raises(Interrupted, match="interrupted by SIGINT"):
            client.pull_image(Reference.parse(f"{proxy.host}/anybuild/dead:1"), LayoutStore.create(tmp_path / "o"),
                              platform=AMD64)
    assert time.monotonic() - started < 3  # not the 15 s read timeout: its socket was shut down


def test_cancellation_during_a_push_tags_nothing(registry: Registry, tmp_path: Path) -> None:
    store, descriptor = _image(tmp_path, "cut", 2_000_000)
    cancel = Cancellation()
    faults = [Fault(method="PUT", path="/blobs/uploads/", action="slow", rate=250_000, times=5)]
    with fault_proxy(registry.host, faults) as proxy, RegistryClient(cancel=cancel) as client:
        threading.Timer(1.0, cancel.cancel).start()
        with pytest.raises(Interrupted):
            client.push_image(store, descriptor, Reference.parse(f"{proxy.host}/anybuild/cut:1"), workers=1)
    assert not [s for s in proxy.seen if "/manifests/" in s.path and s.method == "PUT"]
    with RegistryClient() as check, pytest.raises(RegistryError) as info:
        check.get_manifest(Reference.parse(f"{registry.host}/anybuild/cut:1"))
    assert info.value.status == 404
