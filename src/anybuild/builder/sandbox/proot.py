"""The ``proot`` sandbox: chroot and bind mounts emulated with ptrace; no privileges needed.

The weakest isolation (same pid, network and mount namespaces as the caller; a
process may escape ptrace emulation), used only when nothing else is permitted.
User ids are faked (``-0`` for root, ``-i uid:gid`` otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.builder.sandbox.model import RunOutcome, RunSpec, SandboxKind
from anybuild.builder.sandbox.prepared import DEFAULT_HOST_FILES, Prepared, prepared
from anybuild.process import Runner, SubprocessRunner

__all__ = ["ProotSandbox", "proot_argv"]


def proot_argv(proot: str, spec: RunSpec, ready: Prepared) -> list[str]:
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
    argv += ["-0"] if spec.uid == 0 else ["-i", f"{spec.uid}:{spec.gid}"]
    return [*argv, *spec.argv]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProotSandbox:
    work: Path
    proot: str = "proot"
    runner: Runner = field(default_factory=SubprocessRunner)
    host_files: dict[str, Path] = field(default_factory=lambda: dict(DEFAULT_HOST_FILES))
    kind: SandboxKind = SandboxKind.PROOT

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        started = time.monotonic()
        with prepared(spec, runner=self.runner, work=self.work, on_line=on_line,
                      host_files=self.host_files) as ready:
            env = dict(item.split("=", 1) for item in spec.env if "=" in item)
            env["PROOT_TMP_DIR"] = str(ready.workdir)
            completed = self.runner.run(proot_argv(self.proot, spec, ready), env=env, on_line=ready.line)
            tail = tuple(ready.tail)
        code = completed.returncode
        if code == 1 and any(line.startswith("proot error:") and "not found" in line for line in tail):
            code = 127  # the command does not exist, as a shell would report it
        return RunOutcome(exit_code=code, tail=tail, sandbox=self.kind,
                          seconds=time.monotonic() - started)
