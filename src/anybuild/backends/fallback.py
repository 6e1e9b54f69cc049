"""Run a plan: the first candidate builds; the next one runs only after an environmental failure.

A backend that could not run (``BackendError(environmental=True)``), or whose
log a diagnosis says another backend would get past (``other_backend_helps``),
hands over to the next candidate, and the output says why. A genuine failure (a
failing RUN, a missing COPY source) is raised at once, from the first backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from anybuild.backends.base import Backend, BuildRequest, BuildResult, LogSink
from anybuild.backends.failure import environmental_line
from anybuild.config import BackendName
from anybuild.errors import BackendError, BuildFailed, EnvironmentUnsupported
from anybuild.planner import Plan

__all__ = ["Attempt", "Diagnose", "DiagnosisLike", "FallbackResult", "build_with_fallback"]


class DiagnosisLike(Protocol):
    """What fallback reads of a diagnosis (anybuild.diagnose's Diagnosis has both)."""

    @property
    def title(self) -> str: ...

    @property
    def other_backend_helps(self) -> bool | None: ...


Diagnose = Callable[[Sequence[str]], Sequence[DiagnosisLike]]
BackendFactory = Callable[[BackendName], Backend]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    backend: BackendName
    ok: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"backend": str(self.backend), "ok": self.ok, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackResult:
    result: BuildResult
    attempts: tuple[Attempt, ...]
    skipped: tuple[Attempt, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.result.to_dict(),
            "attempts": [a.to_dict() for a in self.attempts],
            "skipped": [a.to_dict() for a in self.skipped],
        }


@dataclass(slots=True)
class _Tee:
    sink: LogSink
    lines: list[str] = field(default_factory=list)

    def line(self, text: str) -> None:
        self.lines.append(text)
        self.sink.line(text)


def _announce_skips(plan: Plan, sink: LogSink) -> tuple[Attempt, ...]:
    skipped = []
    for exclusion in plan.exclusions:
        sink.line(f"anybuild: not using {exclusion.backend}: {exclusion.reason}")
        for evidence in exclusion.evidence:
            if evidence:
                sink.line(f"anybuild:   evidence: {evidence}")
        skipped.append(Attempt(backend=exclusion.backend, ok=False, reason=exclusion.reason))
    return tuple(skipped)


def build_with_fallback(
    plan: Plan,
    request: BuildRequest,
    sink: LogSink,
    *,
    backends: BackendFactory,
    diagnose: Diagnose | None = None,
) -> FallbackResult:
    """Build with the plan's candidates in order; fall back only for environmental causes."""
    skipped = _announce_skips(plan, sink)
    attempts: list[Attempt] = []
    if not plan.candidates:
        raise EnvironmentUnsupported(
            "no backend can build here: " + "; ".join(f"{e.backend}: {e.reason}" for e in plan.exclusions),
            hint=next((e.fix for e in plan.exclusions if e.fix), "run `anybuild doctor` for the fixes"),
            docs="doctor",
        )
    for index, candidate in enumerate(plan.candidates):
        following = plan.candidates[index + 1].backend if index + 1 < len(plan.candidates) else None
        sink.line(f"anybuild: building with {candidate.backend}: {candidate.reason}")
        tee = _Tee(sink)
        try:
            result = backends(candidate.backend).build(request, tee)
        except BackendError as exc:
            if not exc.environmental:
                raise
            reason = exc.message
        except BuildFailed:
            found = _environmental_reason(tee.lines, diagnose)
            if found is None:
                raise  # the build's own failure: reported once, from this backend
            reason = found
        else:
            attempts.append(Attempt(backend=candidate.backend, ok=True, reason=candidate.reason))
            return FallbackResult(result=result, attempts=tuple(attempts), skipped=skipped)
        attempts.append(Attempt(backend=candidate.backend, ok=False, reason=reason))
        if following is not None:
            sink.line(f"anybuild: {candidate.backend} cannot build here ({reason}); falling back to {following}")
    raise EnvironmentUnsupported(
        "every backend failed for environmental reasons: " + "; ".join(f"{a.backend}: {a.reason}" for a in attempts),
        hint="run `anybuild doctor` for the fixes",
        docs="doctor",
    )


def _environmental_reason(lines: Sequence[str], diagnose: Diagnose | None) -> str | None:
    """Why the failure is the environment's, or None when it is the build's own."""
    line = environmental_line(lines)
    if line is not None:
        return line
    if diagnose is None:
        return None
    ranked = diagnose(lines)  # the root cause first
    if not ranked or not ranked[0].other_backend_helps:
        return None
    return f"diagnosis: {ranked[0].title}"
