"""Where the built-in builder runs: in this process, or in a user namespace of its own.

A builder with CAP_SYS_ADMIN (root on a VM, a privileged container) mounts and makes
namespaces as it is. Without it — every ordinary pod, root or not — it enters a user
namespace of its own (:mod:`anybuild.builder.userns`) where it may, tried in this
order, each by a real attempt (``userns.py MAP --trial``):

- ``identity``: root with CAP_SETUID maps every id to itself (a root pod);
- ``subuid``: the user's /etc/subuid and /etc/subgid ranges through ``newuidmap``;
- ``single``: the user's own id as root (needs nothing but user namespaces).

Where no user namespace can be made (a seccomp profile such as RuntimeDefault refuses
``unshare``, or ``user.max_user_namespaces`` is 0) the builder runs as it is, with the
sandboxes that need no privilege (proot). ``ANYBUILD_USERNS=none|identity|subuid|single``
overrides the choice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from anybuild.builder.userns import FAILURE_PREFIX, MAPS, subid_range, trial_argv
from anybuild.errors import BackendError, UsageError
from anybuild.process import Runner, SubprocessRunner

__all__ = ["NAMESPACE_ENV", "BuildNamespace", "choose_namespace"]

NAMESPACE_ENV = "ANYBUILD_USERNS"
_CAP_SETUID = 7
_CAP_SYS_ADMIN = 21


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildNamespace:
    """The user namespace the builder uses (``mapping``), or none, and why."""

    mapping: str | None
    reason: str
    evidence: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.mapping}-mapped user namespace" if self.mapping else "no user namespace of its own"


def _caps(proc: Path) -> int:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def choose_namespace(*, runner: Runner | None = None, env: Mapping[str, str] | None = None,
                     proc: Path = Path("/proc/self"), python: str = sys.executable,
                     euid: int | None = None, etc: Path = Path("/etc")) -> BuildNamespace:
    """The namespace the builder will use here, from real attempts (see the module's doc)."""
    run = runner or SubprocessRunner()
    environment = os.environ if env is None else env
    wanted = (environment.get(NAMESPACE_ENV) or "").strip().lower()
    if wanted and wanted not in (*MAPS, "none"):
        raise UsageError(f"{NAMESPACE_ENV}={wanted!r} is not a user namespace map",
                         hint=f"set it to one of: none, {', '.join(MAPS)} (or unset it)")
    caps = _caps(proc)
    uid = os.geteuid() if euid is None else euid
    if wanted == "none" or (not wanted and caps >> _CAP_SYS_ADMIN & 1):
        why = (f"requested by {NAMESPACE_ENV}=none" if wanted else
               "CAP_SYS_ADMIN: mounts and namespaces need no user namespace of its own")
        return BuildNamespace(mapping=None, reason=why, evidence=(f"{proc}/status: CapEff {caps:016x}",))
    if wanted:
        candidates = [wanted]
    else:
        candidates = []
        if uid == 0 and caps >> _CAP_SETUID & 1:
            candidates.append("identity")
        if subid_range(etc / "subuid", uid) is not None:
            candidates.append("subuid")
        candidates.append("single")
    evidence = [f"{proc}/status: CapEff {caps:016x} (no CAP_SYS_ADMIN)"] if not wanted else []
    for mapping in candidates:
        try:
            done = run.run(trial_argv(python, mapping), timeout=30)
        except BackendError as exc:
            evidence.append(f"{mapping} map: {exc.message}")
            continue
        if done.ok:
            evidence.append(f"{mapping} map: entered and left a user namespace")
            return BuildNamespace(mapping=mapping, reason=f"a {mapping}-mapped user namespace of its own",
                                  evidence=tuple(evidence))
        said = next((line.removeprefix(FAILURE_PREFIX).strip() for line in done.output.splitlines()
                     if line.startswith(FAILURE_PREFIX)), done.output.strip()[-300:] or f"exit {done.returncode}")
        evidence.append(f"{mapping} map: {said}")
    if wanted:
        raise BackendError(f"{NAMESPACE_ENV}={wanted} was requested but no such user namespace can be made here: "
                           f"{evidence[-1]}", backend="builtin", hint=f"unset {NAMESPACE_ENV} to let anybuild choose")
    return BuildNamespace(mapping=None, reason="no user namespace can be made here", evidence=tuple(evidence))
