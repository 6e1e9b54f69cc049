"""The snapshotter interface: how the executor learns what a step changed.

::

    baseline = snapshotter.baseline(rootfs)              # once per stage
    with snapshotter.step(rootfs, baseline) as capture:  # around one instruction
        ...the step writes to rootfs...
        taken = capture.finish()                         # Changeset + where to read it
        write_layer(taken.changes, RootDir.open(taken.source), ...)
    # leaving the block: rootfs holds the step's result, nothing is mounted

Two implementations: :class:`WalkSnapshotter` (portable: ``scan`` the whole
rootfs after the step and ``diff`` it with the one before) and
:class:`~anybuild.builder.overlay.OverlaySnapshotter` (an overlay mount per step;
the changes are the upper directory, so the cost follows what changed, not the
size of the rootfs). Both give the same changesets, hence the same layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from anybuild.builder.snapshot import Changeset, Snapshot, diff, file_digest, scan

__all__ = ["SNAPSHOTTER_ENV", "Capture", "Snapshotter", "SnapshotterKind", "Taken", "WalkSnapshotter"]

SNAPSHOTTER_ENV = "ANYBUILD_SNAPSHOTTER"


class SnapshotterKind(StrEnum):
    WALK = "walk"
    OVERLAY = "overlay"


@dataclass(frozen=True, slots=True, kw_only=True)
class Taken:
    """What one step changed, where to read the changed files, and the next step's baseline."""

    changes: Changeset
    source: Path
    after: Snapshot


class Capture(Protocol):
    def finish(self) -> Taken:
        """End the step (unmounting if needed) and return its changes; call at most once."""
        ...


class Snapshotter(Protocol):
    @property
    def kind(self) -> SnapshotterKind: ...

    def baseline(self, rootfs: Path) -> Snapshot:
        """The state a stage starts from (a full scan for the walk, nothing for overlay)."""
        ...

    def step(self, rootfs: Path, before: Snapshot, *, filesystem: bool = True) -> AbstractContextManager[Capture]:
        """Around one instruction; *filesystem* is False for instructions that cannot touch files."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class _WalkCapture:
    rootfs: Path
    before: Snapshot
    records: bool = False

    def finish(self) -> Taken:
        after = scan(self.rootfs, records=self.records)
        changes = diff(self.before, after, digest=lambda p: file_digest(self.rootfs / p))
        return Taken(changes=changes, source=self.rootfs, after=after)


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkSnapshotter:
    """The portable snapshotter: works on any filesystem, costs a walk of the rootfs per step.

    *records*: owners are recorded on files here (anybuild.builder.owners): a change of one is a change.
    """

    records: bool = False

    @property
    def kind(self) -> SnapshotterKind:
        return SnapshotterKind.WALK

    def baseline(self, rootfs: Path) -> Snapshot:
        return scan(rootfs, records=self.records)

    @contextmanager
    def step(self, rootfs: Path, before: Snapshot, *, filesystem: bool = True) -> Iterator[Capture]:
        yield _WalkCapture(rootfs=rootfs, before=before, records=self.records)
