"""The devpod story, for real: where dockerd cannot build, anybuild builds, pushes, and the images run.

The "devpod" is an overlay mount (``nested_overlay``): dockerd's overlay2 driver
fails there with the overlay error, while anybuild, with its data directory on the
same mount, builds examples/moltbook (``npm ci`` against the package-lock, over the
host network, and a static front end) with the overlay snapshotter on a tmpfs,
pushes both images to the test registry, and a working dockerd pulls and runs them.
The same builds with overlay mounts forbidden (``ANYBUILD_SNAPSHOTTER=walk``) give
the same images.

This sandbox reaches registry.npmjs.org through a TLS-intercepting egress proxy whose
CA only the host trusts, so the API is built FROM the harness's node image plus the
host's CA bundle and ``NODE_EXTRA_CA_CERTS`` (given as a named image; the Dockerfile
is unchanged). Where the host has no bundle, the harness's image is used as it is.

``npm ci`` writes wall-clock times into its cache (``/root/.npm``: index entries and a
log named after the time), so two builds of the API differ there whatever the
snapshotter, as two Docker builds do; for the API the identity is checked layer by
layer with that directory compared by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from anybuild.backends.base import BuildRequest, BuildResult, ListSink
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.rootfs import decompressed
from anybuild.errors import BuildFailed
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Manifest
from tests.harness import procs
from tests.harness.bases import PATH_ENV, debian_rootfs_tar, node_layer_tar
from tests.harness.oci import Entry, ImageConfig, Kind, layer_from_entries, layer_from_tar, write_layout
from tests.harness.procs import mounts_under

MOLTBOOK = Path(__file__).resolve().parents[2] / "examples" / "moltbook"
EPOCH = "1700000000"
OVERLAY_ERRORS = ("failed to mount overlay: invalid argument", "driver not supported")
NPM_CACHE = "root/.npm/"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

pytestmark = [pytest.mark.slow, pytest.mark.root]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_with_host_ca(base_images: Any, work: Path) -> dict[str, str]:
    """FROM name -> oci-layout ref of node:20-bookworm-slim trusting the host's CAs (see the module doc)."""
    if not HOST_CA.is_file():
        return {}
    debian = debian_rootfs_tar(cache=base_images.cache)
    node = node_layer_tar(debian_tar=debian, cache=base_images.cache)
    version = procs.run(["node", "--version"]).stdout.strip().lstrip("v")
    ca = layer_from_entries([
        Entry(path="etc/ssl", kind=Kind.DIR), Entry(path="etc/ssl/certs", kind=Kind.DIR),
        Entry(path="etc/ssl/certs/host-ca.crt", kind=Kind.FILE, mode=0o644, data=HOST_CA.read_bytes()),
    ], comment="the host's CA bundle")
    config = ImageConfig(env=[PATH_ENV, f"NODE_VERSION={version}", "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca.crt"],
                         cmd=["node"])
    layout = work / "node-host-ca"
    write_layout(layout, layers=[layer_from_tar(debian), layer_from_tar(node), ca], config=config,
                 tags=["20-bookworm-slim"])
    return {"node:20-bookworm-slim": f"oci-layout://{layout}:20-bookworm-slim"}


def build(image: str, data: Path, registry: Any, out: Path, *, walk: bool,
          named: dict[str, str]) -> tuple[BuildResult, list[str], float]:
    context = MOLTBOOK / image
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(data), "SOURCE_DATE_EPOCH": EPOCH}
    env.pop("ANYBUILD_SNAPSHOTTER", None)
    if walk:
        env["ANYBUILD_SNAPSHOTTER"] = "walk"
    tag = f"{registry.host}/moltbook/{image}:{'walk' if walk else 'overlay'}"
    request = BuildRequest(
        context=context, dockerfile=context / "Dockerfile", tags=(tag,), push=True, output=f"oci:{out}",
        no_cache=True, build_args={"NODE_ENV": "production"} if image == "api" else {},
        insecure_registries=(registry.host,), registry_mirrors={"docker.io": (registry.host,)},
    )
    sink = ListSink()
    started = time.monotonic()
    try:
        result = build_image(request, sink, BuildEnvironment(env=env, named_images=named))
    except BuildFailed as exc:
        raise AssertionError(f"{image} ({'walk' if walk else 'overlay'}) failed: {exc.message}\n"
                             + "\n".join(sink.lines[-40:])) from exc
    return result, sink.lines, time.monotonic() - started


def layers_of(layout: Path, tag: str) -> tuple[list[str], LayoutStore, Manifest]:
    store = LayoutStore.open(layout)
    manifest = Manifest.from_json(store.read_blob(store.resolve(tag)))
    config = json.loads(store.read_blob(manifest.config))
    return list(config["rootfs"]["diff_ids"]), store, manifest


def listing(store: LayoutStore, manifest: Manifest, index: int) -> dict[str, tuple[Any, ...]]:
    """name -> (type, mode, uid, gid, mtime, sha256 or link) of one layer; npm's cache by name only."""
    out: dict[str, tuple[Any, ...]] = {}
    with store.open_blob(manifest.layers[index].digest) as stream, \
            tarfile.open(fileobj=decompressed(stream), mode="r|") as tar:
        for member in tar:
            if member.name.startswith(NPM_CACHE):
                if not member.name.startswith(NPM_CACHE + "_logs/"):
                    out[member.name] = ("npm-cache",)
                continue
            data = tar.extractfile(member)
            digest = hashlib.sha256(data.read()).hexdigest() if data is not None else member.linkname
            out[member.name] = (member.type, member.mode, member.uid, member.gid, member.mtime, digest)
    return out


def run_and_get(dockerd: Any, name: str, argv: list[str], url: str) -> httpx.Response:
    """docker run -d --network host; GET *url* until it answers; always remove the container."""
    dockerd.docker("run", "-d", "--name", name, "--network", "host", *argv)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                return httpx.get(url, timeout=2)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    logs = dockerd.docker("logs", name, check=False)
                    raise AssertionError(f"{name} never answered {url}: {logs.stdout}{logs.stderr}") from None
                time.sleep(0.3)
    finally:
        dockerd.docker("rm", "-f", name, check=False)


def test_devpod_moltbook_overlay_on_tmpfs_builds_pushes_runs_same_as_walk(
    nested_overlay: Path, overlay_dockerd_failure: str, registry: Any, base_images: Any, dockerd: Any,
    tmp_path: Path,
) -> None:
    assert any(error in overlay_dockerd_failure for error in OVERLAY_ERRORS), overlay_dockerd_failure
    base_images.node()
    named = node_with_host_ca(base_images, tmp_path)
    pod = nested_overlay / f"devpod-{tmp_path.name}"
    results: dict[tuple[str, bool], tuple[BuildResult, Path]] = {}
    try:
        for image in ("frontend", "api"):
            for walk in (False, True):
                data = pod / ("data-walk" if walk else "data")
                out = tmp_path / f"{image}-{'walk' if walk else 'overlay'}"
                result, log, seconds = build(image, data, registry, out, walk=walk, named=named)
                expected = ("anybuild: snapshotter: walk (requested by ANYBUILD_SNAPSHOTTER=walk)" if walk else
                            "anybuild: snapshotter: overlay (upper on tmpfs: data dir is on overlayfs) over layer "
                            "snapshots")
                assert expected in log, "\n".join(log[:5])
                print(f"devpod build {image} ({'walk' if walk else 'overlay on tmpfs'}): {seconds:.1f} s, "
                      f"{result.digest}")
                results[image, walk] = (result, out)
                assert mounts_under(pod) == []
    finally:
        assert mounts_under(nested_overlay) == [nested_overlay]

    # the front end: byte-identical images
    assert results["frontend", False][0].digest == results["frontend", True][0].digest

    # the API: every layer identical but npm's cache, compared by name in the npm ci layer
    over_ids, over_store, over_manifest = layers_of(results["api", False][1], f"{registry.host}/moltbook/api:overlay")
    walk_ids, walk_store, walk_manifest = layers_of(results["api", True][1], f"{registry.host}/moltbook/api:walk")
    assert len(over_ids) == len(walk_ids)
    differing = [i for i, (a, b) in enumerate(zip(over_ids, walk_ids, strict=True)) if a != b]
    assert len(differing) <= 1, f"layers {differing} differ; only the npm ci layer may"
    for index in differing:
        assert listing(over_store, over_manifest, index) == listing(walk_store, walk_manifest, index)

    # pushed, pulled and run by a working dockerd
    api_tag = f"{registry.host}/moltbook/api:overlay"
    web_tag = f"{registry.host}/moltbook/frontend:overlay"
    dockerd.docker("pull", api_tag)
    dockerd.docker("pull", web_tag)
    port = free_port()
    health = run_and_get(dockerd, f"devpod-api-{port}", ["-e", f"PORT={port}", api_tag],
                         f"http://127.0.0.1:{port}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    port = free_port()
    page = run_and_get(dockerd, f"devpod-web-{port}",
                       [web_tag, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/srv/www"],
                       f"http://127.0.0.1:{port}/index.html")
    assert page.status_code == 200
    assert page.content == (MOLTBOOK / "frontend/public/index.html").read_bytes()

