"""Small, real images made in-process for tests: deterministic gzip tar layers, config, manifest."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping, Sequence

from anybuild.oci import (
    ContainerConfig,
    Descriptor,
    Digest,
    History,
    ImageConfig,
    LayoutStore,
    Manifest,
    MediaType,
    Platform,
)


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_image(
    store: LayoutStore,
    layers: Sequence[Mapping[str, bytes]],
    *,
    tag: str | None = "latest",
    cmd: tuple[str, ...] = ("/bin/sh",),
    docker_types: bool = False,
) -> Descriptor:
    """Write an image of *layers* into *store*; return its manifest descriptor."""
    layer_type = MediaType.DOCKER_LAYER_GZIP if docker_types else MediaType.OCI_LAYER_GZIP
    descriptors, diff_ids = [], []
    for files in layers:
        raw = layer_tar(files)
        diff_ids.append(Digest.of_bytes(raw))
        descriptors.append(store.write_bytes(gzip.compress(raw, mtime=0), layer_type))
    config = ImageConfig(
        platform=Platform.parse("linux/amd64"),
        diff_ids=tuple(diff_ids),
        config=ContainerConfig(cmd=cmd, env=("PATH=/bin",)),
        history=tuple(History(created_by=f"layer {i}") for i in range(len(layers))),
        created="1970-01-01T00:00:00Z",
    )
    config_type = MediaType.DOCKER_CONFIG if docker_types else MediaType.OCI_CONFIG
    config_descriptor = store.write_bytes(config.to_json(), config_type)
    manifest = Manifest(
        config=config_descriptor,
        layers=tuple(descriptors),
        media_type=MediaType.DOCKER_MANIFEST if docker_types else MediaType.OCI_MANIFEST,
    )
    descriptor = store.write_bytes(manifest.to_json(), manifest.media_type)
    store.put_manifest(descriptor, tag)
    return descriptor
