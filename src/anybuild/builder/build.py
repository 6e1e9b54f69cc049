"""``build_image(request) -> BuildResult``: one image with the built-in builder, end to end.

The imperative shell around :class:`~anybuild.builder.executor.Executor`: read
the secrets and ``SOURCE_DATE_EPOCH`` (from the injected *env*), choose the RUN
sandbox, set up the data directory (a blob store shared by builds, persistent
cache mounts, a private scratch directory removed afterwards, even on Ctrl-C),
run the build, then write the outputs: ``oci:DIR``, ``docker-archive:FILE``,
``--push`` to every tag and ``--load`` into a Docker Engine.

The platforms of a multi-platform build run in parallel threads (their work is
subprocesses, I/O and QEMU), :func:`platform_jobs` at a time, each with an Executor
and a view of the step cache of its own; what they share is made safe for it where it
lives (step cache claims, image source, stacker, emulation, sandbox ladder, context
hashes, ledger, output lines). The first platform that fails stops the others (a
cancellation of the build's own, linked to the process's) and its error is the one raised.
"""

from __future__ import annotations

import dataclasses
import os
import platform as _machine
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, PlatformImage
from anybuild.builder.cache import StepCache, StepStore
from anybuild.builder.cache.hashes import ContextHashes
from anybuild.builder.emulation import Emulation, foreign
from anybuild.builder.executor import BuildInputs, BuiltImage, Executor
from anybuild.builder.images import ImageSource
from anybuild.builder.inroot import NO_SPACE
from anybuild.builder.ledger import MEMORY_SECRETS_PREFIX, SHARED_MEMORY, Ledger, recover_abandoned
from anybuild.builder.overlay import (
    LibcMounter,
    SnapshotterChoice,
    UpperPlacement,
    choose_snapshotter,
    filesystem_type,
    make_snapshotter,
)
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
from anybuild.cancellation import Cancellation, cleanup, signum_of
from anybuild.config import BackendName
from anybuild.dockerfile.dockerignore import DockerIgnore, find_ignore_file
from anybuild.epoch import source_date_epoch
from anybuild.errors import AnybuildError, BuildFailed, ContextError, Interrupted, UsageError
from anybuild.oci.archive import write_docker_archive
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.layout import LayoutStore, Swept
from anybuild.oci.manifest import Index
from anybuild.oci.mediatype import MediaType
from anybuild.oci.output import Output, OutputKind
from anybuild.oci.platform import Platform
from anybuild.process import Runner, SubprocessRunner
from anybuild.redaction import Redactor
from anybuild.registry.client import RegistryClient
from anybuild.registry.credentials import CredentialResolver
from anybuild.registry.http import RegistryTimeouts
from anybuild.registry.reference import Reference
from anybuild.registry.transfer import push_image
from anybuild.sizes import parse_size

__all__ = ["PLATFORM_JOBS_ENV", "BuildEnvironment", "build_image", "data_dir", "platform_jobs", "read_secrets"]


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
    cancel: Cancellation = field(default_factory=Cancellation)  # the process's (anybuild.cancellation)


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


def _outputs(request: BuildRequest, store: LayoutStore, final: Descriptor, loaded: Descriptor, *,
             env: BuildEnvironment, client: Callable[[], RegistryClient], sink: LogSink, scratch: Path,
             done: list[str], sources: Mapping[str, Reference] | None = None) -> tuple[str, ...]:
    """Write, push and load the image (*final*: an image or the index of several; *loaded*: the image --load
    loads); each checks the cancellation first (and a push before its tag, so that an interrupted push leaves
    no tag), and *done* says what was done, for the message of an interruption."""
    references: list[str] = []
    cancel = env.cancel
    if request.output:
        output = Output.parse(request.output, Path.cwd())
        cancel.check(f"before writing {request.output} (nothing was written there)")
        output.write(store, final, tuple(request.tags),
                     check=lambda: cancel.check(f"while writing {request.output} (nothing was written there)"))
        done.append(f"wrote {request.output}")
        sink.line(f"exported {final.digest} to {request.output}")
    if request.push:
        if not request.tags:
            raise UsageError("--push needs at least one -t/--tag", hint="add -t REGISTRY/REPO:TAG")
        with client() as registry:
            for tag in request.tags:
                cancel.check(f"before pushing {tag} (no tag of it was pushed)")
                push_image(registry, store, final, Reference.parse(tag), sources=sources)
                references.append(tag)
                done.append(f"pushed {tag}")
                sink.line(f"pushed {tag}@{final.digest}")
    if request.load:
        cancel.check("before loading the image into Docker")
        archive = scratch / "load" / "image.tar"
        write_docker_archive(store, loaded, archive, repo_tags=tuple(request.tags), check=cancel.check)
        result = env.runner.run(["docker", "load", "-i", str(archive)], env=env.env, timeout=600)
        if not result.ok:
            raise BuildFailed(f"docker load failed: {result.output.strip()[-500:]}",
                              hint="check that a Docker Engine is reachable (DOCKER_HOST)")
        references += list(request.tags)
        done.append("loaded it into Docker")
        sink.line(f"loaded {', '.join(request.tags) or loaded.digest} into Docker")
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
    with cleanup():
        if unmount_below(work, runner=runner) and unmount_below(work, runner=runner):
            return  # still mounted after a lazy unmount: leave it rather than delete through it (the ledger stays)
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


def _secrets_dir(work: Path, secrets: Mapping[str, bytes], facts: SandboxFacts, ledger: Ledger, *,
                 shared_memory: Path = SHARED_MEMORY) -> Path | None:
    """Where the build's secret files go so that nothing of them reaches a disk: a private tmpfs where one
    can be mounted (it goes with the build's scratch directory, or with the next build's recovery if this
    one is killed); else a private directory in the pod's /dev/shm where that is a tmpfs (proot, chroot:
    no mount), recorded in the ledger for the same recovery; None (the scratch directory) otherwise."""
    if not secrets:
        return None
    if facts.mount:
        target = work / "secrets"
        target.mkdir(mode=0o700)
        size = 2 * sum(len(v) + 4096 for v in secrets.values()) + (1 << 20)  # each RUN writes its own copies
        try:
            LibcMounter().mount("tmpfs", target, "tmpfs", f"mode=0700,size={size},nr_inodes=4096")
        except OSError:
            target.rmdir()
        else:
            return target
    if not is_tmpfs(shared_memory):
        return None
    try:
        made = Path(tempfile.mkdtemp(prefix=MEMORY_SECRETS_PREFIX, dir=shared_memory))
    except OSError:
        return None
    ledger.record("memory", path=str(made))
    return made


def is_tmpfs(path: Path) -> bool:
    """Whether *path* is on a tmpfs this process can write to (from mountinfo)."""
    try:
        info = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    return filesystem_type(path, info) == "tmpfs" and os.access(path, os.W_OK | os.X_OK)


def _interruption(exc: Interrupted, *, at: str, done: list[str], push: bool) -> Interrupted:
    """What an interrupted build says: what stopped, where, what was undone, what had been done."""
    parts = [exc.message + (f" at {at}" if at and " at " not in exc.message else "")]
    parts.append("its sandbox, processes, mounts and temporary files were removed")
    if done:
        parts.append("done before it: " + ", ".join(done))
    if push and not any(d.startswith("pushed") for d in done):
        parts.append("nothing was pushed")
    return Interrupted("; ".join(parts), signum=exc.signum, hint="run the build again")


def host_platform() -> Platform:
    """The platform of this machine (BUILDPLATFORM)."""
    return Platform.for_machine(_machine.system(), _machine.machine())


def parse_platforms(text: str | None, host: Platform) -> tuple[Platform, ...]:
    """``--platform P1,P2,...`` (default: *host*), each normalised, duplicates dropped; bad input is an error."""
    if not text or not text.strip():
        return (host,)
    found: dict[str, Platform] = {}
    for part in text.split(","):
        if not part.strip():
            raise UsageError(f"--platform {text!r} has an empty entry",
                             hint="separate platforms with single commas, e.g. linux/amd64,linux/arm64")
        platform = Platform.parse(part.strip())
        found.setdefault(str(platform), platform)
    return tuple(found.values())


PLATFORM_JOBS_ENV = "ANYBUILD_PLATFORM_JOBS"


def platform_jobs(env: Mapping[str, str], count: int, cores: int | None = None) -> int:
    """How many of *count* platforms build at once: as many as there are cores, at most
    ``$ANYBUILD_PLATFORM_JOBS`` (1: one after the other); a bad value is an input error."""
    limit = min(count, cores if cores is not None else (os.cpu_count() or 1))
    text = env.get(PLATFORM_JOBS_ENV, "").strip()
    if text:
        try:
            wanted = int(text)
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise UsageError(f"{PLATFORM_JOBS_ENV}={text!r} is not a number of platforms (1 or more)",
                             hint=f"set {PLATFORM_JOBS_ENV}=1 to build the platforms one after the other, "
                                  "or unset it to build as many at once as there are cores")
        limit = min(limit, wanted)
    return max(1, limit)


@dataclass(slots=True)
class _LockedSink:
    """Lines of the platforms building in parallel, each written whole."""

    sink: LogSink
    lock: threading.Lock = field(default_factory=threading.Lock)

    def line(self, text: str) -> None:
        with self.lock:
            self.sink.line(text)


def _naming(exc: BaseException, target: Platform) -> BaseException:
    """The error of one platform of several, saying which (once)."""
    if isinstance(exc, AnybuildError) and not isinstance(exc, Interrupted) and str(target) not in exc.message:
        exc.message = f"{target}: {exc.message}"
        exc.args = (exc.message, *exc.args[1:])
    return exc


def _run_parallel(targets: tuple[Platform, ...], jobs: int, build: Callable[[Platform], BuiltImage],
                  cancel: Cancellation, on_start: Callable[[Platform], None]) -> list[BuiltImage]:
    """Build *targets* in *jobs* threads; the first failure cancels the others (through *cancel*, the build's
    own) and is raised once every thread has stopped. A KeyboardInterrupt in the calling (main) thread
    cancels them all and is raised again once they have stopped."""
    results: dict[int, BuiltImage] = {}
    failures: list[BaseException] = []
    waiting = list(enumerate(targets))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not waiting or cancel.is_set():
                    return
                number, target = waiting.pop(0)
            on_start(target)
            try:
                results[number] = build(target)
            except BaseException as exc:  # raised in the calling thread below
                with lock:
                    failures.append(_naming(exc, target))
                cancel.cancel()  # the others stop at their next check; their RUN processes end
                return

    threads = [threading.Thread(target=worker, name=f"anybuild-platform-{n + 1}", daemon=True) for n in range(jobs)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # short waits: a signal's KeyboardInterrupt is raised here
    except KeyboardInterrupt as exc:
        cancel.cancel(signum_of(exc))
        with cleanup():
            for thread in threads:
                thread.join()
        raise
    if failures:
        raise failures[0]  # the first to fail: the others were stopped by it
    return [results[n] for n in range(len(targets))]


def _prefixed(sink: LogSink, redactor: Redactor, prefix: str) -> Callable[[str], None]:
    def line(text: str) -> None:
        sink.line(prefix + redactor(text))
    return line


def _index(store: LayoutStore, built: list[tuple[Platform, BuiltImage]], *, docker: bool) -> Descriptor:
    """The one image, or an image index (a Docker manifest list with *docker*) of each platform's image."""
    if len(built) == 1:
        return built[0][1].manifest
    entries = tuple(dataclasses.replace(image.manifest, platform=target) for target, image in built)
    index = Index(manifests=entries, media_type=MediaType.DOCKER_MANIFEST_LIST if docker else MediaType.OCI_INDEX)
    return store.write_bytes(index.to_json(), index.media_type)


def build_image(request: BuildRequest, sink: LogSink, environment: BuildEnvironment | None = None) -> BuildResult:
    """Build *request* with the built-in builder; raise BuildFailed / BackendError / Interrupted.

    The build observes *environment*'s cancellation: between steps, in every RUN, transfer and output.
    It stops at once, undoes what it made (sandbox, processes, mounts, scratch directory, secret files)
    and raises :class:`~anybuild.errors.Interrupted`; a build killed outright is undone by the next one
    (:mod:`anybuild.builder.ledger`).
    """
    env = environment or BuildEnvironment()
    started = env.clock()
    sink = _LockedSink(sink)
    if not request.dockerfile.is_file():
        raise ContextError(f"no Dockerfile at {request.dockerfile}", hint="pass -f PATH/TO/Dockerfile")
    if not request.context.is_dir():
        raise ContextError(f"the build context {request.context} is not a directory", hint="pass the context PATH")
    targets_checked = parse_platforms(request.platform, host_platform())  # a mistake is said before any work
    if request.output:  # a mistake in it is said now, not after the build
        output = Output.parse(request.output, Path.cwd())
        output.check()
        if len(targets_checked) > 1 and output.kind is OutputKind.DOCKER_ARCHIVE:
            raise UsageError(f"--output {request.output}: a docker archive holds one platform's image, and this "
                             f"build makes {len(targets_checked)} ({', '.join(map(str, targets_checked))})",
                             hint="write the image index with --output oci:DIR, or build one --platform")
    jobs = platform_jobs(env.env, len(targets_checked))
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
    for recovered in recover_abandoned(root / "tmp", runner=env.runner):
        sink.line(f"anybuild: {recovered.describe()}")
    env.cancel.check("before the build started")
    # the build's own cancellation: set with the process's, and by the first platform that fails
    cancel = env.cancel.child()
    runner = dataclasses.replace(env.runner, cancel=cancel) if isinstance(env.runner, SubprocessRunner) \
        else env.runner
    # a trial overlay mount in the data directory
    snapshots = choose_snapshotter(env.env, root / "tmp", in_userns=facts.in_userns is not None)
    unpack = UnpackOptions(ownership=facts.ownership, mknod=facts.ownership.full, interrupted=cancel.check)
    store = LayoutStore.create(root / "store")
    host = host_platform()
    targets = parse_platforms(request.platform, host)
    multi = len(targets) > 1
    insecure = frozenset(request.insecure_registries)
    credentials = CredentialResolver(env=env.env, home=Path(env.env.get("HOME", "/root")))
    timeouts = RegistryTimeouts.from_env(env.env)

    schemes: dict[str, str] = {}  # each registry's scheme, found once for all of this build's clients

    def client() -> RegistryClient:
        return RegistryClient(credentials=credentials.resolve, insecure=insecure, redactor=redactor, schemes=schemes,
                              timeouts=timeouts, cancel=cancel)

    ignore = DockerIgnore.from_file(find_ignore_file(request.context, request.dockerfile))
    ledger = Ledger.open(root / "tmp")  # held until everything below is undone (see builder.ledger)
    work = ledger.work
    snapshot_store = LayerSnapshots(root / "snapshots")
    sandbox: LadderSandbox | None = None
    executors: dict[Platform, Executor] = {}
    outputs = False

    def at() -> str:
        """Where the build was, for what an interruption says."""
        if outputs:
            return "the outputs"
        if len(executors) == 1:
            return next(iter(executors.values())).current
        return "; ".join(f"[{t}] {ex.current}" for t, ex in executors.items() if ex.current)

    secrets_dir: Path | None = None
    done: list[str] = []
    try:
        stacker = _stacker(snapshots, snapshot_store, store, work, runner, memory=memory, unpack=unpack)
        sink.line(f"anybuild: snapshotter: {snapshots.describe()}" + (" over layer snapshots" if stacker else ""))
        sandbox = make_sandbox(ladder, work=work, facts=facts, runner=runner, on_note=sink.line,
                               strict=env.strict, ledger=ledger)
        secrets_dir = _secrets_dir(work, secrets, facts, ledger)
        inputs = BuildInputs(
            context=request.context, dockerfile=request.dockerfile, platform=targets[0], build_platform=host,
            build_args=dict(request.build_args), target=request.target, secrets=secrets,
            source_date_epoch=source_date_epoch(env.env), network=NetworkMode.DEFAULT, ignored=ignore.excluded,
            docker_media_types=env.docker_media_types, labels=dict(request.labels),
        )
        images = ImageSource(store=store, platform=targets[0], client_factory=client,
                             mirrors=dict(request.registry_mirrors), named=dict(env.named_images))
        cache = StepCache(store=StepStore(root / "cache" / "steps"), layers=store, context=request.context,
                          hashes=ContextHashes.for_context(root / "cache" / "context", request.context),
                          ignore=ignore, use=not request.no_cache, client_factory=client,
                          cache_from=tuple(Reference.parse(r).defaulted() for r in env.cache_from))
        cache_to = Reference.parse(env.cache_to).defaulted() if env.cache_to else None
        emulation = Emulation(host=host, env=env.env, scratch=work, in_userns=facts.in_userns is not None,
                              on_line=sink.line)
        built: list[tuple[Platform, BuiltImage]] = []
        views = {target: cache.view(str(target) if multi else "") for target in targets}

        def build_one(target: Platform) -> BuiltImage:
            on_line = _prefixed(sink, redactor, f"[{target}] " if multi else "")
            executor = Executor(
                inputs=dataclasses.replace(inputs, platform=target), sandbox=sandbox, images=images,
                store=store, work=work, cache=views[target], cache_dir=root / "cache" / "mounts", runner=runner,
                on_line=on_line, clock=env.clock, redactor=redactor,
                snapshotter=make_snapshotter(snapshots, scratch=work, records=not facts.ownership.full),
                stacker=stacker, unpack=unpack, strict=env.strict,
                ids_emulated=ladder[0].kind is SandboxKind.PROOT, cancel=cancel,
                secrets_dir=secrets_dir, emulation=emulation)
            executors[target] = executor
            try:
                return executor.build()
            finally:
                views[target].release()  # a platform waiting for one of its steps runs it (or stops)

        def starting(target: Platform) -> None:
            if multi:
                sink.line(f"anybuild: building {target}")

        with snapshot_store.in_use():  # no prune or sweep removes what this build reads or writes
            try:
                if jobs == 1:
                    for target in targets:
                        cancel.check()
                        starting(target)
                        try:
                            built.append((target, build_one(target)))
                        except BaseException as exc:
                            if multi:
                                _naming(exc, target)
                            raise
                else:
                    sink.line(f"anybuild: building {len(targets)} platforms, {jobs} at a time "
                              f"(set {PLATFORM_JOBS_ENV}=1 for one after the other)")
                    images_built = _run_parallel(targets, jobs, build_one, cancel, starting)
                    built = list(zip(targets, images_built, strict=True))
                if cache_to is not None:
                    cancel.check("before exporting the step cache")
                    pushed = cache.export(cache_to)
                    sink.line(f"exported {pushed} cache entries to {env.cache_to}")
            finally:
                with cleanup():
                    cache.close()
                    if stacker is not None:
                        stacker.close()
            final = _index(store, built, docker=env.docker_media_types)
            if len(built) > 1:
                sink.line(f"anybuild: image index {final.digest}: "
                          + ", ".join(f"{t} {image.manifest.digest}" for t, image in built))
            loaded = next((image.manifest for t, image in built if not foreign(host, t)), built[0][1].manifest)
            outputs = True
            references = _outputs(request, store, final, loaded, env=env, client=client, sink=sink, scratch=work,
                                  done=done, sources=images.sources)
        sweep_store(store, snapshot_store)
        if minimum_free is not None and (trimmed := trim_data_dir(root, minimum_free)) is not None:
            sink.line(f"anybuild: {trimmed.describe()}")
    except KeyboardInterrupt as exc:  # the build ran in the main thread, and a signal raised this there
        stopped = Interrupted(f"interrupted by {signal.Signals(signum_of(exc)).name}", signum=signum_of(exc))
        raise _interruption(stopped, at=at(), done=done, push=request.push) from None
    except Interrupted as exc:
        raise _interruption(exc, at=at(), done=done, push=request.push) from None
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
        if secrets_dir is not None and not secrets_dir.is_relative_to(work):
            with cleanup():
                shutil.rmtree(secrets_dir, ignore_errors=True)
        _remove_work(work, env.runner)
        ledger.close()
        cancel.detach()
    routes = emulation.routes()
    per_platform = tuple(PlatformImage(platform=str(t), digest=str(image.manifest.digest), size=image.size,
                                       layers=len(image.layers), emulation=routes.get(str(t)))
                         for t, image in built)
    first = built[0][1]
    steps = tuple(dataclasses.replace(step, name=f"[{t}] {step.name}") if multi else step
                  for t, image in built for step in image.steps)
    warnings = tuple(dict.fromkeys(w for _t, image in built for w in image.warnings))
    return BuildResult(
        backend=BackendName.BUILTIN, digest=str(final.digest), references=references,
        size=(final.size + sum(image.size for _t, image in built)) if multi else first.size,
        layers=len(first.layers), steps=steps, sandbox=_ran(sandbox, snapshots),
        started=started, warnings=warnings,
        platforms=per_platform if multi or any(p.emulation for p in per_platform) else (),
        finished=env.clock(), cache_hits=cache.all_hits, bases=tuple(images.resolved.values()),
    )
