"""The built-in daemonless builder as a backend (see :mod:`anybuild.builder`).

It builds wherever a RUN sandbox can start: as root with CAP_SYS_ADMIN as it is;
elsewhere in a user namespace of its own (:mod:`anybuild.builder.host`), and where
none can be made, with proot. The verdict comes from what was tried: the namespace
always, and in ``doctor`` a trial RUN in every sandbox of the ladder
(:mod:`anybuild.environment.builder`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, Verdict
from anybuild.cancellation import Cancellation
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import AnybuildError
from anybuild.process import Runner, SubprocessRunner

__all__ = ["BuiltinBackend", "builtin_verdict"]

_EVIDENCE = (FactKey.BUILDER_NAMESPACE, FactKey.BUILDER_SANDBOXES, FactKey.BUILDER_SANDBOX,
             FactKey.BUILDER_SNAPSHOTTER, FactKey.BUILDER_OWNERS, FactKey.BUILDER_PERMISSION_CHECKS,
             FactKey.BUILDER_PLATFORMS)


def _tried(facts: Facts) -> Verdict:
    """The verdict from doctor's trial RUNs."""
    evidence = tuple(e for e in (facts.evidence(k) for k in _EVIDENCE) if e)
    sandbox = facts.text(FactKey.BUILDER_SANDBOX)
    namespace = facts.text(FactKey.BUILDER_NAMESPACE) or "none"
    if sandbox is None:
        return Verdict(ok=False, reason="no RUN sandbox could start here: " + facts.evidence(FactKey.BUILDER_SANDBOX),
                       evidence=evidence,
                       fix="allow user namespaces (seccomp Unconfined, user.max_user_namespaces > 0), or install "
                           "proot (needs ptrace), or run as root")
    where = "as it is" if namespace == "none" else f"in a {namespace}-mapped user namespace"
    checks = facts.flag(FactKey.BUILDER_PERMISSION_CHECKS)
    owners = facts.text(FactKey.BUILDER_OWNERS) or "?"
    reason = (f"builds without a daemon, {where}; RUN sandbox: {sandbox} (tried); snapshotter: "
              f"{facts.text(FactKey.BUILDER_SNAPSHOTTER) or '?'}; owners: {owners}; USER permission checks: "
              + ("yes" if checks else "no, RUN steps run as root here (files still get USER's owner)"))
    platforms = facts.value(FactKey.BUILDER_PLATFORMS)
    if isinstance(platforms, tuple) and platforms:
        able = [p.replace(": ", " (", 1) + ")" for p in platforms if not p.endswith(": cannot")]
        reason += "; platforms: " + (", ".join(able) or "none")
    return Verdict(ok=True, reason=reason, evidence=evidence)


def builtin_verdict(facts: Facts) -> Verdict:
    if facts.get(FactKey.BUILDER_SANDBOX) is not None:
        return _tried(facts)
    evidence = tuple(e for e in (facts.evidence(FactKey.UID), facts.evidence(FactKey.CAP_SYS_ADMIN),
                                 facts.evidence(FactKey.BUILDER_NAMESPACE), facts.evidence(FactKey.TOOL_RUNC),
                                 facts.evidence(FactKey.TOOL_PROOT)) if e)
    namespace = facts.text(FactKey.BUILDER_NAMESPACE)
    if facts.flag(FactKey.CAP_SYS_ADMIN) and facts.number(FactKey.UID) == 0:
        ladder = ["runc", "unshare"] if facts.text(FactKey.TOOL_RUNC) else ["unshare"]
        where = "as root"
    elif namespace not in (None, "none"):
        ladder = ["unshare"] + (["proot"] if facts.text(FactKey.TOOL_PROOT) else [])
        where = f"in a {namespace}-mapped user namespace"
    elif facts.text(FactKey.TOOL_PROOT):
        ladder = ["proot"]
        where = "with no namespace of its own"
    else:
        return Verdict(ok=False, reason="no RUN sandbox can work here: no user namespace can be made and proot is "
                       "not installed", evidence=evidence,
                       fix="install proot (works without privileges), or allow user namespaces, or run as root")
    return Verdict(ok=True, reason=f"builds without a daemon, {where}; RUN sandbox: the first of "
                   f"{', '.join(ladder)} that starts (see `anybuild doctor` for what was tried)", evidence=evidence)


def _emulate_in_namespace(request: BuildRequest, env: Mapping[str, str]) -> str | None:
    """Why this build should run in a user namespace of its own although it needs none for itself: a foreign
    platform's RUN steps need a binfmt_misc of the build's own (the host has no working handler for it, and
    the emulator is installed), or ``ANYBUILD_EMULATION=userns``; else None."""
    import tempfile

    from anybuild.builder.build import host_platform, parse_platforms
    from anybuild.builder.emulation import Route, emulator_path, foreign, probe_host, requested_route
    from anybuild.builder.host import NAMESPACE_ENV

    if (env.get(NAMESPACE_ENV) or "").strip().lower() == "none":
        return None
    host = host_platform()
    targets = [p for p in parse_platforms(request.platform, host) if foreign(host, p)]
    forced = requested_route(env)
    if not targets or forced in (Route.HOST, Route.ENTRYPOINT) or not _has_run(request):
        return None
    if forced is Route.USERNS:
        return f"{targets[0]} RUN steps (ANYBUILD_EMULATION=userns)"
    with tempfile.TemporaryDirectory(prefix="anybuild-emulation-") as scratch:
        for platform in targets:
            if emulator_path(platform, env) is not None and probe_host(platform, Path(scratch)) is not None:
                return f"{platform} RUN steps (the host has no binfmt_misc handler for it)"
    return None


def _has_run(request: BuildRequest) -> bool:
    """Whether the Dockerfile has a RUN at all (one that cannot be read is left to the build to report)."""
    from anybuild.dockerfile.convert import parse_instructions
    from anybuild.dockerfile.instructions import Run
    from anybuild.dockerfile.parser import read_dockerfile

    try:
        return any(isinstance(i, Run) for i in parse_instructions(read_dockerfile(request.dockerfile)))
    except (AnybuildError, OSError):
        return True


@dataclass(slots=True)
class _Once:
    """A value computed once, by the first build that needs it (images build in parallel)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    value: object = None

    def get(self, make: Callable[[], object]) -> object:
        with self.lock:
            if self.value is None:
                self.value = make()
            return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltinBackend:
    runner: Runner = field(default_factory=SubprocessRunner)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    sandbox: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    strict: bool = False
    cancel: Cancellation = field(default_factory=Cancellation)  # the process's: stops the build and its RUNs
    docker_media_types: bool = False  # `--format docker`: Docker's media types (a manifest list for an index)
    name: BackendName = BackendName.BUILTIN
    _namespace: _Once = field(default_factory=_Once)

    @classmethod
    def from_facts(cls, facts: Facts, *, runner: Runner, env: Mapping[str, str]) -> BuiltinBackend:
        del facts  # the namespace and sandbox are tried again at build time, where the overrides apply
        return cls(runner=runner, env=env)

    def available(self, facts: Facts) -> Verdict:
        return builtin_verdict(facts)

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        """Build *request*; a rebuild + push with nothing changed is answered from its record
        (:mod:`anybuild.backends.unchanged`) without loading the builder."""
        from anybuild.backends import unchanged

        settings = {f.name: getattr(self, f.name) for f in fields(self)  # every setting, present and future
                    if f.name not in ("runner", "env", "cancel", "_namespace")}
        inputs = unchanged.inputs_of(request, env=self.env, settings=settings)
        if inputs is not None and (record := unchanged.load(self.env, inputs.key)) is not None:
            answered = unchanged.answer(record, request, sink, env=self.env, cancel=self.cancel)
            if answered is not None:
                return answered
        result = self._build(request, sink)
        if inputs is not None:
            unchanged.save(self.env, inputs, result, request)
        return result

    def _build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        from anybuild.builder.build import BuildEnvironment, build_image
        from anybuild.builder.host import NAMESPACE_ENV, BuildNamespace, choose_namespace

        environment = BuildEnvironment(env=self.env, runner=self.runner, sandbox=self.sandbox,
                                       cache_from=self.cache_from, cache_to=self.cache_to, strict=self.strict,
                                       cancel=self.cancel, docker_media_types=self.docker_media_types)
        namespace = self._namespace.get(lambda: choose_namespace(runner=self.runner, env=self.env))
        assert isinstance(namespace, BuildNamespace)
        if namespace.mapping is None and (why := _emulate_in_namespace(request, self.env)) is not None:
            try:  # a binfmt_misc of the build's own needs a user namespace of its own (root: identity-mapped)
                namespace = choose_namespace(runner=self.runner, env={**self.env, NAMESPACE_ENV: "identity"})
            except AnybuildError as exc:
                sink.line(f"anybuild: builder: no user namespace for {why}: {exc.message}")
        if namespace.mapping is None:
            if namespace.evidence and "CAP_SYS_ADMIN:" not in namespace.reason:
                sink.line(f"anybuild: builder: {namespace.reason} ({'; '.join(namespace.evidence)})")
            return build_image(request, sink, environment)
        from anybuild.builder.worker import build_in_namespace

        sink.line(f"anybuild: builder: in {namespace.reason}")
        return build_in_namespace(request, sink, environment, namespace)
