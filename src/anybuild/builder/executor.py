"""The build loop: stages, steps, snapshots and layers, into an image in a layout store.

For each needed stage: FROM gives a rootfs (a base image unpacked, a copy of an
earlier stage, or nothing for ``scratch``), a config (with Docker's default
PATH when the image has none) and the base's ONBUILD triggers, which run
first. Each instruction is expanded with the stage's ARG/ENV scope and
dispatched: metadata instructions transform the config; RUN, COPY, ADD and
WORKDIR touch the rootfs, after which a snapshot diff becomes a layer (or an
``empty_layer`` history entry when nothing changed).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import httpx

from anybuild.backends.base import StepTiming
from anybuild.builder.cache.steps import StepCache
from anybuild.builder.emulation import Emulation, Route
from anybuild.builder.images import BaseImage, ImageSource, unpack_image
from anybuild.builder.inroot import RootDir
from anybuild.builder.instructions.metadata import apply_metadata, env_map, shell_of, with_env
from anybuild.builder.instructions.run import DEFAULT_PATH, RunContext, run_argv, run_step
from anybuild.builder.instructions.transfer import TransferContext, transfer_step
from anybuild.builder.layer import Compression, write_layer
from anybuild.builder.owners import Ownership
from anybuild.builder.rootfs import RecordedMeta, UnpackOptions
from anybuild.builder.sandbox import NetworkMode, Sandbox
from anybuild.builder.snapshot import Snapshot
from anybuild.builder.snapshotter import Capture, Snapshotter, WalkSnapshotter
from anybuild.builder.stack import StackCapture, Stacker, StagingFull, chain_ids
from anybuild.builder.step import StepResult
from anybuild.builder.users import resolve_chown, resolve_user
from anybuild.cancellation import Cancellation
from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.expand import Scope, expand_instruction, expand_word, platform_args
from anybuild.dockerfile.instructions import Add, Arg, Copy, Entrypoint, From, Instruction, KeyValue, Run, Workdir
from anybuild.dockerfile.parser import parse_dockerfile, read_dockerfile
from anybuild.dockerfile.stages import Stage, build_stage_graph
from anybuild.errors import AnybuildError, BuildFailed, DockerfileError, EnvironmentUnsupported
from anybuild.oci.config import ContainerConfig, History, ImageConfig
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.digest import Digest
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Manifest
from anybuild.oci.mediatype import MediaType
from anybuild.oci.platform import Platform
from anybuild.process import Runner
from anybuild.redaction import Redactor

__all__ = ["BuildInputs", "BuiltImage", "Executor"]

_LAYER_TYPES = {
    MediaType.DOCKER_LAYER_GZIP: MediaType.OCI_LAYER_GZIP,
    MediaType.DOCKER_LAYER: MediaType.OCI_LAYER,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildInputs:
    context: Path
    dockerfile: Path
    platform: Platform  # the target platform (TARGETPLATFORM): stages without FROM --platform build for it
    build_platform: Platform | None = None  # BUILDPLATFORM, where the builder runs (default: the target)
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    source_date_epoch: int | None = None
    network: NetworkMode = NetworkMode.DEFAULT
    ignored: Callable[[str], bool] = lambda _rel: False
    docker_media_types: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)  # `--label`: set on the final config only


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltImage:
    manifest: Descriptor
    config: ImageConfig
    layers: tuple[Descriptor, ...]
    steps: tuple[StepTiming, ...]
    warnings: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return self.manifest.size + sum(layer.size for layer in self.layers)


@dataclass(slots=True, kw_only=True)
class _State:
    stage: Stage
    rootfs: Path
    config: ContainerConfig
    layers: list[Descriptor]
    diff_ids: list[Digest]
    history: list[History]
    scope: Scope
    snapshot: Snapshot
    recorded: dict[str, RecordedMeta]
    platform: Platform  # the stage's: FROM --platform, else its parent stage's, else the target
    author: str = ""
    cmd_set: bool = False


@dataclass(slots=True, kw_only=True)
class Executor:
    inputs: BuildInputs
    sandbox: Sandbox
    images: ImageSource
    store: LayoutStore
    work: Path  # private scratch space for this build (removed by the caller)
    cache_dir: Path  # persistent RUN --mount=type=cache directories
    runner: Runner
    on_line: Callable[[str], None]
    unpack: UnpackOptions = field(default_factory=UnpackOptions.for_current_process)
    clock: Callable[[], float] = time.time
    redactor: Redactor = field(default_factory=Redactor)
    steps: list[StepTiming] = field(default_factory=list)
    states: dict[int, _State] = field(default_factory=dict)
    image_roots: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    file: str = "Dockerfile"
    cache: StepCache | None = None  # the step cache (None: no lookups, nothing recorded)
    snapshotter: Snapshotter = field(default_factory=WalkSnapshotter)  # anybuild.builder.overlay chooses
    stacker: Stacker | None = None  # stages as overlays of layer snapshots (replaces the snapshotter's rootfs)
    strict: bool = False  # refuse a RUN whose USER the pod has no id for (run or cached)
    ids_emulated: bool = False  # the RUN sandbox emulates ids (proot): no USER but root is real
    cancel: Cancellation = field(default_factory=Cancellation)  # checked before each step
    secrets_dir: Path | None = None  # where RUN secret files are written (a private tmpfs), else the scratch
    emulation: Emulation | None = None  # how RUN steps of a foreign platform run (None: refused)
    current: str = ""  # the step running now, for what an interruption says

    # -- top level ---------------------------------------------------------------------

    def build(self) -> BuiltImage:
        df = read_dockerfile(self.inputs.dockerfile)
        self.file = self.inputs.dockerfile.name
        instructions = parse_instructions(df)
        build = self.inputs.build_platform or self.inputs.platform
        predefined = platform_args(str(build), str(self.inputs.platform))
        graph = build_stage_graph(instructions, build_args=self.inputs.build_args, predefined=predefined,
                                  escape=df.escape, file=self.file)
        plan = graph.needed(self.inputs.target)
        for stage in plan:
            self.states[stage.index] = self._run_stage(stage, graph.meta, df.escape)
        return self._assemble(self.states[plan[-1].index])

    def _now(self) -> str:
        stamp = self.inputs.source_date_epoch if self.inputs.source_date_epoch is not None else self.clock()
        return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- stages -----------------------------------------------------------------------

    def _base(self, stage: Stage) -> _State:
        rootfs = Path(tempfile.mkdtemp(prefix=f"stage-{stage.index}-", dir=self.work))
        rootfs.chmod(0o755)  # an image's / is 0755 (mkdtemp makes 0700)
        if stage.parent is not None:
            prev = self.states[stage.parent]  # FROM another stage: its platform too (--platform is not re-read)
            if self.stacker is None:  # stacked: the same layers, nothing to copy
                if self.cache is not None:
                    self.cache.materialize(self, prev)
                shutil.rmtree(rootfs)
                self._copy_tree(prev.rootfs, rootfs)
            # a stage built FROM another keeps that stage's ARG values (BuildKit does)
            return dataclasses.replace(prev, stage=stage, rootfs=rootfs, layers=list(prev.layers),
                                       diff_ids=list(prev.diff_ids), history=list(prev.history),
                                       scope=Scope(args=prev.scope.args, declared=prev.scope.declared),
                                       snapshot=self.snapshotter.baseline(rootfs), recorded=dict(prev.recorded),
                                       cmd_set=False)
        platform = self.inputs.platform if stage.platform is None else _stage_platform(stage, self.file)
        image = self.images.get(stage.image, platform)
        # with a step cache the base is unpacked on the stage's first miss (never, when every step hits)
        deferred = self.stacker is not None or (self.cache is not None and self.cache.defer(stage.index, image.layers))
        recorded = {} if deferred else unpack_image(image, self.store, rootfs, self.unpack)
        config = image.config.config
        if "PATH" not in env_map(config.env):
            config = dataclasses.replace(config, env=with_env(config.env, {"PATH": DEFAULT_PATH}))
        layers = [dataclasses.replace(d, media_type=_LAYER_TYPES.get(MediaType.lookup(d.media_type) or
                                                                     MediaType.OCI_LAYER, d.media_type))
                  for d in image.layers]
        return _State(stage=stage, rootfs=rootfs, config=config, layers=layers, diff_ids=list(image.config.diff_ids),
                      history=list(image.config.history), scope=Scope(), snapshot=self.snapshotter.baseline(rootfs),
                      recorded=recorded, platform=platform,
                      author=image.config.author)

    def _copy_tree(self, src: Path, dst: Path) -> None:
        result = self.runner.run(["cp", "-a", "--reflink=auto", f"{src}/.", str(dst)])
        if not result.ok:
            raise BuildFailed(f"cannot copy stage rootfs: {result.output.strip()}", hint="check free disk space")

    def _run_stage(self, stage: Stage, meta: Mapping[str, str], escape: str) -> _State:
        self.current = f"[{stage.label}] FROM {stage.image}"
        self.cancel.check()
        self.on_line(f"#{stage.index} FROM {stage.image}" + (f" AS {stage.name}" if stage.name else ""))
        started = time.monotonic()
        state = self._base(stage)
        if self.cache is not None:
            self.cache.begin_stage(self, state)
        state.scope = dataclasses.replace(state.scope, env=MappingProxyType(env_map(state.config.env)))
        self.steps.append(StepTiming(name=f"[{stage.label}] FROM {stage.image}", seconds=time.monotonic() - started))
        triggers = tuple(state.config.extra.get("OnBuild") or ())
        body: list[Instruction] = []
        if triggers:
            extra = {k: v for k, v in state.config.extra.items() if k != "OnBuild"}
            state.config = dataclasses.replace(state.config, extra=extra)
            for text in triggers:
                body += parse_instructions(parse_dockerfile(text + "\n", file=f"ONBUILD of {stage.image}"))
        body += stage.instructions
        for number, instr in enumerate(body, start=1):
            self._step(state, instr, meta, escape, f"[{stage.label} {number}/{len(body)}]")
        return state

    # -- steps ------------------------------------------------------------------------

    def _step(self, state: _State, instr: Instruction, meta: Mapping[str, str], escape: str, label: str) -> None:
        started = time.monotonic()
        text = instr.original.strip() or str(instr.keyword)
        self.current = f"{label} {self.redactor(text)}"
        self.cancel.check()
        self.on_line(f"#{label} {self.redactor(text)}")
        if isinstance(instr, Arg):
            lookup = state.scope.lookup()
            # the defaults as written: Scope.declare substitutes them, once (ARG foo2="''" is '', not empty)
            defs = tuple(dataclasses.replace(d, name=expand_word(d.name, lookup, escape=escape, instr=instr,
                                                                 file=self.file))
                         for d in instr.args)
            inherited = dict(state.scope.args)
            scope = state.scope.declare(defs, meta=meta, build_args=self.inputs.build_args,
                                        escape=escape, instr=instr, file=self.file)
            kept = {d.name: inherited[d.name] for d in defs if d.default is None and d.name in inherited
                    and d.name not in self.inputs.build_args and d.name not in meta}
            state.scope = dataclasses.replace(scope, args=MappingProxyType({**scope.args, **kept}))
            return
        if isinstance(instr, From):
            raise DockerfileError("FROM inside a stage", file=self.file, line=instr.start_line)
        expanded = expand_instruction(instr, state.scope.lookup(), escape=escape, file=self.file)
        if self.strict and isinstance(expanded, Run) and self.run_as_stand_in(state.config.user) is not None:
            raise EnvironmentUnsupported(
                f"--strict: {self.file}:{instr.start_line}: RUN as USER {state.config.user} cannot run as that user "
                f"here (owners: {self.unpack.ownership.describe()}), so its permission checks would be root's",
                hint="build without --strict (files still get the USER's owner), or where the pod grants a subuid "
                     "range (newuidmap) or root")
        if self.cache is not None and self.cache.lookup(self, state, expanded, f"{label} {self.redactor(text)}",
                                                        started):
            return
        # COPY and ADD are staged in memory where the stacker can (see builder.stack): a copy of
        # thousands of files is then written once, in memory, and read once, into the layer.
        in_memory = isinstance(expanded, Copy | Add)
        try:
            result = self._apply(state, expanded, in_memory=in_memory)
        except StagingFull:
            result = self._apply(state, expanded, in_memory=False)  # the tmpfs is full: made again on disk
        if result.config.env != state.config.env:
            old = env_map(state.config.env)
            changed = [KeyValue(key=k, value=v) for k, v in env_map(result.config.env).items() if old.get(k) != v]
            state.scope = state.scope.with_env(changed)
        state.config = result.config
        if result.author is not None:
            state.author = result.author
        if result.cmd_set:
            state.cmd_set = True
        seconds = time.monotonic() - started
        self.steps.append(StepTiming(name=f"{label} {self.redactor(text)}", seconds=seconds))
        if self.cache is not None:
            self.cache.record(self, state)
        self.on_line(f"#{label} DONE {seconds:.1f}s")  # as BuildKit's plain progress says it

    def _apply(self, state: _State, expanded: Instruction, *, in_memory: bool) -> StepResult:
        """Carry out one expanded instruction and commit its layer (or history entry) to *state*."""
        touches = isinstance(expanded, Run | Copy | Add | Workdir)
        stepping = (self.stacker.step(state.rootfs, state.layers, state.diff_ids, in_memory=in_memory)
                    if self.stacker is not None and touches else
                    self.snapshotter.step(state.rootfs, state.snapshot, filesystem=touches))
        with stepping as capture:
            match expanded:
                case Run():
                    result = self._run(state, expanded)
                case Copy() | Add():
                    result = self._transfer(state, expanded)
                case Workdir():
                    result = apply_metadata(expanded, state.config)
                    _make_workdir(state.rootfs, result.config.working_dir, state.config.user,
                                  ownership=self.unpack.ownership, recorded=state.recorded)
                    result = dataclasses.replace(result, filesystem=True)
                case Entrypoint() if not state.cmd_set:  # an inherited CMD does not survive a new ENTRYPOINT
                    result = apply_metadata(expanded, state.config)
                    result = dataclasses.replace(result, config=dataclasses.replace(result.config, cmd=None))
                case _:
                    result = apply_metadata(expanded, state.config)
            self._commit(state, result, capture)
        return result

    def _run(self, state: _State, instr: Run) -> StepResult:
        where = f"{self.file}:{instr.start_line}"
        emulated = None if self.emulation is None else self.emulation.choice(state.platform, where)
        ctx = RunContext(
            sandbox=self.sandbox, secrets=self.inputs.secrets, cache_dir=self.cache_dir, scratch=self.work,
            secrets_dir=self.secrets_dir,
            context=self.inputs.context, stage_roots=self._from_root, network=self.inputs.network,
            redactor=self.redactor, on_line=self.on_line, file=self.file, ownership=self.unpack.ownership,
            emulator=emulated.emulator if emulated is not None and emulated.route is Route.ENTRYPOINT else None,
            check=self.cancel.check,
        )
        outcome = run_step(instr, state.config, state.scope.run_env(self.inputs.build_args), state.rootfs, ctx)
        for path, uid, gid in outcome.recorded:  # symlinks the command chowned
            state.recorded[path] = RecordedMeta(uid=uid, gid=gid, mode=0o777)
        for note in outcome.notes:
            if note not in self.warnings:
                self.warnings.append(note)
                self.on_line(f"anybuild: note: {note}")
        made_by = None
        if outcome.ran_as is not None:
            with RootDir.open(state.rootfs) as root:
                ident = resolve_user(state.config.user, root)
            made_by = (ident.uid, ident.gid)
            note = (f"USER {state.config.user}: this pod has no id {ident.uid} to run as, so RUN steps run as root "
                    f"here; their files belong to {ident.uid}:{ident.gid} in the image, but permission checks "
                    "are root's (anybuild build --strict refuses this)")
            if note not in self.warnings:
                self.warnings.append(note)
                self.on_line(f"anybuild: note: {note}")
        argv, _ = run_argv(instr, shell_of(state.config))
        return StepResult(config=state.config, created_by=f"RUN {' '.join(argv)} # buildkit", filesystem=True,
                          made_by=made_by)

    def _transfer(self, state: _State, instr: Copy | Add) -> StepResult:
        ctx = TransferContext(context=self.inputs.context, ignored=self.inputs.ignored, from_root=self._from_root,
                              scratch=self.work, http=lambda: httpx.Client(timeout=60), unpack=self.unpack,
                              recorded=state.recorded,
                              clock=self.clock, file=self.file)
        written = transfer_step(instr, state.config, state.rootfs, ctx)
        sources = " ".join(s.path for s in instr.sources)
        return StepResult(config=state.config, created_by=f"{instr.keyword} {sources} {instr.dest} # buildkit",
                          filesystem=True, changed_paths=tuple(written))

    def _from_root(self, name: str) -> Path:
        """The rootfs of a stage (by name or index) or of an image, for --from."""
        stages = [s.stage for s in self.states.values()]
        for stage in stages:
            if stage.name == name.lower() or (name.isdigit() and int(name) == stage.index):
                state = self.states[stage.index]
                if self.stacker is not None:
                    return self.stacker.view(state.layers, state.diff_ids)
                if self.cache is not None:
                    self.cache.materialize(self, state)
                return state.rootfs
        if name not in self.image_roots:
            image: BaseImage = self.images.get(name)
            if self.stacker is not None:
                return self.stacker.view(image.layers, image.config.diff_ids)
            rootfs = Path(tempfile.mkdtemp(prefix="image-", dir=self.work))
            rootfs.chmod(0o755)
            unpack_image(image, self.store, rootfs, self.unpack)
            self.image_roots[name] = rootfs
        return self.image_roots[name]

    def _commit(self, state: _State, result: StepResult, capture: Capture) -> None:
        if not result.filesystem:
            state.history.append(History(created=self._now(), created_by=result.created_by, empty_layer=True,
                                         comment="buildkit.dockerfile.v0"))
            return
        taken = capture.finish()  # the step's changes (and, for overlay, the end of its mount)
        changes, state.snapshot = taken.changes, taken.after
        if result.made_by is not None and changes.added:
            self._made_by(taken.source, changes.added, result.made_by, state.recorded)
        if changes.empty:
            state.history.append(History(created=self._now(), created_by=result.created_by, empty_layer=True,
                                         comment="buildkit.dockerfile.v0"))
            return
        blobs = self.store.root / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".layer-", dir=blobs)
        try:
            with os.fdopen(fd, "wb") as out, RootDir.open(taken.source) as root:
                blob = write_layer(changes, root, out, source_date_epoch=self.inputs.source_date_epoch,
                                   recorded=state.recorded, ownership=self.unpack.ownership,
                                   compression=Compression.GZIP, check=self.cancel.check)
            digest = Digest.parse(blob.digest)
            Path(tmp).replace(self.store.blob_path(digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        state.layers.append(Descriptor(media_type=MediaType.OCI_LAYER_GZIP, digest=digest, size=blob.size))
        state.diff_ids.append(Digest.parse(blob.diff_id))
        if isinstance(capture, StackCapture):
            capture.keep(chain_ids(state.diff_ids)[-1])  # the step's upper is the new top layer's snapshot
        state.history.append(History(created=self._now(), created_by=result.created_by,
                                     comment="buildkit.dockerfile.v0"))

    def run_as_stand_in(self, user: str) -> str | None:
        """What a RUN as *user* runs as here when the pod has no such id (``root``), else None.

        Only the ids the pod grants decide, before the rootfs is read: one id (or none of its own)
        cannot be any USER but root; a subuid range is taken to hold the image's users.
        """
        ownership = self.unpack.ownership
        name = user.partition(":")[0]
        if name in ("", "root", "0"):
            return None
        if self.ids_emulated:
            return "root"
        if ownership.full:
            return None
        single = ownership.chown and len(ownership.uids.spans) == 1 and ownership.uids.spans[0][1] == 1
        if ownership.chown and not single and (not name.isdigit() or int(name) in ownership.uids):
            return None
        return "root"

    def _made_by(self, source: Path, added: tuple[str, ...], owner: tuple[int, int],
                 recorded: dict[str, RecordedMeta]) -> None:
        """Give the files a RUN made (as another id than its USER's) their USER as image owner."""
        ownership = self.unpack.ownership
        with RootDir.open(source) as root:
            for path in added:
                if path in recorded:
                    continue  # a symlink the command chowned
                dir_fd, base = root.borrow_parent(path, follow=False)
                info = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
                if ownership.owner_of(base, info.st_uid, info.st_gid, dir_fd=dir_fd) != (0, 0):
                    continue  # the command gave it an owner of its own
                if not ownership.give(base, *owner, dir_fd=dir_fd):
                    recorded[path] = RecordedMeta(uid=owner[0], gid=owner[1], mode=stat.S_IMODE(info.st_mode))

    # -- image ------------------------------------------------------------------------

    def _assemble(self, state: _State) -> BuiltImage:
        docker = self.inputs.docker_media_types
        layers = tuple(
            dataclasses.replace(d, media_type=MediaType.DOCKER_LAYER_GZIP if docker else d.media_type)
            for d in state.layers
        )
        final = state.config
        if self.inputs.labels:
            final = dataclasses.replace(final, labels={**final.labels, **self.inputs.labels})
        # The image was created when its last step was, as BuildKit dates it: a rebuild whose steps all
        # come from the cache is then the same image, digest and all, and pushes nothing.
        created = next((h.created for h in reversed(state.history) if h.created), None) or self._now()
        config = ImageConfig(platform=state.platform, diff_ids=tuple(state.diff_ids), config=final,
                             history=tuple(state.history), created=created, author=state.author)
        config_desc = self.store.write_bytes(config.to_json(),
                                             MediaType.DOCKER_CONFIG if docker else MediaType.OCI_CONFIG)
        manifest = Manifest(config=config_desc, layers=layers,
                            media_type=MediaType.DOCKER_MANIFEST if docker else MediaType.OCI_MANIFEST)
        manifest_desc = self.store.write_bytes(manifest.to_json(), manifest.media_type)
        return BuiltImage(manifest=manifest_desc, config=config, layers=layers, steps=tuple(self.steps),
                          warnings=tuple(self.warnings))


def _stage_platform(stage: Stage, file: str) -> Platform:
    """The platform of ``FROM --platform=P`` (expanded), or an input error naming the line."""
    assert stage.platform is not None
    try:
        return Platform.parse(stage.platform)
    except AnybuildError as exc:
        raise DockerfileError(f"FROM --platform={stage.platform}: {exc.message}", file=file,
                              line=stage.base.start_line, hint=exc.hint) from exc


def _make_workdir(rootfs: Path, path: str, user: str, *, ownership: Ownership,
                  recorded: dict[str, RecordedMeta]) -> None:
    """Create WORKDIR's missing directories (0755), owned by the current USER as BuildKit does."""
    with RootDir.open(rootfs) as root:
        uid, gid = resolve_chown(user, root) if user else (0, 0)  # a bare uid gives gid = uid here
        current = ""
        for part in (p for p in posixpath.normpath("/" + path).split("/") if p):
            current = root.resolve(f"{current}/{part}" if current else part)
            if root.lstat(current) is not None:
                continue
            with root.parent(current, create=True) as (fd, name):
                os.mkdir(name, 0o755, dir_fd=fd)
                if not ownership.give(name, uid, gid, dir_fd=fd):
                    recorded[current] = RecordedMeta(uid=uid, gid=gid, mode=0o755)
                os.chmod(name, 0o755, dir_fd=fd)  # noqa: S103 - Docker's mode for WORKDIR directories
