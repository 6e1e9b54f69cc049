"""The contract every backend implements: ``available(facts)`` and ``build(request, sink)``.

A backend is asked two things. :meth:`Backend.available` answers, from the
:class:`~anybuild.environment.facts.Facts` alone and without side effects,
whether it can build here (a :class:`Verdict` with the reason, the evidence and
the fix). :meth:`Backend.build` runs one :class:`BuildRequest`, streams the
output lines to a :class:`LogSink` and returns a :class:`BuildResult`.

``build`` raises :class:`~anybuild.errors.BuildFailed` (with the log tail) when
the build ran and failed, and :class:`~anybuild.errors.BackendError` when it
could not run; ``environmental=True`` on the latter lets the planner's fallback
try the next backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from anybuild.config import BackendName
from anybuild.environment.facts import Facts

__all__ = [
    "Backend",
    "BuildRequest",
    "BuildResult",
    "ListSink",
    "LogSink",
    "PlatformImage",
    "SecretSpec",
    "StepTiming",
    "Verdict",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretSpec:
    """A build secret (``RUN --mount=type=secret,id=…``): from a file or a variable."""

    id: str
    src: Path | None = None
    env: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    """One image, one build."""

    context: Path
    dockerfile: Path
    tags: tuple[str, ...] = ()  # full references, e.g. "127.0.0.1:5000/acme/api:dev"
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # set on the image config, as `--label`
    target: str | None = None
    platform: str | None = None  # "linux/amd64", or several: "linux/amd64,linux/arm64" (one image index)
    push: bool = False
    load: bool = False  # into a reachable docker engine
    output: str | None = None  # "oci:DIR" | "docker-archive:FILE" | None
    secrets: tuple[SecretSpec, ...] = ()
    no_cache: bool = False
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTiming:
    name: str
    seconds: float
    cached: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformImage:
    """One platform's image of a multi-platform build (an entry of its index)."""

    platform: str  # "linux/arm64"
    digest: str  # the image manifest's
    size: int | None = None
    layers: int | None = None
    emulation: str | None = None  # how its RUN steps ran when foreign: host-binfmt | userns-binfmt | entrypoint

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "digest": self.digest, "size": self.size, "layers": self.layers,
                "emulation": self.emulation}


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildResult:
    """What a build produced, whichever backend ran it."""

    backend: BackendName
    digest: str | None = None  # manifest digest "sha256:…" when known
    references: tuple[str, ...] = ()  # pushed / loaded references
    size: int | None = None
    layers: int | None = None
    steps: tuple[StepTiming, ...] = ()
    sandbox: str | None = None  # builtin: RUN sandbox and snapshotter that ran; docker: buildkit/classic; buildah: ...
    cache_hits: int = 0
    warnings: tuple[str, ...] = ()  # what could not be had exactly (builtin: fidelity notes of the sandbox)
    started: float = 0.0  # time.time() stamps
    finished: float = 0.0
    # builtin: each base image pulled from a registry: (the repository that served it, the digest served)
    bases: tuple[tuple[str, str], ...] = ()
    platforms: tuple[PlatformImage, ...] = ()  # each platform's image; then `digest` is the index's (if > 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "platforms": [p.to_dict() for p in self.platforms],
            "backend": str(self.backend),
            "digest": self.digest,
            "references": list(self.references),
            "size": self.size,
            "layers": self.layers,
            "steps": [{"name": s.name, "seconds": round(s.seconds, 3), "cached": s.cached} for s in self.steps],
            "sandbox": self.sandbox,
            "cache_hits": self.cache_hits,
            "seconds": round(max(0.0, self.finished - self.started), 3),
        }


@runtime_checkable
class LogSink(Protocol):
    def line(self, text: str) -> None:
        """One line of backend output, already decoded, without its newline."""


@dataclass(slots=True)
class ListSink:
    """A sink that keeps every line (tests, and the log tail of a failed build)."""

    lines: list[str] = field(default_factory=list)

    def line(self, text: str) -> None:
        self.lines.append(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Whether a backend can build here, why (not), and how to fix it."""

    ok: bool
    reason: str
    evidence: tuple[str, ...] = ()
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "evidence": list(self.evidence), "fix": self.fix}


class Backend(Protocol):
    """A builder. ``name`` may be a plain attribute or a property."""

    @property
    def name(self) -> BackendName: ...

    def available(self, facts: Facts) -> Verdict: ...

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult: ...
