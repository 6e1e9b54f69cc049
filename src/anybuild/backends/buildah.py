"""The buildah backend (and ``podman build`` where only podman exists).

Storage driver and isolation come from the facts: overlay where an overlay
upper dir works in buildah's storage, fuse-overlayfs with /dev/fuse, vfs
otherwise; ``oci`` isolation for root with CAP_SYS_ADMIN, ``rootless`` for
other users with working user namespaces, ``chroot`` otherwise. ``--runtime
runc`` is chosen on hybrid / v1 cgroups, where crun refuses to run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, Verdict
from anybuild.backends.failure import run_or_fail
from anybuild.backends.invocation import WORK, Command, Invocation
from anybuild.backends.registries_conf import registries_conf
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import BackendError
from anybuild.process import Runner, SubprocessRunner

__all__ = [
    "BuildahBackend",
    "BuildahSettings",
    "Isolation",
    "StorageDriver",
    "buildah_invocation",
    "buildah_settings",
    "buildah_verdict",
]

_UNNAMED = "localhost/anybuild/unnamed:latest"


class StorageDriver(StrEnum):
    OVERLAY = "overlay"
    FUSE_OVERLAYFS = "fuse-overlayfs"  # the overlay driver with mount_program=fuse-overlayfs
    VFS = "vfs"


class Isolation(StrEnum):
    OCI = "oci"
    ROOTLESS = "rootless"
    CHROOT = "chroot"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildahSettings:
    """How buildah (or podman) is run here, and why."""

    tool: BackendName = BackendName.BUILDAH
    binary: str = "buildah"
    driver: StorageDriver = StorageDriver.VFS
    fuse_overlayfs: str = "fuse-overlayfs"
    isolation: Isolation = Isolation.CHROOT
    runtime: str | None = None
    root: Path | None = None
    runroot: Path | None = None
    signature_policy: Path | None = None
    reasons: tuple[str, ...] = ()


def _driver(facts: Facts) -> tuple[StorageDriver, str]:
    if facts.value(FactKey.BUILDAH_OVERLAY) is True:
        return StorageDriver.OVERLAY, f"overlay: {facts.evidence(FactKey.BUILDAH_OVERLAY)}"
    fuse = facts.text(FactKey.TOOL_FUSE_OVERLAYFS)
    if facts.flag(FactKey.DEV_FUSE) and fuse:
        why = facts.evidence(FactKey.BUILDAH_OVERLAY) or "overlay not tried"
        return StorageDriver.FUSE_OVERLAYFS, f"fuse-overlayfs {fuse} with /dev/fuse ({why})"
    return StorageDriver.VFS, "vfs: no working overlay and no fuse-overlayfs with /dev/fuse"


def _isolation(facts: Facts) -> tuple[Isolation, str | None, str]:
    uid = facts.number(FactKey.UID)
    cgroup = facts.text(FactKey.CGROUP_VERSION)
    runc, crun = facts.text(FactKey.TOOL_RUNC), facts.text(FactKey.TOOL_CRUN)
    runtime: str | None = None
    if crun and cgroup == "v2":
        runtime = "crun"
    elif runc:
        runtime = "runc"
    if uid == 0 and facts.flag(FactKey.CAP_SYS_ADMIN) and runtime:
        why = f"oci: root with CAP_SYS_ADMIN, runtime {runtime} (cgroup {cgroup or '?'})"
        return Isolation.OCI, runtime, why
    if uid not in (0, None) and facts.flag(FactKey.USERNS_WORKS) and runtime:
        return Isolation.ROOTLESS, runtime, "rootless: user namespaces work"
    return Isolation.CHROOT, None, "chroot: no CAP_SYS_ADMIN or no OCI runtime"


def buildah_settings(facts: Facts, *, tool: BackendName = BackendName.BUILDAH) -> BuildahSettings:
    """The storage driver, isolation and runtime for buildah or podman, from the facts (pure)."""
    driver, driver_why = _driver(facts)
    isolation, runtime, isolation_why = _isolation(facts)
    fact = FactKey.TOOL_PODMAN if tool is BackendName.PODMAN else FactKey.TOOL_BUILDAH
    return BuildahSettings(
        tool=tool,
        binary=str(tool),
        driver=driver,
        isolation=isolation,
        runtime=runtime,
        reasons=(driver_why, isolation_why, facts.evidence(fact)),
    )


def buildah_verdict(facts: Facts, *, tool: BackendName = BackendName.BUILDAH) -> Verdict:
    fact = FactKey.TOOL_PODMAN if tool is BackendName.PODMAN else FactKey.TOOL_BUILDAH
    version = facts.text(fact)
    if not version:
        return Verdict(
            ok=False,
            reason=f"{tool} is not on PATH",
            evidence=(facts.evidence(fact),),
            fix=f"install {tool}, or use the built-in builder",
        )
    uid = facts.number(FactKey.UID)
    if uid not in (0, None) and not facts.flag(FactKey.USERNS_WORKS):
        return Verdict(
            ok=False,
            reason=f"{tool} needs root or working user namespaces; uid {uid} cannot create one",
            evidence=(facts.evidence(FactKey.UID), facts.evidence(FactKey.USERNS_WORKS)),
            fix="allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0), or use the built-in builder",
        )
    settings = buildah_settings(facts, tool=tool)
    return Verdict(
        ok=True,
        reason=f"{tool} {version} with {settings.driver} storage and {settings.isolation} isolation",
        evidence=settings.reasons,
    )


def _globals(settings: BuildahSettings) -> list[str]:
    argv = [settings.binary]
    if settings.root:
        argv += ["--root", str(settings.root)]
    if settings.runroot:
        argv += ["--runroot", str(settings.runroot)]
    match settings.driver:
        case StorageDriver.FUSE_OVERLAYFS:
            argv += ["--storage-driver", "overlay", "--storage-opt", f"overlay.mount_program={settings.fuse_overlayfs}"]
        case driver:
            argv += ["--storage-driver", str(driver)]
    return argv


def _policy(settings: BuildahSettings) -> list[str]:
    return ["--signature-policy", str(settings.signature_policy)] if settings.signature_policy else []


def _host(reference: str) -> str:
    first = reference.split("/", 1)[0]
    return first if "/" in reference and ("." in first or ":" in first or first == "localhost") else "docker.io"


def buildah_invocation(request: BuildRequest, settings: BuildahSettings) -> Invocation:
    """The commands for one build (pure)."""
    if request.platform and "," in request.platform:
        # buildah builds several platforms only into a local manifest list (--manifest), pushed apart with
        # `buildah manifest push --all`; this backend pushes one image, so it says so instead of pushing one
        raise BackendError(
            f"the {settings.tool} backend builds one platform at a time: --platform {request.platform}",
            backend=settings.tool,
            environmental=True,
            hint="use --backend builtin for one index of several platforms (foreign RUN steps under QEMU)",
        )
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    if request.registry_mirrors or request.insecure_registries:
        files["registries.conf"] = registries_conf(request.registry_mirrors, request.insecure_registries)
        env["CONTAINERS_REGISTRIES_CONF"] = f"{WORK}/registries.conf"
    build = [*_globals(settings), "bud" if settings.tool is BackendName.BUILDAH else "build", *_policy(settings)]
    build += ["--isolation", str(settings.isolation)]
    if settings.runtime:
        build += ["--runtime", settings.runtime]
    build += ["--layers", "--file", str(request.dockerfile)]
    if request.target:
        build += ["--target", request.target]
    if request.platform:
        build += ["--platform", request.platform]
    for key, value in request.build_args.items():
        build += ["--build-arg", f"{key}={value}"]
    for key, value in sorted(request.labels.items()):
        build += ["--label", f"{key}={value}"]
    name = request.tags[0] if request.tags else _UNNAMED
    for tag in request.tags or (_UNNAMED,):
        build += ["--tag", tag]
    for secret in request.secrets:
        source = f"src={secret.src}" if secret.src else f"env={secret.env}"
        build += ["--secret", f"id={secret.id},{source}"]
    if request.no_cache:
        build.append("--no-cache")
    build += ["--iidfile", f"{WORK}/iid", str(request.context)]
    commands = [Command(argv=tuple(build), env=env, purpose="build")]
    push = [*_globals(settings), "push", *_policy(settings)]
    if request.push:
        for index, tag in enumerate(request.tags):
            tls = ["--tls-verify=false"] if _host(tag) in request.insecure_registries else []
            argv = (*push, *tls, "--digestfile", f"{WORK}/digest-{index}", name, f"docker://{tag}")
            commands.append(Command(argv=argv, env=env, purpose=f"push {tag}"))
    if request.load:
        for tag in request.tags:
            commands.append(Command(argv=(*push, name, f"docker-daemon:{tag}"), env=env, purpose=f"load {tag}"))
    if request.output:
        kind, _, where = request.output.partition(":")
        match kind:
            case "oci":
                destination = f"oci:{where}"
            case "docker-archive":
                destination = f"docker-archive:{where}:{name}"
            case _:
                raise BackendError(
                    f"unknown output {request.output!r}",
                    backend=str(settings.tool),
                    environmental=False,
                    hint="use oci:DIR or docker-archive:FILE",
                )
        commands.append(Command(argv=(*push, name, destination), env=env, purpose=f"write {request.output}"))
    return Invocation(commands=tuple(commands), files=files)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildahBackend:
    """Builds with buildah (or podman) as the settings say."""

    settings: BuildahSettings
    runner: Runner = field(default_factory=SubprocessRunner)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    timeout: float | None = None

    @property
    def name(self) -> BackendName:
        return self.settings.tool

    @classmethod
    def from_facts(
        cls, facts: Facts, *, runner: Runner, env: Mapping[str, str], tool: BackendName = BackendName.BUILDAH
    ) -> BuildahBackend:
        return cls(settings=buildah_settings(facts, tool=tool), runner=runner, env=env)

    def available(self, facts: Facts) -> Verdict:
        return buildah_verdict(facts, tool=self.settings.tool)

    def invocation(self, request: BuildRequest) -> Invocation:
        return buildah_invocation(request, self.settings)

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        started = time.time()
        run = run_or_fail(self.name, self.invocation(request), runner=self.runner, env=self.env, sink=sink,
                          cwd=request.context, timeout=self.timeout)
        digests = [run.outputs[k].strip() for k in sorted(run.outputs) if k.startswith("digest-")]
        references = list(request.tags) if (request.push or request.load) else []
        return BuildResult(
            backend=self.name,
            digest=digests[0] if digests else None,
            references=tuple(references),
            sandbox=f"{self.settings.isolation}+{self.settings.driver}",
            cache_hits=sum(1 for line in run.lines if "Using cache" in line),
            started=started,
            finished=time.time(),
        )
