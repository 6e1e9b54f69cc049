"""RUN sandboxes: the strongest isolation the machine allows, chosen from facts.

``choose_sandbox(probe_sandbox_facts(), override)`` names the kind and the
reason; :func:`make_sandbox` builds it. Every sandbox runs one
:class:`RunSpec` and leaves the rootfs exactly as the command left it: no
mount, stub file, resolv.conf or secret behind.
"""

from __future__ import annotations

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
from anybuild.builder.sandbox.namespace import ChrootSandbox, UnshareSandbox
from anybuild.builder.sandbox.proot import ProotSandbox
from anybuild.builder.sandbox.runc import RuncSandbox
from anybuild.process import Runner, SubprocessRunner

__all__ = [
    "SANDBOX_ENV",
    "ChrootSandbox",
    "Mount",
    "MountKind",
    "NetworkMode",
    "ProotSandbox",
    "RunOutcome",
    "RunSpec",
    "RuncSandbox",
    "Sandbox",
    "SandboxChoice",
    "SandboxFacts",
    "SandboxKind",
    "UnshareSandbox",
    "choose_sandbox",
    "make_sandbox",
    "probe_sandbox_facts",
]


def make_sandbox(kind: SandboxKind, *, work: Path, facts: SandboxFacts, runner: Runner | None = None) -> Sandbox:
    """The sandbox of *kind*, using the tool paths in *facts*."""
    run = runner or SubprocessRunner()
    match kind:
        case SandboxKind.RUNC:
            return RuncSandbox(work=work, runtime=facts.runc or "runc", runner=run, root=facts.root)
        case SandboxKind.UNSHARE:
            return UnshareSandbox(work=work, unshare=facts.unshare or "unshare", runner=run, root=facts.root)
        case SandboxKind.CHROOT:
            return ChrootSandbox(work=work, runner=run, root=facts.root)
        case SandboxKind.PROOT:
            return ProotSandbox(work=work, proot=facts.proot or "proot", runner=run)
