"""The Docker-differential suites again, built inside unprivileged pods.

tests/builder/test_conformance.py's cases and the Kaniko integration cases
(tests/builder/test_kaniko_conformance.py) are built by ``anybuild build`` running in two pods of
tests/harness/pod.py — uid 1000 with seccomp Unconfined (the builder in a user namespace that maps
one uid: owners recorded, RUN as root there) and root under RuntimeDefault (no namespaces at all:
proot) — and compared with the test dockerd's build of the same context exactly as the host-side
suites compare them: file trees (path, type, mode, uid, gid, size, content hash, link target) and
runtime configs, ignoring times. One pod per variant serves every case (its data directory, and so
its cache of base layers, is shared, as a devpod's would be).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builder.building import SECRET, Built, Case, _read, docker_build
from tests.builder.test_conformance import KNOWN_DOCKER_ONLY, OPTIONS, case_names, compare, make_case
from tests.builder.test_kaniko_conformance import ARGS, DOCKER_DIFFERS, DOCKER_REFUSES, kaniko_cases, plan
from tests.harness.pod import POD_VARIANTS, SOURCE, Pod, running_pod
from tests.harness.procs import HarnessError

pytestmark = [pytest.mark.slow, pytest.mark.root]

PODS = ("uid1000", "root-seccomp")
VARIANTS = {v.name: v for v in POD_VARIANTS if v.name in PODS}
# What a pod cannot give, with the reason; each case still builds and is compared on every other pod.
# Where the pod grants one uid, the owners a RUN makes are recorded into the layer, but `stat` in a
# later RUN shows every file as root's: a Dockerfile that checks owners with stat fails there.
CANNOT: dict[tuple[str, str], str] = {
    ("uid1000", "with-context-issue-1315"): "its RUN checks with stat that COPY --from kept owners 123 and 321: "
                                            "a pod with one uid shows every file as root's to stat (the image "
                                            "has the right owners, see the root-seccomp pod)",
}


@pytest.fixture(scope="session")
def pods() -> Iterator[dict[str, Pod]]:
    """One started pod per variant for the whole session (on each xdist worker), made on first use."""
    with contextlib.ExitStack() as stack:
        started: dict[str, Pod] = {}

        class Lazy(dict[str, Pod]):
            def __missing__(self, name: str) -> Pod:
                started[name] = stack.enter_context(running_pod(VARIANTS[name]))
                self[name] = started[name]
                return started[name]

        yield Lazy()


@pytest.fixture(scope="session")
def docker_cache() -> dict[str, Built]:
    return {}


def _in_pod(pod: Pod, case: Case, mirror: str, name: str) -> Built:
    """``anybuild build`` of *case* in *pod*, read back from its docker-archive output."""
    out_dir = f"{SOURCE}/out-{name}"
    host_out = pod.host_path(out_dir)
    host_out.mkdir(exist_ok=True)
    os.chown(host_out, pod.variant.uid, pod.variant.uid)
    archive = f"{out_dir}/image.tar"
    args = ["build", str(case.context), "-f", str(case.dockerfile), "-t", f"conformance/{case.name.lower()}:anybuild",
            "--output", f"docker-archive:{archive}", "--registry-mirror", mirror, "--insecure-registry", mirror,
            "--backend", "builtin", "--progress", "plain"]
    for key, value in case.build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if case.target:
        args += ["--target", case.target]
    if case.secret:
        secret = host_out / "secret"
        secret.write_text(SECRET)
        os.chown(secret, pod.variant.uid, pod.variant.uid)
        args += ["--secret", f"id=token,src={out_dir}/secret"]
    done = pod.anybuild(*args, timeout=600)
    if done.returncode != 0:
        raise HarnessError(f"anybuild in pod {pod.variant.name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return _read(pod.host_path(archive), host_out / "read", done.stderr.splitlines())


def _docker(cache: dict[str, Built], name: str, case: Case, dockerd: Any,
            factory: pytest.TempPathFactory) -> Built:
    if name not in cache:
        cache[name] = docker_build(case, dockerd, factory.mktemp(f"docker-pod-{name}"))
    return cache[name]


@pytest.mark.parametrize("variant", PODS)
@pytest.mark.parametrize("name", case_names())
def test_pod_conformance_case_matches_docker(name: str, variant: str, pods: dict[str, Pod], dockerd: Any,
                                             base_images: Any, docker_cache: dict[str, Built],
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    options = OPTIONS.get(name, {})
    if options.get("docker"):
        pytest.skip(f"compared with expected files only on the host: {options['docker']}")
    case = make_case(name)
    if "debian:" in case.dockerfile.read_text():
        base_images.debian()
    pod = pods[variant]
    ours = _in_pod(pod, case, base_images.mirror_host, f"{variant}-{name}")
    docker = _docker(docker_cache, name, case, dockerd, tmp_path_factory)
    stubs, _reason = KNOWN_DOCKER_ONLY.get(name, (frozenset(), ""))
    # Where Docker 20.10 and current BuildKit differ, anybuild follows BuildKit as on the host, where the pod
    # lets it: a root pod gives a RUN its supplementary groups for real (under proot too), a one-uid pod cannot
    # (setgroups needs CAP_SETGID), and its `id` prints what Docker 20.10's does (no groups=).
    differs: dict[str, str] = options.get("docker_differs", {}) if pod.variant.uid == 0 else {}
    for path, content in differs.items():
        size, digest = len(content.encode()), hashlib.sha256(content.encode()).hexdigest()[:16]
        assert ours.tree[path][4:6] == (size, digest), (path, ours.tree[path], content)
    compare(name, ours, docker, dockerd, stubs, differs)


KANIKO = [c for c in kaniko_cases() if plan(c[1])[0] is not None and c[0] not in DOCKER_REFUSES]


@pytest.mark.parametrize("variant", PODS)
@pytest.mark.parametrize(("name", "dockerfile", "context"), KANIKO, ids=[c[0] for c in KANIKO])
def test_pod_kaniko_case_matches_docker(name: str, dockerfile: Path, context: Path, variant: str,
                                        pods: dict[str, Pod], dockerd: Any, base_images: Any,
                                        docker_cache: dict[str, Built],
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    if (variant, name) in CANNOT:
        pytest.skip(CANNOT[variant, name])
    text, _reason = plan(dockerfile)
    assert text is not None
    if "debian:bookworm" in text:
        base_images.debian()
    pod = pods[variant]
    where = f"{SOURCE}/kaniko-{name}"
    host = pod.host_path(where)
    host.mkdir(exist_ok=True)
    (host / "Dockerfile").write_text(text)
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if ignore.is_file():
        (host / "Dockerfile.dockerignore").write_text(ignore.read_text())
    case = Case(name=f"kaniko-{name}".lower(), context=context, dockerfile=Path(where) / "Dockerfile",
                build_args=ARGS.get(name, {}))
    host_case = Case(name=case.name, context=context, dockerfile=host / "Dockerfile", build_args=case.build_args)
    try:
        docker = _docker(docker_cache, f"kaniko-{name}", host_case, dockerd, tmp_path_factory)
    except HarnessError as exc:
        pytest.skip(f"dockerd cannot build it offline (the host-side suite checks anybuild refuses it too): "
                    f"{str(exc).splitlines()[0][:120]}")
    ours = _in_pod(pod, case, base_images.mirror_host, f"{variant}-kaniko-{name}")
    compare(case.name, ours, docker, dockerd, differs=DOCKER_DIFFERS.get(name, ({}, ""))[0])
