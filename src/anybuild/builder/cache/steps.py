"""The step cache as the executor uses it: look a step up before it runs, record it after.

:class:`StepCache` keeps, per stage, the key of the last step (keys chain from
the parent's *key*, hit or miss) and the cached layers not yet applied to the
stage's rootfs: a run of hits costs no unpacking until a step misses, or
another stage reads this one's files (:meth:`StepCache.materialize`).

The platforms of one build run in parallel, each with its own :meth:`StepCache.view`:
per-stage state of its own over the shared store, context file list, registry client
and hashes. A step that misses *claims* its key until it is recorded: another platform
that looks the same key up meanwhile (a ``FROM --platform=$BUILDPLATFORM`` stage both
build) waits for that result instead of running the step again.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from anybuild.backends.base import StepTiming
from anybuild.builder.cache.hashes import ContextHashes
from anybuild.builder.cache.key import base_key, hash_files, step_key, under
from anybuild.builder.cache.registry import export_entries, import_entry
from anybuild.builder.cache.sparse import LayerIndex, complete, unpack_chosen
from anybuild.builder.cache.store import CacheEntry, StepStore
from anybuild.builder.inroot import RootDir
from anybuild.builder.instructions.metadata import env_map, workdir_path
from anybuild.builder.rootfs import unpack_layer
from anybuild.builder.snapshot import Kind
from anybuild.builder.snapshotter import SnapshotterKind
from anybuild.dockerfile.dockerignore import DockerIgnore, select_context_files, sources_for
from anybuild.dockerfile.instructions import Add, Copy, Instruction, KeyValue, MountType, Run, Workdir
from anybuild.errors import IntegrityError, RegistryError
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.digest import Digest
from anybuild.oci.layout import LayoutStore
from anybuild.registry.client import RegistryClient
from anybuild.registry.reference import Reference

if TYPE_CHECKING:
    from anybuild.builder.executor import Executor, _State

__all__ = ["StepCache"]


@dataclass(slots=True)
class _Sparse:
    """A stage whose cached *layers* are unpacked only for the paths in *applied*."""

    layers: list[Descriptor]
    index: LayerIndex
    applied: set[str] = field(default_factory=set)


def _links_as_indexed(state: _State, index: LayerIndex) -> bool:
    """Whether every symlink in the stage's rootfs is one the index knows (a step made none): the
    index resolves paths, so a new symlink could lead a step where the index does not look."""
    for rel, entry in state.snapshot.entries.items():
        if entry.kind is Kind.SYMLINK:
            node = index.final.get(rel)
            if node is None or node.kind != "symlink" or node.link != entry.link:
                return False
    return True


@dataclass(slots=True)
class _Shared:
    """What the views of one build's step cache share (guarded by *lock*)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    remote: threading.Lock = field(default_factory=threading.Lock)  # one --cache-from lookup at a time
    files: list[str] | None = None
    client: RegistryClient | None = None
    claims: dict[str, tuple[threading.Event, str]] = field(default_factory=dict)  # key -> (done, who runs it)
    views: list[StepCache] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class StepCache:
    store: StepStore
    layers: LayoutStore  # the build's blob store
    context: Path
    ignore: DockerIgnore
    use: bool = True  # False: --no-cache (results are still recorded)
    cache_from: tuple[Reference, ...] = ()
    client_factory: Callable[[], RegistryClient] | None = None
    hashes: ContextHashes = field(default_factory=ContextHashes)  # context file digests kept between builds
    hits: int = 0
    keys: list[str] = field(default_factory=list)
    current: dict[int, str] = field(default_factory=dict)
    pending: dict[int, list[Descriptor]] = field(default_factory=dict)
    _miss: tuple[str, int] | None = None
    sparse: dict[int, _Sparse] = field(default_factory=dict)  # stages unpacked only in part
    label: str = ""  # the platform of a view, for what a waiting one says
    _shared: _Shared = field(default_factory=_Shared)
    _claimed: list[str] = field(default_factory=list)  # keys this view claimed and has not recorded yet

    def view(self, label: str = "") -> StepCache:
        """A cache of its own state for one platform over this one's store, hashes, client and claims."""
        made = StepCache(store=self.store, layers=self.layers, context=self.context, ignore=self.ignore, use=self.use,
                         cache_from=self.cache_from, client_factory=self.client_factory, hashes=self.hashes,
                         label=label, _shared=self._shared)
        with self._shared.lock:
            self._shared.views.append(made)
        return made

    @property
    def all_hits(self) -> int:
        """The hits of this cache and of its views."""
        return self.hits + sum(v.hits for v in self._shared.views if v is not self)

    def _all_keys(self) -> list[str]:
        keys = list(self.keys)
        for view in self._shared.views:
            if view is not self:
                keys += view.keys
        return list(dict.fromkeys(keys))

    # -- keys -------------------------------------------------------------------------

    def _context_files(self) -> list[str]:
        with self._shared.lock:  # listed once for every platform
            if self._shared.files is None:
                self._shared.files = select_context_files(self.context, self.ignore)
            return self._shared.files

    def _ref_key(self, ex: Executor, name: str) -> str:
        for state in ex.states.values():
            stage = state.stage
            if stage.name == name.lower() or (name.isdigit() and int(name) == stage.index):
                return self.current.get(stage.index, f"uncached:{uuid.uuid4()}")
        image = ex.images.get(name)
        return f"image:{image.digest or image.name}"

    def begin_stage(self, ex: Executor, state: _State) -> None:
        stage = state.stage
        if stage.parent is not None:
            self.current[stage.index] = self.current.get(stage.parent, f"uncached:{uuid.uuid4()}")
            return
        image = ex.images.get(stage.image, state.platform)
        self.current[stage.index] = base_key(image=stage.image, digest=image.digest, platform=str(state.platform))

    def defer(self, stage: int, layers: Sequence[Descriptor]) -> bool:
        """Take the base *layers* of a stage to unpack later, with the cached layers after them."""
        self.pending[stage] = list(layers)
        return True

    def key_of(self, ex: Executor, state: _State, instr: Instruction) -> str:
        parent = self.current[state.stage.index]
        match instr:
            case Run():
                files: list[tuple[str, str]] = []
                refs: dict[str, str] = {}
                for mount in instr.mounts:
                    if mount.type is not MountType.BIND:
                        continue
                    if mount.from_:
                        refs[mount.from_] = self._ref_key(ex, mount.from_)
                    else:
                        chosen = under(self._context_files(), mount.source or ".")
                        files += hash_files(self.context, chosen, self.hashes)
                # a RUN whose USER cannot be had here runs as root: not the same step as one run as USER
                if (stand_in := ex.run_as_stand_in(state.config.user)) is not None:
                    refs["run-as"] = stand_in
                # the ARG/ENV values a RUN sees; undeclared proxy args stay out (as in BuildKit)
                return step_key(parent, instr, env=state.scope.lookup(), files=files, refs=refs)
            case Add() if any(s.path.startswith(("http://", "https://")) for s in instr.sources) \
                    and not instr.checksum:
                return step_key(parent, instr, refs={"uncacheable": str(uuid.uuid4())})
            case Copy(from_=str(name)) if name:
                return step_key(parent, instr, refs={name: self._ref_key(ex, name)})
            case Copy() | Add():
                chosen = list(sources_for(instr, self._context_files()))
                return step_key(parent, instr, files=hash_files(self.context, chosen, self.hashes))
            case _:
                return step_key(parent, instr)

    # -- lookups ----------------------------------------------------------------------

    def _remote(self, key: str, warn: Callable[[str], None]) -> CacheEntry | None:
        """The entry of *key* from the first ``--cache-from`` repository that has it; a failure is a miss."""
        if not self.cache_from or self.client_factory is None:
            return None
        with self._shared.remote:
            client = self._client()
            for repo in self.cache_from:
                try:
                    entry = import_entry(client, repo, key, self.store, self.layers)
                except (RegistryError, IntegrityError) as exc:
                    warn(f"warning: --cache-from {repo.repository}: {exc.message}; the step runs")
                    continue
                if entry is not None:
                    return self.store.get(key, self.layers)
        return None

    def _client(self) -> RegistryClient:
        assert self.client_factory is not None
        with self._shared.lock:
            if self._shared.client is None:
                self._shared.client = self.client_factory()
            return self._shared.client

    def _find(self, ex: Executor, key: str, name: str) -> CacheEntry | None:
        """The entry of *key*, else None with *key* claimed by this view until :meth:`record`; while another
        platform has it claimed (it runs the same step), wait for its result."""
        said = False
        while True:
            entry = self.store.get(key, self.layers) or self._remote(key, ex.on_line)
            if entry is not None:
                return entry
            with self._shared.lock:
                claim = self._shared.claims.get(key)
                if claim is None:
                    self._shared.claims[key] = (threading.Event(), self.label)
                    self._claimed.append(key)
            if claim is None:  # claimed: unless it was recorded between the lookup and the claim
                entry = self.store.get(key, self.layers)
                if entry is not None:
                    self._release(key)
                return entry
            done, who = claim
            if not said:
                ex.on_line(f"#{name} waiting for {who or 'another platform'}, which runs the same step")
                said = True
            while not done.wait(0.2):
                ex.cancel.check(f"while waiting for {who or 'another platform'}")

    def _release(self, key: str) -> None:
        with self._shared.lock:
            if key in self._claimed:
                self._claimed.remove(key)
                done, _who = self._shared.claims.pop(key)
                done.set()

    def release(self) -> None:
        """Give up the keys this view claimed (its platform stopped): a platform waiting on one runs it."""
        for key in list(self._claimed):
            self._release(key)

    def lookup(self, ex: Executor, state: _State, instr: Instruction, name: str, started: float) -> bool:
        """Apply the cached result of *instr* and return True, or prepare to record it and return False."""
        key = self.key_of(ex, state, instr)
        index = state.stage.index
        entry = self._find(ex, key, name) if self.use else None
        if entry is None:
            if isinstance(instr, Run):
                self.materialize(ex, state)
            elif isinstance(instr, Copy | Add | Workdir):
                where = instr.path if isinstance(instr, Workdir) else instr.dest
                # the step writes below its destination and reads the owners' names
                self.materialize(ex, state, reach=(workdir_path(state.config.working_dir, where),
                                                   "/etc/passwd", "/etc/group"))
            self._miss = (key, len(state.layers))
            return False
        if entry.layer is not None and entry.diff_id is not None:
            state.layers.append(entry.layer)
            state.diff_ids.append(Digest.parse(entry.diff_id))
            if ex.stacker is None:  # stacked stages are their layers: nothing to unpack later
                self.pending.setdefault(index, []).append(entry.layer)
        state.history.append(entry.history)
        if entry.config.env != state.config.env:
            old = env_map(state.config.env)
            changed = [KeyValue(key=k, value=v) for k, v in env_map(entry.config.env).items() if old.get(k) != v]
            state.scope = state.scope.with_env(changed)
        state.config = entry.config
        state.author = entry.author
        state.cmd_set = entry.cmd_set
        self.current[index] = key
        self.keys.append(key)
        self.hits += 1
        ex.on_line(f"#{name} CACHED")
        ex.steps.append(StepTiming(name=name, seconds=time.monotonic() - started, cached=True))
        return True

    def record(self, ex: Executor, state: _State) -> None:
        """After a missed step ran: store what it produced under its key."""
        del ex
        if self._miss is None:
            return
        key, layers_before = self._miss
        self._miss = None
        grew = len(state.layers) > layers_before
        entry = CacheEntry(key=key, history=state.history[-1], config=state.config,
                           layer=state.layers[-1] if grew else None,
                           diff_id=str(state.diff_ids[-1]) if grew else None,
                           author=state.author, cmd_set=state.cmd_set)
        self.store.put(entry, self.layers)
        self._release(key)
        self.current[state.stage.index] = key
        self.keys.append(key)

    def materialize(self, ex: Executor, state: _State, *, reach: Sequence[str] | None = None) -> None:
        """Apply the cached layers not yet unpacked to the stage's rootfs, and rescan it.

        With *reach* (the paths a COPY, ADD or WORKDIR can touch) and no stacker, only what those
        paths reach is unpacked where the layers' index can vouch for it (builder.cache.sparse); the
        rest follows when a step needs the whole rootfs.
        """
        index = state.stage.index
        pending = self.pending.pop(index, [])
        # the walk's snapshots tell which symlinks a step made; an overlay snapshotter's baseline is empty
        if reach is not None and ex.stacker is None and ex.snapshotter.kind is SnapshotterKind.WALK \
                and not ex.unpack.overlay_whiteouts and self._sparse_unpack(ex, state, pending, reach):
            return
        sparse = self.sparse.pop(index, None)
        with RootDir.open(state.rootfs) as root:
            if sparse is not None:
                state.recorded.update(complete(self._openers(sparse), sparse.index, sparse.applied, root, ex.unpack))
            for layer in pending:
                with self.layers.open_blob(layer.digest) as stream:
                    report = unpack_layer(stream, root, ex.unpack)
                state.recorded.update(report.recorded)
        if pending or sparse is not None:
            state.snapshot = ex.snapshotter.baseline(state.rootfs)

    def _sparse_unpack(self, ex: Executor, state: _State, pending: list[Descriptor], reach: Sequence[str]) -> bool:
        """Unpack only what *reach* reaches; False (with *pending* put back) where that cannot be trusted."""
        index = state.stage.index
        sparse = self.sparse.get(index)
        if sparse is None:
            with os.scandir(state.rootfs) as entries:
                occupied = any(entries)  # whiteouts would have to act on what is there
            if not pending or occupied:
                self.pending[index] = pending
                return False
            layers = LayerIndex.read([functools.partial(self.layers.open_blob, d.digest) for d in pending])
            sparse = _Sparse(layers=pending, index=layers)
        elif pending or not _links_as_indexed(state, sparse.index):
            self.pending[index] = pending  # hits after the sparse steps, or a step made a symlink: unpack all
            return False
        wanted = sparse.index.closure(reach)
        if wanted is None:
            self.pending[index] = pending
            return False
        more = wanted - sparse.applied
        with RootDir.open(state.rootfs) as root:
            state.recorded.update(unpack_chosen(self._openers(sparse), sparse.index, root, ex.unpack,
                                                more.__contains__))
        sparse.applied |= more
        self.sparse[index] = sparse
        state.snapshot = ex.snapshotter.baseline(state.rootfs)
        return True

    def _openers(self, sparse: _Sparse) -> list[Callable[[], IO[bytes]]]:
        return [functools.partial(self.layers.open_blob, layer.digest) for layer in sparse.layers]

    # -- after the build --------------------------------------------------------------

    def export(self, repo: Reference) -> int:
        """Push this build's entries to *repo* (``--cache-to``); return how many."""
        if self.client_factory is None:
            return 0
        return export_entries(self._client(), repo, self.store, self._all_keys(), self.layers)

    def close(self) -> None:
        self.release()
        self.hashes.save()
        with self._shared.lock:
            client, self._shared.client = self._shared.client, None
        if client is not None:
            client.close()
