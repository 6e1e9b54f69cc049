"""build_with_fallback with scripted backends: environmental failures fall back, genuine ones stop at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, BuildResult, ListSink, LogSink, Verdict
from anybuild.backends.failure import failure_error
from anybuild.backends.fallback import build_with_fallback
from anybuild.config import BackendName
from anybuild.environment.facts import Facts
from anybuild.errors import BackendError, BuildFailed, EnvironmentUnsupported
from anybuild.planner import Plan, plan_build

DOCKER, BUILDAH = BackendName.DOCKER, BackendName.BUILDAH
REQUEST = BuildRequest(context=Path("/c"), dockerfile=Path("/c/Dockerfile"))


@dataclass
class ScriptedBackend:
    """A backend that prints lines and then succeeds or fails as told."""

    name: BackendName
    lines: tuple[str, ...] = ()
    returncode: int = 0
    calls: list[BuildRequest] = field(default_factory=list)

    def available(self, facts: Facts) -> Verdict:
        return Verdict(ok=True, reason="scripted")

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        self.calls.append(request)
        for line in self.lines:
            sink.line(line)
        if self.returncode:
            raise failure_error(self.name, list(self.lines), self.returncode)
        return BuildResult(backend=self.name, digest="sha256:" + "a" * 64)


@dataclass(frozen=True)
class Diag:
    title: str
    other_backend_helps: bool


def _plan(*names: BackendName) -> Plan:
    checks = {n: (lambda _f: Verdict(ok=True, reason="ok")) for n in names}
    return plan_build(Facts(), order=names, checks=checks)


def _run(backends: dict[BackendName, ScriptedBackend], diagnose=None):  # type: ignore[no-untyped-def]
    sink = ListSink()
    outcome = build_with_fallback(_plan(*backends), REQUEST, sink, backends=backends.__getitem__, diagnose=diagnose)
    return outcome, sink


def test_fallback_environmental_log_line_next_backend_builds_and_says_why() -> None:
    docker = ScriptedBackend(DOCKER, ("#5 ERROR: failed to mount overlay: invalid argument",), 1)
    buildah = ScriptedBackend(BUILDAH)
    outcome, sink = _run({DOCKER: docker, BUILDAH: buildah})
    assert outcome.result.backend is BUILDAH
    assert [(a.backend, a.ok) for a in outcome.attempts] == [(DOCKER, False), (BUILDAH, True)]
    assert any("falling back to buildah" in line and "failed to mount overlay" in line for line in sink.lines)


def test_fallback_failing_run_stops_on_first_backend_reported_once() -> None:
    docker = ScriptedBackend(
        DOCKER, ('ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1',), 1
    )
    buildah = ScriptedBackend(BUILDAH)
    with pytest.raises(BuildFailed, match="did not complete successfully"):
        _run({DOCKER: docker, BUILDAH: buildah}, diagnose=lambda lines: [Diag("RUN failed", False)])
    assert len(docker.calls) == 1
    assert buildah.calls == []


def test_fallback_diagnosis_other_backend_helps_falls_back() -> None:
    docker = ScriptedBackend(DOCKER, ("npm ERR! code ENOTEMPTY",), 1)
    buildah = ScriptedBackend(BUILDAH)
    seen: list[Sequence[str]] = []

    def diagnose(lines: Sequence[str]) -> list[Diag]:
        seen.append(list(lines))
        return [Diag("npm ENOTEMPTY on overlayfs", True)]

    outcome, sink = _run({DOCKER: docker, BUILDAH: buildah}, diagnose=diagnose)
    assert outcome.result.backend is BUILDAH
    assert seen == [["npm ERR! code ENOTEMPTY"]]
    assert any("diagnosis: npm ENOTEMPTY on overlayfs" in line for line in sink.lines)


def test_fallback_non_environmental_backend_error_raised() -> None:
    @dataclass
    class Refusing(ScriptedBackend):
        def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
            raise BackendError("bad output spec", backend="docker", environmental=False)

    with pytest.raises(BackendError, match="bad output spec"):
        _run({DOCKER: Refusing(DOCKER), BUILDAH: ScriptedBackend(BUILDAH)})


def test_fallback_all_environmental_environment_unsupported() -> None:
    line = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock",)
    with pytest.raises(EnvironmentUnsupported, match="every backend failed"):
        _run({DOCKER: ScriptedBackend(DOCKER, line, 1), BUILDAH: ScriptedBackend(BUILDAH, line, 1)})


def test_fallback_empty_plan_names_exclusions_and_fix() -> None:
    plan = plan_build(
        Facts(), order=(DOCKER,), checks={DOCKER: lambda _f: Verdict(ok=False, reason="down", fix="start it")}
    )
    with pytest.raises(EnvironmentUnsupported, match="docker: down") as info:
        build_with_fallback(plan, REQUEST, ListSink(), backends=ScriptedBackend)
    assert info.value.hint == "start it"


@pytest.mark.parametrize(
    ("lines", "falls_back"),
    [
        (
            ("#8 12.3 npm ERR! code ENOTEMPTY", "#8 12.3 npm ERR! ENOTEMPTY: directory not empty, rename 'a' -> 'b'"),
            True,
        ),
        (('ERROR: failed to solve: failed to compute cache key: "/nope.txt" not found: not found',), False),
        (("executor failed running [/bin/sh -c exit 7]: exit code: 7",), False),
    ],
    ids=["enotempty", "copy-missing", "run-failed"],
)
def test_fallback_with_real_diagnosis(lines: tuple[str, ...], falls_back: bool) -> None:
    diagnose_module = pytest.importorskip("anybuild.diagnose")
    facts = {"docker.data_root_fs": "overlay", "docker.storage_driver": "overlay2"}

    def diagnose(log: Sequence[str]):  # type: ignore[no-untyped-def]
        return diagnose_module.diagnose_log(log, facts=facts)

    docker, buildah = ScriptedBackend(DOCKER, lines, 1), ScriptedBackend(BUILDAH)
    if falls_back:
        outcome, _ = _run({DOCKER: docker, BUILDAH: buildah}, diagnose=diagnose)
        assert outcome.result.backend is BUILDAH
    else:
        with pytest.raises(BuildFailed):
            _run({DOCKER: docker, BUILDAH: buildah}, diagnose=diagnose)
        assert buildah.calls == []
