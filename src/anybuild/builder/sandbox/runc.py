"""The OCI runtime sandbox: ``runc run`` with a generated runtime spec.

:func:`runtime_spec` is pure: a :class:`RunSpec` and its resolved mounts in, the
``config.json`` document out (as root, or rootless with a user namespace that
maps the caller to root). :class:`RuncSandbox` writes it into a private bundle,
runs ``runc --root STATE run --bundle BUNDLE ID`` in the foreground and always
``runc delete --force``s the container, even after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anybuild.builder.sandbox.model import (
    MountPointError,
    NetworkMode,
    RunOutcome,
    RunSpec,
    SandboxKind,
    SandboxUnavailable,
)
from anybuild.builder.sandbox.prepared import DEFAULT_HOST_FILES, ResolvedMount, prepared
from anybuild.cancellation import cleanup
from anybuild.process import Runner, SubprocessRunner

if TYPE_CHECKING:
    from anybuild.builder.ledger import Ledger

__all__ = ["DEFAULT_CAPABILITIES", "RuncSandbox", "runtime_spec"]

# Docker's default capability set for containers (and so for RUN steps).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
_MASKED = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
           "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _mount_entry(mount: ResolvedMount, *, rootless: bool, host_network: bool) -> dict[str, Any]:
    match mount.kind:
        case "proc":
            return {"destination": "/proc", "type": "proc", "source": "proc"}
        case "dev":
            return {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        case "sys":
            if rootless or host_network:
                return {"destination": "/sys", "type": "bind", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
            return {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"]}
        case "tmpfs":
            size = [f"size={mount.size}"] if mount.size else []
            return {"destination": mount.target, "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777", *size]}
        case _:
            return {"destination": mount.target, "type": "bind", "source": str(mount.source),
                    "options": ["rbind", "ro" if mount.readonly else "rw"]}


def runtime_spec(spec: RunSpec, mounts: Sequence[ResolvedMount], *, rootfs: str, rootless: bool,
                 host_uid: int = 0, host_gid: int = 0) -> dict[str, Any]:
    """The OCI runtime ``config.json`` for one RUN."""
    host_network = spec.network is not NetworkMode.NONE
    entries = [_mount_entry(m, rootless=rootless, host_network=host_network) for m in mounts]
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] + ([] if rootless else ["gid=5"])
    extra = [
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    ]
    dev_at = next((i for i, e in enumerate(entries) if e["destination"] == "/dev"), len(entries) - 1)
    entries[dev_at + 1 : dev_at + 1] = extra
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if not host_network:
        namespaces.append({"type": "network"})
    linux: dict[str, Any] = {"namespaces": namespaces, "maskedPaths": list(_MASKED),
                             "readonlyPaths": list(_READONLY)}
    if rootless:
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": host_uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": host_gid, "size": 1}]
    caps = list(DEFAULT_CAPABILITIES)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": list(spec.groups)},
            "args": list(spec.argv),
            "env": list(spec.env),
            "cwd": spec.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": spec.hostname,
        "mounts": entries,
        "linux": linux,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class RuncSandbox:
    work: Path
    runtime: str = "runc"
    runner: Runner = field(default_factory=SubprocessRunner)
    host_files: dict[str, Path] = field(default_factory=lambda: dict(DEFAULT_HOST_FILES))
    root: bool = field(default_factory=lambda: os.geteuid() == 0)
    kind: SandboxKind = SandboxKind.RUNC
    ledger: Ledger | None = None  # the build's record of what it starts (anybuild.builder.ledger)

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> RunOutcome:
        started = time.monotonic()
        container = "anybuild-" + secrets.token_hex(6)
        with prepared(spec, runner=self.runner, work=self.work, on_line=on_line,
                      host_files=self.host_files) as ready:
            bundle = ready.workdir / "bundle"
            state = ready.workdir / "state"
            bundle.mkdir()
            state.mkdir()
            config = runtime_spec(spec, ready.mounts, rootfs=str(ready.root.host_path(".")), rootless=not self.root,
                                  host_uid=os.geteuid(), host_gid=os.getegid())
            (bundle / "config.json").write_text(json.dumps(config, indent=1))
            base = [self.runtime, "--root", str(state)]
            if self.ledger is not None:  # a build killed outright leaves it to the next one to delete
                self.ledger.runc(self.runtime, state, container)
            try:
                completed = self.runner.run([*base, "run", "--bundle", str(bundle), container], on_line=ready.line)
            finally:
                if (state / container).exists():  # `runc run` removes the container it ran, unless stopped early
                    with cleanup():
                        self.runner.run([*base, "delete", "--force", container], timeout=30)
            tail = tuple(ready.tail)
            own = [f'"{m.target}"' for m in ready.mounts if m.own] + [f'"{m.source}"' for m in ready.mounts
                                                                       if m.own and m.source]
        code = completed.returncode
        failure = next((line for line in tail if "runc run failed" in line or "runc create failed" in line), None)
        if code != 0 and failure is not None:
            if "exec:" in failure or "executable file not found" in failure:
                code = 127
            elif "mount" in failure and any(name in failure for name in own):
                raise MountPointError(f"a RUN --mount cannot be made: {failure.strip()}",
                                      hint="fix the mount's source or target in the Dockerfile")
            else:
                raise SandboxUnavailable(f"runc could not start the RUN sandbox: {failure.strip()}",
                                         kind=self.kind)
        return RunOutcome(exit_code=code, tail=tail, sandbox=self.kind, seconds=time.monotonic() - started)
