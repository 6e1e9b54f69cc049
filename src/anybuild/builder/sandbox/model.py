"""What a RUN sandbox is asked to do, what it reports, and how one is chosen.

The kinds, strongest isolation first:

========  ===============================================================
runc      an OCI runtime with a generated runtime spec (rootless or root)
unshare   user (when not root), mount, pid, ipc, uts (and net) namespaces + chroot
chroot    chroot as root, mounts made in the host namespace and undone after
proot     ptrace-based emulation of chroot and bind mounts; no privileges
========  ===============================================================

:func:`choose_sandbox` picks the first kind the probed :class:`SandboxFacts`
allow, unless an override (``ANYBUILD_SANDBOX`` or a builder option) names one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from anybuild.errors import BackendError, EnvironmentUnsupported

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
    "probe_sandbox_facts",
]

SANDBOX_ENV = "ANYBUILD_SANDBOX"


class SandboxKind(StrEnum):
    RUNC = "runc"
    UNSHARE = "unshare"
    CHROOT = "chroot"
    PROOT = "proot"


class NetworkMode(StrEnum):
    NONE = "none"
    HOST = "host"
    DEFAULT = "default"  # no private bridge without CNI: behaves as host


class MountKind(StrEnum):
    BIND = "bind"
    TMPFS = "tmpfs"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """A mount for one RUN (``--mount=type=bind|cache|secret|tmpfs``, resolv.conf, hosts)."""

    kind: MountKind
    target: str  # absolute path inside the rootfs
    source: Path | None = None  # host path, for binds
    readonly: bool = False

    @property
    def is_dir(self) -> bool:
        return self.kind is MountKind.TMPFS or (self.source is not None and self.source.is_dir())


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    """One process to run in a rootfs."""

    rootfs: Path
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()  # "KEY=value"
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    network: NetworkMode = NetworkMode.DEFAULT
    mounts: tuple[Mount, ...] = ()
    hostname: str = "buildkitsandbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    exit_code: int
    tail: tuple[str, ...]  # the last lines of output
    sandbox: SandboxKind
    seconds: float


class Sandbox(Protocol):
    @property
    def kind(self) -> SandboxKind: ...

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        """Run *spec*; the rootfs is left as the process left it, with no mount or stub behind."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxFacts:
    """What the machine allows, probed once."""

    root: bool
    runc: str | None = None
    unshare: str | None = None
    proot: str | None = None
    userns: bool = False  # unprivileged user namespaces work

    def to_evidence(self) -> tuple[str, ...]:
        return (
            f"euid 0: {self.root}",
            f"runc: {self.runc or 'not found'}",
            f"unshare: {self.unshare or 'not found'}",
            f"proot: {self.proot or 'not found'}",
            f"user namespaces: {self.userns}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxChoice:
    kind: SandboxKind
    reason: str


def probe_sandbox_facts(
    *,
    which: Callable[[str], str | None] = shutil.which,
    euid: int | None = None,
    userns_works: Callable[[], bool] | None = None,
) -> SandboxFacts:
    """Facts from PATH and privileges; *userns_works* is asked only when not root."""
    root = (os.geteuid() if euid is None else euid) == 0
    userns = False
    if not root and userns_works is not None:
        userns = userns_works()
    return SandboxFacts(root=root, runc=which("runc"), unshare=which("unshare"), proot=which("proot"),
                        userns=userns)


def _allowed(kind: SandboxKind, facts: SandboxFacts) -> str | None:
    """Why *kind* works here, or ``None``."""
    match kind:
        case SandboxKind.RUNC:
            if facts.runc and facts.root:
                return f"runc at {facts.runc}, as root"
            if facts.runc and facts.userns:
                return f"runc at {facts.runc}, rootless in a user namespace"
        case SandboxKind.UNSHARE:
            if facts.unshare and facts.root:
                return "unshare of mount, pid, ipc and uts namespaces as root, then chroot"
            if facts.unshare and facts.userns:
                return "unshare of user, mount and pid namespaces, then chroot"
        case SandboxKind.CHROOT:
            if facts.root:
                return "chroot as root (no namespaces)"
        case SandboxKind.PROOT:
            if facts.proot:
                return f"proot at {facts.proot} (ptrace emulation, no privileges needed)"
    return None


def choose_sandbox(facts: SandboxFacts, override: str | None = None,
                   env: Mapping[str, str] | None = None) -> SandboxChoice:
    """The strongest sandbox the facts allow, or the one an override names."""
    wanted = override or (env or {}).get(SANDBOX_ENV) or None
    if wanted:
        try:
            kind = SandboxKind(wanted.strip().lower())
        except ValueError:
            raise BackendError(
                f"unknown sandbox {wanted!r}",
                backend="builtin",
                environmental=False,
                hint=f"set {SANDBOX_ENV} to one of: {', '.join(k.value for k in SandboxKind)}",
            ) from None
        reason = _allowed(kind, facts)
        if reason is None:
            raise BackendError(
                f"sandbox {kind} was requested but cannot work here ({'; '.join(facts.to_evidence())})",
                backend="builtin",
                hint=f"unset {SANDBOX_ENV} to let anybuild choose, or install what {kind} needs",
            )
        return SandboxChoice(kind=kind, reason=f"{reason} (requested)")
    for kind in SandboxKind:
        reason = _allowed(kind, facts)
        if reason is not None:
            return SandboxChoice(kind=kind, reason=reason)
    raise EnvironmentUnsupported(
        "no RUN sandbox can work here: " + "; ".join(facts.to_evidence()),
        hint="install proot (works without privileges), or run as root, or enable user namespaces",
    )

