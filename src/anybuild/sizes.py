"""Sizes as people write them: ``512MB``, ``10g``, ``1.5GiB``, ``4096`` (binary units, as docker's)."""

from __future__ import annotations

import re

from anybuild.errors import UsageError

__all__ = ["parse_size"]

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
          "t": 1024**4, "tb": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_size(text: str, *, what: str = "--keep-storage") -> int:
    """Bytes of ``512MB``, ``10g``, ``1.5GB``, ``4096``; a UsageError naming *what* otherwise."""
    match = _SIZE.match(text.lower())
    unit = match[2] if match is not None else ""
    if unit.endswith("ib"):
        unit = unit[:-2] + "b"
    if match is None or unit not in _UNITS:
        raise UsageError(f"{what} {text!r} is not a size", hint="write e.g. 512MB or 10GB")
    return int(float(match[1]) * _UNITS[unit])
