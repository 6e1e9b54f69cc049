"""The ``docker save`` archive: read it into a blob store, and write one ``docker load`` accepts.

What anybuild writes is both a classic docker archive (``manifest.json``,
``repositories``) and an OCI image layout (``oci-layout``, ``index.json``,
``blobs/``), as Docker 25+ writes it: old and new ``docker load`` and skopeo read it.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from anybuild.errors import IntegrityError
from anybuild.oci.config import ImageConfig
from anybuild.oci.descriptor import Descriptor, canonical_json
from anybuild.oci.digest import CHUNK_SIZE
from anybuild.oci.layout import REF_NAME, BlobStore, LayoutStore, atomic_write
from anybuild.oci.manifest import Index, Manifest
from anybuild.oci.mediatype import MediaType

__all__ = ["ArchiveImage", "read_docker_archive", "write_docker_archive"]

_MTIME = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveImage:
    """One image imported from an archive: its manifest descriptor and its tags."""

    descriptor: Descriptor
    repo_tags: tuple[str, ...]


def _blob_name(descriptor: Descriptor) -> str:
    return f"blobs/{descriptor.digest.algorithm}/{descriptor.digest.hex}"


def _add(tar: tarfile.TarFile, name: str, size: int, stream: IO[bytes]) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, _MTIME, 0o644
    tar.addfile(info, stream)


def write_docker_archive(
    store: LayoutStore, manifest_descriptor: Descriptor, path: Path, repo_tags: Sequence[str] = (), *,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Write the image of *manifest_descriptor* to *path* (atomically), tagged *repo_tags*.

    *check* is called as the blobs are copied; what it raises stops the write, and *path* is untouched.
    """
    manifest = Manifest.from_json(store.read_blob(manifest_descriptor))
    manifest.require_image()
    config_data = store.read_blob(manifest.config)
    config = ImageConfig.from_json(config_data)
    if len(config.diff_ids) != len(manifest.layers):
        raise IntegrityError(
            f"image {manifest_descriptor.digest}: {len(manifest.layers)} layers but "
            f"{len(config.diff_ids)} diff_ids in its config",
            hint="the image is corrupt; rebuild or pull it again",
        )
    layer_names = [_blob_name(layer) for layer in manifest.layers]
    docker_manifest = [{"Config": _blob_name(manifest.config), "RepoTags": list(repo_tags),
                        "Layers": layer_names}]
    repositories: dict[str, dict[str, str]] = {}
    for repo_tag in repo_tags:
        repo, _, tag = repo_tag.rpartition(":")
        if manifest.layers:
            repositories.setdefault(repo, {})[tag] = manifest.layers[-1].digest.hex
    annotations = {REF_NAME: repo_tags[0]} if repo_tags else {}
    index = Index(manifests=(Descriptor(media_type=manifest_descriptor.media_type,
                                        digest=manifest_descriptor.digest, size=manifest_descriptor.size,
                                        annotations=annotations),))
    with atomic_write(path) as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        written: set[str] = set()
        for descriptor in (manifest_descriptor, manifest.config, *manifest.layers):
            name = _blob_name(descriptor)
            if name in written:
                continue
            written.add(name)
            check()
            with store.open_blob(descriptor.digest) as blob:
                _add(tar, name, descriptor.size, cast(IO[bytes], _Checked(blob, check)))
        for name, document in (
            ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
            ("index.json", index.to_json()),
            ("manifest.json", json.dumps(docker_manifest).encode()),
            ("repositories", json.dumps(repositories).encode()),
        ):
            _add(tar, name, len(document), io.BytesIO(document))


class _Checked(io.RawIOBase):
    """A blob read for the archive, calling *check* before each read."""

    def __init__(self, stream: IO[bytes], check: Callable[[], None]) -> None:
        self._stream, self._check = stream, check

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._check()
        return self._stream.read(size)


def _member(tar: tarfile.TarFile, name: str, archive: Path) -> IO[bytes]:
    try:
        stream = tar.extractfile(name.lstrip("/"))
    except KeyError:
        stream = None
    if stream is None:
        raise IntegrityError(
            f"{archive}: {name!r} is listed in manifest.json but missing from the archive",
            hint="the archive is truncated or corrupt; save it again",
        )
    return stream


def _sniffed(stream: IO[bytes]) -> tuple[str, Iterator[bytes]]:
    head = stream.read(CHUNK_SIZE)
    if head.startswith(b"\x1f\x8b"):
        kind = MediaType.OCI_LAYER_GZIP
    elif head.startswith(b"\x28\xb5\x2f\xfd"):
        kind = MediaType.OCI_LAYER_ZSTD
    else:
        kind = MediaType.OCI_LAYER

    def chunks() -> Iterator[bytes]:
        yield head
        while chunk := stream.read(CHUNK_SIZE):
            yield chunk

    return kind, chunks()


def read_docker_archive(path: Path, store: BlobStore) -> list[ArchiveImage]:
    """Import every image of a ``docker save`` archive into *store* as OCI manifests."""
    try:
        tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as exc:
        raise IntegrityError(f"cannot read docker archive {path}: {exc}",
                             hint="pass a file written by `docker save` or `anybuild pull`") from exc
    with tar:
        try:
            entries: Any = json.load(_member(tar, "manifest.json", path))
        except json.JSONDecodeError as exc:
            raise IntegrityError(f"{path}: manifest.json is not JSON", hint="the archive is corrupt") from exc
        if not isinstance(entries, list) or not entries:
            raise IntegrityError(f"{path}: manifest.json lists no images", hint="the archive is corrupt")
        images = []
        for number, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise IntegrityError(f"{path}: manifest.json entry {number} has no Config",
                                     hint="the archive is corrupt")
            config_data = _member(tar, entry["Config"], path).read()
            config = ImageConfig.from_json(config_data, what=f"{path}:{entry['Config']}")
            layer_paths = entry.get("Layers") or []
            if len(layer_paths) != len(config.diff_ids):
                raise IntegrityError(
                    f"{path}: image {number} has {len(layer_paths)} layers but {len(config.diff_ids)} diff_ids",
                    hint="the archive is corrupt",
                )
            config_descriptor = store.write_blob([config_data], media_type=MediaType.OCI_CONFIG)
            layers = []
            for layer_path in layer_paths:
                kind, chunks = _sniffed(_member(tar, str(layer_path), path))
                layers.append(store.write_blob(chunks, media_type=kind))
            manifest = Manifest(config=config_descriptor, layers=tuple(layers))
            data = manifest.to_json()
            descriptor = store.write_blob([data], media_type=MediaType.OCI_MANIFEST)
            tags = tuple(str(t) for t in entry.get("RepoTags") or ())
            images.append(ArchiveImage(descriptor=descriptor, repo_tags=tags))
        return images

