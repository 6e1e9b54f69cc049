"""The overlay fast path of the snapshotter, and the choice between it and the walk.

Per filesystem step, :class:`OverlaySnapshotter` mounts an overlay *over the
rootfs itself* (``lowerdir=ROOTFS``, mounted on ``ROOTFS``), so RUN, COPY and
WORKDIR see and write the merged view at the usual path and every write lands
in the upper directory. After the step the overlay is unmounted, the upper
directory becomes the changeset (:mod:`anybuild.builder.upper`) and the layer
is read from it; then the upper directory is applied onto the rootfs, which is
again a plain directory: later steps, ``COPY --from`` and stage copies see
ordinary files and no stack of lower directories grows with the step count.

Where the upper directory lives is chosen by a real trial mount
(:func:`choose_snapshotter`):

- in the data directory when an overlay with its upper directory there works
  (the upper is then applied by ``rename``);
- on a private tmpfs when it does not, typically because the data directory is
  itself on overlayfs (a devpod's container filesystem), which the kernel
  refuses as an upper directory (the upper is then applied by copying);
- otherwise, or without root, or when ``ANYBUILD_SNAPSHOTTER=walk``, the
  portable walk.

Mounts are always undone, on errors and Ctrl-C too: a step that fails leaves
the rootfs as it was before the step.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from anybuild.builder.snapshot import Changeset, Snapshot
from anybuild.builder.snapshotter import SNAPSHOTTER_ENV, Capture, Snapshotter, SnapshotterKind, Taken, WalkSnapshotter
from anybuild.builder.upper import (
    TRUSTED_FLAVOR,
    USER_FLAVOR,
    OverlayFlavor,
    apply_upper,
    changes_from_upper,
    is_whiteout,
)
from anybuild.errors import BackendError

__all__ = [
    "LibcMounter",
    "Mounter",
    "OverlaySnapshotter",
    "SnapshotterChoice",
    "UpperPlacement",
    "choose_snapshotter",
    "filesystem_type",
    "make_snapshotter",
    "overlay_options",
    "unmount_or_detach",
]

_MNT_DETACH = 2
_UNSAFE = frozenset(",:\\")


class Mounter(Protocol):
    def mount(self, source: str, target: Path, fstype: str, options: str) -> None:
        """mount(2); raise OSError."""
        ...

    def unmount(self, target: Path, *, detach: bool = False) -> None:
        """umount2(2); raise OSError."""
        ...


@dataclass(frozen=True, slots=True)
class LibcMounter:
    """mount(2) and umount2(2) through libc: no helper process per step."""

    def _libc(self) -> ctypes.CDLL:
        return ctypes.CDLL(None, use_errno=True)

    def mount(self, source: str, target: Path, fstype: str, options: str) -> None:
        if self._libc().mount(source.encode(), os.fsencode(target), fstype.encode(), 0, options.encode()) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(target))

    def unmount(self, target: Path, *, detach: bool = False) -> None:
        if self._libc().umount2(os.fsencode(target), _MNT_DETACH if detach else 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(target))


class UpperPlacement(StrEnum):
    DATA_DIR = "data-dir"
    TMPFS = "tmpfs"


def unmount_or_detach(mounter: Mounter, target: Path) -> None:
    """Unmount *target*; lazily (``MNT_DETACH``) when a process of the step still holds it."""
    try:
        mounter.unmount(target)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        mounter.unmount(target, detach=True)


def overlay_options(lower: Path, upper: Path, work: Path, *, volatile: bool,
                    flavor: OverlayFlavor = TRUSTED_FLAVOR) -> str:
    """Mount options; redirects, the inode index and metadata-only copy-up are off so that the
    upper directory holds plain files, whiteouts and opaque markers only. ``volatile`` (Linux
    5.10+) skips the sync of the upper filesystem at unmount: a step's upper directory is thrown
    away after a crash anyway, and that sync would flush the whole disk once per step."""
    options = (f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir={flavor.redirect_dir},index=off,"
               "metacopy=off")
    return options + (",volatile" if volatile else "") + flavor.option


def filesystem_type(path: Path, mountinfo: str) -> str:
    """The filesystem type of the mount holding *path* (from a ``/proc/self/mountinfo`` text)."""
    target = str(path)
    best, kind = "", ""
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, tail.split()[0]
    return kind


# -- one step -----------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _OverlayCapture:
    rootfs: Path
    upper: Path
    before: Snapshot
    mounter: Mounter
    flavor: OverlayFlavor
    mounted: bool = True
    finished: bool = False

    def unmount(self) -> None:
        if self.mounted:
            unmount_or_detach(self.mounter, self.rootfs)
            self.mounted = False

    def finish(self) -> Taken:
        self.unmount()
        self.finished = True
        return Taken(changes=changes_from_upper(self.upper, self.rootfs, self.flavor), source=self.upper,
                     after=self.before)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Unchanged:
    rootfs: Path
    before: Snapshot

    def finish(self) -> Taken:
        return Taken(changes=Changeset(), source=self.rootfs, after=self.before)


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlaySnapshotter:
    """One overlay mount per filesystem step; the layer is the upper directory."""

    placement: UpperPlacement
    scratch: Path  # the build's private directory, on the data directory's filesystem
    mounter: Mounter = field(default_factory=LibcMounter)
    volatile: bool = True
    flavor: OverlayFlavor = TRUSTED_FLAVOR

    @property
    def kind(self) -> SnapshotterKind:
        return SnapshotterKind.OVERLAY

    def baseline(self, rootfs: Path) -> Snapshot:
        return Snapshot(entries={})

    @contextmanager
    def step(self, rootfs: Path, before: Snapshot, *, filesystem: bool = True) -> Iterator[Capture]:
        if not filesystem:
            yield _Unchanged(rootfs=rootfs, before=before)
            return
        base = Path(tempfile.mkdtemp(prefix="overlay-", dir=self.scratch))
        tmpfs = False
        capture: _OverlayCapture | None = None
        try:
            if self.placement is UpperPlacement.TMPFS:
                self.mounter.mount("tmpfs", base, "tmpfs", "mode=0700")
                tmpfs = True
            upper, work = base / "upper", base / "work"
            upper.mkdir()
            work.mkdir()
            info = os.lstat(rootfs)  # the merged root shows the upper root's owner and mode
            os.chown(upper, info.st_uid, info.st_gid)
            upper.chmod(stat.S_IMODE(info.st_mode))
            options = overlay_options(rootfs, upper, work, volatile=self.volatile, flavor=self.flavor)
            self.mounter.mount("overlay", rootfs, "overlay", options)
            capture = _OverlayCapture(rootfs=rootfs, upper=upper, before=before, mounter=self.mounter,
                                      flavor=self.flavor)
            yield capture
            capture.unmount()
            apply_upper(upper, rootfs, move=self.placement is UpperPlacement.DATA_DIR, flavor=self.flavor)
        finally:
            if capture is not None and capture.mounted:
                with contextlib.suppress(OSError):
                    capture.unmount()
            if tmpfs:
                try:
                    self.mounter.unmount(base)
                except OSError:
                    with contextlib.suppress(OSError):  # never hide the step's own error; build.py sweeps
                        self.mounter.unmount(base, detach=True)
            shutil.rmtree(base, ignore_errors=True)


# -- the choice ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotterChoice:
    kind: SnapshotterKind
    reason: str
    placement: UpperPlacement | None = None
    volatile: bool = False
    flavor: OverlayFlavor = TRUSTED_FLAVOR

    def describe(self) -> str:
        """``overlay (upper on tmpfs: data dir is on overlayfs)``, as the build log shows it."""
        return f"{self.kind} ({self.reason})"


def _trial(probe: Path, placement: UpperPlacement, mounter: Mounter, *, volatile: bool,
           flavor: OverlayFlavor) -> None:
    """Mount, write, delete, replace a directory and unmount as a real step does; raise OSError when
    it does not work."""
    lower = probe / "rootfs"
    lower.mkdir()
    (lower / "old").write_bytes(b"old")
    (lower / "dir").mkdir()
    (lower / "dir" / "kept").write_bytes(b"kept")
    step = OverlaySnapshotter(placement=placement, scratch=probe, mounter=mounter, volatile=volatile, flavor=flavor)
    with step.step(lower, Snapshot(entries={})) as capture:
        (lower / "new").write_bytes(b"new")
        (lower / "old").unlink()
        shutil.rmtree(lower / "dir")
        (lower / "dir").mkdir()  # made again: an opaque directory in the upper
        taken = capture.finish()
        whiteout = os.lstat(taken.source / "old")
        expected = Changeset(added=("dir", "new"), deleted=("old",), opaque=("dir",))
        if taken.changes != expected or not is_whiteout(whiteout):
            raise OSError(errno.EINVAL, f"unexpected upper directory contents: {taken.changes}")
    if sorted(p.name for p in lower.iterdir()) != ["dir", "new"] or any((lower / "dir").iterdir()):
        raise OSError(errno.EINVAL, "the upper directory was not applied onto the rootfs")


def _try(data: Path, placement: UpperPlacement, mounter: Mounter, flavor: OverlayFlavor) -> bool | str:
    """Whether ``volatile`` can be used when the trial works, else why it does not."""
    failure = ""
    for volatile in (True, False):
        probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=data))
        try:
            _trial(probe, placement, mounter, volatile=volatile, flavor=flavor)
        except OSError as exc:
            failure = failure or exc.strerror or str(exc)
            continue
        finally:
            shutil.rmtree(probe, ignore_errors=True)
        return volatile
    return failure


def choose_snapshotter(
    env: Mapping[str, str],
    data: Path,
    *,
    mounter: Mounter | None = None,
    euid: int | None = None,
    read_mountinfo: Callable[[], str] = lambda: Path("/proc/self/mountinfo").read_text(),
    in_userns: bool = False,
) -> SnapshotterChoice:
    """Overlay when a trial mount under *data* (the data directory's scratch space) works, else walk.

    ``ANYBUILD_SNAPSHOTTER=walk|overlay`` overrides; asking for overlay where it
    cannot work is an error, not a silent fallback.
    """
    wanted = (env.get(SNAPSHOTTER_ENV) or "auto").strip().lower()
    if wanted not in ("auto", *SnapshotterKind):
        raise BackendError(f"unknown snapshotter {wanted!r}", backend="builtin", environmental=False,
                           hint=f"set {SNAPSHOTTER_ENV} to walk, overlay or auto")
    if wanted == SnapshotterKind.WALK:
        return SnapshotterChoice(kind=SnapshotterKind.WALK, reason=f"requested by {SNAPSHOTTER_ENV}=walk")
    why_not = _overlay_refusal(data, euid)
    choice: SnapshotterChoice | None = None
    flavor = USER_FLAVOR if in_userns else TRUSTED_FLAVOR
    where = " in the build's user namespace" if in_userns else ""
    if why_not is None:
        run = mounter or LibcMounter()
        failure = _try(data, UpperPlacement.DATA_DIR, run, flavor)
        if isinstance(failure, bool):
            choice = SnapshotterChoice(kind=SnapshotterKind.OVERLAY, reason=f"upper in the data dir{where}",
                                       placement=UpperPlacement.DATA_DIR, volatile=failure, flavor=flavor)
        elif isinstance(tmpfs := _try(data, UpperPlacement.TMPFS, run, flavor), bool):
            cause = ("data dir is on overlayfs" if filesystem_type(data.resolve(), read_mountinfo()) == "overlay"
                     else f"an upper dir in the data dir failed: {failure}")
            choice = SnapshotterChoice(kind=SnapshotterKind.OVERLAY, reason=f"upper on tmpfs{where}: {cause}",
                                       placement=UpperPlacement.TMPFS, volatile=tmpfs, flavor=flavor)
        else:
            why_not = f"overlay trial mount failed: {failure}; with its upper on tmpfs: {tmpfs}"
    if choice is not None:
        return choice
    if wanted == SnapshotterKind.OVERLAY:
        raise BackendError(f"the overlay snapshotter was requested but cannot work here: {why_not}",
                           backend="builtin", hint=f"unset {SNAPSHOTTER_ENV} to fall back to the portable walk")
    return SnapshotterChoice(kind=SnapshotterKind.WALK, reason=str(why_not))


def _overlay_refusal(data: Path, euid: int | None) -> str | None:
    if (os.geteuid() if euid is None else euid) != 0:
        return "overlay mounts need root"
    if _UNSAFE.intersection(str(data.resolve())):
        return f"the data dir path {data} has a character overlay options cannot carry (, : \\)"
    return None


def make_snapshotter(choice: SnapshotterChoice, *, scratch: Path, mounter: Mounter | None = None,
                     records: bool = False) -> Snapshotter:
    """The snapshotter *choice* names, with per-step directories under *scratch*."""
    if choice.kind is SnapshotterKind.OVERLAY and choice.placement is not None:
        return OverlaySnapshotter(placement=choice.placement, scratch=scratch, mounter=mounter or LibcMounter(),
                                  volatile=choice.volatile, flavor=choice.flavor)
    return WalkSnapshotter(records=records)
