"""Build tools on PATH and their versions (each `--version` bounded by the probe timeout)."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic
from anybuild.errors import BackendError

__all__ = ["TOOLS", "probe_tools"]

# fact, executable names searched on PATH, version arguments (None: presence only)
TOOLS: tuple[tuple[FactKey, tuple[str, ...], tuple[str, ...] | None], ...] = (
    (FactKey.TOOL_DOCKER, ("docker",), ("--version",)),
    (FactKey.TOOL_BUILDAH, ("buildah",), ("--version",)),
    (FactKey.TOOL_PODMAN, ("podman",), ("--version",)),
    (FactKey.TOOL_CRUN, ("crun",), ("--version",)),
    (FactKey.TOOL_RUNC, ("runc",), ("--version",)),
    (FactKey.TOOL_PROOT, ("proot",), ("--version",)),
    (FactKey.TOOL_FUSE_OVERLAYFS, ("fuse-overlayfs",), ("--version",)),
    (FactKey.TOOL_NEWUIDMAP, ("newuidmap",), None),
    (FactKey.TOOL_KUBECTL, ("kubectl",), ("version", "--client")),
    (FactKey.TOOL_KANIKO, ("executor", "kaniko"), ("version",)),
)
_VERSION = re.compile(r"\bv?(\d+\.\d+(?:\.\d+)?(?:[-+.~][0-9A-Za-z.+~-]+)?)")
_KANIKO_PATH = "/kaniko/executor"
_VERSION_NEEDED = frozenset({FactKey.TOOL_DOCKER})  # docker_mode() reads client versions


def _fact(key: FactKey, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.TOOLS)


def _version(ctx: ProbeContext, path: str, args: tuple[str, ...] | None) -> tuple[str, str]:
    if args is None:
        return "present", path
    try:
        done = ctx.runner.run([path, *args], env=ctx.env, timeout=ctx.timeout)
    except BackendError as exc:
        return "unknown", f"{path}: {exc.message}"
    text = done.output
    found = _VERSION.search(text)
    first = (text.strip().splitlines() or [""])[0]
    return (found.group(1) if found else "unknown"), f"{path} {' '.join(args)}: {first[:120]}"


def _one(ctx: ProbeContext, key: FactKey, names: tuple[str, ...], args: tuple[str, ...] | None) -> Fact:
    if not ctx.thorough and key not in _VERSION_NEEDED:
        args = None  # a build reads presence only (kubectl alone costs ~70 ms of CPU to say its version)
    for name in names:
        path = ctx.which(name)
        if path:
            version, evidence = _version(ctx, path, args)
            return _fact(key, version, evidence)
    if key is FactKey.TOOL_KANIKO and ctx.path(_KANIKO_PATH).exists():
        version, evidence = _version(ctx, str(ctx.path(_KANIKO_PATH)), args)
        return _fact(key, version, evidence)
    return _fact(key, None, f"{', '.join(names)} not on PATH")


def _buildx(ctx: ProbeContext, path: str | None) -> Fact:
    if path is None:
        return _fact(FactKey.DOCKER_BUILDX, None, "no docker client")
    try:
        done = ctx.runner.run([path, "buildx", "version"], env=ctx.env, timeout=ctx.timeout)
    except BackendError as exc:
        return _fact(FactKey.DOCKER_BUILDX, None, f"{path} buildx version: {exc.message}")
    first = (done.output.strip().splitlines() or [""])[0][:160]
    if not done.ok:
        return _fact(FactKey.DOCKER_BUILDX, None, f"{path} buildx version: exit {done.returncode} {first}")
    found = _VERSION.search(done.output)
    return _fact(FactKey.DOCKER_BUILDX, found.group(1) if found else "unknown", f"{path} buildx version: {first}")


def _docker_paths(ctx: ProbeContext) -> dict[Path, str]:
    """Every docker executable on PATH: resolved path -> the first PATH entry naming it, in PATH order."""
    paths: dict[Path, str] = {}
    for directory in ctx.env.get("PATH", os.defpath).split(os.pathsep):
        candidate = Path(directory or ".") / "docker"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            paths.setdefault(candidate.resolve(), str(candidate))
    return paths


def probe_tools(ctx: ProbeContext) -> list[Fact]:
    """Every tool at once: each version is its own process, all asked in parallel (a docker client
    takes 20-40 ms to say its version; asked one after another, they were the probes' longest wait)."""
    cli = ctx.which("docker")  # looked up once for the client list, the CLI fact and buildx
    asked = Path(cli).resolve() if cli else None
    clients = _docker_paths(ctx)  # an old client may do BuildKit without buildx: every one is listed
    with ThreadPoolExecutor(max_workers=len(TOOLS) + len(clients) + 1) as pool:
        futures = {key: pool.submit(_one, ctx, key, names, args) for key, names, args in TOOLS}
        buildx = pool.submit(_buildx, ctx, cli)
        others = {resolved: pool.submit(_version, ctx, path, ("--version",))
                  for resolved, path in clients.items() if resolved != asked}
        facts = [f.result() for f in futures.values()]
        first = futures[FactKey.TOOL_DOCKER].result().value  # the PATH's first client: not asked twice

        def version(resolved: Path) -> str:
            if resolved in others:
                return others[resolved].result()[0]
            return first if isinstance(first, str) else "unknown"

        listed = [f"{path}={version(resolved)}" for resolved, path in clients.items()]
        facts.append(_fact(FactKey.DOCKER_CLIENTS, tuple(listed), "docker executables on PATH, in PATH order"))
        facts.append(_fact(FactKey.DOCKER_CLI, cli, f"PATH lookup of docker: {cli or 'not found'}"))
        facts.append(buildx.result())
    return facts
