"""Unprivileged "pods" on this machine: runc containers set up the way Kubernetes runs a devpod.

A :class:`Pod` is a runc container started detached (its pid 1 sleeps) into which
commands are exec'd, as ``kubectl exec`` does:

- the host's network namespace (so the loopback registry is reachable) and new
  mount, pid, ipc and uts namespaces; no user namespace (Kubernetes' default);
- Docker's default 14 capabilities (bounding = effective = permitted for uid 0; for a
  non-root user, bounding only: nothing effective), no CAP_SYS_ADMIN;
- moby's default masked and read-only /proc and /sys paths, /sys and the cgroup mount
  read-only, a private /dev;
- the root filesystem an overlay mount: lower = this machine's root filesystem (it
  holds Python, the project and its virtualenv, runc, proot, newuidmap), upper on
  disk; HOME and the data directory on that overlay, or on a bind-mounted directory
  (an "emptyDir") when the variant says so;
- the variant's user (uid 0 or 1000 with a passwd entry and, optionally, a
  /etc/subuid range), seccomp Unconfined or RuntimeDefault (moby's default profile,
  :mod:`tests.harness.seccomp`), no_new_privs on or off.

Everything is undone by :meth:`Pod.close`: the container is deleted, the overlay
unmounted, the directories removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import procs
from tests.harness.seccomp import runtime_default

__all__ = ["DEFAULT_CAPABILITIES", "POD_VARIANTS", "SOURCE", "Pod", "PodVariant", "running_pod"]

PROJECT = Path(__file__).resolve().parents[2]

# Docker's (and containerd's) default capability set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
# moby's oci.DefaultSpec() masked and read-only paths.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# The cgroup mount is read-only in a pod: nothing in it can be made (runc on a cgroup v1 host
# leaves the tmpfs that holds the controllers writable, so it is made read-only here).
_POD_READONLY = (*READONLY_PATHS, "/sys/fs/cgroup")
USER_NAME = "dev"
SOURCE = "/src"  # a directory of the pod's user for build contexts (written from the host)
EMPTYDIR = "/workspace"  # where the emptyDir variant mounts its volume
SUBUID_START = 200000
SUBUID_COUNT = 65536
# Kubernetes nodes give containers 1048576 open files; this machine may allow fewer.
_NOFILE = min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class PodVariant:
    """How one pod is set up."""

    name: str
    uid: int = 0
    runtime_default: bool = False  # moby's default seccomp profile (else Unconfined)
    no_new_privs: bool = False  # allowPrivilegeEscalation: false
    subuid: bool = False  # /etc/subuid and /etc/subgid ranges for the user
    emptydir: bool = False  # the data directory on a bind-mounted host directory, not the overlay root
    add_caps: tuple[str, ...] = ()  # securityContext.capabilities.add (bounding set only for a non-root user)

    @property
    def gid(self) -> int:
        return self.uid

    @property
    def home(self) -> str:
        return "/root" if self.uid == 0 else f"/home/{USER_NAME}"


# The pods the issue names: root and uid 1000, with and without subuid ranges, seccomp
# Unconfined and RuntimeDefault, no_new_privs on and off, data on the overlay root or an emptyDir.
POD_VARIANTS: tuple[PodVariant, ...] = (
    PodVariant(name="root"),
    PodVariant(name="root-seccomp", runtime_default=True),
    PodVariant(name="root-emptydir", emptydir=True),
    PodVariant(name="uid1000", uid=1000),
    PodVariant(name="uid1000-subuid", uid=1000, subuid=True),
    PodVariant(name="uid1000-subuid-nnp", uid=1000, subuid=True, no_new_privs=True),
    # with CAP_SYS_ADMIN in its bounding set, a setuid newuidmap can write a subuid map (see doctor)
    PodVariant(name="uid1000-subuid-sysadmin", uid=1000, subuid=True, add_caps=("CAP_SYS_ADMIN",)),
    PodVariant(name="uid1000-seccomp", uid=1000, runtime_default=True, no_new_privs=True),
)


@dataclass(slots=True, kw_only=True)
class Pod:
    variant: PodVariant
    work: Path  # host directory holding the overlay layers, runc's state and the bundle
    runc: str
    container: str = field(default_factory=lambda: "pod-" + secrets.token_hex(5))

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    @property
    def data_dir(self) -> str:
        """The data directory anybuild uses in the pod: on the emptyDir, or its default under HOME."""
        return f"{EMPTYDIR}/anybuild" if self.variant.emptydir else f"{self.variant.home}/.local/share/anybuild"

    def host_path(self, inside: str) -> Path:
        """Where *inside* (an absolute path in the pod) is on the host, through the pod's root."""
        if self.variant.emptydir and (inside == EMPTYDIR or inside.startswith(EMPTYDIR + "/")):
            return self.work / "emptydir" / inside.removeprefix(EMPTYDIR).lstrip("/")
        return self.rootfs / inside.lstrip("/")

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        user = "root" if self.variant.uid == 0 else USER_NAME
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.variant.home, "USER": user, "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
        }
        if self.variant.emptydir:
            env["ANYBUILD_DATA_DIR"] = self.data_dir
        for name in ("CI", "ANYBUILD_MIN_FREE_SPACE", "SOURCE_DATE_EPOCH"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(extra or {})
        return env

    def _process(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> dict[str, Any]:
        caps = [*DEFAULT_CAPABILITIES, *self.variant.add_caps]
        root = self.variant.uid == 0
        return {
            "terminal": False,
            "user": {"uid": self.variant.uid, "gid": self.variant.gid},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps if root else [], "permitted": caps if root else [],
                             "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": _NOFILE, "soft": _NOFILE}],
            "noNewPrivileges": self.variant.no_new_privs,
        }

    def _spec(self, env: Mapping[str, str]) -> dict[str, Any]:
        mounts: list[dict[str, Any]] = [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        ]
        if self.variant.emptydir:
            mounts.append({"destination": EMPTYDIR, "type": "bind", "source": str(self.work / "emptydir"),
                           "options": ["rbind", "rw"]})
        linux: dict[str, Any] = {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(_POD_READONLY),
        }
        if self.variant.runtime_default:
            linux["seccomp"] = runtime_default([*DEFAULT_CAPABILITIES, *self.variant.add_caps])
        process = self._process(["/bin/sleep", "infinity"], env, "/")
        return {"ociVersion": "1.0.2", "process": process, "root": {"path": str(self.rootfs), "readonly": False},
                "hostname": self.container, "mounts": mounts, "linux": linux}

    def start(self) -> None:
        for name in ("upper", "overlay-work", "rootfs", "state", "bundle"):
            (self.work / name).mkdir(parents=True)
        options = f"lowerdir=/,upperdir={self.work / 'upper'},workdir={self.work / 'overlay-work'}"
        procs.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.rootfs)])
        self._prepare_root()
        spec = self._spec(self.env())
        (self.work / "bundle" / "config.json").write_text(json.dumps(spec, indent=1))
        log = self.work / "runc.log"
        with log.open("w") as stderr:  # the pod's pid 1 keeps runc's stdio: a file, not a pipe
            done = subprocess.run([self.runc, "--root", str(self.work / "state"), "run", "--detach", "--bundle",
                                   str(self.work / "bundle"), self.container], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=stderr, timeout=60, check=False)
        if done.returncode != 0:
            raise procs.HarnessError(f"runc could not start the pod {self.variant.name}: {procs.log_tail(log)}")

    def _prepare_root(self) -> None:
        """The pod image's own files, written into the overlay's upper layer (the host is untouched)."""
        root = self.rootfs
        # the project's virtualenv interpreter lives under /root (0700 on the host)
        (root / "root").chmod(0o755)
        if self.variant.uid != 0:
            uid = self.variant.uid
            for name, entry in (("passwd", f"{USER_NAME}:x:{uid}:{uid}::/home/{USER_NAME}:/bin/sh"),
                                ("group", f"{USER_NAME}:x:{uid}:")):
                path = root / "etc" / name
                kept = [line for line in path.read_text().splitlines() if line.split(":")[2:3] != [str(uid)]]
                path.write_text("\n".join([*kept, entry]) + "\n")
            home = root / "home" / USER_NAME
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, uid, uid)
        source = root / SOURCE.lstrip("/")
        source.mkdir()
        os.chown(source, self.variant.uid, self.variant.gid)
        for name in ("subuid", "subgid"):
            path = root / "etc" / name
            path.write_text(f"{USER_NAME}:{SUBUID_START}:{SUBUID_COUNT}\n" if self.variant.subuid else "")
        if self.variant.emptydir:
            empty = self.work / "emptydir"
            empty.mkdir()
            os.chown(empty, self.variant.uid, self.variant.gid)

    def exec(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
             timeout: float = 900, input: str | None = None) -> subprocess.CompletedProcess[str]:  # noqa: A002
        """Run *argv* in the pod as its user (``kubectl exec``); output captured as text."""
        process = self._process(argv, self.env(env), cwd or self.variant.home)
        fd, path = tempfile.mkstemp(prefix="process-", suffix=".json", dir=self.work)
        with os.fdopen(fd, "w") as out:
            json.dump(process, out)
        try:
            return subprocess.run([self.runc, "--root", str(self.work / "state"), "exec", "--process", path,
                                   self.container], input=input, capture_output=True, text=True, timeout=timeout,
                                  check=False, stdin=None if input is not None else subprocess.DEVNULL)
        finally:
            Path(path).unlink(missing_ok=True)

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen[str]:
        """Start *argv* in the pod as its user without waiting (``kubectl exec`` in another terminal);
        its output (stdout and stderr merged) on the returned process's stdout."""
        process = self._process(argv, self.env(env), cwd or self.variant.home)
        fd, path = tempfile.mkstemp(prefix="process-", suffix=".json", dir=self.work)
        with os.fdopen(fd, "w") as out:
            json.dump(process, out)
        return subprocess.Popen([self.runc, "--root", str(self.work / "state"), "exec", "--process", path,
                                 self.container], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def pids(self) -> dict[int, str]:
        """The pod's processes other than its pid 1, by host pid, with their command lines."""
        return {int(line.split(" ", 1)[0]): line.split(" ", 1)[1] for line in self.processes()}

    def anybuild(self, *args: str, env: Mapping[str, str] | None = None, cwd: str | None = None,
                 timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``anybuild ARGS`` in the pod: the project's own virtualenv, as installed on the host."""
        return self.exec([sys.executable, "-m", "anybuild", *args], env=env, cwd=cwd, timeout=timeout)

    def processes(self) -> list[str]:
        """The command lines of the pod's processes other than its pid 1 (from the host)."""
        done = subprocess.run([self.runc, "--root", str(self.work / "state"), "ps", "--format", "json",
                               self.container], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            return []
        pids = [int(p) for p in json.loads(done.stdout or "[]")]
        lines = []
        for pid in pids:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if not cmd.startswith("/bin/sleep infinity"):
                    lines.append(f"{pid} {cmd.strip()}")
        return lines

    def mounts(self) -> list[str]:
        """Mount points in the pod's mount namespace that the pod did not start with (under its data dirs)."""
        done = self.exec(["/bin/cat", "/proc/self/mountinfo"])
        points = [line.split(" ")[4] for line in done.stdout.splitlines() if len(line.split(" ")) > 4]
        return [p for p in points if p.startswith((self.variant.home, "/tmp/"))]

    def close(self) -> None:
        state = self.work / "state"
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run([self.runc, "--root", str(state), "delete", "--force", self.container],
                           capture_output=True, timeout=60, check=False)
        procs.unmount_under(self.rootfs)
        procs.remove_tree(self.work)


def _short_workdir(base: Path) -> Path:
    # runc's state and the overlay options want short paths
    return Path(tempfile.mkdtemp(prefix="pod-", dir=base))


@contextmanager
def running_pod(variant: PodVariant, *, base: Path | None = None) -> Iterator[Pod]:
    """A started pod of *variant*; skipped (failed under CI=true) where runc or root is missing."""
    procs.require_root("starting pods with runc")
    runc = procs.require_binary("runc", "runc")
    work = _short_workdir(base or Path(tempfile.gettempdir()))
    pod = Pod(variant=variant, work=work, runc=runc)
    try:
        pod.start()
        yield pod
    finally:
        pod.close()
        shutil.rmtree(work, ignore_errors=True)
