"""Build a repository's images: tags from git, a plan per image, fallback, diagnosis.

For each image of ``anybuild.toml``: the references and OCI labels come from the
metadata-action rules and git (:mod:`anybuild.tags`); the planner orders the
backends that can build here; :func:`~anybuild.backends.fallback.build_with_fallback`
runs them, moving on only for environmental causes; a failure carries the
diagnosis of its log. Images build in parallel (:mod:`anybuild.batch`) and end
as one :class:`~anybuild.result.RunResult`.

Side effects come in through :class:`ProjectSeams` (backends, diagnosis, log
sinks, the clock), so this module is tested without any real builder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from anybuild.backends.base import BuildRequest, LogSink, SecretSpec
from anybuild.backends.fallback import Attempt, BackendFactory, Diagnose, build_with_fallback
from anybuild.batch import build_images
from anybuild.cancellation import Cancellation
from anybuild.config import Config, ImageSpec
from anybuild.errors import AnybuildError, BuildFailed, UsageError
from anybuild.planner import Plan
from anybuild.result import ImageOutcome, RunResult, StepRecord

if TYPE_CHECKING:
    from anybuild.gitstate import GitState

__all__ = ["ProjectOptions", "ProjectSeams", "build_project", "run_request", "select_images"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectOptions:
    """What the command line adds to the configuration."""

    push: bool = False
    load: bool = False
    platform: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)  # on top of each image's args
    secrets: tuple[SecretSpec, ...] = ()
    no_cache: bool = False
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    jobs: int = 1
    fail_fast: bool = False
    reproducible: bool = False
    source_date_epoch: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectSeams:
    """The effects a project build needs, injected."""

    plan: Callable[[ImageSpec], Plan]
    backends: BackendFactory
    diagnose: Diagnose  # ranked diagnoses of a log, root cause first
    sink_for: Callable[[str], LogSink]  # by image name
    clock: Callable[[], float] = time.time
    cancel: Cancellation | None = None  # the process's: no image starts after it is set


def select_images(config: Config, names: Sequence[str], *, all_images: bool) -> tuple[ImageSpec, ...]:
    """The images named (in the file's order), or all of them with ``--all``."""
    if all_images and names:
        raise UsageError("give image names or --all, not both", hint="drop the names to build every image")
    if all_images:
        if not config.images:
            raise UsageError(
                f"{config.file or 'the configuration'} defines no images",
                hint="add an [images.NAME] table with context and repository",
            )
        return config.images
    if not names:
        raise UsageError("no image given", hint="name images from anybuild.toml, or pass --all")
    for name in names:
        config.image(name)  # raises with the known names and a suggestion
    wanted = set(names)
    return tuple(spec for spec in config.images if spec.name in wanted)


def build_project(
    config: Config,
    images: Sequence[ImageSpec],
    options: ProjectOptions,
    *,
    git: GitState,
    seams: ProjectSeams,
) -> RunResult:
    """Build *images* of *config* with *options*; never raises for one image's failure."""
    from anybuild.tags.image import compute_image_metadata  # the tag rules: project builds only

    now = datetime.fromtimestamp(seams.clock(), tz=UTC)
    mirrors = {host: r.mirrors for host, r in config.registries.items() if r.mirrors}
    mirrors.update(options.registry_mirrors)
    insecure = tuple(dict.fromkeys(
        [*(host for host, r in config.registries.items() if r.insecure), *options.insecure_registries]
    ))

    def build_one(spec: ImageSpec) -> ImageOutcome:
        started = seams.clock()
        metadata = compute_image_metadata(
            config, spec, git, now, reproducible=options.reproducible, source_date_epoch=options.source_date_epoch
        )
        if options.push and not metadata.references:
            raise UsageError(
                f"{spec.name}: the tag rules produce no tag for this commit, so there is nothing to push to",
                hint=f"run `anybuild tags {spec.name}` to see why, or add a rule such as type=sha",
            )
        request = BuildRequest(
            context=spec.context,
            dockerfile=spec.dockerfile,
            tags=metadata.references,
            labels=dict(metadata.labels),
            build_args={**spec.args, **options.build_args},
            target=spec.target,
            platform=options.platform or (",".join(spec.platforms) if spec.platforms else None),
            push=options.push,
            load=options.load,
            secrets=options.secrets,
            no_cache=options.no_cache,
            insecure_registries=insecure,
            registry_mirrors=mirrors,
        )
        return run_request(spec.name, request, seams.plan(spec), seams, started=started,
                           labels=dict(metadata.labels), warnings=metadata.notes)

    return build_images(images, build_one, jobs=max(1, options.jobs), fail_fast=options.fail_fast,
                        clock=seams.clock, cancel=seams.cancel)


def run_request(
    name: str,
    request: BuildRequest,
    plan: Plan,
    seams: ProjectSeams,
    *,
    started: float | None = None,
    labels: Mapping[str, str] | None = None,
    warnings: tuple[str, ...] = (),
) -> ImageOutcome:
    """Build one request through *plan* with fallback; a failure is raised with its diagnosis."""
    started = seams.clock() if started is None else started
    sink = _Recorder(seams.sink_for(name))
    try:
        outcome = build_with_fallback(
            plan, request, sink, backends=seams.backends, diagnose=seams.diagnose
        )
    except BuildFailed as exc:
        # The backend's own error line belongs to the log the diagnosis reads.
        raise _with_diagnosis(exc, [*sink.lines, f"error: {exc.message}"], seams.diagnose) from exc
    result = outcome.result
    chosen = next((a for a in reversed(outcome.attempts) if a.ok), None)
    return ImageOutcome(
        name=name,
        ok=True,
        backend=str(result.backend),
        backend_reason=chosen.reason if chosen else None,
        skipped_backends=tuple(_skip(a) for a in (*outcome.skipped, *outcome.attempts) if not a.ok),
        digest=result.digest,
        references=tuple(_pinned(r, result.digest) for r in result.references),
        size=result.size,
        layers=result.layers,
        sandbox=result.sandbox,
        started=started,
        finished=seams.clock(),
        steps=tuple(StepRecord(name=s.name, seconds=s.seconds, cached=s.cached) for s in result.steps),
        cache_hits=result.cache_hits,
        labels=dict(labels or request.labels),
        warnings=(*warnings, *result.warnings),
        platforms=tuple(p.to_dict() for p in result.platforms),
    )


class _Recorder:
    """Passes lines on and keeps them, for the diagnosis of a failure."""

    def __init__(self, sink: LogSink) -> None:
        self.sink = sink
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)
        self.sink.line(text)


def _with_diagnosis(
    exc: BuildFailed, lines: Sequence[str], diagnose: Callable[[Sequence[str]], Sequence[Any]]
) -> AnybuildError:
    found = diagnose(lines)
    if not found:
        return exc
    root = found[0]
    data = root.to_dict() if hasattr(root, "to_dict") else {"title": str(root)}
    hint = exc.hint or str(data.get("remedy") or "")
    return BuildFailed(exc.message, diagnosis=data, hint=hint, docs=exc.docs)


def _skip(attempt: Attempt) -> dict[str, str]:
    return {"backend": str(attempt.backend), "reason": attempt.reason}


def _pinned(reference: str, digest: str | None) -> str:
    if digest is None or "@" in reference:
        return reference
    return f"{reference}@{digest}"

