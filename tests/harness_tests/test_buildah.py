"""buildah with private storage builds FROM the mirror and pushes to the registry."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.harness.bases import BaseImages
from tests.harness.buildah import Buildah, running_buildah
from tests.harness.procs import mounts_under
from tests.harness.registry import Registry

DOCKERFILE = 'FROM busybox:1.36\nRUN echo built > /built\nCMD ["cat", "/built"]\n'


def test_buildah_bud_from_mirror_then_push_to_registry(
    buildah: Buildah, base_images: BaseImages, registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    buildah.run("bud", "--quiet", "--network", "host", "-t", "localhost/harness/hello:1", str(tmp_path))
    assert buildah.run("images", "--format", "{{.Name}}:{{.Tag}}").stdout.count("localhost/harness/hello:1") == 1
    buildah.run("push", "--tls-verify=false", "localhost/harness/hello:1", f"docker://{registry.host}/harness/hello:1")
    reply = httpx.get(
        f"{registry.url}/v2/harness/hello/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    assert reply.status_code == 200
    assert (buildah.root / "vfs").is_dir()


@pytest.mark.root
def test_buildah_overlay_driver_on_request_builds_and_unmounts(
    base_images: BaseImages, registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(DOCKERFILE)
    with running_buildah(tmp_path / "b", mirror_host=registry.host, storage_driver="overlay") as overlay:
        overlay.run("bud", "--quiet", "-t", "localhost/harness/overlay:1", str(tmp_path / "ctx"))
        info = json.loads(overlay.run("info").stdout)
        assert info["store"]["GraphDriverName"] == "overlay"
    assert mounts_under(tmp_path) == []
    assert not (tmp_path / "b").exists()
