"""The stacked overlay snapshotter: every layer unpacked once, a stage an overlay of layers.

Wherever an overlay mount works (root; the trial mount of
:func:`~anybuild.builder.overlay.choose_snapshotter` decides), a stage's filesystem is not
a directory the builder fills; it is the stack of its layers, each an overlay
*lower* directory in :class:`LayerSnapshots` (``DATA/snapshots/<chain id>``)::

    FROM debian          lowers = [debian layer]                 (unpacked once, ever)
    RUN ...              mount lowers + a fresh upper on the stage's rootfs path;
                         the upper is the step's layer, then *becomes* the next lower
    COPY --from=build    a read-only overlay of that stage's lowers
    FROM build AS test   the same lowers: nothing is copied

so what a step costs follows what it changes: a cached step costs nothing (its
layer is a lower already, or is unpacked once for every later build), a stage
built from another copies no file, and no upper directory is ever applied
file by file. Snapshots are keyed by the OCI *chain id* (the layer and all its
parents), as containerd keys them, so an upper adopted as a snapshot is only
ever stacked on the layers it was written over.

Layers unpacked from blobs become overlay directories directly: whiteouts are
written as overlayfs writes them, the decompressed stream is checked against
the layer's diff id, and a directory the layer does not describe (a missing
parent, the root) takes its metadata from the layers below, as it would when
applied. The mount options must fit in a page: layers go in through short
symbolic links in the build's scratch directory, and when a stack is too deep
even so its lower part is flattened into one directory for the build.

On a devpod the data directory is itself on overlayfs, which can be a lower layer
but neither an upper one nor the home of a whiteout: uppers then live on the
build's own tmpfs, and a layer that deletes something keeps its snapshot there
for the build; the others are copied into the shared store once.

A step may also be *staged in memory* (COPY and ADD are): its upper lives on the
build's tmpfs (at most :data:`MEMORY_LIMIT` bytes in all) and stays there, as the
layer's snapshot for the rest of the build, instead of being written to the data
directory (on a devpod, instead of being copied there, within the same budget).
Its files are written once, in memory, and read once, into the layer; a later
build that stacks on that layer unpacks it from its blob, as it would any layer
it has not seen. On a disk filesystem a COPY of 2,000 files spent most of
its time creating them there. A step that fills the tmpfs is made again on disk
(the caller sees :class:`StagingFull` from :meth:`Stacker.step` and asks again).

Concurrent builds share the snapshots safely: a snapshot appears by one
``rename`` or not at all, and builds hold a shared lock that ``anybuild cache
prune`` needs exclusively to remove snapshots. Within a build, the platforms
building in parallel share one :class:`Stacker`: a layer two of them need at the
same moment is unpacked by one while the other waits for it (a lock per chain id),
and its own bookkeeping (links, views, the tmpfs) is under one lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from anybuild.builder.cache.store import flocked
from anybuild.builder.inroot import RootDir
from anybuild.builder.overlay import LibcMounter, Mounter, overlay_options, unmount_or_detach
from anybuild.builder.owners import Ownership, read_record
from anybuild.builder.rootfs import UnpackOptions, decompressed, unpack_layer
from anybuild.builder.snapshot import Snapshot
from anybuild.builder.snapshotter import Taken
from anybuild.builder.upper import TRUSTED_FLAVOR, OverlayFlavor, apply_upper, changes_from_upper, is_whiteout
from anybuild.errors import BuildFailed, IntegrityError
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.digest import Digest
from anybuild.oci.layout import LayoutStore
from anybuild.process import Runner

__all__ = ["MEMORY_LIMIT", "LayerSnapshots", "SnapshotUsage", "StackCapture", "Stacker", "StagingFull", "chain_ids"]

MEMORY_LIMIT = 128 * 1024 * 1024  # the build's tmpfs for steps staged in memory (not the devpod case: no limit)
_OPTIONS_LIMIT = 4000  # mount(2) copies one page of options (4096 bytes on every Linux architecture here)
_CHUNK = 1024 * 1024


class StagingFull(OSError):
    """A step staged in memory filled the build's tmpfs (``ENOSPC``): make it again on disk.

    Raised by :meth:`Stacker.step` only for a step it really staged, so a full disk is never
    retried; no later step is staged.
    """


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """The OCI chain ids of a layer stack, bottom first.

    ``chain(L1) = diff(L1)`` and ``chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))``.
    """
    chains: list[Digest] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
            continue
        text = f"{chains[-1]} {diff_id}".encode()
        chains.append(Digest.parse(f"sha256:{hashlib.sha256(text).hexdigest()}"))
    return chains


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotUsage:
    count: int
    size: int


def _tree_size(path: Path) -> int:
    total = 0
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                total += (Path(top) / name).lstat().st_blocks * 512
    return total


@dataclass(frozen=True, slots=True)
class LayerSnapshots:
    """Unpacked layers as overlay lower directories, ``ROOT/<chain id hex>``, shared by builds."""

    root: Path

    def path(self, chain: Digest) -> Path:
        return self.root / chain.hex

    def has(self, chain: Digest) -> bool:
        return self.path(chain).is_dir()

    def staging(self) -> Path:
        """A fresh directory on the snapshots' filesystem, to fill and then :meth:`put`."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))

    def put(self, source: Path, chain: Digest) -> Path:
        """Move the directory *source* (same filesystem) in as *chain*'s snapshot; keep an existing one."""
        target = self.path(chain)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            source.rename(target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            shutil.rmtree(source, ignore_errors=True)  # another build put the same layers first
        return target

    def in_use(self) -> contextlib.AbstractContextManager[None]:
        """Held by a build for its whole run: no prune removes a snapshot (or a blob) under it."""
        return flocked(self.root, fcntl.LOCK_SH)

    def idle(self) -> contextlib.AbstractContextManager[None]:
        """Held while no build runs (and none starts); raises BlockingIOError when one is running."""
        return flocked(self.root, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _items(self) -> list[tuple[Path, float, int]]:
        """(snapshot, last use, size), most recently used first."""
        if not self.root.is_dir():
            return []
        found = [(p, p.stat().st_mtime, _tree_size(p)) for p in self.root.iterdir()
                 if p.is_dir() and not p.name.startswith(".")]
        return sorted(found, key=lambda item: -item[1])

    def usage(self) -> SnapshotUsage:
        items = self._items()
        return SnapshotUsage(count=len(items), size=sum(size for _, _, size in items))

    def touch(self, chain: Digest) -> None:
        """Record a use of *chain*'s snapshot, for :meth:`prune`."""
        with contextlib.suppress(OSError):
            os.utime(self.path(chain))

    def prune(self, *, keep_storage: int | None = None, release: int | None = None,
              everything: bool = False) -> SnapshotUsage | None:
        """Remove least recently used snapshots beyond *keep_storage* bytes, or until *release* bytes
        of them are gone (all with *everything*).

        Snapshots are unpacked layers, made again from their blobs when needed. None when a
        running build holds them (nothing is removed then).
        """
        if not self.root.is_dir() or (keep_storage is None and release is None and not everything):
            return SnapshotUsage(count=0, size=0)
        try:
            with self.idle():
                items = self._items()  # one walk of the trees, for both the budget and the removal
                if release is not None:
                    keep_storage = max(0, sum(size for _, _, size in items) - release)
                count = freed = kept = 0
                for path, _used, size in items:
                    if not everything and keep_storage is not None and kept + size <= keep_storage:
                        kept += size
                        continue
                    shutil.rmtree(path, ignore_errors=True)
                    count, freed = count + 1, freed + size
                for stale in self.root.glob(".incoming-*"):
                    shutil.rmtree(stale, ignore_errors=True)  # left by a build that was killed
                return SnapshotUsage(count=count, size=freed)
        except BlockingIOError:
            return None


class _Hashing:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> str:
        while self.read(_CHUNK):
            pass
        return f"sha256:{self.sha.hexdigest()}"


def _dir_meta_from(lowers: Sequence[Path], rel: str) -> os.stat_result | None:
    """The metadata a directory *rel* shows in the overlay of *lowers* (bottom first), if it is one."""
    for lower in reversed(lowers):
        try:
            info = os.lstat(lower / rel if rel != "." else lower)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return info if stat.S_ISDIR(info.st_mode) and not is_whiteout(info) else None
    return None


def _describe_implicit_dirs(target: Path, declared: frozenset[str], lowers: Sequence[Path],
                            ownership: Ownership) -> None:
    """Give the directories a layer made without an entry of their own the lower layers' metadata."""
    for top, _dirs, _files in os.walk(target):  # symlinks to directories are not entered
        rel = os.path.relpath(top, target)
        if rel not in declared:
            below = _dir_meta_from(lowers, rel)
            mode, uid, gid = (stat.S_IMODE(below.st_mode), below.st_uid, below.st_gid) if below else (0o755, 0, 0)
            recorded = _record_below(lowers, rel) if below is not None and not ownership.full else None
            if recorded is not None:
                ownership.give(top, *recorded)
            else:
                os.chown(top, uid, gid, follow_symlinks=False)
            Path(top).chmod(mode)
            if below is not None:
                os.utime(top, ns=(below.st_atime_ns, below.st_mtime_ns), follow_symlinks=False)


def _record_below(lowers: Sequence[Path], rel: str) -> tuple[int, int] | None:
    """The owner recorded on the directory *rel* shows in the overlay of *lowers*, if any."""
    for lower in reversed(lowers):
        path = lower / rel if rel != "." else lower
        if path.is_dir() and not path.is_symlink():
            return read_record(str(path))
    return None


def _has_overlay_markers(tree: Path, flavor: OverlayFlavor) -> bool:
    """Whether *tree* holds a whiteout (0:0 device) or an opaque directory."""
    for top, dirs, files in os.walk(tree):
        for name in dirs:
            with contextlib.suppress(OSError):
                if os.getxattr(Path(top) / name, flavor.opaque_xattr, follow_symlinks=False) == b"y":
                    return True
        for name in files:
            with contextlib.suppress(OSError):
                if is_whiteout((Path(top) / name).lstat()):
                    return True
    return False


@dataclass(slots=True, kw_only=True)
class StackCapture:
    """One step's overlay: :meth:`finish` ends it, :meth:`keep` makes its upper the next lower layer."""

    stacker: Stacker
    rootfs: Path
    upper: Path
    lowers: tuple[Path, ...]
    in_memory: bool = False  # the upper is on the build's tmpfs, and its snapshot stays there
    mounted: bool = True

    def unmount(self) -> None:
        if self.mounted:
            self.stacker.unmount(self.rootfs)
            self.mounted = False

    def finish(self) -> Taken:
        self.unmount()
        with self.stacker.view_of(self.lowers) as lower:
            changes = changes_from_upper(self.upper, lower, self.stacker.flavor,
                                         records=not self.stacker.unpack.ownership.full)
        return Taken(changes=changes, source=self.upper, after=Snapshot(entries={}))

    def keep(self, chain: Digest) -> None:
        """The step made the layer whose chain id is *chain*: its upper is that snapshot now."""
        self.stacker.adopt(self.upper, chain, in_memory=self.in_memory)


@dataclass(slots=True, kw_only=True)
class Stacker:
    """Mounts stages as overlays of their layers' snapshots, unpacking a layer the first time it is needed."""

    snapshots: LayerSnapshots
    blobs: LayoutStore
    scratch: Path  # the build's private directory, on the snapshots' filesystem
    runner: Runner
    unpack: UnpackOptions = field(default_factory=UnpackOptions.for_current_process)
    mounter: Mounter = field(default_factory=LibcMounter)
    volatile: bool = True
    flavor: OverlayFlavor = TRUSTED_FLAVOR  # USER_FLAVOR in the build's own user namespace
    options_limit: int = _OPTIONS_LIMIT
    # The devpod case: the data directory is itself on overlayfs, which can be a lower layer but
    # not an upper one, and cannot hold whiteouts or opaque markers. Uppers then live on a tmpfs
    # of the build's own, and so do the snapshots of layers that delete something; the others
    # are copied into the data directory once and shared as usual.
    upper_on_tmpfs: bool = False
    memory_limit: int = MEMORY_LIMIT  # 0: no step is staged in memory (the tmpfs cannot be mounted, or is full)
    _tmpfs: Path | None = None
    _in_memory: set[Digest] = field(default_factory=set)  # snapshots kept on the tmpfs by steps staged in memory
    _links: dict[Path, Path] = field(default_factory=dict)
    _flat: dict[Path, Path] = field(default_factory=dict)  # top lower of a flattened part -> its copy
    _views: dict[tuple[Path, ...], Path] = field(default_factory=dict)
    _touched: set[Digest] = field(default_factory=set)
    unpacked: int = 0  # layers unpacked by this build (the rest were snapshots already)
    _lock: threading.RLock = field(default_factory=threading.RLock)  # the platforms of a build share a stacker
    _unpacking: dict[Digest, threading.Lock] = field(default_factory=dict)  # one unpack of a chain at a time

    def _chain_lock(self, chain: Digest) -> threading.Lock:
        with self._lock:
            return self._unpacking.setdefault(chain, threading.Lock())

    # -- layers -> lower directories ------------------------------------------------------

    def lowers(self, layers: Sequence[Descriptor], diff_ids: Sequence[Digest]) -> tuple[Path, ...]:
        """The snapshot directories of a stack, bottom first; a missing one is unpacked from its blob."""
        if len(layers) != len(diff_ids):
            raise IntegrityError(f"the image has {len(layers)} layers but {len(diff_ids)} diff ids in its config",
                                 hint="the base image is malformed: rebuild it or use another one")
        paths: list[Path] = []
        for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
            found = self._present(chain)
            if found is None:
                with self._chain_lock(chain):  # another platform unpacking it: wait, and take its snapshot
                    found = self._present(chain) or self._unpack(layer, diff_id, chain, paths)
            paths.append(found)
        return tuple(paths)

    def _present(self, chain: Digest) -> Path | None:
        """The snapshot of *chain* this build can stack on already, if any."""
        if self.snapshots.has(chain):
            with self._lock:
                touch = chain not in self._touched
                self._touched.add(chain)
            if touch:
                self.snapshots.touch(chain)
            return self.snapshots.path(chain)
        if (private := self._private(chain)) is not None and private.is_dir():
            return private
        return None

    def _scratch_tmpfs(self) -> Path:
        """The build's tmpfs, mounted on first use, unmounted by :meth:`close`.

        It holds every upper in the devpod case (no size limit: RUN steps write there), else
        only the steps staged in memory (``size=`` :attr:`memory_limit`).
        """
        with self._lock:
            return self._mount_tmpfs()

    def _mount_tmpfs(self) -> Path:
        if self._tmpfs is None:
            target = self.scratch / "tmpfs"
            target.mkdir(exist_ok=True)
            options = "mode=0700" if self.upper_on_tmpfs else f"mode=0700,size={self.memory_limit}"
            self.mounter.mount("tmpfs", target, "tmpfs", options)
            self._tmpfs = target
            (target / "snapshots").mkdir()
        return self._tmpfs

    def _memory(self) -> bool:
        """Whether a step can be staged in memory (the tmpfs is mounted on the first that is)."""
        if self.memory_limit <= 0:
            return False
        if self.upper_on_tmpfs:
            return True  # every upper is on the tmpfs already; :meth:`adopt` minds the budget
        try:
            self._scratch_tmpfs()
        except OSError:
            self.memory_limit = 0  # no tmpfs here (no mount privilege): every step on disk
            return False
        return True

    def _private(self, chain: Digest) -> Path | None:
        """Where this build keeps *chain*'s snapshot off the shared store: every one when the data
        directory cannot keep it (devpod case), and those of steps staged in memory."""
        if self.upper_on_tmpfs or chain in self._in_memory:
            return self._scratch_tmpfs() / "snapshots" / chain.hex
        return None

    def _tmpfs_used(self) -> int:
        info = os.statvfs(self._scratch_tmpfs())
        return (info.f_blocks - info.f_bfree) * info.f_frsize

    def _tmpfs_full(self) -> bool:
        """Whether the tmpfs has less room than one chunk of a copy (what a write filling it leaves)."""
        info = os.statvfs(self._scratch_tmpfs())
        return info.f_bavail * info.f_frsize < _CHUNK

    def adopt(self, upper: Path, chain: Digest, *, in_memory: bool = False) -> None:
        """Make a step's *upper* directory the snapshot of *chain* (for this build only, *in_memory*).

        In the devpod case, where every upper is on the tmpfs and it has no size limit, an upper
        staged in memory stays there while the tmpfs holds no more than :attr:`memory_limit`;
        past that it is copied to the data directory as the others are.
        """
        with self._lock:
            self._adopt(upper, chain, in_memory=in_memory)

    def _adopt(self, upper: Path, chain: Digest, *, in_memory: bool) -> None:
        if in_memory and (not self.upper_on_tmpfs or self._tmpfs_used() <= self.memory_limit):
            self._in_memory.add(chain)
        private = self._private(chain)
        if private is None:
            self.snapshots.put(upper, chain)
        elif chain in self._in_memory or _has_overlay_markers(upper, self.flavor):
            if private.exists():  # the same layers made twice in this build (two stages)
                shutil.rmtree(upper, ignore_errors=True)
            else:
                upper.rename(private)  # on the same tmpfs
        else:
            staging = self.snapshots.staging()
            try:
                apply_upper(upper, staging, move=False, flavor=self.flavor)  # a faithful copy: nothing to delete
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self.snapshots.put(staging, chain)

    def _unpack(self, layer: Descriptor, diff_id: Digest, chain: Digest, below: Sequence[Path]) -> Path:
        try:
            return self._unpack_into(self.snapshots.staging(), layer, diff_id, chain, below)
        except IntegrityError:
            if (private := self._private(chain)) is None:
                raise
        # overlayfs refuses a whiteout or an opaque marker: this layer's snapshot stays on the tmpfs
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=private.parent))
        return self._unpack_into(staging, layer, diff_id, chain, below, target=private)

    def _unpack_into(self, staging: Path, layer: Descriptor, diff_id: Digest, chain: Digest,
                     below: Sequence[Path], *, target: Path | None = None) -> Path:
        try:
            with self.blobs.open_blob(layer.digest) as blob, RootDir.open(staging) as root:
                stream = _Hashing(decompressed(blob))
                report = unpack_layer(cast(IO[bytes], stream), root,
                                      dataclasses.replace(self.unpack, overlay_whiteouts=True,
                                                          opaque_xattr=self.flavor.opaque_xattr), lowers=below)
                got = stream.drain()
            if got != str(diff_id):
                raise IntegrityError(f"layer {layer.digest} unpacks to {got}, but the image says {diff_id}",
                                     hint="the blob or the image config is corrupt: pull or build it again")
            _describe_implicit_dirs(staging, report.dirs, below, self.unpack.ownership)
            if target is None:
                target = self.snapshots.put(staging, chain)
            else:
                staging.rename(target)
            with self._lock:
                self.unpacked += 1
            return target
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    # -- mounting -------------------------------------------------------------------------

    def _link(self, lower: Path) -> Path:
        """A short name for *lower*, so that more layers fit in the mount options."""
        with self._lock:
            return self._make_link(lower)

    def _make_link(self, lower: Path) -> Path:
        if lower not in self._links:
            links = self.scratch / "l"
            links.mkdir(exist_ok=True)
            link = links / format(len(self._links), "x")
            link.symlink_to(lower)
            self._links[lower] = link
        return self._links[lower]

    def _lowerdir(self, lowers: Sequence[Path], reserve: int) -> str:
        """The ``lowerdir=`` value (top first) for *lowers*, flattening the bottom when it would not fit."""
        stack = list(lowers) or [self._empty()]
        while True:
            value = ":".join(str(self._link(p)) for p in reversed(stack))
            if len(value) + reserve <= self.options_limit or len(stack) <= 2:
                return value
            keep = max(1, len(stack) // 2)
            stack = [self._flatten(stack[: len(stack) - keep]), *stack[len(stack) - keep:]]

    def _empty(self) -> Path:
        empty = self.scratch / "empty-lower"
        empty.mkdir(mode=0o755, exist_ok=True)
        return empty

    def _flatten(self, lowers: Sequence[Path]) -> Path:
        """One directory with the merged contents of *lowers* (for this build only)."""
        with self._lock:
            return self._flattened(lowers)

    def _flattened(self, lowers: Sequence[Path]) -> Path:
        if lowers[-1] in self._flat:
            return self._flat[lowers[-1]]
        flat = Path(tempfile.mkdtemp(prefix="flat-", dir=self.scratch))
        with self.view_of(lowers) as merged:
            shutil.rmtree(flat)
            result = self.runner.run(["cp", "-a", "--reflink=auto", str(merged), str(flat)])
            if not result.ok:
                raise BuildFailed(f"cannot flatten {len(lowers)} layers: {result.output.strip()}",
                                  hint="check free disk space in the data directory")
        self._flat[lowers[-1]] = flat
        return flat

    def unmount(self, target: Path) -> None:
        unmount_or_detach(self.mounter, target)

    def _mount_view(self, lowers: Sequence[Path]) -> Path:
        """A read-only overlay of *lowers*; overlayfs wants two lower directories at least without an upper."""
        target = Path(tempfile.mkdtemp(prefix="view-", dir=self.scratch))
        stack = [self._empty(), *lowers] if len(lowers) < 2 else list(lowers)
        self.mounter.mount("overlay", target, "overlay", f"lowerdir={self._lowerdir(stack, 32)}{self.flavor.option}")
        return target

    @contextmanager
    def view_of(self, lowers: Sequence[Path]) -> Iterator[Path]:
        """A read-only merged view of *lowers* for the length of the block."""
        if not lowers:
            yield self._empty()
            return
        target = self._mount_view(lowers)
        try:
            yield target
        finally:
            with contextlib.suppress(OSError):
                self.unmount(target)
            with contextlib.suppress(OSError):
                target.rmdir()

    def view(self, layers: Sequence[Descriptor], diff_ids: Sequence[Digest]) -> Path:
        """A read-only merged view of a stack, mounted until :meth:`close` (for ``COPY --from``)."""
        lowers = self.lowers(layers, diff_ids)
        with self._lock:
            if lowers not in self._views:
                self._views[lowers] = self._mount_view(lowers) if lowers else self._empty()
            return self._views[lowers]

    @contextmanager
    def step(self, rootfs: Path, layers: Sequence[Descriptor], diff_ids: Sequence[Digest], *,
             in_memory: bool = False) -> Iterator[StackCapture]:
        """Mount the stack with a fresh upper directory on *rootfs* around one step.

        *in_memory*: stage the step on the build's tmpfs where one can be mounted (see the
        module's doc). :class:`StagingFull` out of such a step means the tmpfs is full: no later
        step is staged in memory, and the caller makes this one again.
        """
        lowers = self.lowers(layers, diff_ids)
        memory = in_memory and self._memory()
        where = self._scratch_tmpfs() if self.upper_on_tmpfs or memory else self.scratch
        base = Path(tempfile.mkdtemp(prefix="step-", dir=where))
        capture: StackCapture | None = None
        try:
            upper, work = base / "upper", base / "work"
            upper.mkdir()
            work.mkdir()
            top = _dir_meta_from(lowers, ".")  # the merged root shows the upper root's owner and mode
            os.chown(upper, top.st_uid if top else 0, top.st_gid if top else 0)
            upper.chmod(stat.S_IMODE(top.st_mode) if top else 0o755)
            tail = overlay_options(Path("X"), upper, work, volatile=self.volatile,
                                   flavor=self.flavor).removeprefix("lowerdir=X")
            options = f"lowerdir={self._lowerdir(lowers, len(tail))}{tail}"
            self.mounter.mount("overlay", rootfs, "overlay", options)
            capture = StackCapture(stacker=self, rootfs=rootfs, upper=upper, lowers=lowers, in_memory=memory)
            yield capture
        except OSError as exc:
            if not memory or exc.errno != errno.ENOSPC or isinstance(exc, StagingFull) or not self._tmpfs_full():
                raise  # not the tmpfs: the layer's blob, written to the data directory, found it full
            self.memory_limit = 0
            raise StagingFull(errno.ENOSPC, f"the build's memory staging ({self._tmpfs}) is full") from exc
        finally:
            if capture is not None and capture.mounted:
                with contextlib.suppress(OSError):
                    capture.unmount()
            shutil.rmtree(base, ignore_errors=True)

    def close(self) -> None:
        """Unmount the views and the build's tmpfs; the scratch directory goes with the build."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        for target in self._views.values():
            if target.name.startswith("view-"):
                with contextlib.suppress(OSError):
                    self.unmount(target)
        self._views.clear()
        if self._tmpfs is not None:
            with contextlib.suppress(OSError):
                self.unmount(self._tmpfs)
            self._tmpfs = None
