"""Keep the data directory's filesystem from filling up: trim the cache after a build when space runs low.

A devpod's disk is small and every changed ``npm ci`` leaves a new cached layer
and its unpacked snapshot. Rather than measure the cache after every build
(walking snapshot trees costs time), a build asks the filesystem (one
``statvfs``) and only when less than the minimum is free removes unpacked layer
snapshots, least recently used first (they are unpacked again from their blobs
when needed), then cached steps, until the minimum is free or nothing more can
go. BuildKit's daemon does the same on its own schedule (its ``minFreeSpace``).

``ANYBUILD_MIN_FREE_SPACE``: ``SIZE`` (``20GB``) or ``PERCENT%`` of the
filesystem; ``0`` turns trimming off. Default: 10% of the filesystem, at most
10 GiB.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from anybuild.builder.cache.store import StepStore
from anybuild.builder.stack import LayerSnapshots
from anybuild.errors import UsageError
from anybuild.sizes import parse_size

__all__ = ["MIN_FREE_ENV", "MinFree", "Trimmed", "min_free_space", "trim_data_dir"]

MIN_FREE_ENV = "ANYBUILD_MIN_FREE_SPACE"
_DEFAULT_FRACTION = 0.10
_DEFAULT_CAP = 10 * 1024**3


@dataclass(frozen=True, slots=True, kw_only=True)
class Trimmed:
    free_before: int
    free_after: int
    wanted: int
    snapshots: int
    steps: int

    def describe(self) -> str:
        gib = 1024**3
        return (f"the data directory's filesystem had {self.free_before / gib:.1f} GiB free, under the "
                f"{self.wanted / gib:.1f} GiB minimum ({MIN_FREE_ENV}): removed {self.snapshots} unpacked "
                f"layer(s) and {self.steps} cached step(s), {self.free_after / gib:.1f} GiB free now")


@dataclass(frozen=True, slots=True)
class MinFree:
    """The free space to keep: a size, or a fraction of the filesystem (capped)."""

    size: int | None = None
    fraction: float = _DEFAULT_FRACTION
    cap: int | None = _DEFAULT_CAP

    def of(self, total: int) -> int:
        if self.size is not None:
            return self.size
        wanted = int(total * self.fraction)
        return wanted if self.cap is None else min(wanted, self.cap)


def min_free_space(env: Mapping[str, str]) -> MinFree | None:
    """The minimum free space *env* asks for (read before a build, so a typo fails first); None: off."""
    text = env.get(MIN_FREE_ENV, "").strip()
    if not text:
        return MinFree()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            percent = -1.0
        if not 0 <= percent <= 100:
            raise UsageError(f"{MIN_FREE_ENV}={text!r} is not a percentage from 0 to 100",
                             hint=f"write e.g. {MIN_FREE_ENV}=15% or {MIN_FREE_ENV}=20GB, or 0 to turn it off")
        return MinFree(fraction=percent / 100, cap=None) if percent else None
    size = parse_size(text, what=MIN_FREE_ENV)
    return MinFree(size=size) if size else None


def _free(path: Path) -> tuple[int, int]:
    """(bytes free to an unprivileged user, total bytes) of the filesystem holding *path*."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize


def trim_data_dir(root: Path, minimum: MinFree) -> Trimmed | None:
    """Trim the cache under *root* if its filesystem is short of free space; None when nothing was needed.

    Skipped (None) while another build holds the snapshots: it may be using them.
    """
    free, total = _free(root)
    wanted = minimum.of(total)
    if free >= wanted:
        return None
    pruned = LayerSnapshots(root / "snapshots").prune(release=wanted - free)
    if pruned is None:
        return None
    after, _ = _free(root)
    steps = 0
    if after < wanted:
        steps = StepStore(root / "cache" / "steps").prune(release=wanted - after).entries
        after, _ = _free(root)
    return Trimmed(free_before=free, free_after=after, wanted=wanted, snapshots=pruned.count, steps=steps)
