"""The sandboxes run by anybuild's own init (:mod:`anybuild.builder.sandbox.init`).

- :class:`UnshareSandbox`: new mount, pid, ipc and uts namespaces (and net for
  ``--network=none``), then chroot; as root, or as root in the build's own user
  namespace. The mounts live and die with the namespaces.
- :class:`ChrootSandbox`: no namespaces; the init mounts where it is, runs the
  command and unmounts when it ends. The network cannot be isolated.
- :class:`ProotSandbox` (:mod:`anybuild.builder.sandbox.proot`) runs through the
  same init, which starts ``proot`` instead of chrooting.

Where the pod has no id for the RUN's USER (one uid granted), the command runs as
root there and its files and ``chown`` calls are recorded for USER
(:class:`~anybuild.builder.sandbox.model.RunOutcome` ``ran_as``); where the sandbox
cannot be made at all the init says so before anything of the command ran, and
this becomes :class:`~anybuild.builder.sandbox.model.SandboxUnavailable`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anybuild.builder.owners import Ownership
from anybuild.builder.sandbox.init import SETUP_FAILED
from anybuild.builder.sandbox.model import (
    MountPointError,
    NetworkMode,
    RunOutcome,
    RunSpec,
    SandboxKind,
    SandboxUnavailable,
)
from anybuild.builder.sandbox.prepared import DEFAULT_HOST_FILES, Prepared, prepared
from anybuild.errors import EnvironmentUnsupported
from anybuild.process import Runner, SubprocessRunner

if TYPE_CHECKING:
    from anybuild.builder.ledger import Ledger

__all__ = ["INIT_SCRIPT", "ChrootSandbox", "InitSandbox", "UnshareSandbox", "ids_exist"]

INIT_SCRIPT = Path(__file__).with_name("init.py")


def ids_exist(ownership: Ownership, spec: RunSpec) -> bool:
    """Whether the RUN's user, group and groups exist here, so that it can run as them for real."""
    if ownership.full:
        return True
    wanted = (spec.uid, spec.gid, *spec.groups)
    return ownership.chown and spec.uid in ownership.uids and all(g in ownership.gids for g in wanted[1:])


def _host_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}


@dataclass(frozen=True, slots=True, kw_only=True)
class InitSandbox:
    """What the three init-run sandboxes share: the spec document, the run, the result."""

    work: Path
    runner: Runner = field(default_factory=SubprocessRunner)
    host_files: dict[str, Path] = field(default_factory=lambda: dict(DEFAULT_HOST_FILES))
    python: str = sys.executable
    ownership: Ownership = field(default_factory=Ownership.real_root)
    kind: SandboxKind = SandboxKind.UNSHARE
    mode: str = "namespaces"
    strict: bool = False  # refuse a RUN whose USER cannot be had here instead of recording it
    ledger: Ledger | None = None  # the build's record of what it starts (anybuild.builder.ledger)

    def _mode_fields(self, spec: RunSpec, ready: Prepared, *, real: bool) -> dict[str, Any]:
        return {}

    def _real_ids(self, spec: RunSpec) -> bool:
        return ids_exist(self.ownership, spec)

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        started = time.monotonic()
        real = self._real_ids(spec)
        record = not self.ownership.full
        if self.strict and not real and (spec.uid, spec.gid) != (0, 0):
            raise EnvironmentUnsupported(
                f"--strict: a RUN as uid {spec.uid} cannot run as that user here ({self.kind} sandbox; "
                f"owners: {self.ownership.describe()}), so its permission checks would be root's",
                hint="build without --strict (files still get the USER's owner), or where the pod grants a "
                     "subuid range (newuidmap) or root")
        with prepared(spec, runner=self.runner, work=self.work, on_line=on_line,
                      host_files=self.host_files) as ready:
            result_file = ready.workdir / "result.json"
            document: dict[str, Any] = {
                "mode": self.mode,
                "rootfs": str(ready.root.host_path(".")),
                "mounts": [m.to_dict() for m in ready.mounts],
                "argv": list(spec.argv),
                "env": list(spec.env),
                "cwd": spec.cwd,
                "uid": spec.uid, "gid": spec.gid, "groups": list(spec.groups),
                "ids": "real" if real else "root",
                "hostname": spec.hostname if self.mode == "namespaces" else "",
                "loopback": self.mode == "namespaces" and spec.network is NetworkMode.NONE,
                "record": record,
                "no_new_privs": not self.ownership.chown,  # without CAP_SYS_ADMIN here a filter needs it
                "logical": {"uid": spec.uid, "groups": [spec.gid, *spec.groups]},
                "result": str(result_file),
                "ledger": str(self.ledger.path) if self.ledger is not None else None,
                **self._mode_fields(spec, ready, real=real),
            }
            spec_file = ready.workdir / "init.json"
            spec_file.write_text(json.dumps(document))
            argv = [self.python, "-I", "-S", str(INIT_SCRIPT), str(spec_file)]
            completed = self.runner.run(argv, env=_host_env(),
                                        on_line=lambda text: ready.line(text) if self._shown(text) else None)
            tail = tuple(ready.tail)
            try:
                result = json.loads(result_file.read_text())
            except (OSError, ValueError):
                result = {"setup_error": f"the sandbox init ended without a result (exit {completed.returncode}): "
                          + " | ".join(tail[-3:])}
        if completed.returncode == SETUP_FAILED and result.get("mount_error"):
            raise MountPointError(f"{result['mount_error']}: it cannot be mounted in the {self.kind} sandbox",
                                  hint="fix the mount's source or target in the Dockerfile")
        if completed.returncode == SETUP_FAILED and result.get("setup_error"):
            raise SandboxUnavailable(f"the {self.kind} sandbox cannot start here: {result['setup_error']}",
                                     kind=self.kind)
        self._check(completed.returncode, tail)
        notes = []
        if result.get("proc") == "bound":
            notes.append("/proc is the pod's own, bound (a new procfs is refused here), so RUN sees the pod's "
                         "processes")
        if record and result.get("recorder"):
            notes.append(f"chown in RUN steps cannot be recorded here ({result['recorder']})")
        return RunOutcome(
            exit_code=self._exit_code(completed.returncode, tail), tail=tail, sandbox=self.kind,
            seconds=time.monotonic() - started,
            ran_as=None if real else self._ran_as(spec),
            recorded=tuple((str(p), int(u), int(g)) for p, u, g in result.get("symlinks") or ()),
            notes=tuple(notes))

    def _shown(self, line: str) -> bool:
        """Whether a line of the run's output is the build's to show (not the sandbox's own noise)."""
        return True

    def _check(self, code: int, tail: tuple[str, ...]) -> None:
        """Raise :class:`SandboxUnavailable` when the output says the sandbox itself could not start."""

    def _exit_code(self, code: int, tail: tuple[str, ...]) -> int:
        return code

    def _ran_as(self, spec: RunSpec) -> tuple[int, int] | None:
        """The image ids of what the command makes when it cannot run as its USER (root here)."""
        return None if (spec.uid, spec.gid) == (0, 0) else (0, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnshareSandbox(InitSandbox):
    kind: SandboxKind = SandboxKind.UNSHARE
    mode: str = "namespaces"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChrootSandbox(InitSandbox):
    kind: SandboxKind = SandboxKind.CHROOT
    mode: str = "chroot"
