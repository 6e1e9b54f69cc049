"""Building one Dockerfile with dockerd and with anybuild, and reading both back (conformance tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anybuild.backends.base import BuildRequest, ListSink, SecretSpec
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.sandbox import SandboxKind
from tests.builder.imagetree import archive_image, file_tree, unpack_to

SECRET = "s3cr3t-token-value"


@dataclass(frozen=True)
class Case:
    name: str
    context: Path
    dockerfile: Path
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    secret: bool = False


@dataclass(frozen=True)
class Built:
    archive: Path
    tree: dict[str, tuple[Any, ...]]
    config: dict[str, Any]
    layers: int
    log: list[str]
    ran: str = ""  # anybuild: the RUN sandbox and snapshotter that ran (BuildResult.sandbox)


def _read(archive: Path, work: Path, log: list[str], ran: str = "") -> Built:
    store, manifest, config = archive_image(archive, work / "store")
    unpack_to(store, manifest, work / "root")
    return Built(archive=archive, tree=file_tree(work / "root"), config=config, layers=len(manifest.layers), log=log,
                 ran=ran)


def docker_build(case: Case, dockerd: Any, work: Path) -> Built:
    work.mkdir(parents=True, exist_ok=True)
    tag = f"conformance/{case.name.lower()}:docker"
    args = ["build", "-q", "--network", "host", "-t", tag, "-f", str(case.dockerfile)]
    for key, value in case.build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if case.target:
        args += ["--target", case.target]
    if case.secret:
        secret = work / "secret"
        secret.write_text(SECRET)
        args += ["--secret", f"id=token,src={secret}"]
    dockerd.docker(*args, str(case.context))
    archive = work / "docker.tar"
    dockerd.docker("save", "-o", str(archive), tag)
    return _read(archive, work, [])


def anybuild_build(case: Case, sandbox: SandboxKind, mirror: str, work: Path, data: Path,
                   snapshotter: str | None = None) -> Built:
    work.mkdir(parents=True, exist_ok=True)
    secrets: tuple[SecretSpec, ...] = ()
    if case.secret:
        secret = work / "secret"
        secret.write_text(SECRET)
        secrets = (SecretSpec(id="token", src=secret),)
    archive = work / "anybuild.tar"
    request = BuildRequest(
        context=case.context, dockerfile=case.dockerfile, tags=(f"conformance/{case.name.lower()}:anybuild",),
        build_args=case.build_args, target=case.target, secrets=secrets, output=f"docker-archive:{archive}",
        insecure_registries=(mirror,), registry_mirrors={"docker.io": (mirror,)},
        no_cache=True,  # every sandbox must really run every case, not hit another sandbox's cache
    )
    sink = ListSink()
    env = dict(os.environ, ANYBUILD_DATA_DIR=str(data))
    if snapshotter is not None:
        env["ANYBUILD_SNAPSHOTTER"] = snapshotter
    result = build_image(request, sink, BuildEnvironment(env=env, sandbox=str(sandbox)))
    return _read(archive, work, sink.lines, result.sandbox or "")
