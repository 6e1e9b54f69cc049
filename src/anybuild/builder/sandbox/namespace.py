"""The ``unshare`` + ``chroot`` sandbox and the bare ``chroot`` sandbox.

Both run :mod:`anybuild.builder.sandbox.init` with the host's Python:

- :class:`UnshareSandbox`: ``unshare --mount --pid --ipc --uts --fork`` (plus
  ``--user --map-root-user`` when not root, ``--net`` for ``--network=none``);
  the mounts live and die with the private mount namespace.
- :class:`ChrootSandbox`: no namespaces; the init mounts in the host namespace,
  forks the command and unmounts when it ends. The network cannot be isolated.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.builder.sandbox.model import NetworkMode, RunOutcome, RunSpec, SandboxKind
from anybuild.builder.sandbox.prepared import DEFAULT_HOST_FILES, Prepared, prepared
from anybuild.errors import BackendError
from anybuild.process import Runner, SubprocessRunner

__all__ = ["INIT_SCRIPT", "ChrootSandbox", "UnshareSandbox", "init_spec"]

INIT_SCRIPT = Path(__file__).with_name("init.py")


def init_spec(spec: RunSpec, ready: Prepared, *, supervise: bool, loopback: bool, hostname: bool) -> dict[str, object]:
    """The JSON document the init script reads."""
    return {
        "rootfs": str(ready.root.host_path(".")),
        "mounts": [m.to_dict() for m in ready.mounts],
        "argv": list(spec.argv),
        "env": list(spec.env),
        "cwd": spec.cwd,
        "uid": spec.uid,
        "gid": spec.gid,
        "groups": list(spec.groups),
        "hostname": spec.hostname if hostname else "",
        "loopback": loopback,
        "supervise": supervise,
    }


def _host_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}


@dataclass(frozen=True, slots=True, kw_only=True)
class _InitSandbox:
    work: Path
    runner: Runner = field(default_factory=SubprocessRunner)
    host_files: dict[str, Path] = field(default_factory=lambda: dict(DEFAULT_HOST_FILES))
    python: str = sys.executable
    root: bool = field(default_factory=lambda: os.geteuid() == 0)

    def _wrapper(self, spec: RunSpec) -> list[str]:
        raise NotImplementedError

    def _run(self, kind: SandboxKind, spec: RunSpec, on_line: Callable[[str], None], *,
             supervise: bool, loopback: bool, hostname: bool) -> RunOutcome:
        started = time.monotonic()
        with prepared(spec, runner=self.runner, work=self.work, on_line=on_line,
                      host_files=self.host_files) as ready:
            spec_file = ready.workdir / "init.json"
            spec_file.write_text(json.dumps(init_spec(spec, ready, supervise=supervise, loopback=loopback,
                                                      hostname=hostname)))
            argv = [*self._wrapper(spec), self.python, "-I", "-S", str(INIT_SCRIPT), str(spec_file)]
            completed = self.runner.run(argv, env=_host_env(), on_line=ready.line)
            tail = tuple(ready.tail)
        return RunOutcome(exit_code=completed.returncode, tail=tail, sandbox=kind,
                          seconds=time.monotonic() - started)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnshareSandbox(_InitSandbox):
    kind: SandboxKind = SandboxKind.UNSHARE
    unshare: str = "unshare"

    def _wrapper(self, spec: RunSpec) -> list[str]:
        argv = [self.unshare, "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                "--propagation", "private"]
        if not self.root:
            if spec.uid != 0 or spec.gid != 0 or spec.groups:
                raise BackendError(
                    f"the unshare sandbox without root maps only uid 0, but this RUN runs as {spec.uid}:{spec.gid}",
                    backend="builtin",
                    hint="use the runc or proot sandbox (ANYBUILD_SANDBOX=runc|proot), or build as root",
                )
            argv += ["--user", "--map-root-user"]
        if spec.network is NetworkMode.NONE:
            argv.append("--net")
        return argv

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        return self._run(self.kind, spec, on_line, supervise=False, loopback=spec.network is NetworkMode.NONE,
                         hostname=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChrootSandbox(_InitSandbox):
    kind: SandboxKind = SandboxKind.CHROOT

    def _wrapper(self, spec: RunSpec) -> list[str]:
        if not self.root:
            raise BackendError("the chroot sandbox needs root", backend="builtin",
                               hint="use the proot sandbox (ANYBUILD_SANDBOX=proot)")
        return []

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        return self._run(self.kind, spec, on_line, supervise=True, loopback=False, hostname=False)
