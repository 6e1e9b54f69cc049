"""The OCI image model: digests, media types, descriptors, manifests, configs, platforms,
and the two on-disk forms (OCI image layout, ``docker save`` archive).

Everything here is a value or a small store; nothing talks to a network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anybuild.lazy import loader

if TYPE_CHECKING:
    from anybuild.oci.archive import ArchiveImage, read_docker_archive, write_docker_archive
    from anybuild.oci.config import ContainerConfig, History, ImageConfig
    from anybuild.oci.descriptor import Descriptor, canonical_json
    from anybuild.oci.digest import CHUNK_SIZE, Digest, DigestAlgorithm, Hasher
    from anybuild.oci.layout import REF_NAME, BlobStore, LayoutStore, atomic_write
    from anybuild.oci.manifest import Index, Manifest, parse_document
    from anybuild.oci.mediatype import MANIFEST_ACCEPT, MediaType
    from anybuild.oci.platform import Platform


__all__ = [
    "CHUNK_SIZE",
    "MANIFEST_ACCEPT",
    "REF_NAME",
    "ArchiveImage",
    "BlobStore",
    "ContainerConfig",
    "Descriptor",
    "Digest",
    "DigestAlgorithm",
    "Hasher",
    "History",
    "ImageConfig",
    "Index",
    "LayoutStore",
    "Manifest",
    "MediaType",
    "Platform",
    "atomic_write",
    "canonical_json",
    "parse_document",
    "read_docker_archive",
    "write_docker_archive",
]

# name -> the submodule defining it, loaded on first use (a digest or a manifest
# does not load tarfile and the archive code)
_WHERE: dict[str, str] = {
    "ArchiveImage": "archive",
    "read_docker_archive": "archive",
    "write_docker_archive": "archive",
    "ContainerConfig": "config",
    "History": "config",
    "ImageConfig": "config",
    "Descriptor": "descriptor",
    "canonical_json": "descriptor",
    "CHUNK_SIZE": "digest",
    "Digest": "digest",
    "DigestAlgorithm": "digest",
    "Hasher": "digest",
    "REF_NAME": "layout",
    "BlobStore": "layout",
    "LayoutStore": "layout",
    "atomic_write": "layout",
    "Index": "manifest",
    "Manifest": "manifest",
    "parse_document": "manifest",
    "MANIFEST_ACCEPT": "mediatype",
    "MediaType": "mediatype",
    "Platform": "platform",
}


__getattr__ = loader(__name__, _WHERE, globals())
