"""Image configuration: the runtime defaults, the layer diff_ids and the history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anybuild.errors import IntegrityError
from anybuild.oci.descriptor import _field, _string_map, canonical_json, load_json_object
from anybuild.oci.digest import Digest
from anybuild.oci.platform import Platform

__all__ = ["ContainerConfig", "History", "ImageConfig"]


def _strings(data: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    value = _field(data, key, list, what, required=False)
    if value is None:
        return None
    if not all(isinstance(v, str) for v in value):
        raise IntegrityError(f"{what}: {key!r} must be a list of strings", hint="the config is corrupt")
    return tuple(value)


def _set(data: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    return tuple(sorted((_field(data, key, dict, what, required=False) or {}).keys()))


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """The ``config`` object: what a container of the image runs by default."""

    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    _KEYS = ("User", "Env", "Entrypoint", "Cmd", "WorkingDir", "Labels", "ExposedPorts", "Volumes",
             "StopSignal")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], what: str = "config") -> ContainerConfig:
        return cls(
            user=_field(data, "User", str, what, required=False) or "",
            env=_strings(data, "Env", what) or (),
            entrypoint=_strings(data, "Entrypoint", what),
            cmd=_strings(data, "Cmd", what),
            working_dir=_field(data, "WorkingDir", str, what, required=False) or "",
            labels=_string_map(data, "Labels", what),
            exposed_ports=_set(data, "ExposedPorts", what),
            volumes=_set(data, "Volumes", what),
            stop_signal=_field(data, "StopSignal", str, what, required=False) or "",
            extra={k: v for k, v in data.items() if k not in cls._KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        pairs: tuple[tuple[str, Any], ...] = (
            ("User", self.user),
            ("Env", list(self.env)),
            ("Entrypoint", None if self.entrypoint is None else list(self.entrypoint)),
            ("Cmd", None if self.cmd is None else list(self.cmd)),
            ("WorkingDir", self.working_dir),
            ("Labels", dict(self.labels)),
            ("ExposedPorts", {p: {} for p in self.exposed_ports}),
            ("Volumes", {v: {} for v in self.volumes}),
            ("StopSignal", self.stop_signal),
        )
        data.update({k: v for k, v in pairs if v})
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """One entry of the image history; ``empty_layer`` steps made no layer."""

    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    @classmethod
    def from_dict(cls, data: Any, what: str) -> History:
        if not isinstance(data, Mapping):
            raise IntegrityError(f"{what} is not a JSON object", hint="the config is corrupt")
        return cls(
            created=_field(data, "created", str, what, required=False) or "",
            created_by=_field(data, "created_by", str, what, required=False) or "",
            author=_field(data, "author", str, what, required=False) or "",
            comment=_field(data, "comment", str, what, required=False) or "",
            empty_layer=bool(_field(data, "empty_layer", bool, what, required=False)),
        )

    def to_dict(self) -> dict[str, Any]:
        pairs = (("created", self.created), ("created_by", self.created_by), ("author", self.author),
                 ("comment", self.comment), ("empty_layer", self.empty_layer))
        return {k: v for k, v in pairs if v}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """The image configuration blob (OCI ``config`` / Docker ``container.image.v1``)."""

    platform: Platform
    diff_ids: tuple[Digest, ...] = ()
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: tuple[History, ...] = ()
    created: str = ""
    author: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    _KEYS = ("architecture", "os", "variant", "os.version", "os.features", "rootfs", "config",
             "history", "created", "author")

    @classmethod
    def from_json(cls, data: bytes, what: str = "image config") -> ImageConfig:
        doc = load_json_object(data, what)
        rootfs = _field(doc, "rootfs", dict, what)
        if rootfs.get("type") != "layers":
            raise IntegrityError(f"{what}: rootfs.type must be 'layers'", hint="the config is corrupt")
        diff_ids = _strings(rootfs, "diff_ids", f"{what} rootfs") or ()
        history = _field(doc, "history", list, what, required=False) or []
        config = ImageConfig(
            platform=Platform.from_dict(doc),
            diff_ids=tuple(Digest.parse(d) for d in diff_ids),
            config=ContainerConfig.from_dict(_field(doc, "config", dict, what, required=False) or {}),
            history=tuple(History.from_dict(h, f"{what} history {i}") for i, h in enumerate(history)),
            created=_field(doc, "created", str, what, required=False) or "",
            author=_field(doc, "author", str, what, required=False) or "",
            extra={k: v for k, v in doc.items() if k not in cls._KEYS},
        )
        layered = sum(1 for h in config.history if not h.empty_layer)
        if config.history and layered != len(config.diff_ids):
            raise IntegrityError(
                f"{what}: history names {layered} layers but rootfs has {len(config.diff_ids)} diff_ids",
                hint="the config is corrupt",
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.update(self.platform.to_dict())
        data["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        data["config"] = self.config.to_dict()
        if self.history:
            data["history"] = [h.to_dict() for h in self.history]
        if self.created:
            data["created"] = self.created
        if self.author:
            data["author"] = self.author
        return data

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())
