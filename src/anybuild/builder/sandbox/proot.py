"""The ``proot`` sandbox: chroot and bind mounts emulated with ptrace; no privileges needed.

The weakest isolation (same pid, network and mount namespaces as the caller; a
process may escape ptrace emulation), used where nothing else is permitted: a pod
whose seccomp profile refuses namespaces (RuntimeDefault). It runs through the
sandbox init (:mod:`anybuild.builder.sandbox.init`, ``proot`` mode). ``proot``
emulates the RUN's ids (``-0`` for root, ``-i uid:gid``) over the builder's own:
the command's files are the builder's, and belong to USER in the image
(:class:`~anybuild.builder.sandbox.model.RunOutcome` ``ran_as``); where the builder
cannot give owners for real, its ``chown`` calls are recorded. The ids cannot be
switched for real before ``proot`` starts: ``proot`` must read the root filesystem,
which lives in the builder's own directories. So a USER's permission checks are
root's (or the builder's user's) here, and ``doctor`` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from anybuild.builder.sandbox.model import RunSpec, SandboxKind, SandboxUnavailable
from anybuild.builder.sandbox.namespace import InitSandbox
from anybuild.builder.sandbox.prepared import Prepared

__all__ = ["ProotSandbox", "proot_argv"]

# what proot says of each leftover the init kills when the command has ended (see the init's _wait)
_LEFTOVER_KILLED = re.compile(r"proot info: pid \d+: terminated with signal 9")
# proot's own words when it cannot trace at all (ptrace or its seccomp filter refused, no tracee)
_STARTUP = re.compile(r"ptrace|seccomp|PTRACE_|tracee|can't create|execve\(\S*loader", re.IGNORECASE)


def proot_argv(proot: str, spec: RunSpec, ready: Prepared, *, real_ids: bool) -> list[str]:
    argv = [proot, "-r", str(ready.root.host_path(".")), "-w", spec.cwd]
    for mount in ready.mounts:
        match mount.kind:
            case "proc" | "sys":
                argv += ["-b", f"/{mount.kind}:{mount.target}"]
            case "dev":
                argv += ["-b", f"/dev:{mount.target}"]
            case "tmpfs":
                tmp = ready.workdir / ("tmpfs" + mount.target.replace("/", "_"))
                tmp.mkdir()
                argv += ["-b", f"{tmp}:{mount.target}"]
            case _:
                argv += ["-b", f"{mount.source}:{mount.target}"]
    if not real_ids:
        argv += ["-0"] if spec.uid == 0 else ["-i", f"{spec.uid}:{spec.gid}"]
    return [*argv, *spec.argv]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProotSandbox(InitSandbox):
    proot: str = "proot"
    kind: SandboxKind = SandboxKind.PROOT
    mode: str = "proot"

    def _real_ids(self, spec: RunSpec) -> bool:
        return False  # emulated by proot (see the module's doc)

    def _shown(self, line: str) -> bool:
        return _LEFTOVER_KILLED.fullmatch(line) is None

    def _check(self, code: int, tail: tuple[str, ...]) -> None:
        if code == 0:
            return
        for line in tail:
            said = line.removeprefix("proot error:").strip()
            if line.startswith("proot error:") and not said.endswith("not found") and _STARTUP.search(said):
                raise SandboxUnavailable(f"proot cannot trace the RUN here: {said}", kind=self.kind)

    def _exit_code(self, code: int, tail: tuple[str, ...]) -> int:
        if code == 1 and any(line.startswith("proot error:") and "not found" in line for line in tail):
            return 127  # the command does not exist, as a shell would report it
        return code

    def _mode_fields(self, spec: RunSpec, ready: Prepared, *, real: bool) -> dict[str, Any]:
        # No PROOT_TMP_DIR: proot 5.1 keeps its loader in $TMPDIR or /tmp whatever it says, and hands its
        # whole environment to the command, so the variable only showed in the RUN's `env`. The init
        # removes the loader of a proot that was killed (see its _remove_proot_files).
        return {"proot_argv": proot_argv(self.proot, spec, ready, real_ids=real)}
