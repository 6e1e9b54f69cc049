"""Platforms (``os/arch[/variant]``), normalised and matched the way containerd does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anybuild.errors import UsageError

__all__ = ["Platform"]

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
# arm variants a CPU of the key variant can also run, best first.
_ARM_COMPAT = {"v8": ("v8", "v7", "v6", "v5"), "v7": ("v7", "v6", "v5"), "v6": ("v6", "v5"), "v5": ("v5",)}


def _normalize_os(name: str) -> str:
    name = name.lower()
    return "darwin" if name == "macos" else name


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    match arch:
        case "i386" | "386":
            return "386", ""
        case "x86_64" | "x86-64" | "amd64":
            return "amd64", "" if variant == "v1" else variant
        case "aarch64" | "arm64":
            if variant in ("8", "v8", "v8.0"):
                variant = ""
            elif variant in ("9", "9.0", "v9.0"):
                variant = "v9"
            return "arm64", variant
        case "armhf":
            return "arm", "v7"
        case "armel":
            return "arm", "v6"
        case "arm":
            if variant in ("", "7"):
                variant = "v7"
            elif variant in ("5", "6", "8"):
                variant = "v" + variant
            return "arm", variant
        case _:
            return arch, variant


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    """An image platform; construct with :meth:`parse` or :meth:`of`, which normalise."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def of(cls, os: str, architecture: str, variant: str = "", **extra: Any) -> Platform:
        arch, var = _normalize_arch(architecture, variant)
        return cls(os=_normalize_os(os), architecture=arch, variant=var, **extra)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/amd64``, ``linux/arm64/v8``, ``linux/arm/v7``; a bare arch means linux."""
        parts = text.strip().split("/")
        if not 1 <= len(parts) <= 3 or not all(_COMPONENT.match(p) for p in parts):
            raise UsageError(
                f"invalid platform {text!r}",
                hint="write a platform as OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8",
            )
        if len(parts) == 1:
            parts = ["linux", *parts]
        return cls.of(*parts)

    @classmethod
    def for_machine(cls, os_name: str, machine: str) -> Platform:
        """The platform of a host, from ``platform.system()`` and ``platform.machine()``."""
        return cls.of(os_name, machine)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Platform:
        return cls.of(
            str(data.get("os", "")),
            str(data.get("architecture", "")),
            str(data.get("variant", "")),
            os_version=str(data.get("os.version", "")),
            os_features=tuple(str(f) for f in data.get("os.features", ()) or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        if self.os_version:
            data["os.version"] = self.os_version
        if self.os_features:
            data["os.features"] = list(self.os_features)
        return data

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def normalized(self) -> Platform:
        return Platform.of(self.os, self.architecture, self.variant,
                           os_version=self.os_version, os_features=self.os_features)

    def rank(self, candidate: Platform) -> int | None:
        """How well *candidate* runs here: 0 is exact, higher is a compatible fallback, None is no."""
        want, have = self.normalized(), candidate.normalized()
        if want.os != have.os or want.architecture != have.architecture:
            return None
        if want.variant == have.variant:
            return 0
        if want.architecture == "arm":
            compat = _ARM_COMPAT.get(want.variant, (want.variant,))
            if have.variant in compat:
                return compat.index(have.variant)
        return None

    def matches(self, candidate: Platform) -> bool:
        return self.rank(candidate) is not None
