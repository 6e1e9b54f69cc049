"""The docker backend: BuildKit through buildx, integrated BuildKit (old clients), or classic.

The mode comes from the facts: ``docker buildx`` when the plugin answers; else a
client older than 23 (which still builds with BuildKit under DOCKER_BUILDKIT=1);
else the classic builder (DOCKER_BUILDKIT=0). DOCKER_HOST is honoured as given.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, Verdict
from anybuild.backends.failure import run_or_fail
from anybuild.backends.invocation import WORK, Command, Invocation
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import BackendError
from anybuild.process import Runner, SubprocessRunner

__all__ = ["DockerBackend", "DockerMode", "docker_invocation", "docker_mode", "docker_verdict"]

_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_OVERLAY_FS = frozenset({"overlay", "overlayfs", "aufs"})


class DockerMode(StrEnum):
    BUILDX = "buildx"
    BUILDKIT = "buildkit"  # DOCKER_BUILDKIT=1 with a client that has BuildKit built in (< 23)
    CLASSIC = "classic"


def _major(version: str) -> int | None:
    found = re.match(r"(\d+)", version)
    return int(found.group(1)) if found else None


def docker_mode(facts: Facts) -> tuple[DockerMode, str]:
    """(mode, client path) from the facts."""
    cli = facts.text(FactKey.DOCKER_CLI) or "docker"
    if facts.text(FactKey.DOCKER_BUILDX):
        return DockerMode.BUILDX, cli
    clients = facts.value(FactKey.DOCKER_CLIENTS) or ()
    for entry in clients if isinstance(clients, tuple) else ():
        path, _, version = entry.rpartition("=")
        major = _major(version)
        if major is not None and major < 23:
            return DockerMode.BUILDKIT, path
    return DockerMode.CLASSIC, cli


def _storage_fix(facts: Facts, root: str) -> str:
    fixes = [f"mount an emptyDir or tmpfs at {root}"]
    if facts.flag(FactKey.DEV_FUSE) and facts.text(FactKey.TOOL_FUSE_OVERLAYFS):
        fixes.append("start dockerd with --storage-driver fuse-overlayfs")
    else:
        fixes.append("start dockerd with --storage-driver vfs")
    fixes.append("use the built-in builder (anybuild build --backend builtin)")
    return "; or ".join(fixes)


def docker_verdict(facts: Facts) -> Verdict:
    """Whether a docker daemon can build here, from the facts alone."""
    if not facts.text(FactKey.TOOL_DOCKER):
        return Verdict(
            ok=False,
            reason="no docker client on PATH",
            evidence=(facts.evidence(FactKey.TOOL_DOCKER),),
            fix="install the docker CLI, or use the built-in builder",
        )
    host = facts.text(FactKey.DOCKER_HOST) or "the default socket"
    root = facts.text(FactKey.DOCKER_ROOT_DIR) or facts.text(FactKey.DOCKER_DATA_ROOT) or "/var/lib/docker"
    fstype = facts.text(FactKey.DOCKER_ROOT_FSTYPE)
    # The trial mount counts only with an overlay-like filesystem under the data root: a failed trial
    # alone may just mean this user cannot mount, while the daemon (as root) can.
    on_overlay = fstype in _OVERLAY_FS
    storage_evidence = tuple(
        e for e in (facts.evidence(FactKey.DOCKER_ROOT_FSTYPE), facts.evidence(FactKey.DOCKER_ROOT_OVERLAY)) if e
    )
    error = facts.text(FactKey.DOCKER_ERROR)
    if not facts.flag(FactKey.DOCKER_REACHABLE):
        evidence: tuple[str, ...] = (facts.evidence(FactKey.DOCKER_REACHABLE),)
        if error and error not in evidence[0]:
            quoted = facts.evidence(FactKey.DOCKER_ERROR)
            evidence += (quoted if error in quoted else f"docker daemon error: {error}",)
        storage_bad = on_overlay or (error is not None and "failed to mount overlay" in error)
        if storage_bad:
            return Verdict(
                ok=False,
                reason=f"the docker daemon at {host} is down, and its data root {root} is on {fstype or '?'} "
                "where overlay2 cannot mount (failed to mount overlay: invalid argument)",
                evidence=evidence + storage_evidence,
                fix=_storage_fix(facts, root),
            )
        return Verdict(
            ok=False,
            reason=f"no docker daemon answers at {host}",
            evidence=evidence,
            fix="start dockerd, or set DOCKER_HOST, or use the built-in builder",
        )
    driver = facts.text(FactKey.DOCKER_STORAGE_DRIVER) or "?"
    if driver.startswith("overlay") and on_overlay and facts.value(FactKey.DOCKER_ROOT_OVERLAY) is not True:
        return Verdict(
            ok=False,
            reason=f"the daemon's {driver} storage is on {fstype} at {root}: "
            "builds fail with 'failed to mount overlay: invalid argument'",
            evidence=(facts.evidence(FactKey.DOCKER_STORAGE_DRIVER), *storage_evidence),
            fix=_storage_fix(facts, root),
        )
    mode, cli = docker_mode(facts)
    version = facts.text(FactKey.DOCKER_VERSION) or "?"
    return Verdict(
        ok=True,
        reason=f"docker {version} answers at {host} (storage {driver} on {fstype or '?'}); "
        f"builds with {mode} via {cli}",
        evidence=(facts.evidence(FactKey.DOCKER_REACHABLE), facts.evidence(FactKey.DOCKER_STORAGE_DRIVER)),
    )


def docker_invocation(
    request: BuildRequest,
    *,
    mode: DockerMode,
    cli: str = "docker",
    host: str | None = None,
    network: str | None = None,
) -> Invocation:
    """The commands for one build (pure)."""
    env: dict[str, str] = {}
    if host:
        env["DOCKER_HOST"] = host
    argv: list[str]
    match mode:
        case DockerMode.BUILDX:
            argv = [cli, "buildx", "build", "--progress=plain"]
        case DockerMode.BUILDKIT:
            argv = [cli, "build", "--progress=plain"]
            env["DOCKER_BUILDKIT"] = "1"
        case DockerMode.CLASSIC:
            argv = [cli, "build"]
            env["DOCKER_BUILDKIT"] = "0"
            if request.secrets:
                raise BackendError(
                    "the classic docker builder cannot pass build secrets",
                    backend=BackendName.DOCKER,
                    environmental=True,
                    hint="install docker buildx, or use another backend",
                )
    if request.platform and "," in request.platform and mode is not DockerMode.BUILDX:
        raise BackendError(
            f"docker build makes one image, not an index of several platforms: --platform {request.platform}",
            backend=BackendName.DOCKER,
            environmental=True,
            hint="use --backend builtin (one index; foreign RUN steps under QEMU), or install docker buildx "
                 "with a docker-container builder",
        )
    argv += ["--file", str(request.dockerfile)]
    if request.target:
        argv += ["--target", request.target]
    if request.platform:
        argv += ["--platform", request.platform]
    for key, value in request.build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in sorted(request.labels.items()):
        argv += ["--label", f"{key}={value}"]
    for tag in request.tags:
        argv += ["--tag", tag]
    for secret in request.secrets:
        source = f"src={secret.src}" if secret.src else f"env={secret.env}"
        argv += ["--secret", f"id={secret.id},{source}"]
    if request.no_cache:
        argv.append("--no-cache")
    if network:
        argv += ["--network", network]
    argv += ["--iidfile", f"{WORK}/iid"]
    commands: list[Command] = []
    if mode is DockerMode.BUILDX:
        argv += ["--metadata-file", f"{WORK}/metadata.json"]
        if request.push:
            argv.append("--push")
        if request.load or not request.push:
            argv.append("--load")
        if request.output:
            raise BackendError(
                f"the docker backend does not write {request.output}",
                backend=BackendName.DOCKER,
                environmental=True,
                hint="use the built-in builder or buildah for --output",
            )
        commands.append(Command(argv=(*argv, str(request.context)), env=env, purpose="build"))
    else:
        if request.output:
            raise BackendError(
                f"the docker backend does not write {request.output}",
                backend=BackendName.DOCKER,
                environmental=True,
                hint="use the built-in builder or buildah for --output",
            )
        commands.append(Command(argv=(*argv, str(request.context)), env=env, purpose="build"))
        if request.push:
            commands += [Command(argv=(cli, "push", tag), env=env, purpose=f"push {tag}") for tag in request.tags]
    return Invocation(commands=tuple(commands))


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerBackend:
    """Builds with a docker daemon; the mode, client and host come from the facts."""

    mode: DockerMode
    cli: str = "docker"
    host: str | None = None
    network: str | None = None  # "host" where the daemon has no bridge network
    runner: Runner = field(default_factory=SubprocessRunner)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    facts: Facts = field(default_factory=Facts)
    timeout: float | None = None
    name: BackendName = BackendName.DOCKER

    @classmethod
    def from_facts(cls, facts: Facts, *, runner: Runner, env: Mapping[str, str]) -> DockerBackend:
        mode, cli = docker_mode(facts)
        return cls(mode=mode, cli=cli, host=env.get("DOCKER_HOST"), runner=runner, env=env, facts=facts)

    def available(self, facts: Facts) -> Verdict:
        return docker_verdict(facts)

    def invocation(self, request: BuildRequest) -> Invocation:
        return docker_invocation(request, mode=self.mode, cli=self.cli, host=self.host, network=self.network)

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        started = time.time()
        run = run_or_fail(self.name, self.invocation(request), runner=self.runner, env=self.env, sink=sink,
                          cwd=request.context, timeout=self.timeout)
        digest = _digest(run.outputs, run.lines) if request.push else None
        references = request.tags if (request.push or request.load or self.mode is not DockerMode.BUILDX) else ()
        return BuildResult(
            backend=self.name,
            digest=digest,
            references=tuple(references),
            sandbox=str(self.mode),
            cache_hits=sum(1 for line in run.lines if "CACHED" in line or "Using cache" in line),
            started=started,
            finished=time.time(),
        )


def _digest(outputs: Mapping[str, str], lines: list[str]) -> str | None:
    metadata = outputs.get("metadata.json")
    if metadata:
        try:
            data = json.loads(metadata)
        except ValueError:
            data = {}
        digest = data.get("containerimage.digest") if isinstance(data, dict) else None
        if isinstance(digest, str):
            return digest
    for line in reversed(lines):
        found = _PUSH_DIGEST.search(line)
        if found:
            return found.group(1)
    return None
