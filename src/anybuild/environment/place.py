"""Where anybuild runs: container markers, cgroup version, Kubernetes, workspaces, CI."""

from __future__ import annotations

import re
from fnmatch import fnmatch

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic

__all__ = ["probe_place"]

_CGROUP_RUNTIME = re.compile(r"(docker|kubepods|containerd|libpod|crio|lxc|buildkit)")
_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# (kind, variable that marks it); first match wins.
_WORKSPACE_VARS: tuple[tuple[str, str], ...] = (
    ("devpod", "DEVPOD"),
    ("devpod", "DEVPOD_WORKSPACE_ID"),
    ("codespaces", "CODESPACES"),
    ("gitpod", "GITPOD_WORKSPACE_ID"),
    ("coder", "CODER_WORKSPACE_NAME"),
    ("coder", "CODER_AGENT_URL"),
    ("coder", "CODER"),
)
_WORKSPACE_HOSTS: tuple[tuple[str, str], ...] = (("devpod", "devpod-*"), ("workspace", "*-workspace-*"))
_CI_VARS: tuple[tuple[str, str], ...] = (
    ("github-actions", "GITHUB_ACTIONS"),
    ("gitlab-ci", "GITLAB_CI"),
    ("jenkins", "JENKINS_URL"),
    ("jenkins", "JENKINS_HOME"),
    ("ci", "CI"),
)


def _fact(key: FactKey, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.PLACE)


def probe_place(ctx: ProbeContext) -> list[Fact]:
    return [*_container(ctx), _cgroup_version(ctx), _kubernetes(ctx), _workspace(ctx), _ci(ctx)]


def _container(ctx: ProbeContext) -> list[Fact]:
    markers: list[str] = []
    for marker in ("/.dockerenv", "/run/.containerenv"):
        if ctx.path(marker).exists():
            markers.append(f"{marker} exists")
    cgroup = ctx.read("/proc/1/cgroup") or ""
    for line in cgroup.splitlines():
        if _CGROUP_RUNTIME.search(line):
            markers.append(f"/proc/1/cgroup: {line.strip()}")
            break
    mountinfo = ctx.read("/proc/1/mountinfo") or ctx.read("/proc/self/mountinfo") or ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/" and " - overlay " in line:
            markers.append(f"mountinfo: / is overlay ({_short_mount(line)})")
            break
    if ctx.env.get("container"):
        markers.append(f"container={ctx.env['container']}")
    evidence = "; ".join(markers) or "no /.dockerenv, /run/.containerenv, runtime cgroup or overlay /"
    return [
        _fact(FactKey.IN_CONTAINER, bool(markers), evidence),
        _fact(FactKey.CONTAINER_MARKERS, tuple(markers), evidence),
    ]


def _short_mount(line: str) -> str:
    head, _, tail = line.partition(" - ")
    fields = head.split()
    rest = tail.split()
    point = fields[4] if len(fields) > 4 else "?"
    fstype = rest[0] if rest else "?"
    source = rest[1] if len(rest) > 1 else "?"
    return f"{point} {fstype} {source}"


def _cgroup_version(ctx: ProbeContext) -> Fact:
    mountinfo = ctx.read("/proc/self/mountinfo")
    if mountinfo is None:
        return _fact(FactKey.CGROUP_VERSION, None, "/proc/self/mountinfo unreadable")
    v2_at: str | None = None
    v1 = False
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or not rest:
            continue
        if rest[0] == "cgroup2":
            v2_at = fields[4]
        elif rest[0] == "cgroup":
            v1 = True
    match (v2_at, v1):
        case ("/sys/fs/cgroup", _):
            return _fact(FactKey.CGROUP_VERSION, "v2", "mountinfo: cgroup2 at /sys/fs/cgroup")
        case (str(where), True):
            evidence = f"mountinfo: cgroup v1 hierarchies and cgroup2 at {where}"
            return _fact(FactKey.CGROUP_VERSION, "hybrid", evidence)
        case (None, True):
            return _fact(FactKey.CGROUP_VERSION, "v1", "mountinfo: cgroup v1 hierarchies only")
        case _:
            return _fact(FactKey.CGROUP_VERSION, None, "mountinfo: no cgroup mounts")


def _kubernetes(ctx: ProbeContext) -> Fact:
    token = f"{_SA_DIR}/token"
    if ctx.path(token).exists():
        return _fact(FactKey.KUBERNETES, True, f"{token} exists")
    host = ctx.env.get("KUBERNETES_SERVICE_HOST")
    if host:
        return _fact(FactKey.KUBERNETES, True, f"KUBERNETES_SERVICE_HOST={host}")
    return _fact(FactKey.KUBERNETES, False, f"no {token}, KUBERNETES_SERVICE_HOST unset")


def _workspace(ctx: ProbeContext) -> Fact:
    for kind, var in _WORKSPACE_VARS:
        if ctx.env.get(var):
            return _fact(FactKey.WORKSPACE, kind, f"{var} is set")
    for kind, pattern in _WORKSPACE_HOSTS:
        if fnmatch(ctx.hostname, pattern):
            return _fact(FactKey.WORKSPACE, kind, f"hostname {ctx.hostname} matches {pattern}")
    return _fact(FactKey.WORKSPACE, None, f"no workspace variables; hostname {ctx.hostname}")


def _ci(ctx: ProbeContext) -> Fact:
    for kind, var in _CI_VARS:
        value = ctx.env.get(var, "")
        if value and value.lower() not in {"0", "false"}:
            return _fact(FactKey.CI, kind, f"{var} is set")
    return _fact(FactKey.CI, None, "no CI variables")
