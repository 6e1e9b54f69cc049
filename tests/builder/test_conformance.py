"""Conformance: each case built by anybuild and by the test dockerd (BuildKit) must match.

File trees (path, type, mode, uid, gid, size, content hash, link target) and
runtime configs are compared, timestamps ignored; the anybuild image is then
loaded into dockerd and run. Each case runs with every sandbox this machine
offers (runc, unshare, chroot). Differences that are Docker's own are listed
in KNOWN_DOCKER_ONLY with the reason, never hidden.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from anybuild.builder.sandbox import SandboxKind, probe_sandbox_facts
from anybuild.builder.sandbox.model import _allowed
from tests.builder.building import SECRET, Built, Case, anybuild_build, docker_build
from tests.builder.imagetree import runtime_config, tree_diff

CASES = Path(__file__).parent / "conformance"
OPTIONS: dict[str, dict[str, Any]] = {
    "build-args": {"build_args": {"NAME": "given"}},
    "target": {"target": "second"},
    "secret-mount": {"secret": True},
    # Docker 20.10's built-in Dockerfile frontend (1.2) has no heredocs, and the 1.4 frontend image
    # cannot be pulled offline: the result is checked against the files the reference defines.
    "heredocs": {"docker": "heredocs need Dockerfile frontend >= 1.4; dockerd 20.10 has 1.2 built in",
                 "expect": {"h1": "one\ntwo\n", "h2": "script\n", "etc/inline.conf": "key=value\n",
                            "h3": "inline heredoc\n"}},
    # Docker 20.10 (containerd 1.4) runs a USER's RUN with no additional groups; BuildKit >= 0.11.3 gives
    # it its primary gid and its /etc/group memberships (the fix of CVE-2023-25173, containerd 3eda46af;
    # moby/buildkit testUserAdditionalGids), as anybuild does: `id` prints groups=.
    "user-run": {"docker_differs": {"home/u/id.txt": "uid=1500(u) gid=1500(u) groups=1500(u)\n"}},
}
# Docker 20.10's BuildKit (v0.8) leaves the empty directories it made as RUN --mount targets in the
# layer; later BuildKit removes them (the "mount stub cleaner"), as anybuild does.
MOUNT_STUBS = "Docker 20.10 (BuildKit 0.8) leaves RUN --mount target stubs in the layer; BuildKit >= 0.10 does not"
KNOWN_DOCKER_ONLY: dict[str, tuple[frozenset[str], str]] = {
    "bind-mount": (frozenset({"mnt"}), MOUNT_STUBS),
    "bind-mount-rw": (frozenset({"mnt", "mnt/in", "mnt/s"}), MOUNT_STUBS),
    "cache-mount": (frozenset({"var/cache", "var/cache/thing"}), MOUNT_STUBS),
    "secret-mount": (frozenset({"run", "run/secrets"}), MOUNT_STUBS),
    "tmpfs-mount": (frozenset({"scratch"}), MOUNT_STUBS),
}
# proot fakes user ids for the process's view only: files a RUN writes as a non-root USER are owned
# by the real user on disk (and so in the layer). A known limit of the weakest sandbox.
PROOT_OWNERSHIP = frozenset({"debian-user", "user-run"})
FACTS = probe_sandbox_facts()
_KINDS = (SandboxKind.RUNC, SandboxKind.UNSHARE, SandboxKind.CHROOT)
if os.environ.get("ANYBUILD_TEST_PROOT") == "1":  # opt-in: the weakest sandbox, not required to match
    _KINDS += (SandboxKind.PROOT,)
SANDBOXES = [k for k in _KINDS if _allowed(k, FACTS)]



def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "Dockerfile").is_file())


def matrix() -> list[object]:
    """(case, sandbox, snapshotter): every sandbox with the portable walk snapshotter, and runc with the
    snapshotter anybuild picks by itself here ("auto": overlay where it works)."""
    params: list[object] = []
    for case in case_names():
        for sandbox in SANDBOXES:
            params.append(pytest.param(case, sandbox, "walk", id=f"{case}-{sandbox}-walk"))
        if SandboxKind.RUNC in SANDBOXES:
            params.append(pytest.param(case, SandboxKind.RUNC, "auto", id=f"{case}-runc-auto"))
    return params


def make_case(name: str) -> Case:
    options = OPTIONS.get(name, {})
    return Case(name=name, context=CASES / name, dockerfile=CASES / name / "Dockerfile",
                build_args=options.get("build_args", {}), target=options.get("target"),
                secret=bool(options.get("secret")))


@pytest.fixture(scope="session")
def docker_results() -> dict[str, Built]:
    """Each case is built by dockerd once per session, whatever the sandbox parameter."""
    return {}


def compare(case: str, ours: Built, docker: Built, dockerd: Any, stubs: frozenset[str] = frozenset(),
            differs: Mapping[str, Any] = MappingProxyType({})) -> None:
    """*ours* is Docker's image but for the mount *stubs* Docker 20.10 leaves and what it *differs* in
    from current BuildKit: a path (its content checked by the caller) or "config:Key" (anybuild's value);
    each listed difference is checked to be there, so that a stale entry fails."""
    for path in stubs:
        assert path not in ours.tree
        assert docker.tree[path][0] == "dir"
    mine, theirs = dict(ours.tree), {k: v for k, v in docker.tree.items() if k not in stubs}
    config, docker_config = runtime_config(ours.config), runtime_config(docker.config)
    for key, value in differs.items():
        if key.startswith("config:"):
            name = key.removeprefix("config:")
            assert config[name] == value != docker_config[name], (name, config[name], docker_config[name])
            config.pop(name)
            docker_config.pop(name)
        else:
            assert mine.pop(key, None) != theirs.pop(key, None), f"{key}: listed as differing, but it does not"
    differences = tree_diff(mine, theirs)
    assert differences == [], "\n".join(differences[:40])
    assert config == docker_config
    assert len(ours.config["rootfs"]["diff_ids"]) == ours.layers
    assert SECRET not in "\n".join(ours.log), "the secret value appears in the build log"
    dockerd.docker("load", "-i", str(ours.archive))
    if "bin/sh" in ours.tree:
        dockerd.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh",
                       f"conformance/{case.lower()}:anybuild", "-c", "true")


@pytest.mark.slow
@pytest.mark.parametrize(("case", "sandbox", "snapshotter"), matrix())
def test_conformance_case_matches_docker(case: str, sandbox: SandboxKind, snapshotter: str, dockerd, base_images,
                                         docker_results: dict[str, Built], tmp_path: Path,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    options = OPTIONS.get(case, {})
    if sandbox is SandboxKind.PROOT and case in PROOT_OWNERSHIP:
        pytest.skip("proot: files written by a non-root USER keep the real owner (proot fakes ids in-process only)")
    spec = make_case(case)
    if "debian:" in spec.dockerfile.read_text():
        base_images.debian()
    data = tmp_path_factory.getbasetemp() / "anybuild-data"
    ours = anybuild_build(spec, sandbox, base_images.mirror_host, tmp_path / "anybuild", data, snapshotter)
    if options.get("docker"):
        for path, content in options["expect"].items():
            assert (tmp_path / "anybuild" / "root" / path).read_text() == content, path
        pytest.skip(f"compared with expected files only: {options['docker']}")
    if case not in docker_results:
        work = tmp_path_factory.mktemp(f"docker-{case}")
        docker_results[case] = docker_build(spec, dockerd, work)
        shutil.rmtree(work / "root", ignore_errors=True)
    stubs, _reason = KNOWN_DOCKER_ONLY.get(case, (frozenset(), ""))
    differs: dict[str, str] = options.get("docker_differs", {})
    for path, content in differs.items():  # what current BuildKit writes, where Docker 20.10 differs
        assert (tmp_path / "anybuild" / "root" / path).read_text() == content, path
    compare(case, ours, docker_results[case], dockerd, stubs, differs)
