"""Upstream conformance: other projects' Dockerfile tests built by anybuild and by the test dockerd.

The cases (tests/builder/upstream/, see its README) are BuildKit's Dockerfile front-end
integration tests, moby's integration-cli and integration/build build tests and buildah's
conformance cases (its own differential suite against Docker) turned into context directories.
Each is built on two kinds of base, a busybox with the top-level mount points /proc and /sys
and one without them (as Docker Hub's busybox and distroless bases), once by dockerd (BuildKit
0.8 of Docker Engine 20.10, this machine's) and by anybuild as it picks by itself, then, for a case
with a RUN, by every other sandbox this machine offers, proot included (see variants();
PROOT_LIMITS lists what the ptrace sandbox cannot give). File trees (type, mode, owner, size,
content, link target, hard links) and runtime configs are compared, times ignored; the anybuild
image is then loaded into dockerd and run (once per case, off the full base). Cache mounts start
empty for every case on both sides, as in the upstream tests (a fresh daemon each).

anybuild follows current BuildKit. Where Docker 20.10 disagrees, cases.toml says so with the
reason and the BuildKit change that shows current behaviour, and the test checks that the
difference is exactly that: `mount_stubs` (the empty RUN --mount targets BuildKit 0.8 leaves,
compared as tests/builder/test_conformance.py does), `docker_differs` (paths that differ),
`docker` (a Docker 20.10 bug: it refuses what BuildKit builds or the reverse) and `newer` (a
Dockerfile feature newer than Docker 20.10's frontend: anybuild builds it, the case's own RUN
checks judge it). Each outcome is recorded as the `upstream` user property; tests/builder/
conftest.py adds up the figures at the end of the run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anybuild.builder.sandbox import SandboxKind, probe_sandbox_facts
from anybuild.builder.sandbox.model import _allowed
from anybuild.errors import AnybuildError
from tests.builder.building import Built, Case, anybuild_build, docker_build
from tests.builder.imagetree import runtime_config, tree_diff
from tests.builder.upstream_cases import (
    BASE_TAGS,
    NO_BASE,
    FileServer,
    UpstreamCase,
    load_cases,
    prepare_context,
    serving,
)
from tests.harness.procs import HarnessError

CASES = load_cases()
FACTS = probe_sandbox_facts()
_KINDS = (SandboxKind.RUNC, SandboxKind.UNSHARE, SandboxKind.CHROOT, SandboxKind.PROOT)
SANDBOXES = [k for k in _KINDS if _allowed(k, FACTS)]
# What proot, the last rung of the ladder (ptrace, no privilege), cannot give: each case is built by proot
# all the same and must really fall short (a stale entry fails).
PROOT_LIMITS = {
    "bk-mount-tmpfs-size": "proot binds a directory for a tmpfs mount: `mount` lists no tmpfs with its size",
}
# The share of the cases compared with Docker, on each kind of base, allowed to differ from Docker
# 20.10, each with its reason: a Docker 20.10 behaviour current BuildKit changed.
MAX_KNOWN_DIFFERENCES = 0.03
MIN_RUNNABLE = 150
MOUNT_STUBS = ("Docker 20.10 (BuildKit 0.8) leaves the empty directories it made as RUN --mount targets (and "
               "their parents) in the layer; BuildKit >= 0.9 removes them (executor/stubs.go MountStubsCleaner, "
               "moby/buildkit#1739, recursively since #3314), as anybuild does")


def variants(case: UpstreamCase, kind: str) -> list[tuple[SandboxKind, str]]:
    """(sandbox, snapshotter) builds of a case on a kind of base.

    The first build is what anybuild picks by itself (the first sandbox allowed, the "auto"
    snapshotter). The case is built again with the portable walk snapshotter: a case with a RUN by
    every other sandbox this machine offers (on the bare base each sandbox has to make the mount
    points itself), so that every sandbox and both snapshotters run every RUN case on both bases;
    one without a RUN, where the sandbox plays no part, by the first sandbox.
    """
    del kind  # every kind of base gets every sandbox
    first = SANDBOXES[0] if SANDBOXES else SandboxKind.RUNC
    builds = [(first, "auto")]
    if not case.runs:
        return [*builds, (first, "walk")]
    return [*builds, *((sandbox, "walk") for sandbox in SANDBOXES if sandbox != first)]


def matrix() -> Iterator[Any]:
    for case in CASES:
        marks = [pytest.mark.skip(reason=case.skip)] if case.skip else []
        for kind in case.kinds:
            yield pytest.param(case, kind, id=f"{case.name}-{kind}", marks=marks)


def test_cases_are_loaded_and_named() -> None:
    # Guards against the parametrized test collecting nothing, and keeps every case's origin named.
    runnable = [c for c in CASES if not c.skip]
    assert len(runnable) >= MIN_RUNNABLE, len(runnable)
    for case in CASES:
        assert case.repo in ("moby/buildkit", "moby/moby", "containers/buildah"), case.name
        assert case.path.endswith(".go") and case.test, case.name
        assert not (case.docker and case.newer), f"{case.name}: a Docker 20.10 bug or a newer feature, not both"
        assert case.newer or not case.docker_panics, f"{case.name}: docker_panics goes with newer"


def test_known_differences_stay_few_and_explained() -> None:
    for case in CASES:
        reason = case.docker or case.newer or (case.docker_differs.reason if case.docker_differs else None)
        if reason is not None:
            assert len(reason) > 40 and "BuildKit" in reason, f"{case.name}: say what current BuildKit does, and where"
    for kind in (*BASE_TAGS, NO_BASE):
        compared = [c for c in CASES if not c.skip and not c.newer and kind in c.kinds]
        known = [c.name for c in compared if c.docker_differs_for(kind) is not None or c.docker is not None]
        assert len(known) <= MAX_KNOWN_DIFFERENCES * len(compared), (kind, len(compared), known)


@pytest.fixture(scope="session")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    """The files cases ADD by URL (the upstream tests' fakeStorage), over HTTP on 127.0.0.1."""
    with serving(tmp_path_factory.mktemp("served")) as server:
        yield server


def _docker(case: Case, dockerd: Any, work: Path) -> Built | str:
    """Docker's image, or the error it refused the Dockerfile with."""
    try:
        built = docker_build(case, dockerd, work)
    except HarnessError as exc:
        if "empty export" in str(exc):  # an image without layers: docker save cannot write it
            return _no_layers(case, dockerd, work)
        lines = [line for line in str(exc).splitlines() if "ERROR" in line or "error" in line]
        return (lines or [str(exc)])[-1].strip()[:300]
    shutil.rmtree(work / "root", ignore_errors=True)
    return built


def _no_layers(case: Case, dockerd: Any, work: Path) -> Built:
    """A layerless image (FROM scratch and metadata only), read with docker image inspect."""
    [image] = json.loads(dockerd.docker("image", "inspect", f"conformance/{case.name.lower()}:docker").stdout)
    assert image["RootFS"].get("Layers") in (None, []), image["RootFS"]
    config = {"config": image["Config"], "rootfs": {"diff_ids": []}}
    return Built(archive=work / "none", tree={}, config=config, layers=0, log=[])


def _compare(upstream: UpstreamCase, kind: str, ours: Built, docker: Built) -> list[str]:
    """The differences between the two images, less Docker 20.10's listed ones (each checked to be there)."""
    problems: list[str] = []
    mine, theirs = dict(ours.tree), dict(docker.tree)
    for path in sorted(upstream.mount_stubs):
        stub = theirs.pop(path, None)
        if stub is None or stub[0] != "dir":
            problems.append(f"{path}: listed as a Docker 20.10 mount stub, but Docker's image has {stub}")
        if path in mine:
            problems.append(f"{path}: listed as a Docker 20.10 mount stub, but anybuild has it too")
    known = upstream.docker_differs_for(kind)
    config, docker_config = runtime_config(ours.config), runtime_config(docker.config)
    for path in sorted(known.paths if known else ()):
        if path.startswith("config:"):  # a config key, as "config:Entrypoint"
            key = path.removeprefix("config:")
            if config[key] == docker_config[key]:
                problems.append(f"{path}: listed in cases.toml as differing from Docker 20.10, but it does not")
            config.pop(key)
            continue
        if mine.get(path) == theirs.get(path):
            problems.append(f"{path}: listed in cases.toml as differing from Docker 20.10, but it does not")
        mine.pop(path, None)
        theirs.pop(path, None)
    problems += tree_diff(mine, theirs)
    problems += [f"config {key}: anybuild={config[key]!r} docker={docker_config[key]!r}"
                 for key in config if config[key] != docker_config[key]]
    if len(ours.config["rootfs"]["diff_ids"]) != ours.layers:
        problems.append("the config's diff_ids do not match the manifest's layers")
    return problems


def _runs_as_docker_runs(dockerd: Any, repository: str) -> None:
    """anybuild's image starts a shell in Docker, or fails to start exactly as Docker's own image does
    (USER testUser absent from /etc/passwd, VOLUME over a file: images Docker builds but cannot run)."""
    argv = ("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh")
    ours = dockerd.docker(*argv, f"{repository}:anybuild", "-c", "true", check=False)
    if ours.returncode == 0:
        return
    theirs = dockerd.docker(*argv, f"{repository}:docker", "-c", "true", check=False)
    assert theirs.returncode == ours.returncode, f"anybuild's image does not run: {ours.stderr.strip()}"


def _empty_caches(upstream: UpstreamCase, data: Path, dockerd: Any | None = None) -> None:
    """Cache mounts start empty, as in the upstream tests (each runs against a fresh daemon)."""
    if not upstream.uses_cache_mounts:
        return
    shutil.rmtree(data / "cache" / "mounts", ignore_errors=True)
    if dockerd is not None:
        dockerd.docker("builder", "prune", "--force", "--filter", "type=exec.cachemount")


def _verdict(upstream: UpstreamCase, kind: str, docker: Built | None) -> str:
    if upstream.newer:
        return "newer than Docker 20.10 (anybuild only, its own checks)"
    if upstream.docker or upstream.docker_differs_for(kind):
        return "Docker 20.10 differs (listed)"
    if upstream.mount_stubs:
        return "identical but for Docker 20.10's mount stubs"
    return "identical"


@pytest.mark.slow
@pytest.mark.parametrize(("upstream", "kind"), list(matrix()))
def test_upstream_case_matches_docker(upstream: UpstreamCase, kind: str, dockerd, base_images, file_server: FileServer,
                                      tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                      record_property) -> None:
    context = prepare_context(upstream, kind, tmp_path / "context", file_server)
    case = Case(name=f"{upstream.name.replace('@', '-')}-{kind}", context=context,
                dockerfile=context / upstream.dockerfile, build_args=dict(upstream.build_args),
                target=upstream.target)
    data = tmp_path_factory.getbasetemp() / "anybuild-data"
    builds = variants(upstream, kind)

    def ours(sandbox: SandboxKind, snapshotter: str) -> Built:
        _empty_caches(upstream, data)
        try:
            work = tmp_path / f"anybuild-{sandbox}-{snapshotter}"
            return anybuild_build(case, sandbox, base_images.mirror_host, work, data, snapshotter)
        finally:
            _empty_caches(upstream, data)

    _empty_caches(upstream, data, dockerd)
    # Docker 20.10 panics on some Dockerfiles, and the session's dockerd would die with it
    docker = "not asked: Docker 20.10 panics" if upstream.docker_panics else _docker(case, dockerd, tmp_path / "docker")
    outcome: dict[str, Any] = {"case": upstream.name, "kind": kind, "builds": len(builds)}
    opposite = upstream.docker or upstream.newer
    if opposite is not None and not upstream.docker_panics:  # Docker 20.10 does the opposite of current BuildKit
        refused = isinstance(docker, str)
        assert refused == (upstream.expect == "image"), (
            f"cases.toml says Docker 20.10 {'builds' if upstream.expect == 'error' else 'refuses'} it "
            f"({opposite}), but it {'refused it: ' + str(docker) if refused else 'built it'}")
    if opposite is not None:
        docker = None
    if upstream.expect == "error":
        assert docker is None or isinstance(docker, str), "dockerd built a Dockerfile the case expects refused"
        for sandbox, snapshotter in builds:
            with pytest.raises(AnybuildError):
                ours(sandbox, snapshotter)
        verdict = "both refuse" if docker is not None else _verdict(upstream, kind, None)
        record_property("upstream", json.dumps({**outcome, "outcome": verdict}))
        return
    if isinstance(docker, str):
        pytest.fail(f"dockerd could not build it: {docker}")
    failures: list[str] = []
    ran: list[str] = []
    for number, (sandbox, snapshotter) in enumerate(builds):
        limit = PROOT_LIMITS.get(upstream.name) if sandbox is SandboxKind.PROOT else None
        try:
            built = ours(sandbox, snapshotter)
        except AnybuildError:
            if limit is None:
                raise
            outcome["proot"] = f"refused: {limit}"
            continue
        ran.append(built.ran)
        found = [] if not upstream.runs or built.ran.startswith(f"{sandbox}+") else [
            f"asked for {sandbox}, ran {built.ran}"]
        if docker is not None:
            found += _compare(upstream, kind, built, docker)
        if limit is not None:
            assert found, f"PROOT_LIMITS says proot cannot build {upstream.name} as Docker does ({limit}), but it did"
            outcome["proot"] = f"differs: {limit}"
        else:
            failures += [f"[{sandbox}+{snapshotter}] {line}" for line in found]
        if number == 0 and built.layers and kind != "full":  # docker load needs a layer; once a case is enough
            dockerd.docker("load", "-i", str(built.archive))
            if "bin/sh" in built.tree:
                _runs_as_docker_runs(dockerd, f"conformance/{case.name.lower()}")
        # the archive, its blobs and its tree: about twice the image per build, and a case has up to five
        shutil.rmtree(tmp_path / f"anybuild-{sandbox}-{snapshotter}", ignore_errors=True)
    shutil.rmtree(tmp_path / "docker", ignore_errors=True)
    assert not failures, "\n".join(failures[:60])
    record_property("upstream", json.dumps({**outcome, "outcome": _verdict(upstream, kind, docker), "ran": ran}))
