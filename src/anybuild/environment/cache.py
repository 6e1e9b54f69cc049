"""The costly probes' facts, kept for a short time and keyed by what they depend on (issue 23).

``doctor`` tries a RUN in every sandbox (~0.7 s), and every build asks docker its version and
tries an overlay mount; a file watcher or a Makefile calling anybuild in a loop would pay that
each time for the same answers. The facts of the probes in :data:`CACHED` are written to
``<data dir>/probe-cache.json`` with the time they were found and a key: a digest of what those
answers depend on (the identity, capabilities and user-namespace settings of this process, the
kernel, the relevant environment variables, the executables on PATH by inode and mtime, the
mounts above the directories the probes look at, the probe code itself). A later run within
:data:`TTL` seconds whose key is the same reuses them, each fact's evidence saying when it was
found; a different key, an older entry or an unreadable file means the probes run again. Probes
that read live state (the Docker daemon, credentials) or cost nothing are never cached.
``ANYBUILD_PROBE_CACHE=0`` (or ``doctor --fresh``) turns the cache off.

Secrets never enter the key: variables whose name mentions a password, token, secret or auth
are left out of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactValue, Topic
from anybuild.files import replace_text

__all__ = ["CACHED", "TTL", "ProbeCache", "environment_key"]

CACHED = frozenset({"builder", "storage", "tools"})
TTL = 120.0
FORMAT = 1
DISABLE_ENV = "ANYBUILD_PROBE_CACHE"

_ENV_PREFIXES = ("ANYBUILD_", "DOCKER_", "BUILDAH_", "CONTAINERS_", "XDG_", "KUBE", "SUDO_")
_ENV_NAMES = ("PATH", "HOME", "TMPDIR", "USER", "container")
_SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "AUTH", "CREDENTIAL")
_EXECUTABLES = ("docker", "buildah", "podman", "crun", "runc", "proot", "fuse-overlayfs", "newuidmap",
                "newgidmap", "kubectl", "executor", "kaniko", "unshare", "mount", "tar")
_FILES = ("/proc/self/uid_map", "/proc/self/gid_map", "/proc/self/cgroup", "/proc/sys/user/max_user_namespaces",
          "/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
          "/etc/subuid", "/etc/subgid")
_STATUS_FIELDS = ("Uid:", "Gid:", "Groups:", "CapEff:", "CapPrm:", "CapBnd:", "NoNewPrivs:", "Seccomp:")
_STATS = ("/dev/fuse", "/etc/docker/daemon.json", "/etc/containers/storage.conf", "/.dockerenv")
# The probes' own code: a new anybuild asks again.
_CODE = ("environment/builder.py", "environment/storage.py", "environment/tools.py", "environment/probe.py",
         "builder/trial.py", "builder/host.py", "builder/overlay.py", "builder/sandbox/model.py")


def _disabled(value: str | None) -> bool:
    return (value or "").strip().lower() in ("0", "no", "off", "false")


def _stat(path: Path | str) -> list[int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _ancestors(paths: Iterable[Path]) -> set[str]:
    found = {"/"}
    for path in paths:
        real = path.resolve()  # mountinfo names real paths
        found.update(str(p) for p in (real, *real.parents))
    return found


def _mounts_above(mountinfo: str, paths: Iterable[Path]) -> list[str]:
    """The mountinfo lines of the mounts at or above *paths* (their ids change on a remount)."""
    wanted = _ancestors(paths)
    return [line for line in mountinfo.splitlines()
            if len(fields := line.split()) > 4 and fields[4] in wanted]


def environment_key(ctx: ProbeContext) -> str:
    """A digest of what the cached probes' answers depend on."""
    env = ctx.env
    status = _read("/proc/self/status") or ""
    data = ctx.anybuild_data_dir
    home = ctx.home
    package = Path(__file__).resolve().parent.parent
    parts: dict[str, Any] = {
        "format": FORMAT,
        "python": [sys.executable, sys.version],
        "code": [_stat(package / name) for name in _CODE],
        "probe": [ctx.thorough, ctx.online, ctx.timeout, ctx.hostname, sorted(ctx.registries), str(ctx.cwd)],
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())],
        "kernel": list(os.uname()),
        "status": [line for line in status.splitlines() if line.startswith(_STATUS_FIELDS)],
        "files": {name: _read(name) for name in _FILES},
        "stats": {name: _stat(name) for name in _STATS} | {"home-storage": _stat(home / ".config/containers")},
        "env": {k: v for k, v in sorted(env.items())
                if (k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)) and not any(w in k.upper() for w in _SECRET_WORDS)},
        "executables": {name: (path, _stat(path)) for name in _EXECUTABLES
                        if (path := shutil.which(name, path=env.get("PATH", os.defpath)))},
        "mounts": _mounts_above(_read("/proc/self/mountinfo") or "",
                                (data, Path("/var/lib/docker"), Path("/var/lib/containers"),
                                 home / ".local/share/containers", Path(env.get("TMPDIR") or "/tmp"))),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _to_fact(item: Mapping[str, Any], age: float) -> Fact:
    value: FactValue = tuple(item["value"]) if isinstance(item["value"], list) else item["value"]
    return Fact(key=str(item["key"]), value=value, topic=Topic(item["topic"]),
                evidence=f"{item['evidence']} (found {age:.0f} s ago; unchanged since)")


@dataclass(slots=True)
class ProbeCache:
    """The cached probes' facts in one JSON file; every failure to read or write it is a miss."""

    path: Path
    key: str
    ttl: float = TTL
    clock: Callable[[], float] = time.time
    _entries: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_context(cls, ctx: ProbeContext, *, fresh: bool = False) -> ProbeCache | None:
        """The cache for probes of this machine as it is; None for probes of a prepared tree
        (tests), without trials, or when turned off (*fresh*, ``ANYBUILD_PROBE_CACHE=0``)."""
        if fresh or _disabled(ctx.env.get(DISABLE_ENV)) or ctx.root != Path("/") or not ctx.trials:
            return None
        cache = cls(path=ctx.anybuild_data_dir / "probe-cache.json", key=environment_key(ctx))
        cache._load()
        return cache

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(document, dict) and document.get("format") == FORMAT and isinstance(document.get("probes"), dict):
            self._entries = document["probes"]

    def get(self, name: str) -> list[Fact] | None:
        """The facts probe *name* found under this key less than :attr:`ttl` seconds ago."""
        entry = self._entries.get(name)
        if not isinstance(entry, dict) or entry.get("key") != self.key:
            return None
        try:
            age = self.clock() - float(entry["time"])
            if not 0 <= age < self.ttl:
                return None
            return [_to_fact(item, age) for item in entry["facts"]]
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, found: Mapping[str, list[Fact]]) -> None:
        """Keep *found* (probe name -> its facts, just found), atomically; a failure is silent."""
        if not found:
            return
        now = self.clock()
        for name, facts in found.items():
            self._entries[name] = {"key": self.key, "time": now, "facts": [fact.to_dict() for fact in facts]}
        document = {"format": FORMAT, "probes": self._entries}
        replace_text(self.path, json.dumps(document))
