"""RUN sandboxes: the strongest isolation the machine allows, chosen from facts, falling back.

``sandbox_ladder(probe_sandbox_facts(), override)`` lists the kinds that may work
here, strongest first; :func:`make_sandbox` makes a :class:`LadderSandbox` that
runs each RUN with the first of them that starts, and moves down the ladder (saying
so) when one cannot start here. A sandbox's code loads at the first RUN (a rebuild
whose RUN steps all come from the cache never loads it). Every sandbox runs one
:class:`RunSpec` and leaves the rootfs exactly as the command left it: no mount,
stub file, resolv.conf or secret behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from anybuild.builder.sandbox.model import (
    SANDBOX_ENV,
    USERNS_ENV,
    Mount,
    MountKind,
    MountPointError,
    NetworkMode,
    RunOutcome,
    RunSpec,
    Sandbox,
    SandboxChoice,
    SandboxFacts,
    SandboxKind,
    SandboxUnavailable,
    choose_sandbox,
    probe_sandbox_facts,
    sandbox_ladder,
)
from anybuild.errors import BackendError
from anybuild.process import Runner, SubprocessRunner

if TYPE_CHECKING:
    from anybuild.builder.ledger import Ledger

__all__ = [
    "SANDBOX_ENV",
    "USERNS_ENV",
    "LadderSandbox",
    "Mount",
    "MountKind",
    "MountPointError",
    "NetworkMode",
    "RunOutcome",
    "RunSpec",
    "Sandbox",
    "SandboxChoice",
    "SandboxFacts",
    "SandboxKind",
    "SandboxUnavailable",
    "choose_sandbox",
    "make_sandbox",
    "probe_sandbox_facts",
    "sandbox_ladder",
    "sandbox_of",
]


def make_sandbox(ladder: list[SandboxChoice], *, work: Path, facts: SandboxFacts, runner: Runner | None = None,
                 on_note: Callable[[str], None] = lambda _line: None, strict: bool = False,
                 ledger: Ledger | None = None) -> LadderSandbox:
    """The sandbox for a build: the first of *ladder* that starts here, made when it first runs.

    With the build's *ledger*, what a RUN starts (a runc container, the command's process group) is
    recorded there, so that the next build ends it if this one is killed outright."""
    run = runner or SubprocessRunner()
    return LadderSandbox(ladder=list(ladder), on_note=on_note, facts=facts,
                         make=lambda kind: sandbox_of(kind, work=work, facts=facts, runner=run, strict=strict,
                                                      ledger=ledger))


@dataclass(slots=True, kw_only=True)
class LadderSandbox:
    """Runs each RUN with the current rung; one that cannot start here hands over to the next."""

    ladder: list[SandboxChoice]
    make: Callable[[SandboxKind], Sandbox]
    on_note: Callable[[str], None]
    facts: SandboxFacts | None = None
    made: dict[SandboxKind, Sandbox] = field(default_factory=dict)
    index: int = 0
    ran: SandboxKind | None = None  # the kind that ran the last RUN (None: no RUN ran)
    failures: list[str] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def kind(self) -> SandboxKind:
        return self.ladder[self.index].kind

    @property
    def choice(self) -> SandboxChoice:
        return self.ladder[self.index]

    def _emulating(self, spec: RunSpec) -> SandboxKind | None:
        """proot for a RUN whose USER the pod has no id for, where the ladder has it: the command then
        sees its USER's ids (``id``, a tool that refuses root), as under Docker, where a namespaces
        sandbox could only run it as root."""
        if self.facts is None or (spec.uid, spec.gid) == (0, 0) or self.kind is SandboxKind.PROOT:
            return None
        if not any(c.kind is SandboxKind.PROOT for c in self.ladder[self.index:]):
            return None
        from anybuild.builder.sandbox.namespace import ids_exist

        return None if ids_exist(self.facts.ownership, spec) else SandboxKind.PROOT

    def _sandbox(self, kind: SandboxKind) -> Sandbox:
        with self._lock:
            if kind not in self.made:
                self.made[kind] = self.make(kind)
            return self.made[kind]

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        """Run *spec*; RUN steps of several platforms may call this at once (the ladder moves on once)."""
        emulating = self._emulating(spec)
        if emulating is not None:
            outcome = self._sandbox(emulating).run(spec, on_line)
            self.ran = emulating
            return outcome
        while True:
            with self._lock:
                tried = self.index
                kind = self.kind
            try:
                outcome = self._sandbox(kind).run(spec, on_line)
            except SandboxUnavailable as exc:
                with self._lock:
                    if self.index != tried:
                        continue  # another platform's RUN found it out first and moved on: try the next rung
                    self.failures.append(f"{kind}: {exc.message}")
                    if self.index + 1 >= len(self.ladder):
                        raise BackendError(
                            "no RUN sandbox could start here: " + "; ".join(self.failures), backend="builtin",
                            environmental=True,
                            hint="run `anybuild doctor` for what this environment allows, "
                                 "or build with another backend (--backend)",
                        ) from exc
                    self.index += 1
                    self.on_note(f"anybuild: sandbox {kind} cannot start here ({exc.message}); "
                                 f"using {self.kind} ({self.choice.reason})")
                continue
            self.ran = kind
            return outcome


def sandbox_of(kind: SandboxKind, *, work: Path, facts: SandboxFacts, runner: Runner, strict: bool = False,
               ledger: Ledger | None = None) -> Sandbox:
    """The one sandbox of *kind* (its module loads now)."""
    match kind:
        case SandboxKind.RUNC:
            from anybuild.builder.sandbox.runc import RuncSandbox  # loaded for a RUN only

            return RuncSandbox(work=work, runtime=facts.runc or "runc", runner=runner, root=facts.root, ledger=ledger)
        case SandboxKind.UNSHARE:
            from anybuild.builder.sandbox.namespace import UnshareSandbox

            return UnshareSandbox(work=work, runner=runner, ownership=facts.ownership, strict=strict, ledger=ledger)
        case SandboxKind.CHROOT:
            from anybuild.builder.sandbox.namespace import ChrootSandbox

            return ChrootSandbox(work=work, runner=runner, ownership=facts.ownership, strict=strict, ledger=ledger)
        case SandboxKind.PROOT:
            from anybuild.builder.sandbox.proot import ProotSandbox

            return ProotSandbox(work=work, proot=facts.proot or "proot", runner=runner, ownership=facts.ownership,
                                strict=strict, ledger=ledger)
