"""The built-in daemonless builder as a backend (see :mod:`anybuild.builder`).

It can build wherever a RUN sandbox can work: as root (runc, unshare + chroot,
or chroot), with unprivileged user namespaces (rootless runc or unshare), or
with proot alone. The verdict names the sandbox the facts allow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, Verdict
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.sandbox import SandboxFacts, choose_sandbox
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import EnvironmentUnsupported
from anybuild.process import Runner, SubprocessRunner

__all__ = ["BuiltinBackend", "builtin_verdict", "sandbox_facts"]


def sandbox_facts(facts: Facts) -> SandboxFacts:
    """The sandbox facts, read from the environment facts (tools on PATH, uid, user namespaces)."""
    return SandboxFacts(
        root=facts.number(FactKey.UID) == 0,
        runc="runc" if facts.text(FactKey.TOOL_RUNC) else None,
        unshare="unshare",
        proot="proot" if facts.text(FactKey.TOOL_PROOT) else None,
        userns=facts.flag(FactKey.USERNS_WORKS),
    )


def builtin_verdict(facts: Facts) -> Verdict:
    sandbox = sandbox_facts(facts)
    evidence = tuple(e for e in (facts.evidence(FactKey.UID), facts.evidence(FactKey.USERNS_WORKS),
                                 facts.evidence(FactKey.TOOL_RUNC), facts.evidence(FactKey.TOOL_PROOT)) if e)
    try:
        choice = choose_sandbox(sandbox)
    except EnvironmentUnsupported as exc:
        return Verdict(ok=False, reason=exc.message, evidence=evidence, fix=exc.hint)
    return Verdict(ok=True, reason=f"builds without a daemon; RUN sandbox: {choice.kind} ({choice.reason})",
                   evidence=evidence)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltinBackend:
    runner: Runner = field(default_factory=SubprocessRunner)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    sandbox: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    name: BackendName = BackendName.BUILTIN

    @classmethod
    def from_facts(cls, facts: Facts, *, runner: Runner, env: Mapping[str, str]) -> BuiltinBackend:
        del facts  # the sandbox is probed again at build time, where the override applies
        return cls(runner=runner, env=env)

    def available(self, facts: Facts) -> Verdict:
        return builtin_verdict(facts)

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        environment = BuildEnvironment(env=self.env, runner=self.runner, sandbox=self.sandbox,
                                       cache_from=self.cache_from, cache_to=self.cache_to)
        return build_image(request, sink, environment)
