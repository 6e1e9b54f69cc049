"""Turn a failed backend run into the right error: environmental (fall back) or a genuine failure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from anybuild.backends.base import LogSink
from anybuild.backends.invocation import Invocation, InvocationRun, run_invocation
from anybuild.config import BackendName
from anybuild.errors import BackendError, BuildFailed
from anybuild.process import Runner

__all__ = ["ENVIRONMENTAL_PATTERNS", "environmental_line", "failure_error", "log_tail", "run_or_fail"]

# Lines that mean "this backend cannot work here", never "this Dockerfile is wrong".
ENVIRONMENTAL_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"Cannot connect to the Docker daemon",
        r"error during connect",
        r"failed to mount overlay",
        r"error initializing graphdriver",
        r"driver not supported",
        r"network bridge not found",
        r"BuildKit is enabled but the buildx component is missing",
        r"kernel does not support overlay",
        r"cgroups?: .*(no such file|read-only|permission denied|not supported)",
        r"crun: .*cgroup",
        r"error (setting up|creating) (user namespace|overlay mount)",
        r"unshare: operation not permitted",
        r"newuidmap: .*(not allowed|operation not permitted)",
        r"mount: .*(permission denied|operation not permitted)",
    )
)
_ERROR_LINE = re.compile(r"(error|failed|did not complete|returned a non-zero code)", re.IGNORECASE)


def log_tail(lines: Sequence[str], count: int = 20) -> list[str]:
    return [line for line in lines if line.strip()][-count:]


def environmental_line(lines: Sequence[str]) -> str | None:
    for line in reversed(lines):
        if any(p.search(line) for p in ENVIRONMENTAL_PATTERNS):
            return line.strip()
    return None


def failure_error(backend: BackendName, lines: Sequence[str], returncode: int) -> BuildFailed | BackendError:
    """BackendError(environmental=True) when a line says the backend cannot work here, else BuildFailed."""
    tail = log_tail(lines)
    cause = environmental_line(lines)
    if cause is not None:
        return BackendError(
            f"{backend} cannot build here: {cause}",
            backend=str(backend),
            environmental=True,
            hint="run `anybuild doctor` to see why, or choose another backend with --backend",
        )
    errors = [line for line in tail if _ERROR_LINE.search(line)]
    summary = errors[-1].strip() if errors else (tail[-1].strip() if tail else f"exit status {returncode}")
    return BuildFailed(
        f"{backend} build failed: {summary}",
        diagnosis={"backend": str(backend), "exit_code": returncode, "log_tail": tail},
        hint="fix the Dockerfile step quoted above, then build again",
    )


def run_or_fail(
    backend: BackendName,
    invocation: Invocation,
    *,
    runner: Runner,
    env: Mapping[str, str],
    sink: LogSink,
    cwd: Path,
    timeout: float | None,
) -> InvocationRun:
    """Run a backend's invocation; a failed command becomes BuildFailed or an environmental BackendError."""
    run = run_invocation(invocation, runner=runner, base_env=env, sink=sink, cwd=cwd, timeout=timeout)
    if run.failed is not None:
        raise failure_error(backend, run.lines, run.failed.returncode)
    return run
