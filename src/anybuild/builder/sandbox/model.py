"""What a RUN sandbox is asked to do, what it reports, and how one is chosen.

The kinds, strongest isolation first:

========  ===============================================================
runc      an OCI runtime with a generated runtime spec, as root
unshare   mount, pid, ipc, uts (and net) namespaces + chroot, as root or as
          root in the build's own user namespace (anybuild.builder.userns)
chroot    chroot as root, mounts made in the host namespace and undone after
proot     ptrace-based emulation of chroot and bind mounts; no privileges
========  ===============================================================

:func:`sandbox_ladder` lists the kinds the probed :class:`SandboxFacts` allow,
strongest first, unless an override (``ANYBUILD_SANDBOX`` or a builder option)
names one; the builder starts with the first and moves down the ladder when one
cannot start here (:class:`SandboxUnavailable`: nothing of the RUN ran).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from anybuild.builder.owners import Ownership
from anybuild.errors import BackendError, EnvironmentUnsupported, UsageError

__all__ = [
    "SANDBOX_ENV",
    "USERNS_ENV",
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
    "probe_sandbox_facts",
    "sandbox_ladder",
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
    size: int | None = None  # bytes, for tmpfs (``--mount=type=tmpfs,size=``)

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
    # The ids the command really ran with, when they were not its USER's: the pod has no such
    # id, so files it made belong to USER in the image (anybuild.builder.owners records them).
    ran_as: tuple[int, int] | None = None
    recorded: tuple[tuple[str, int, int], ...] = ()  # symlinks chowned by the command: (path, uid, gid)
    notes: tuple[str, ...] = ()  # what the sandbox could not give exactly (once per build is enough)


class MountPointError(UsageError):
    """A RUN's mount cannot be made because of what the Dockerfile asks (a target under a file, a source
    that cannot be bound): the user's mistake, never the environment's (no other sandbox is tried)."""


class SandboxUnavailable(BackendError):
    """A sandbox could not be made here (namespaces, mounts, ptrace refused): nothing of the RUN ran.

    Environmental: the builder tries the next sandbox the facts allow.
    """

    def __init__(self, message: str, *, kind: SandboxKind, hint: str = "") -> None:
        super().__init__(message, backend="builtin", environmental=True,
                         hint=hint or f"see `anybuild doctor`; {SANDBOX_ENV}=... forces a sandbox")
        self.sandbox = kind


class Sandbox(Protocol):
    @property
    def kind(self) -> SandboxKind: ...

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        """Run *spec*; the rootfs is left as the process left it, with no mount or stub behind."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxFacts:
    """What this process may do, read once: the ladder of sandboxes follows from it."""

    root: bool  # euid 0 here (in the build's user namespace, when it has one)
    mount: bool = False  # CAP_SYS_ADMIN here: namespaces can be made and mounts done
    chroot: bool = False  # CAP_SYS_CHROOT here
    in_userns: str | None = None  # the build's own user namespace and its map (anybuild.builder.userns)
    runc: str | None = None
    proot: str | None = None
    ownership: Ownership = field(default_factory=Ownership.real_root)

    def to_evidence(self) -> tuple[str, ...]:
        return (
            f"euid 0: {self.root}",
            f"CAP_SYS_ADMIN: {self.mount}",
            f"CAP_SYS_CHROOT: {self.chroot}",
            f"user namespace: {self.in_userns or 'none of its own'}",
            f"owners: {self.ownership.describe()}",
            f"runc: {self.runc or 'not found'}",
            f"proot: {self.proot or 'not found'}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxChoice:
    kind: SandboxKind
    reason: str


_CAP_SYS_CHROOT = 18
_CAP_SYS_ADMIN = 21
USERNS_ENV = "ANYBUILD_IN_USERNS"  # set by the builder for itself inside its own user namespace (the map)


def _caps(proc: Path) -> int:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def probe_sandbox_facts(
    *,
    which: Callable[[str], str | None] = shutil.which,
    proc: Path = Path("/proc/self"),
    env: Mapping[str, str] | None = None,
) -> SandboxFacts:
    """Facts from this process's privileges (``/proc/self``) and the tools on PATH."""
    caps = _caps(proc)
    ownership = Ownership.for_current_process(proc)
    return SandboxFacts(root=ownership.own[0] == 0, mount=bool(caps >> _CAP_SYS_ADMIN & 1),
                        chroot=bool(caps >> _CAP_SYS_CHROOT & 1),
                        in_userns=(os.environ if env is None else env).get(USERNS_ENV) or None,
                        runc=which("runc"), proot=which("proot"), ownership=ownership)


def _allowed(kind: SandboxKind, facts: SandboxFacts) -> str | None:
    """Why *kind* may work here, or ``None``."""
    match kind:
        case SandboxKind.RUNC:
            # In a user namespace of its own the builder's namespaces sandbox does what rootless runc
            # would, and also where a pod's masked /proc refuses runc a new procfs.
            if facts.runc and facts.root and facts.mount and not facts.in_userns:
                return f"runc at {facts.runc}, as root"
        case SandboxKind.UNSHARE:
            if facts.mount and facts.in_userns:
                return f"mount, pid, ipc and uts namespaces in the build's user namespace ({facts.in_userns} map)"
            if facts.mount:
                return "mount, pid, ipc and uts namespaces as root, then chroot"
        case SandboxKind.CHROOT:
            # in the build's own user namespace it would add nothing to its namespaces sandbox
            if facts.root and facts.mount and facts.chroot and not facts.in_userns:
                return "chroot as root (no namespaces)"
        case SandboxKind.PROOT:
            if facts.proot:
                return f"proot at {facts.proot} (ptrace emulation of chroot, mounts and ids; no privileges needed)"
    return None


def sandbox_ladder(facts: SandboxFacts, override: str | None = None,
                   env: Mapping[str, str] | None = None) -> list[SandboxChoice]:
    """The sandboxes to try, strongest first (one, when an override names it)."""
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
        return [SandboxChoice(kind=kind, reason=f"{reason} (requested)")]
    ladder = [SandboxChoice(kind=kind, reason=reason) for kind in SandboxKind
              if (reason := _allowed(kind, facts)) is not None]
    if not ladder:
        raise EnvironmentUnsupported(
            "no RUN sandbox can work here: " + "; ".join(facts.to_evidence()),
            hint="install proot (works without privileges), or run as root, or enable user namespaces",
        )
    return ladder


def choose_sandbox(facts: SandboxFacts, override: str | None = None,
                   env: Mapping[str, str] | None = None) -> SandboxChoice:
    """The strongest sandbox the facts allow (the first of :func:`sandbox_ladder`)."""
    return sandbox_ladder(facts, override, env)[0]
