"""`anybuild build`: one directory, some images of anybuild.toml, or all of them.

Parse, call the library, render. Every build goes through the planner (the
best backend that works here, in anybuild.toml's order, or ``--backend``),
falls back only for environmental causes, and ends as one result
(``anybuild.result/v1``): a summary table on a terminal, JSON with ``--json``,
a file with ``--metadata-file``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from anybuild.backends.base import Backend, BuildRequest, LogSink, SecretSpec
from anybuild.backends.catalog import availability_checks, backend_class, create_backend
from anybuild.batch import build_images, default_jobs
from anybuild.cancellation import Cancellation, handle_signals
from anybuild.cli.options import config_option, resolve_config
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.config import DEFAULT_BACKENDS, BackendName, Config, ImageSpec, find_config, load_config
from anybuild.environment.cache import ProbeCache
from anybuild.environment.context import ProbeContext
from anybuild.environment.export import diagnosis_facts
from anybuild.environment.facts import Facts
from anybuild.environment.probe import collect_facts
from anybuild.epoch import source_date_epoch
from anybuild.errors import ExitCode, UsageError
from anybuild.planner import Plan, plan_build, push_registries
from anybuild.process import SubprocessRunner
from anybuild.project import ProjectOptions, ProjectSeams, build_project, run_request, select_images
from anybuild.redaction import Redactor
from anybuild.registry.reference import Reference
from anybuild.result import ImageOutcome, RunResult

if TYPE_CHECKING:  # rich loads only for a live view or a summary on a terminal
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

__all__ = ["build", "parse_build_args", "parse_mirrors", "parse_secret"]


def parse_build_args(values: tuple[str, ...], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``NAME=VALUE`` pairs; a bare ``NAME`` takes its value from the environment, as docker does."""
    args: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not key:
            raise UsageError(f"--build-arg {value!r} has no name", hint="write --build-arg NAME=VALUE")
        if sep:
            args[key] = rest
        elif env is not None and key in env:
            args[key] = env[key]
    return args


def parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not key or not sep:
            raise UsageError(f"--label {value!r} is not KEY=VALUE", hint="write --label org.example.team=web")
        labels[key] = rest
    return labels


def parse_secret(value: str) -> SecretSpec:
    """``id=ID,src=FILE`` | ``id=ID,env=VAR`` (``source=`` is an alias of ``src=``)."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, rest = part.partition("=")
        if not sep:
            raise UsageError(f"--secret {value!r}: {part!r} is not KEY=VALUE", hint="write --secret id=ID,src=FILE")
        fields[key.strip().lower()] = rest
    if "id" not in fields:
        raise UsageError(f"--secret {value!r} has no id=", hint="write --secret id=ID,src=FILE")
    src = fields.get("src") or fields.get("source")
    return SecretSpec(id=fields["id"], src=Path(src) if src else None, env=fields.get("env"))


def _learn_secrets(redactor: Redactor, specs: Sequence[SecretSpec], env: Mapping[str, str]) -> None:
    """What the command prints is masked too, not only the builder's lines (which learn them again)."""
    for spec in specs:
        if spec.src is not None:
            with contextlib.suppress(OSError):  # the build says why it cannot read it
                redactor.learn(spec.src.read_bytes())
        elif (value := env.get(spec.env or spec.id)) is not None:
            redactor.learn(value)


def parse_mirrors(values: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``REGISTRY=MIRROR`` pairs (a bare ``MIRROR`` mirrors docker.io)."""
    mirrors: dict[str, tuple[str, ...]] = {}
    for value in values:
        registry, sep, mirror = value.partition("=")
        if not sep:
            registry, mirror = "docker.io", value
        mirrors[registry] = (*mirrors.get(registry, ()), mirror.removeprefix("http://").removeprefix("https://"))
    return mirrors


class Progress:
    """Build output on stderr: a live table per image on a terminal, plain lines otherwise."""

    def __init__(self, session: Session, mode: str, names: Sequence[str]) -> None:
        self.session = session
        self.names = list(names)
        if mode == "auto":
            self.mode = "live" if not session.json and session.is_terminal(err=True) else "plain"
        else:
            self.mode = mode
        if session.quiet:
            self.mode = "quiet"
        self.prefix = len(self.names) > 1
        self._lock = threading.Lock()
        self._last: dict[str, str] = dict.fromkeys(self.names, "waiting")
        self._started: dict[str, float] = {}
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from rich.live import Live

            self._live = Live(self._table(), console=self.session.err, refresh_per_second=4, transient=True,
                              get_renderable=self._table)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def sink(self, name: str) -> LogSink:
        return _ImageSink(self, name)

    def line(self, name: str, text: str) -> None:
        with self._lock:
            self._started.setdefault(name, time.monotonic())
            self._last[name] = text
        match self.mode:
            case "quiet" | "live":
                return
            case "json":
                sys.stderr.write(self.session.redactor(json.dumps({"image": name, "log": text})) + "\n")
                sys.stderr.flush()
            case _:
                self.session.echo(f"[{name}] {text}" if self.prefix else text, err=True)

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column("image", style="bold")
        table.add_column("time", justify="right")
        table.add_column("now", overflow="ellipsis", no_wrap=True)
        now = time.monotonic()
        with self._lock:
            for name in self.names:
                began = self._started.get(name)
                elapsed = f"{now - began:5.1f}s" if began is not None else ""
                table.add_row(name, elapsed, self.session.redactor(self._last.get(name, "")))
        return table


class _ImageSink:
    def __init__(self, progress: Progress, name: str) -> None:
        self.progress = progress
        self.name = name

    def line(self, text: str) -> None:
        self.progress.line(self.name, text)


_SUMMARY_COLUMNS = ("image", "backend", "digest", "references", "time", "cached", "result")


def _summary(result: RunResult) -> tuple[str, tuple[str, ...], list[tuple[str, ...]]]:
    """The summary's title, columns and rows (a row's references and platforms are one per line); a
    platforms column only when a build had several."""
    title = (f"{sum(i.ok for i in result.images)}/{len(result.images)} image(s) built "
             f"in {result.finished - result.started:.1f}s")
    platforms = any(image.platforms for image in result.images)
    columns = (*_SUMMARY_COLUMNS[:3], *(("platforms",) if platforms else ()), *_SUMMARY_COLUMNS[3:])
    rows: list[tuple[str, ...]] = []
    for image in result.images:
        seconds = image.seconds
        refs = "\n".join(r.split("@", 1)[0] for r in image.references)
        outcome = "ok" if image.ok else _failure_text(image)
        steps = len(image.steps)
        shown = ("\n".join(f"{p['platform']}" + (f" ({p['emulation']})" if p.get("emulation") else "")
                           for p in image.platforms) or "-",) if platforms else ()
        rows.append((image.name, image.backend or "-", (image.digest or "-")[:19], *shown, refs or "-",
                     f"{seconds:.1f}s" if seconds is not None else "-",
                     f"{image.cache_hits}/{steps}" if steps else "-", outcome))
    return title, columns, rows


def _render_summary(console: Console, result: RunResult, redactor: Redactor) -> None:
    """The summary as a table, on a terminal."""
    from rich.table import Table

    title, columns, rows = _summary(result)
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    _render_notes(lambda text: console.print(redactor(text), markup=False, highlight=False), result)


def _plain_summary(say: Callable[[str], None], result: RunResult) -> None:
    """The summary as aligned columns of plain text (a log, a pipe): a cell of several lines (references,
    platforms) continues on the lines below."""
    title, columns, rows = _summary(result)
    lines: list[tuple[str, ...]] = [columns]
    for row in rows:
        cells = [cell.split("\n") for cell in row]
        for index in range(max(len(cell) for cell in cells)):
            lines.append(tuple(cell[index] if index < len(cell) else "" for cell in cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    say(title)
    for line in lines:
        say("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    _render_notes(say, result)


def _render_notes(say: Callable[[str], None], result: RunResult) -> None:
    for image in result.images:
        if image.ok:
            if image.backend_reason:
                say(f"{image.name}: built with {image.backend}: {image.backend_reason}")
            continue
        _render_failure(say, image)


def _failure_text(image: ImageOutcome) -> str:
    if image.diagnosis:
        return f"failed: {image.diagnosis.get('title') or image.diagnosis.get('rule')}"
    return "failed" if not image.error else f"failed ({image.error.get('kind')})"


def _render_failure(say: Callable[[str], None], image: ImageOutcome) -> None:
    """A failed image's error, root cause, evidence and hint (*say* redacts)."""
    error = image.error or {}
    say(f"{image.name}: error: {error.get('message', 'failed')}")
    diagnosis = image.diagnosis or {}
    if diagnosis:
        say(f"{image.name}: root cause: {diagnosis.get('cause') or diagnosis.get('title')}")
        for evidence in diagnosis.get("evidence") or ():
            text = evidence if isinstance(evidence, str) else f"line {evidence.get('line')}: {evidence.get('text')}"
            say(f"{image.name}:   evidence: {text}")
    if error.get("hint"):
        say(f"{image.name}: hint: {error['hint']}")


def _write_metadata(path: Path, data: dict[str, Any]) -> None:
    """Write the result atomically: the next job never reads half a file."""
    from anybuild.oci.layout import atomic_write

    with atomic_write(path.resolve()) as handle:
        handle.write((json.dumps(data, indent=2) + "\n").encode())


def _project_images(config: Config | None, targets: Sequence[str], all_images: bool) -> tuple[ImageSpec, ...] | None:
    """The images to build from anybuild.toml, or None for a one-directory build."""
    if all_images:
        if config is None:
            raise UsageError("--all needs an anybuild.toml", hint="run from a repository with anybuild.toml, "
                             "or pass --config FILE")
        return select_images(config, targets, all_images=True)
    if config is not None and targets and all(t in {s.name for s in config.images} for t in targets):
        return select_images(config, targets, all_images=False)
    if len(targets) > 1:
        known = ", ".join(s.name for s in config.images) if config else ""
        raise UsageError(
            f"{' '.join(targets)}: build takes one directory, or image names from anybuild.toml",
            hint=f"images here: {known}" if known else "give one build context directory",
        )
    return None


def _optional_config(config_path: Path | None, cwd: Path, *, required: bool) -> Config | None:
    if config_path is not None or required:
        return resolve_config(config_path, cwd)
    found = find_config(cwd)  # walk up once; optional here, so no file is not an error
    return load_config(found) if found is not None else None


def _probe_in_background(ctx: ProbeContext) -> Callable[[], Facts]:
    """Start the environment probes in a thread; the returned call waits for their facts.

    The probes mostly wait on subprocesses and trial mounts (~0.15 s), which is
    time the main thread spends importing the backend it will build with.
    """
    outcome: list[Facts | BaseException] = []

    def run() -> None:
        try:
            outcome.append(collect_facts(ctx, cache=ProbeCache.for_context(ctx)))
        except BaseException as exc:  # re-raised in the caller's thread, with its traceback
            outcome.append(exc)

    thread = threading.Thread(target=run, name="probe-facts", daemon=True)
    thread.start()

    def facts() -> Facts:
        thread.join()
        found = outcome[0]
        if isinstance(found, BaseException):
            raise found
        return found

    return facts


def _kubernetes(config: Config | None, env: Mapping[str, str], plan: Plan, context: str | None,
                namespace: str | None, *, cancel: Cancellation) -> Any:
    """The one kubernetes backend of this run (its Jobs share a run id and a Secret), when the plan may use it."""
    if not any(c.backend is BackendName.KUBERNETES for c in plan.candidates):
        if (context or namespace) and plan.override is not BackendName.KUBERNETES:
            raise UsageError("--kube-context and --namespace are for the kubernetes backend, which this plan "
                             "does not use", hint="add --backend kubernetes, or drop them")
        return None
    from anybuild.backends.kubernetes.backend import KubernetesBackend
    from anybuild.backends.kubernetes.settings import KubernetesSettings

    table = config.backend.kubernetes if config is not None else {}
    settings = KubernetesSettings.from_config(table).with_overrides(context=context, namespace=namespace)
    return KubernetesBackend(settings, env=env, cancel=cancel)


def _exit_code(result: RunResult) -> int:
    for image in result.images:
        if not image.ok and image.error and isinstance(image.error.get("exit_code"), int):
            return int(image.error["exit_code"])
    return int(ExitCode.BUILD_FAILED)


@click.command(
    epilog="""\b
Examples:
  anybuild build --all --push              every image of anybuild.toml, tags from git
  anybuild build api --push                one image of anybuild.toml
  anybuild build . -t ghcr.io/acme/api:dev --push
  anybuild build --all --json --metadata-file result.json --progress plain
  anybuild build -f docker/Dockerfile --target runtime --output oci:./out
  anybuild build . --secret id=npmrc,src=$HOME/.npmrc --output docker-archive:image.tar
  anybuild build --all --backend buildah
  anybuild build --all --push --backend github   one workflow run on GitHub's runners
""",
)
@click.argument("targets", nargs=-1)
@click.option("--all", "all_images", is_flag=True, help="Build every image of anybuild.toml.")
@config_option
@click.option("--backend", type=click.Choice([b.value for b in BackendName]), default=None,
              help="Build with this backend only (default: the best that works here, in anybuild.toml's order).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Images built at once (default: from cores and images).")
@click.option("--fail-fast", is_flag=True, help="Stop starting images once one has failed.")
@click.option("--metadata-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the JSON result to this file (atomically).")
@click.option("--reproducible", is_flag=True,
              help="Date the created label by SOURCE_DATE_EPOCH or the commit, not the clock.")
@click.option("-f", "--file", "dockerfile", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The Dockerfile (default: PATH/Dockerfile).")
@click.option("-t", "--tag", "tags", multiple=True, help="A full image reference; repeat for more.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE set on the image; repeat for more.")
@click.option("--build-arg", "build_args", multiple=True, help="NAME=VALUE for an ARG; repeat for more.")
@click.option("--target", default=None, help="Build this stage (and what it needs) only.")
@click.option("--platform", default=None, metavar="OS/ARCH[,OS/ARCH...]",
              help="Target platform(s), e.g. linux/amd64 or linux/amd64,linux/arm64 (one image index; foreign RUN "
                   "steps under QEMU).")
@click.option("--secret", "secrets", multiple=True, help="id=ID,src=FILE or id=ID,env=VAR for RUN --mount=type=secret.")
@click.option("--output", "output", default=None, help="oci:DIR or docker-archive:FILE.")
@click.option("--format", "image_format", type=click.Choice(["oci", "docker"]), default="oci", show_default=True,
              help="builtin: OCI media types, or Docker's (a multi-platform build: a Docker manifest list).")
@click.option("--push", is_flag=True, help="Push every reference.")
@click.option("--load", is_flag=True, help="Load into the reachable Docker Engine.")
@click.option("--progress", type=click.Choice(["auto", "live", "plain", "json"]), default="auto", show_default=True,
              help="Build output on stderr: a live view on a terminal (auto), lines, or JSON lines.")
@click.option("--sandbox", type=click.Choice(["runc", "unshare", "chroot", "proot"]), default=None,
              help="Force the built-in builder's RUN sandbox (also ANYBUILD_SANDBOX).")
@click.option("--strict", is_flag=True,
              help="Refuse what the built-in builder cannot have exactly here (a USER the pod has no id for).")
@click.option("--insecure-registry", "insecure", multiple=True, help="A registry host to reach over plain HTTP.")
@click.option("--registry-mirror", "mirrors", multiple=True, help="REGISTRY=MIRROR (bare MIRROR: docker.io).")
@click.option("--no-cache", "no_cache", is_flag=True, help="Run every step (results are still cached).")
@click.option("--cache-from", "cache_from", multiple=True, help="A registry repository to reuse steps from.")
@click.option("--cache-to", "cache_to", default=None, help="A registry repository to push step caches to.")
@click.option("--allow-dirty", "allow_dirty", is_flag=True,
              help="github backend: build the pushed commit even with uncommitted changes (it says which).")
@click.option("--kube-context", default=None, help="kubernetes backend: the kubeconfig context (default: current).")
@click.option("--namespace", default=None, help="kubernetes backend: the namespace of the Jobs.")
@output_options
@pass_session
def build(session: Session, *, targets: tuple[str, ...], all_images: bool, config_path: Path | None,
          backend: str | None, jobs: int | None, fail_fast: bool, metadata_file: Path | None, reproducible: bool,
          dockerfile: Path | None, tags: tuple[str, ...], labels: tuple[str, ...], build_args: tuple[str, ...],
          target: str | None, platform: str | None, secrets: tuple[str, ...], output: str | None, push: bool,
          load: bool, progress: str, sandbox: str | None, strict: bool, insecure: tuple[str, ...], image_format: str,
          mirrors: tuple[str, ...], no_cache: bool, cache_from: tuple[str, ...], cache_to: str | None,
          allow_dirty: bool, kube_context: str | None = None, namespace: str | None = None) -> None:
    """Build images, with the best backend that works here.

    TARGETS are image names from anybuild.toml (or --all for every one), or a
    single build context directory (default: the current directory).
    """
    cancellation = session.cancel
    with handle_signals(cancellation):  # the builds observe it in their threads: no KeyboardInterrupt here
        _build(session, cancellation, targets=targets, all_images=all_images, config_path=config_path,
               backend=backend, jobs=jobs, fail_fast=fail_fast, metadata_file=metadata_file,
               reproducible=reproducible, dockerfile=dockerfile, tags=tags, labels=labels, build_args=build_args,
               target=target, platform=platform, secrets=secrets, output=output, push=push, load=load,
               progress=progress, sandbox=sandbox, strict=strict, insecure=insecure, mirrors=mirrors,
               image_format=image_format,
               no_cache=no_cache, cache_from=cache_from, cache_to=cache_to, allow_dirty=allow_dirty,
               kube_context=kube_context, namespace=namespace)


def _build(session: Session, cancellation: Cancellation, *, targets: tuple[str, ...], all_images: bool,
           config_path: Path | None, backend: str | None, jobs: int | None, fail_fast: bool,
           metadata_file: Path | None, reproducible: bool, dockerfile: Path | None, tags: tuple[str, ...],
           labels: tuple[str, ...], build_args: tuple[str, ...], target: str | None, platform: str | None,
           secrets: tuple[str, ...], output: str | None, push: bool, load: bool, progress: str,
           sandbox: str | None, strict: bool, insecure: tuple[str, ...], mirrors: tuple[str, ...], no_cache: bool,
           cache_from: tuple[str, ...], cache_to: str | None, allow_dirty: bool, kube_context: str | None,
           namespace: str | None, image_format: str = "oci") -> None:
    config = _optional_config(config_path, session.cwd, required=all_images)
    images = _project_images(config, targets, all_images)
    env = session.env
    order = config.build.backends if config else DEFAULT_BACKENDS
    probed = _probe_in_background(ProbeContext(env=env, cwd=session.cwd, registries=push_registries(config),
                                                  thorough=False,
                                                  github=config.backend.github if config else None))
    backend_class(BackendName(backend) if backend else order[0])  # its modules load (~0.2 s) while probes run
    facts = probed()
    plan = plan_build(facts, order=order, checks=availability_checks(),
                      override=BackendName(backend) if backend else None)
    runner = SubprocessRunner(cancel=cancellation)
    builtin: list[Backend] = []  # one for every image: its namespace is tried once
    kube = _kubernetes(config, env, plan, kube_context, namespace, cancel=cancellation)

    def backends(name: BackendName) -> Backend:
        if name is BackendName.KUBERNETES and kube is not None:
            return cast(Backend, kube)
        if name is BackendName.BUILTIN:
            from anybuild.backends.builtin import BuiltinBackend

            if not builtin:
                builtin.append(BuiltinBackend(runner=runner, env=env, sandbox=sandbox, cache_from=cache_from,
                                              cache_to=cache_to, strict=strict, cancel=cancellation,
                                              docker_media_types=image_format == "docker"))
            return builtin[0]
        return create_backend(name, facts, runner=runner, env=env)

    known = diagnosis_facts(facts)
    secret_specs = tuple(parse_secret(s) for s in secrets)
    _learn_secrets(session.redactor, secret_specs, env)
    arguments = parse_build_args(build_args, env)

    if images is not None:
        assert config is not None
        for flag, value in (("--tag", tags), ("--file", dockerfile), ("--target", target), ("--output", output),
                            ("--label", labels)):
            if value:
                raise UsageError(f"{flag} applies to a one-directory build, not to images of anybuild.toml",
                                 hint=f"set it in {config.file} under [images.NAME], or build a directory")
        names = [s.name for s in images]
    else:
        context = Path(targets[0]) if targets else Path()
        context = context if context.is_absolute() else session.cwd / context
        if not context.is_dir():
            hint = (f"images in {config.file}: {', '.join(s.name for s in config.images)}" if config
                    else "give the build context directory (the one holding the Dockerfile)")
            raise UsageError(f"{targets[0] if targets else context}: no such directory or image", hint=hint)
        if push and not tags:
            raise UsageError("--push needs at least one -t REFERENCE", hint="add -t registry/repository:tag")
        if output:  # a mistake in it is said now, not after the build
            from anybuild.oci.output import Output

            parsed = Output.parse(output, session.cwd)
            parsed.check()
            output = f"{parsed.kind}:{parsed.path}"
        for tag in tags:  # a bad reference is refused now, not after a long build
            Reference.parse(tag)
        names = [context.resolve().name or "image"]

    def diagnose(lines: Sequence[str]) -> Sequence[Any]:
        from anybuild.diagnose import diagnose_log  # only a failed build needs the rules (~60 ms to load)

        return diagnose_log(lines, known)

    on_github = plan.first is not None and plan.first.backend is BackendName.GITHUB
    if on_github and images is None and len(plan.candidates) == 1:
        raise UsageError(f"the github backend builds the images of anybuild.toml in one workflow run, not the "
                         f"directory {targets[0] if targets else '.'}",
                         hint="name the images: anybuild build NAME... --backend github (or --all)")
    on_github = on_github and images is not None
    if on_github:
        from anybuild.cli.github_build import runner_args

        forwarded = runner_args(push=push, build_args=arguments, platform=platform, no_cache=no_cache,
                                reproducible=reproducible, cache_from=cache_from, cache_to=cache_to, mirrors=mirrors,
                                insecure=insecure, sandbox=sandbox, load=load, secrets=secrets,
                                redactor=session.redactor)
    cancellation.check("before anything was built")
    with contextlib.closing(kube) if kube is not None else contextlib.nullcontext(), \
            Progress(session, progress, names) as view:
        seams = ProjectSeams(plan=lambda _spec: plan, backends=backends, diagnose=diagnose, sink_for=view.sink,
                             cancel=cancellation)
        if on_github:
            from anybuild.cli.github_build import run_github_build

            assert config is not None and images is not None
            with handle_signals(cancellation, interrupt_main=True):  # the run is followed in this thread
                result = run_github_build(session, config, images, plan, args=forwarded, push=push,
                                          allow_dirty=allow_dirty, fail_fast=fail_fast, reproducible=reproducible,
                                          source_date_epoch=source_date_epoch(env), runner=runner,
                                          sink_for=view.sink, diagnose=diagnose)
        elif images is not None:
            assert config is not None
            options = ProjectOptions(
                push=push, load=load, platform=platform, build_args=arguments, secrets=secret_specs,
                no_cache=no_cache, insecure_registries=insecure, registry_mirrors=parse_mirrors(mirrors),
                jobs=jobs or config.build.jobs or (kube.settings.jobs if kube is not None and plan.first is not None
                                                   and plan.first.backend is BackendName.KUBERNETES
                                                   else default_jobs(len(images))), fail_fast=fail_fast,
                reproducible=reproducible, source_date_epoch=source_date_epoch(env),
            )
            from anybuild.gitstate import read_git_state  # tags from git: project builds only

            git = read_git_state(config.root, runner, env)
            result = build_project(config, images, options, git=git, seams=seams)
        else:
            file = dockerfile if dockerfile is None or dockerfile.is_absolute() else session.cwd / dockerfile
            request = BuildRequest(
                context=context, dockerfile=file or context / "Dockerfile", tags=tags, labels=parse_labels(labels),
                build_args=arguments, target=target, platform=platform, push=push, load=load, output=output,
                secrets=secret_specs, no_cache=no_cache, insecure_registries=insecure,
                registry_mirrors=parse_mirrors(mirrors),
            )
            spec = ImageSpec(name=names[0], context=context, dockerfile=request.dockerfile, repository="")
            result = build_images([spec], lambda s: run_request(s.name, request, plan, seams), jobs=1,
                                  cancel=cancellation)
    if metadata_file is not None:
        _write_metadata(metadata_file if metadata_file.is_absolute() else session.cwd / metadata_file,
                        result.to_dict())
    if session.json or session.is_terminal(err=False):
        session.emit(result.to_dict(), lambda console: _render_summary(console, result, session.redactor))
    else:
        _plain_summary(session.echo, result)
    if cancellation.is_set():  # whatever else failed: the run was stopped, and says so, and by its status
        signum = cancellation.signum or signal.SIGINT
        if not session.json:
            stopped = [i.name for i in result.images if not i.ok and (i.error or {}).get("kind") == "interrupted"]
            session.echo(f"error: interrupted by {cancellation.signal_name}: stopped "
                         f"{', '.join(stopped) or 'the build'}; what it started was removed", err=True)
            session.echo("hint: run the command again", err=True)
        sys.exit(128 + signum)
    if not result.ok:
        sys.exit(_exit_code(result))
