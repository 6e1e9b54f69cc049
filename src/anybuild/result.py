"""The one result every build command writes (`--json`, `--metadata-file`).

Versioned by ``schema``; the JSON Schema is ``anybuild/schemas/result-v1.json``
and the fields are documented in ``docs/result-schema.md``. Every backend fills
the same shape, so a devpod build, a cluster build and a CI build of one commit
can be compared and read by the next job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

__all__ = ["RESULT_SCHEMA_ID", "ImageOutcome", "RunResult", "StepRecord", "load_result_schema"]

RESULT_SCHEMA_ID = "anybuild.result/v1"


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    """One step of a build: its name, how long it took, and whether the cache served it."""

    name: str
    seconds: float
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": round(self.seconds, 3), "cached": self.cached}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageOutcome:
    """What happened to one image: built (with digest and references) or failed (with why)."""

    name: str
    ok: bool
    backend: str | None = None
    backend_reason: str | None = None
    digest: str | None = None
    references: tuple[str, ...] = ()
    size: int | None = None
    layers: int | None = None
    sandbox: str | None = None
    started: float | None = None
    finished: float | None = None
    steps: tuple[StepRecord, ...] = ()
    cache_hits: int = 0
    warnings: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None
    diagnosis: Mapping[str, Any] | None = None
    skipped_backends: tuple[Mapping[str, str], ...] = ()
    # a multi-platform build's images (platform, digest, size, layers, emulation); `digest` is then the index's
    platforms: tuple[Mapping[str, Any], ...] = ()

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        seconds = self.seconds
        return {
            "name": self.name,
            "ok": self.ok,
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "skipped_backends": [dict(s) for s in self.skipped_backends],
            "digest": self.digest,
            "platforms": [dict(p) for p in self.platforms],
            "references": list(self.references),
            "size": self.size,
            "layers": self.layers,
            "sandbox": self.sandbox,
            "timing": {
                "started": _iso(self.started),
                "finished": _iso(self.finished),
                "seconds": None if seconds is None else round(seconds, 3),
            },
            "steps": [s.to_dict() for s in self.steps],
            "cache_hits": self.cache_hits,
            "warnings": list(self.warnings),
            "labels": dict(self.labels),
            "error": dict(self.error) if self.error else None,
            "diagnosis": dict(self.diagnosis) if self.diagnosis else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """The outcome of one `anybuild build` run over one or more images."""

    images: tuple[ImageOutcome, ...]
    started: float
    finished: float
    jobs: int = 1

    @property
    def ok(self) -> bool:
        return all(image.ok for image in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RESULT_SCHEMA_ID,
            "ok": self.ok,
            "jobs": self.jobs,
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "seconds": round(self.finished - self.started, 3),
            "images": [image.to_dict() for image in self.images],
        }

    def overlapping(self) -> list[tuple[str, str]]:
        """Pairs of images whose builds ran at the same time (the timeline)."""
        pairs: list[tuple[str, str]] = []
        timed = [i for i in self.images if i.started is not None and i.finished is not None]
        for index, first in enumerate(timed):
            for second in timed[index + 1 :]:
                assert first.started is not None and first.finished is not None
                assert second.started is not None and second.finished is not None
                if first.started < second.finished and second.started < first.finished:
                    pairs.append((first.name, second.name))
        return pairs


def load_result_schema() -> dict[str, Any]:
    """The published JSON Schema of :meth:`RunResult.to_dict`."""
    text = resources.files("anybuild").joinpath("schemas/result-v1.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def steps_from(records: Sequence[Mapping[str, Any]]) -> tuple[StepRecord, ...]:
    """StepRecords from plain mappings (as backends that run tools report them)."""
    return tuple(
        StepRecord(name=str(r["name"]), seconds=float(r["seconds"]), cached=bool(r.get("cached")))
        for r in records
    )
