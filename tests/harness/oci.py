"""Deterministic OCI image layouts written with tarfile + hashlib + json.

Layers are built from `Entry` values (sorted, mtime fixed, uid/gid explicit), so the same
inputs give the same digests on every machine and every run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

__all__ = [
    "EPOCH",
    "Entry",
    "ImageConfig",
    "Kind",
    "Layer",
    "MediaType",
    "layer_from_entries",
    "layer_from_tar",
    "write_index_layout",
    "write_layout",
]

EPOCH = 0  # mtime of every entry we write: 1970-01-01T00:00:00Z


class MediaType(StrEnum):
    MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    INDEX = "application/vnd.oci.image.index.v1+json"
    CONFIG = "application/vnd.oci.image.config.v1+json"
    LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    path: str  # relative, no leading slash
    kind: Kind
    mode: int = 0o755
    data: bytes = b""
    target: str = ""  # symlink target
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    blob: bytes  # gzip-compressed tar
    diff_id: str  # sha256 of the uncompressed tar
    comment: str = ""

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.blob).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    env: Sequence[str]
    cmd: Sequence[str]
    user: str = ""
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def _tar_info(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path.strip("/"))
    info.mtime = EPOCH
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    match entry.kind:
        case Kind.FILE:
            info.type = tarfile.REGTYPE
            info.size = len(entry.data)
        case Kind.DIR:
            info.type = tarfile.DIRTYPE
        case Kind.SYMLINK:
            info.type = tarfile.SYMTYPE
            info.linkname = entry.target
    return info


def _compress(tar_bytes: bytes, level: int) -> bytes:
    return gzip.compress(tar_bytes, compresslevel=level, mtime=EPOCH)


def layer_from_entries(entries: Iterable[Entry], *, comment: str = "", level: int = 6) -> Layer:
    """A layer holding `entries`, sorted by path (parents before children)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(entries, key=lambda e: e.path.strip("/").split("/")):
            info = _tar_info(entry)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind is Kind.FILE else None)
    raw = buffer.getvalue()
    return Layer(blob=_compress(raw, level), diff_id="sha256:" + hashlib.sha256(raw).hexdigest(), comment=comment)


def layer_from_tar(tar_path: Path, *, comment: str = "", level: int = 1) -> Layer:
    """A layer whose uncompressed content is the (already deterministic) tar at `tar_path`."""
    raw = tar_path.read_bytes()
    return Layer(blob=_compress(raw, level), diff_id="sha256:" + hashlib.sha256(raw).hexdigest(), comment=comment)


def _put_blob(layout: Path, data: bytes) -> dict[str, object]:
    hexdigest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / hexdigest
    if not path.exists():
        path.write_bytes(data)
    return {"digest": "sha256:" + hexdigest, "size": len(data)}


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_layout(layout: Path, *, layers: Sequence[Layer], config: ImageConfig, tags: Sequence[str],
                 platform: str = "linux/amd64") -> str:
    """Write (or add to) an OCI image layout at `layout`; return the manifest digest."""
    return _tag(layout, _image(layout, layers=layers, config=config, platform=platform), tags)


def write_index_layout(layout: Path, *, images: Mapping[str, tuple[Sequence[Layer], ImageConfig]],
                       tags: Sequence[str]) -> str:
    """Write (or add to) `layout` an image index of one image per platform ("os/arch[/variant]": layers,
    config), tagged `tags`; return the index digest."""
    entries = []
    for platform, (layers, config) in images.items():
        desc = _image(layout, layers=layers, config=config, platform=platform)
        os_name, arch, *variant = platform.split("/")
        entries.append({**desc, "platform": {"os": os_name, "architecture": arch,
                                             **({"variant": variant[0]} if variant else {})}})
    index_doc = {"schemaVersion": 2, "mediaType": MediaType.INDEX.value, "manifests": entries}
    index_desc = {"mediaType": MediaType.INDEX.value, **_put_blob(layout, _canonical(index_doc))}
    return _tag(layout, index_desc, tags)


def _image(layout: Path, *, layers: Sequence[Layer], config: ImageConfig, platform: str) -> dict[str, object]:
    """Write one image's blobs; return its manifest's descriptor."""
    os_name, arch, *variant = platform.split("/")
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    image_config: dict[str, object] = {"Env": list(config.env), "Cmd": list(config.cmd)}
    if config.user:
        image_config["User"] = config.user
    if config.working_dir:
        image_config["WorkingDir"] = config.working_dir
    if config.labels:
        image_config["Labels"] = dict(config.labels)
    config_doc = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": arch,
        "os": os_name,
        **({"variant": variant[0]} if variant else {}),
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": layer.comment or "anybuild test harness"}
            for layer in layers
        ],
    }
    config_desc = {"mediaType": MediaType.CONFIG.value, **_put_blob(layout, _canonical(config_doc))}
    layer_descs = [{"mediaType": MediaType.LAYER_GZIP.value, **_put_blob(layout, layer.blob)} for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.MANIFEST.value,
        "config": config_desc,
        "layers": layer_descs,
    }
    return {"mediaType": MediaType.MANIFEST.value, **_put_blob(layout, _canonical(manifest))}


def _tag(layout: Path, manifest_desc: dict[str, object], tags: Sequence[str]) -> str:
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    index: dict[str, object] = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": MediaType.INDEX.value, "manifests": []}
    )
    kept = [
        m
        for m in index["manifests"]  # type: ignore[attr-defined]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") not in tags
    ]
    for tag in tags:
        kept.append({**manifest_desc, "annotations": {"org.opencontainers.image.ref.name": tag}})
    index["manifests"] = kept
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True))
    return str(manifest_desc["digest"])
