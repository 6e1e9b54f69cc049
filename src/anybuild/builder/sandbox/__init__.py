"""RUN sandboxes: the strongest isolation the machine allows, chosen from facts.

``choose_sandbox(probe_sandbox_facts(), override)`` names the kind and the
reason; :func:`make_sandbox` builds it, on its first RUN (a rebuild whose RUN
steps all come from the cache never loads a sandbox's code). Every sandbox runs one
:class:`RunSpec` and leaves the rootfs exactly as the command left it: no
mount, stub file, resolv.conf or secret behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anybuild.builder.sandbox.model import (
    SANDBOX_ENV,
    Mount,
    MountKind,
    NetworkMode,
    RunOutcome,
    RunSpec,
    Sandbox,
    SandboxChoice,
    SandboxFacts,
    SandboxKind,
    choose_sandbox,
    probe_sandbox_facts,
)
from anybuild.process import Runner, SubprocessRunner

__all__ = [
    "SANDBOX_ENV",
    "Mount",
    "MountKind",
    "NetworkMode",
    "RunOutcome",
    "RunSpec",
    "Sandbox",
    "SandboxChoice",
    "SandboxFacts",
    "SandboxKind",
    "choose_sandbox",
    "make_sandbox",
    "probe_sandbox_facts",
]


def make_sandbox(kind: SandboxKind, *, work: Path, facts: SandboxFacts, runner: Runner | None = None) -> Sandbox:
    """The sandbox of *kind*, using the tool paths in *facts*; made when it first runs."""
    return _Deferred(kind=kind, make=lambda: _make(kind, work=work, facts=facts, runner=runner or SubprocessRunner()))


@dataclass(slots=True, kw_only=True)
class _Deferred:
    kind: SandboxKind
    make: Callable[[], Sandbox]
    made: Sandbox | None = None

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        if self.made is None:
            self.made = self.make()
        return self.made.run(spec, on_line)


def _make(kind: SandboxKind, *, work: Path, facts: SandboxFacts, runner: Runner) -> Sandbox:
    match kind:
        case SandboxKind.RUNC:
            from anybuild.builder.sandbox.runc import RuncSandbox  # loaded for a RUN only

            return RuncSandbox(work=work, runtime=facts.runc or "runc", runner=runner, root=facts.root)
        case SandboxKind.UNSHARE:
            from anybuild.builder.sandbox.namespace import UnshareSandbox

            return UnshareSandbox(work=work, unshare=facts.unshare or "unshare", runner=runner, root=facts.root)
        case SandboxKind.CHROOT:
            from anybuild.builder.sandbox.namespace import ChrootSandbox

            return ChrootSandbox(work=work, runner=runner, root=facts.root)
        case SandboxKind.PROOT:
            from anybuild.builder.sandbox.proot import ProotSandbox

            return ProotSandbox(work=work, proot=facts.proot or "proot", runner=runner)
