"""Filesystems under the data directories, and whether overlay works there (a real trial)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic
from anybuild.errors import BackendError

__all__ = [
    "MountEntry",
    "buildah_storage_dir",
    "docker_data_root",
    "mount_for",
    "parse_mountinfo",
    "probe_data_dir",
    "probe_storage",
]

# Runs in a private mount namespace (so nothing can leak): mount an overlay whose
# upper dir lives in argv[2] (on tmpfs first when argv[1] == "tmpfs"), write to it.
# The overlay is "volatile" where the kernel knows the option (5.10+): unmounting any
# other overlay syncs its upper filesystem, so a trial on the root filesystem just
# after a big build waited for all of that build's files to reach the disk (0.3 s).
_TRIAL = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def mount(src, target, fstype, data, fatal=True):
    if libc.mount(src.encode(), target.encode(), fstype.encode(), 0, data.encode()) == 0:
        return True
    err = ctypes.get_errno()
    if fatal:
        print(f"mount -t {fstype} on {target}: {os.strerror(err)}")
        sys.exit(1)
    return False
mode, base = sys.argv[1], sys.argv[2]
if mode == "tmpfs":
    mount("tmpfs", base, "tmpfs", "size=8m")
d = {n: os.path.join(base, n) for n in ("lower", "upper", "work", "merged")}
for p in d.values():
    os.makedirs(p, exist_ok=True)
opts = f"lowerdir={d['lower']},upperdir={d['upper']},workdir={d['work']}"
if not mount("overlay", d["merged"], "overlay", opts + ",volatile", fatal=False):
    mount("overlay", d["merged"], "overlay", opts)  # an older kernel; its failure is the answer
with open(os.path.join(d["merged"], "probe"), "w") as f:
    f.write("ok")
print("overlay mounted and written" if os.path.exists(os.path.join(d["upper"], "probe")) else "no copy-up")
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    mount_point: str
    fstype: str
    source: str
    line: str

    def describe(self) -> str:
        return f"{self.mount_point} {self.fstype} {self.source}"


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries: list[MountEntry] = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 2:
            continue
        entries.append(MountEntry(mount_point=_unescape(fields[4]), fstype=rest[0], source=rest[1], line=line))
    return entries


def mount_for(path: Path, entries: list[MountEntry]) -> MountEntry | None:
    """The mount holding *path*: the longest mount point that is a prefix (the last one wins)."""
    best: MountEntry | None = None
    target = str(path)
    for entry in entries:
        point = entry.mount_point
        inside = target == point or target.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = entry
    return best


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def docker_data_root(ctx: ProbeContext, reported: str | None) -> tuple[Path, str]:
    """Where dockerd keeps its data: as the daemon says, else daemon.json, else the default."""
    if reported:
        return Path(reported), "docker info: DockerRootDir"
    config = ctx.docker_daemon_config or ctx.path("/etc/docker/daemon.json")
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        data = {}
    if isinstance(data, dict) and isinstance(data.get("data-root"), str):
        return Path(data["data-root"]), f"{config}: data-root"
    return Path("/var/lib/docker"), "dockerd default"


def buildah_storage_dir(ctx: ProbeContext, uid: int | None) -> tuple[Path, str]:
    """buildah's graphroot: storage.conf's, else the root or rootless default."""
    conf = ctx.env.get("CONTAINERS_STORAGE_CONF")
    candidates = [Path(conf)] if conf else []
    if uid not in (0, None):
        candidates.append(ctx.home / ".config/containers/storage.conf")
    candidates.append(ctx.path("/etc/containers/storage.conf"))
    for candidate in candidates:
        try:
            text = candidate.read_text()
        except OSError:
            continue
        found = re.search(r'(?m)^\s*graphroot\s*=\s*"([^"]+)"', text)
        if found:
            return Path(found.group(1)), f"{candidate}: graphroot"
    if uid in (0, None):
        return Path("/var/lib/containers/storage"), "buildah default for root"
    return ctx.home / ".local/share/containers/storage", "buildah default for rootless"


def probe_data_dir(
    ctx: ProbeContext, directory: Path, source: str, fstype_key: FactKey, overlay_key: FactKey, *, trial: str = ""
) -> list[Fact]:
    """The filesystem under *directory* and an overlay trial there, unless *trial* says why not."""
    entries = parse_mountinfo(ctx.read("/proc/self/mountinfo") or "")
    where = _existing(directory)
    entry = mount_for(where, entries)
    if entry is None:
        fstype = _fact(fstype_key, None, f"{directory} ({source}): no mountinfo entry")
    else:
        fstype = _fact(
            fstype_key, entry.fstype, f"{directory} ({source}) is on {entry.describe()}; mountinfo: {entry.line}"
        )
    if trial:
        return [fstype, _fact(overlay_key, None, f"not tried: {trial}")]
    return [fstype, _overlay_trial(ctx, where, overlay_key, directory)]


def _overlay_trial(ctx: ProbeContext, where: Path, key: FactKey, directory: Path) -> Fact:
    if not ctx.trials:
        return _fact(key, None, "not tried (trials disabled)")
    unshare = ctx.which("unshare")
    if unshare is None:
        return _fact(key, None, "unshare not on PATH; overlay trial not made")
    try:
        base = Path(tempfile.mkdtemp(prefix=".anybuild-overlay-probe-", dir=where))
    except OSError as exc:
        return _fact(key, None, f"cannot create a trial directory in {where}: {exc.strerror}")
    try:
        return _run_trial(ctx, unshare, mode="dir", base=base, key=key, what=f"overlay with upperdir in {directory}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_trial(ctx: ProbeContext, unshare: str, *, mode: str, base: Path, key: FactKey, what: str) -> Fact:
    argv = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        argv[1:1] = ["--user", "--map-root-user"]
    argv += [sys.executable, "-c", _TRIAL, mode, str(base)]
    try:
        done = ctx.runner.run(argv, env=ctx.env, timeout=max(ctx.timeout, 2.0))
    except BackendError as exc:
        return _fact(key, False, f"{what}: {exc.message}")
    message = (done.output.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return _fact(key, done.ok, f"{what}: {message}")


def probe_storage(ctx: ProbeContext, uid: int | None) -> list[Fact]:
    """anybuild's and buildah's data directories, and overlay on tmpfs."""
    data = ctx.anybuild_data_dir
    source = "ANYBUILD_DATA_DIR" if ctx.env.get("ANYBUILD_DATA_DIR") else "default"
    facts = [_fact(FactKey.ANYBUILD_DATA_DIR, str(data), source)]
    own = "" if ctx.thorough else "the built-in builder tries overlay itself when it builds"
    facts += probe_data_dir(ctx, data, source, FactKey.ANYBUILD_FSTYPE, FactKey.ANYBUILD_OVERLAY, trial=own)
    buildah_dir, buildah_source = buildah_storage_dir(ctx, uid)
    facts.append(_fact(FactKey.BUILDAH_STORAGE_DIR, str(buildah_dir), buildah_source))
    theirs = ""
    if not ctx.thorough and not (ctx.which("buildah") or ctx.which("podman")):
        theirs = "neither buildah nor podman is on PATH"
    facts += probe_data_dir(ctx, buildah_dir, buildah_source, FactKey.BUILDAH_FSTYPE, FactKey.BUILDAH_OVERLAY,
                            trial=theirs)
    if ctx.thorough:
        facts.append(_tmpfs_trial(ctx))
    else:
        facts.append(_fact(FactKey.TMPFS_OVERLAY, None, "not tried: a build does not read it"))
    return facts


def _tmpfs_trial(ctx: ProbeContext) -> Fact:
    if not ctx.trials:
        return _fact(FactKey.TMPFS_OVERLAY, None, "not tried (trials disabled)")
    unshare = ctx.which("unshare")
    if unshare is None:
        return _fact(FactKey.TMPFS_OVERLAY, None, "unshare not on PATH; overlay trial not made")
    base = Path(tempfile.mkdtemp(prefix="anybuild-tmpfs-probe-"))
    try:
        return _run_trial(
            ctx, unshare, mode="tmpfs", base=base, key=FactKey.TMPFS_OVERLAY, what="overlay with upperdir on tmpfs"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _fact(key: FactKey, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.STORAGE)
