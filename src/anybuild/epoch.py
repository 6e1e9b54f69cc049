"""SOURCE_DATE_EPOCH, read one way everywhere (builds, tags, labels)."""

from __future__ import annotations

from collections.abc import Mapping

from anybuild.errors import UsageError

__all__ = ["source_date_epoch"]


def source_date_epoch(env: Mapping[str, str]) -> int | None:
    """SOURCE_DATE_EPOCH as seconds, None when unset; a usage error when it is not a number."""
    value = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
                         hint="e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)")
    return int(value)
