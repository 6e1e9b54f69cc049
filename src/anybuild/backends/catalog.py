"""Which backends exist, how to ask each whether it can build here, and how to make one.

docker, buildah and podman live here; the others (builtin, kubernetes, github)
are imported lazily from ``anybuild.backends.<name>`` as ``<Name>Backend``, so a
backend that is not installed is reported as such instead of breaking the planner.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, cast

from anybuild.backends.base import Backend, Verdict
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.process import Runner

__all__ = ["LOCAL_BACKENDS", "AvailabilityCheck", "availability_checks", "backend_class", "create_backend"]

AvailabilityCheck = Callable[[Facts], Verdict]

LOCAL_BACKENDS: frozenset[BackendName] = frozenset(
    {BackendName.BUILTIN, BackendName.DOCKER, BackendName.BUILDAH, BackendName.PODMAN}
)


def backend_class(name: BackendName) -> type[Any] | str:
    """The ``<Name>Backend`` class of ``anybuild.backends.<name>``, or why it is missing."""
    try:
        module = importlib.import_module(f"anybuild.backends.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"anybuild.backends.{name}":
            return f"the {name} backend is not part of this version of anybuild yet"
        return f"the {name} backend cannot load: {exc}"
    except ImportError as exc:
        return f"the {name} backend cannot load: {exc}"
    cls = getattr(module, f"{str(name).capitalize()}Backend", None)
    if not isinstance(cls, type):
        return f"anybuild.backends.{name} has no {str(name).capitalize()}Backend"
    return cls


def _lazy_check(name: BackendName) -> AvailabilityCheck:
    def check(facts: Facts) -> Verdict:
        found = backend_class(name)
        if isinstance(found, str):
            return Verdict(ok=False, reason=found, fix="use another backend")
        try:
            backend = found()
        except TypeError as exc:
            return Verdict(ok=False, reason=f"{found.__name__} needs arguments to be asked: {exc}")
        return cast(Backend, backend).available(facts)

    return check


def docker_verdict(facts: Facts) -> Verdict:
    """:func:`anybuild.backends.docker.docker_verdict`, its module loaded when a plan asks (not for --help)."""
    from anybuild.backends.docker import docker_verdict as verdict

    return verdict(facts)


def buildah_verdict(facts: Facts, *, tool: BackendName = BackendName.BUILDAH) -> Verdict:
    """:func:`anybuild.backends.buildah.buildah_verdict`, its module loaded when a plan asks."""
    from anybuild.backends.buildah import buildah_verdict as verdict

    return verdict(facts, tool=tool)


def _podman_verdict(facts: Facts) -> Verdict:
    """podman builds only where buildah is missing (they share storage and isolation code)."""
    if facts.text(FactKey.TOOL_BUILDAH) and facts.text(FactKey.TOOL_PODMAN):
        return Verdict(
            ok=False,
            reason="buildah is present and preferred; podman build is used only where buildah is missing",
            evidence=(facts.evidence(FactKey.TOOL_BUILDAH),),
        )
    return buildah_verdict(facts, tool=BackendName.PODMAN)


def availability_checks() -> dict[BackendName, AvailabilityCheck]:
    """One availability check per backend name (all pure functions of the facts)."""
    checks: dict[BackendName, AvailabilityCheck] = {
        BackendName.DOCKER: docker_verdict,
        BackendName.BUILDAH: buildah_verdict,
        BackendName.PODMAN: _podman_verdict,
    }
    for name in BackendName:
        checks.setdefault(name, _lazy_check(name))
    return checks


def create_backend(name: BackendName, facts: Facts, *, runner: Runner, env: Mapping[str, str]) -> Backend:
    """A backend instance configured from the facts."""
    match name:
        case BackendName.DOCKER:
            from anybuild.backends.docker import DockerBackend

            return DockerBackend.from_facts(facts, runner=runner, env=env)
        case BackendName.BUILDAH | BackendName.PODMAN:
            from anybuild.backends.buildah import BuildahBackend

            return BuildahBackend.from_facts(facts, runner=runner, env=env, tool=name)
        case _:
            found = backend_class(name)
            if isinstance(found, str):
                raise LookupError(found)
            factory = getattr(found, "from_facts", None)
            if callable(factory):
                return cast(Backend, factory(facts, runner=runner, env=env))
            return cast(Backend, found())
