"""Backends: the tools that build an image (docker, buildah, podman, the built-in builder)."""

from __future__ import annotations

from anybuild.backends.base import (
    Backend,
    BuildRequest,
    BuildResult,
    ListSink,
    LogSink,
    SecretSpec,
    StepTiming,
    Verdict,
)

__all__ = [
    "Backend",
    "BuildRequest",
    "BuildResult",
    "ListSink",
    "LogSink",
    "SecretSpec",
    "StepTiming",
    "Verdict",
]
