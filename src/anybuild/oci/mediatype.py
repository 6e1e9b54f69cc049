"""Media types of the OCI image spec and of Docker's image manifest schema 2."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MANIFEST_ACCEPT", "MediaType"]


class MediaType(StrEnum):
    """Every document and layer type anybuild reads or writes."""

    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    @property
    def is_manifest(self) -> bool:
        return self in _MANIFESTS

    @property
    def is_index(self) -> bool:
        return self in _INDEXES

    @property
    def is_config(self) -> bool:
        return self in (MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG)

    @property
    def is_layer(self) -> bool:
        return self in _LAYERS

    @property
    def is_docker(self) -> bool:
        return self.value.startswith("application/vnd.docker.")

    @property
    def compression(self) -> str:
        """``gzip``, ``zstd`` or ``""`` for a layer type."""
        if self.value.endswith(("gzip", "+gzip")):
            return "gzip"
        if self.value.endswith("+zstd"):
            return "zstd"
        return ""

    @classmethod
    def lookup(cls, value: str) -> MediaType | None:
        try:
            return cls(value)
        except ValueError:
            return None


_MANIFESTS = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
_INDEXES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
_LAYERS = frozenset(
    {
        MediaType.OCI_LAYER,
        MediaType.OCI_LAYER_GZIP,
        MediaType.OCI_LAYER_ZSTD,
        MediaType.OCI_LAYER_NONDIST_GZIP,
        MediaType.DOCKER_LAYER,
        MediaType.DOCKER_LAYER_GZIP,
        MediaType.DOCKER_FOREIGN_LAYER_GZIP,
    }
)

# What a registry client accepts when it asks for a manifest by tag or digest.
MANIFEST_ACCEPT = (
    MediaType.OCI_INDEX,
    MediaType.DOCKER_MANIFEST_LIST,
    MediaType.OCI_MANIFEST,
    MediaType.DOCKER_MANIFEST,
)
