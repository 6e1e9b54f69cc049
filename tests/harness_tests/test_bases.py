"""Offline base images: deterministic layouts, pushed to the registry under Docker Hub names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.bases import PATH_ENV, BaseImages, busybox_entries, is_static_elf, static_busybox
from tests.harness.oci import ImageConfig, Kind, MediaType, layer_from_entries, write_layout
from tests.harness.registry import Registry

_OCI_ACCEPT = f"{MediaType.MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def busybox() -> Path:
    return static_busybox()


def test_busybox_layout_same_input_same_manifest_digest(busybox: Path, tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        layer = layer_from_entries(busybox_entries(busybox))
        digests.append(
            write_layout(tmp_path / name, layers=[layer], config=ImageConfig(env=[], cmd=["sh"]), tags=["t"])
        )
    assert digests[0] == digests[1]


def test_is_static_elf_tells_static_from_dynamic(busybox: Path) -> None:
    assert is_static_elf(busybox)
    assert not is_static_elf(Path(sys.executable).resolve())
    assert not is_static_elf(Path(__file__))


def test_busybox_entries_have_shell_users_and_sticky_tmp(busybox: Path) -> None:
    entries = {e.path: e for e in busybox_entries(busybox)}
    assert entries["bin/sh"].kind is Kind.SYMLINK
    assert entries["bin/sh"].target == "/bin/busybox"
    assert entries["tmp"].mode == 0o1777
    assert b"nobody:x:65534" in entries["etc/passwd"].data
    assert entries["etc/group"].data.startswith(b"root:x:0:")


def test_base_images_busybox_served_by_mirror_with_config(base_images: BaseImages, registry: Registry) -> None:
    assert base_images.busybox == f"{registry.host}/library/busybox:1.36"
    assert base_images.mirror_host == registry.host
    assert (base_images.busybox_layout / "index.json").is_file()
    with httpx.Client(base_url=registry.url, timeout=10) as client:
        for tag in ("1.36", "latest"):
            manifest = client.get(f"/v2/library/busybox/manifests/{tag}", headers={"Accept": _OCI_ACCEPT})
            assert manifest.status_code == 200
            assert manifest.headers["Content-Type"] == MediaType.MANIFEST
        config_digest = json.loads(manifest.content)["config"]["digest"]
        config = client.get(f"/v2/library/busybox/blobs/{config_digest}").json()
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"]["Env"] == [PATH_ENV]
    assert config["config"]["Cmd"] == ["sh"]
    assert len(config["rootfs"]["diff_ids"]) == 1
