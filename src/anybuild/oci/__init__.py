"""The OCI image model: digests, media types, descriptors, manifests, configs, platforms,
and the two on-disk forms (OCI image layout, ``docker save`` archive).

Everything here is a value or a small store; nothing talks to a network.
"""

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
