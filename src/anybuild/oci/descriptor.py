"""Descriptors, canonical JSON, and the checks every document field goes through."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anybuild.errors import IntegrityError
from anybuild.oci.digest import Digest
from anybuild.oci.mediatype import MediaType
from anybuild.oci.platform import Platform

__all__ = ["Descriptor", "canonical_json", "load_json_object"]


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The bytes anybuild writes for a document: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse *data* as a JSON object, or raise IntegrityError naming *what*."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{what} is not valid JSON: {exc}", hint="the document is corrupt") from exc
    if not isinstance(value, dict):
        raise IntegrityError(f"{what} is not a JSON object", hint="the document is corrupt")
    return value


def _field(data: Mapping[str, Any], key: str, kind: type, what: str, *, required: bool = True) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IntegrityError(
            f"{what}: field {key!r} must be {kind.__name__}, got {value!r}",
            hint="the document does not follow the OCI image spec",
        )
    return value


def _string_map(data: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = _field(data, key, dict, what, required=False) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise IntegrityError(f"{what}: {key!r} must map strings to strings", hint="the document is corrupt")
    return dict(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """A pointer to content: media type, digest and size, plus optional platform and annotations."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str = ""

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"negative size {self.size}")

    @property
    def known_type(self) -> MediaType | None:
        return MediaType.lookup(self.media_type)

    @classmethod
    def from_dict(cls, data: Any, what: str = "descriptor") -> Descriptor:
        if not isinstance(data, Mapping):
            raise IntegrityError(f"{what} is not a JSON object", hint="the document is corrupt")
        size = _field(data, "size", int, what)
        if size < 0:
            raise IntegrityError(f"{what}: negative size {size}", hint="the document is corrupt")
        platform = _field(data, "platform", dict, what, required=False)
        return cls(
            media_type=_field(data, "mediaType", str, what),
            digest=Digest.parse(_field(data, "digest", str, what)),
            size=size,
            annotations=_string_map(data, "annotations", what),
            platform=Platform.from_dict(platform) if platform else None,
            urls=tuple(_field(data, "urls", list, what, required=False) or ()),
            artifact_type=_field(data, "artifactType", str, what, required=False) or "",
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            data["urls"] = list(self.urls)
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.platform is not None:
            data["platform"] = self.platform.to_dict()
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        return data
