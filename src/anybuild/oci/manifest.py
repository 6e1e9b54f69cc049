"""Image manifests and indexes (OCI and Docker schema 2), parsed strictly from bytes.

Documents read from elsewhere keep their original bytes (their digest is of those
bytes); documents anybuild makes are written with :func:`canonical_json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anybuild.errors import IntegrityError
from anybuild.oci.descriptor import Descriptor, _field, _string_map, canonical_json, load_json_object
from anybuild.oci.digest import Digest
from anybuild.oci.mediatype import MediaType
from anybuild.oci.platform import Platform

__all__ = ["Index", "Manifest", "document_media_type", "parse_document"]

_UNKNOWN_HINT = (
    "anybuild handles OCI and Docker schema 2 images; "
    "schema 1 and other artifact types are not supported"
)


def document_media_type(data: Mapping[str, Any], declared: str | None, what: str) -> MediaType:
    """The media type of a manifest or index: its ``mediaType`` field, else *declared*, else guessed."""
    if _field(data, "schemaVersion", int, what) != 2:
        raise IntegrityError(
            f"{what}: unsupported schemaVersion {data.get('schemaVersion')!r}", hint=_UNKNOWN_HINT
        )
    value = _field(data, "mediaType", str, what, required=False) or declared
    if not value:
        value = MediaType.OCI_INDEX if "manifests" in data else MediaType.OCI_MANIFEST
    media_type = MediaType.lookup(value)
    if media_type is None or not (media_type.is_manifest or media_type.is_index):
        raise IntegrityError(f"{what}: unknown media type {value!r}", hint=_UNKNOWN_HINT)
    return media_type


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """An image manifest: one config and an ordered list of layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: MediaType = MediaType.OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    subject: Descriptor | None = None
    artifact_type: str = ""

    @classmethod
    def from_json(cls, data: bytes, *, media_type: str | None = None, what: str = "manifest") -> Manifest:
        doc = load_json_object(data, what)
        kind = document_media_type(doc, media_type, what)
        if not kind.is_manifest:
            raise IntegrityError(f"{what}: expected an image manifest, got {kind}", hint=_UNKNOWN_HINT)
        layers = _field(doc, "layers", list, what)
        subject = _field(doc, "subject", dict, what, required=False)
        return cls(
            media_type=kind,
            config=Descriptor.from_dict(doc.get("config"), f"{what} config"),
            layers=tuple(Descriptor.from_dict(d, f"{what} layer {i}") for i, d in enumerate(layers)),
            annotations=_string_map(doc, "annotations", what),
            subject=Descriptor.from_dict(subject, f"{what} subject") if subject else None,
            artifact_type=_field(doc, "artifactType", str, what, required=False) or "",
        )

    def require_image(self, what: str = "manifest") -> None:
        """Raise IntegrityError unless the config and every layer have a known image media type."""
        config_type = self.config.known_type
        if config_type is None or not config_type.is_config:
            raise IntegrityError(
                f"{what}: unknown config media type {self.config.media_type!r}", hint=_UNKNOWN_HINT
            )
        for i, layer in enumerate(self.layers):
            layer_type = layer.known_type
            if layer_type is None or not layer_type.is_layer:
                raise IntegrityError(
                    f"{what}: layer {i} has unknown media type {layer.media_type!r}", hint=_UNKNOWN_HINT
                )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": str(self.media_type),
            "config": self.config.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.subject is not None:
            data["subject"] = self.subject.to_dict()
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        return data

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def descriptor(self, *, platform: Platform | None = None) -> Descriptor:
        """Descriptor of :meth:`to_json` (only for manifests anybuild writes)."""
        data = self.to_json()
        return Descriptor(
            media_type=self.media_type, digest=Digest.of_bytes(data), size=len(data), platform=platform
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """An image index (OCI) or manifest list (Docker): manifests for several platforms."""

    manifests: tuple[Descriptor, ...]
    media_type: MediaType = MediaType.OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, data: bytes, *, media_type: str | None = None, what: str = "index") -> Index:
        doc = load_json_object(data, what)
        kind = document_media_type(doc, media_type, what)
        if not kind.is_index:
            raise IntegrityError(f"{what}: expected an image index, got {kind}", hint=_UNKNOWN_HINT)
        manifests = _field(doc, "manifests", list, what)
        return cls(
            media_type=kind,
            manifests=tuple(Descriptor.from_dict(d, f"{what} entry {i}") for i, d in enumerate(manifests)),
            annotations=_string_map(doc, "annotations", what),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": str(self.media_type),
            "manifests": [m.to_dict() for m in self.manifests],
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def descriptor(self) -> Descriptor:
        """Descriptor of :meth:`to_json` (only for indexes anybuild writes)."""
        data = self.to_json()
        return Descriptor(media_type=self.media_type, digest=Digest.of_bytes(data), size=len(data))

    def select(self, platform: Platform) -> Descriptor | None:
        """The manifest that best runs on *platform* (exact first, then a compatible variant)."""
        ranked: list[tuple[int, int, Descriptor]] = []
        for position, entry in enumerate(self.manifests):
            kind = entry.known_type
            if entry.platform is None or kind is None or not (kind.is_manifest or kind.is_index):
                continue
            rank = platform.rank(entry.platform)
            if rank is not None:
                ranked.append((rank, position, entry))
        return min(ranked, key=lambda item: item[:2])[2] if ranked else None

    def platforms(self) -> list[Platform]:
        return [m.platform for m in self.manifests if m.platform is not None]


def parse_document(data: bytes, *, media_type: str | None = None, what: str = "manifest") -> Manifest | Index:
    """Parse a manifest or an index, whichever *data* is."""
    kind = document_media_type(load_json_object(data, what), media_type, what)
    if kind.is_index:
        return Index.from_json(data, media_type=kind, what=what)
    return Manifest.from_json(data, media_type=kind, what=what)
