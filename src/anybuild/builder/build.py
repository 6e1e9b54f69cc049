"""``build_image(request) -> BuildResult``: one image with the built-in builder, end to end.

The imperative shell around :class:`~anybuild.builder.executor.Executor`: read
the secrets and ``SOURCE_DATE_EPOCH`` (from the injected *env*), choose the RUN
sandbox, set up the data directory (a blob store shared by builds, persistent
cache mounts, a private scratch directory removed afterwards, even on Ctrl-C),
run the build, then write the outputs: ``oci:DIR``, ``docker-archive:FILE``,
``--push`` to every tag and ``--load`` into a Docker Engine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.backends.base import BuildRequest, BuildResult, LogSink
from anybuild.builder.cache import StepCache, StepStore
from anybuild.builder.cache.hashes import ContextHashes
from anybuild.builder.executor import BuildInputs, BuiltImage, Executor
from anybuild.builder.images import ImageSource
from anybuild.builder.inroot import NO_SPACE
from anybuild.builder.overlay import SnapshotterChoice, UpperPlacement, choose_snapshotter, make_snapshotter
from anybuild.builder.rootfs import UnpackOptions
from anybuild.builder.sandbox import (
    LadderSandbox,
    NetworkMode,
    SandboxFacts,
    SandboxKind,
    make_sandbox,
    probe_sandbox_facts,
    sandbox_ladder,
)
from anybuild.builder.sandbox.stubs import unmount_below
from anybuild.builder.snapshotter import SnapshotterKind
from anybuild.builder.stack import MEMORY_LIMIT, LayerSnapshots, Stacker
from anybuild.builder.trim import min_free_space, trim_data_dir
from anybuild.config import BackendName
from anybuild.dockerfile.dockerignore import DockerIgnore, find_ignore_file
from anybuild.epoch import source_date_epoch
from anybuild.errors import AnybuildError, BuildFailed, ContextError, Interrupted, UsageError
from anybuild.oci.archive import write_docker_archive
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.layout import LayoutStore, Swept
from anybuild.oci.manifest import Manifest
from anybuild.oci.platform import Platform
from anybuild.process import Runner, SubprocessRunner
from anybuild.redaction import Redactor
from anybuild.registry.client import RegistryClient
from anybuild.registry.credentials import CredentialResolver
from anybuild.registry.reference import Reference
from anybuild.registry.transfer import push_image
from anybuild.sizes import parse_size

__all__ = ["BuildEnvironment", "build_image", "data_dir", "export_layout", "read_secrets"]


def data_dir(env: Mapping[str, str]) -> Path:
    """``$ANYBUILD_DATA_DIR``, else ``$XDG_DATA_HOME/anybuild``, else ``~/.local/share/anybuild``."""
    if env.get("ANYBUILD_DATA_DIR"):
        return Path(env["ANYBUILD_DATA_DIR"])
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else Path(env.get("HOME", "/root")) / ".local/share"
    return base / "anybuild"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildEnvironment:
    """Everything outside the request that a build reads, injected."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    runner: Runner = field(default_factory=SubprocessRunner)
    sandbox: str | None = None  # override: runc | unshare | chroot | proot
    facts: SandboxFacts | None = None
    named_images: Mapping[str, str] = field(default_factory=dict)  # FROM name -> oci-layout://DIR[:TAG]
    clock: Callable[[], float] = time.time
    docker_media_types: bool = False
    cache_from: tuple[str, ...] = ()  # registry repositories to read step cache entries from
    cache_to: str | None = None  # a registry repository to push this build's step cache entries to
    strict: bool = False  # refuse what cannot be had exactly here (a USER the pod has no id for)


def read_secrets(request: BuildRequest, env: Mapping[str, str]) -> dict[str, bytes]:
    secrets: dict[str, bytes] = {}
    for spec in request.secrets:
        if spec.src is not None:
            try:
                secrets[spec.id] = spec.src.read_bytes()
            except OSError as exc:
                raise UsageError(f"--secret id={spec.id}: cannot read {spec.src}: {exc.strerror or exc}",
                                 hint="give a readable file with src=") from exc
        elif spec.env is not None:
            if spec.env not in env:
                raise UsageError(f"--secret id={spec.id}: variable {spec.env} is not set",
                                 hint=f"export {spec.env} or use src=FILE")
            secrets[spec.id] = env[spec.env].encode()
        elif spec.id in env:
            secrets[spec.id] = env[spec.id].encode()
    return secrets


def export_layout(store: LayoutStore, manifest: Descriptor, destination: Path, tags: tuple[str, ...]) -> None:
    """Copy one image from *store* into the OCI layout at *destination* (created if needed)."""
    out = LayoutStore.create(destination)
    doc = Manifest.from_json(store.read_blob(manifest), media_type=manifest.media_type)
    for blob in (doc.config, *doc.layers, manifest):
        if out.has_blob(blob.digest):
            continue
        source = store.blob_path(blob.digest)
        target = out.blob_path(blob.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    for tag in tags or ("",):
        out.put_manifest(manifest, tag or None)


def _outputs(request: BuildRequest, store: LayoutStore, image: BuiltImage, *, env: BuildEnvironment,
             client: Callable[[], RegistryClient], sink: LogSink,
             sources: Mapping[str, Reference] | None = None) -> tuple[str, ...]:
    references: list[str] = []
    if request.output:
        kind, _, target = request.output.partition(":")
        if not target:
            raise UsageError(f"--output {request.output!r} names no destination",
                             hint="write oci:DIR or docker-archive:FILE")
        match kind:
            case "oci":
                export_layout(store, image.manifest, Path(target), tuple(request.tags))
            case "docker-archive":
                write_docker_archive(store, image.manifest, Path(target), repo_tags=tuple(request.tags))
            case _:
                raise UsageError(f"unknown output type {kind!r}", hint="use oci:DIR or docker-archive:FILE")
        sink.line(f"exported {image.manifest.digest} to {request.output}")
    if request.push:
        if not request.tags:
            raise UsageError("--push needs at least one -t/--tag", hint="add -t REGISTRY/REPO:TAG")
        with client() as registry:
            for tag in request.tags:
                push_image(registry, store, image.manifest, Reference.parse(tag), sources=sources)
                references.append(tag)
                sink.line(f"pushed {tag}@{image.manifest.digest}")
    if request.load:
        with tempfile.TemporaryDirectory(prefix="anybuild-load-") as tmp:
            archive = Path(tmp) / "image.tar"
            write_docker_archive(store, image.manifest, archive, repo_tags=tuple(request.tags))
            result = env.runner.run(["docker", "load", "-i", str(archive)], env=env.env, timeout=600)
            if not result.ok:
                raise BuildFailed(f"docker load failed: {result.output.strip()[-500:]}",
                                  hint="check that a Docker Engine is reachable (DOCKER_HOST)")
        references += list(request.tags)
        sink.line(f"loaded {', '.join(request.tags) or image.manifest.digest} into Docker")
    return tuple(references)


def sweep_store(store: LayoutStore, snapshots: LayerSnapshots, *, forget: bool = False) -> Swept | None:
    """Remove the blobs of the layout store that its index does not reach, unless a build is running.

    Built images' blobs are written to the store, pushed or exported from there, and then needed
    by nothing: the step cache keeps its own link to every layer, and pulled images stay indexed.
    Without this the store grew by every build's layers (300 MB a build of W2). With *forget* the
    pulled images go too (``cache prune --all``). ``None``: skipped.
    """
    try:
        with snapshots.idle():
            if forget:
                store.forget_all()
            return store.sweep()
    except BlockingIOError:
        return None


def _remove_work(work: Path, runner: Runner) -> None:
    """Remove the scratch directory, never through a mount point left behind."""
    if unmount_below(work, runner=runner) and unmount_below(work, runner=runner):
        return  # still mounted after a lazy unmount: leave it rather than delete through it
    shutil.rmtree(work, ignore_errors=True)


MEMORY_STAGING_ENV = "ANYBUILD_MEMORY_STAGING"


def memory_staging(env: Mapping[str, str]) -> int:
    """Bytes of memory COPY and ADD steps may be staged in (see builder.stack); 0: none."""
    text = env.get(MEMORY_STAGING_ENV, "").strip()
    return parse_size(text, what=MEMORY_STAGING_ENV) if text else MEMORY_LIMIT


def _stacker(choice: SnapshotterChoice, snapshots: LayerSnapshots, store: LayoutStore, work: Path,
             runner: Runner, *, memory: int, unpack: UnpackOptions) -> Stacker | None:
    """Stages as overlays of layer snapshots where uppers can live in the data directory (see .stack)."""
    if choice.kind is not SnapshotterKind.OVERLAY or choice.placement is None:
        return None
    return Stacker(snapshots=snapshots, blobs=store, scratch=work, runner=runner, volatile=choice.volatile,
                   flavor=choice.flavor, unpack=unpack,
                   upper_on_tmpfs=choice.placement is UpperPlacement.TMPFS, memory_limit=memory)


def _ran(sandbox: LadderSandbox | None, snapshots: SnapshotterChoice) -> str:
    """What ran, as buildah's result says it: ``unshare+overlay`` (the RUN sandbox, ``none`` when no RUN
    ran, and the snapshotter)."""
    return f"{sandbox.ran if sandbox is not None and sandbox.ran else 'none'}+{snapshots.kind}"


def build_image(request: BuildRequest, sink: LogSink, environment: BuildEnvironment | None = None) -> BuildResult:
    """Build *request* with the built-in builder; raise BuildFailed / BackendError / Interrupted."""
    env = environment or BuildEnvironment()
    started = env.clock()
    if not request.dockerfile.is_file():
        raise ContextError(f"no Dockerfile at {request.dockerfile}", hint="pass -f PATH/TO/Dockerfile")
    if not request.context.is_dir():
        raise ContextError(f"the build context {request.context} is not a directory", hint="pass the context PATH")
    secrets = read_secrets(request, env.env)
    redactor = Redactor()
    for value in secrets.values():  # as a RUN prints it: with or without its newline, CRLF, line by line
        redactor.learn(value)
    facts = env.facts or probe_sandbox_facts(env=env.env)
    ladder = sandbox_ladder(facts, env.sandbox, env.env)
    then = "".join(f"; then {c.kind}" for c in ladder[1:])
    sink.line(f"anybuild: sandbox: {ladder[0].kind} ({ladder[0].reason}){then}")
    if not facts.ownership.full:
        sink.line(f"anybuild: owners: {facts.ownership.describe()} (recorded owners are written into the layers)")
    minimum_free = min_free_space(env.env)
    memory = memory_staging(env.env)
    root = data_dir(env.env)
    (root / "cache" / "mounts").mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    # a trial overlay mount in the data directory
    snapshots = choose_snapshotter(env.env, root / "tmp", in_userns=facts.in_userns is not None)
    unpack = UnpackOptions(ownership=facts.ownership, mknod=facts.ownership.full)
    store = LayoutStore.create(root / "store")
    platform = Platform.parse(request.platform) if request.platform else Platform.parse("linux/amd64")
    insecure = frozenset(request.insecure_registries)
    credentials = CredentialResolver(env=env.env, home=Path(env.env.get("HOME", "/root")))

    schemes: dict[str, str] = {}  # each registry's scheme, found once for all of this build's clients

    def client() -> RegistryClient:
        return RegistryClient(credentials=credentials.resolve, insecure=insecure, redactor=redactor, schemes=schemes)

    ignore = DockerIgnore.from_file(find_ignore_file(request.context, request.dockerfile))
    work = Path(tempfile.mkdtemp(prefix="build-", dir=root / "tmp"))
    snapshot_store = LayerSnapshots(root / "snapshots")
    stacker = _stacker(snapshots, snapshot_store, store, work, env.runner, memory=memory, unpack=unpack)
    sink.line(f"anybuild: snapshotter: {snapshots.describe()}" + (" over layer snapshots" if stacker else ""))
    sandbox: LadderSandbox | None = None
    try:
        sandbox = make_sandbox(ladder, work=work, facts=facts, runner=env.runner, on_note=sink.line,
                               strict=env.strict)
        inputs = BuildInputs(
            context=request.context, dockerfile=request.dockerfile, platform=platform,
            build_args=dict(request.build_args), target=request.target, secrets=secrets,
            source_date_epoch=source_date_epoch(env.env), network=NetworkMode.DEFAULT, ignored=ignore.excluded,
            docker_media_types=env.docker_media_types, labels=dict(request.labels),
        )
        images = ImageSource(store=store, platform=platform, client_factory=client,
                             mirrors=dict(request.registry_mirrors), named=dict(env.named_images))
        cache = StepCache(store=StepStore(root / "cache" / "steps"), layers=store, context=request.context,
                          hashes=ContextHashes.for_context(root / "cache" / "context", request.context),
                          ignore=ignore, use=not request.no_cache, client_factory=client,
                          cache_from=tuple(Reference.parse(r).defaulted() for r in env.cache_from))
        cache_to = Reference.parse(env.cache_to).defaulted() if env.cache_to else None
        executor = Executor(inputs=inputs, sandbox=sandbox, images=images, store=store, work=work, cache=cache,
                            cache_dir=root / "cache" / "mounts", runner=env.runner,
                            on_line=lambda line: sink.line(redactor(line)), clock=env.clock, redactor=redactor,
                            snapshotter=make_snapshotter(snapshots, scratch=work, records=not facts.ownership.full),
                            stacker=stacker,
                            unpack=unpack, strict=env.strict, ids_emulated=ladder[0].kind is SandboxKind.PROOT)
        with snapshot_store.in_use():  # no prune or sweep removes what this build reads or writes
            try:
                image = executor.build()
                if cache_to is not None:
                    pushed = cache.export(cache_to)
                    sink.line(f"exported {pushed} cache entries to {env.cache_to}")
            finally:
                cache.close()
                if stacker is not None:
                    stacker.close()
            references = _outputs(request, store, image, env=env, client=client, sink=sink,
                                  sources=images.sources)
        sweep_store(store, snapshot_store)
        if minimum_free is not None and (trimmed := trim_data_dir(root, minimum_free)) is not None:
            sink.line(f"anybuild: {trimmed.describe()}")
    except KeyboardInterrupt:
        raise Interrupted("the build was interrupted; its sandbox, mounts and temporary files were removed",
                          hint="run the build again") from None
    except AnybuildError:
        raise
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        raise BuildFailed(f"no space left on device{where}: {exc.strerror}",
                          hint=f"free space there, e.g. anybuild cache prune --keep-storage 5GB, or set "
                               f"ANYBUILD_DATA_DIR to a bigger filesystem (the data directory is {root})") from exc
    finally:
        _remove_work(work, env.runner)
    return BuildResult(
        backend=BackendName.BUILTIN, digest=str(image.manifest.digest), references=references, size=image.size,
        layers=len(image.layers), steps=image.steps, sandbox=_ran(sandbox, snapshots),
        started=started, warnings=image.warnings,
        finished=env.clock(), cache_hits=cache.hits,
    )
