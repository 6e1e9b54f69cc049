"""The multi-platform suite built by anybuild and by buildah, compared; the arm64 image run by dockerd under QEMU.

buildah builds `--platform linux/amd64,linux/arm64 --manifest` with QEMU registered in the host's
binfmt_misc (for the test only: the registration is removed after); anybuild builds the same contexts
through each emulation route this machine offers (forced with ANYBUILD_EMULATION). Every platform's file
tree and runtime config must be the same, and so must the index's platforms. Then the test dockerd pulls
anybuild's index with ``--platform linux/arm64`` and runs it under QEMU: `uname -m` says aarch64, and the
image's own binaries are aarch64 ELF.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.backends.builtin import BuiltinBackend
from tests.builder.imagetree import runtime_config, tree_diff
from tests.builder.multiplatform import CASES, UNAME, PlatformImage, elf_machine, host_binfmt, read_index
from tests.harness.bases import BaseImages
from tests.harness.buildah import Buildah
from tests.harness.dockerd import Dockerd
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.root]

PLATFORMS = "linux/amd64,linux/arm64"
ROUTES = ("host", "userns", "entrypoint")


def _context(case: str, where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "Dockerfile").write_text(CASES[case])
    return where


def _buildah(buildah: Buildah, case: str, context: Path, work: Path) -> Path:
    name = f"localhost/multi-{case}:buildah"
    buildah.run("manifest", "rm", name, check=False)
    buildah.run("build", "--platform", PLATFORMS, "--manifest", name, "--layers=false", "-f",
                str(context / "Dockerfile"), str(context), timeout=900)
    layout = work / "buildah-oci"
    buildah.run("manifest", "push", "--all", "--format", "oci", name, f"oci:{layout}:latest", timeout=300)
    return layout


def _anybuild(case: str, context: Path, registry: Registry, work: Path, route: str) -> Path:
    layout = work / f"anybuild-{route}"
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", platform=PLATFORMS,
                           tags=(f"{registry.host}/multi-diff/{case}:{route}",), output=f"oci:{layout}", push=True,
                           insecure_registries=(registry.host,), registry_mirrors={"docker.io": (registry.host,)},
                           no_cache=True)  # every route must really run every RUN
    env = dict(os.environ, ANYBUILD_DATA_DIR=str(work / "data"), ANYBUILD_EMULATION=route)
    sink = ListSink()
    BuiltinBackend(env=env).build(request, sink)
    assert any("linux/arm64 RUN steps under qemu-aarch64-static" in line for line in sink.lines), sink.lines
    return layout


def _platform_config(config: dict[str, Any]) -> tuple[str, str]:
    return config["os"], config["architecture"]


# buildah (1.28) leaves the mount points of its RUN sandbox in the image: empty files and an empty /run,
# where BuildKit (and anybuild) remove the stubs they made. Only these, and only empty, are set aside.
_BUILDAH_STUBS = {"etc/hostname": "file", "etc/hosts": "file", "etc/resolv.conf": "file", "run": "dir"}


def _without_stubs(tree: dict[str, tuple[Any, ...]], base: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    return {path: entry for path, entry in tree.items()
            if not (path in _BUILDAH_STUBS and path not in base and entry[0] == _BUILDAH_STUBS[path]
                    and (entry[0] == "dir" or entry[4] == 0))}


def _without_buildah_label(config: dict[str, Any]) -> dict[str, Any]:
    """buildah labels what it built with io.buildah.version; nothing else of the config is set aside."""
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if k != "io.buildah.version"}
    return {**config, "Labels": labels or None}


# Where buildah 1.28 departs from the Dockerfile reference (and BuildKit), checked as it is, so that a
# buildah that fixes it fails here and the entry goes: (case, platform) -> {path: buildah's content}.
# - cross: buildah runs the `FROM --platform=$BUILDPLATFORM` stage for the target (under QEMU), not natively.
# - copy-across: after a `FROM --platform=linux/arm64 busybox` stage, buildah's linux/amd64 image is built
#   FROM the arm64 busybox it pulled for that stage (the name resolves to the image stored last).
_BUILDAH_DEPARTS: dict[tuple[str, str], dict[str, str]] = {
    ("cross", "linux/arm64"): {"usr/local/share/artifact": "made on aarch64 for linux/arm64\n"},
    ("copy-across", "linux/amd64"): {"arch": "aarch64\n", "native": "x86_64\n"},
}


def _compare(case: str, ours: dict[str, PlatformImage], theirs: dict[str, PlatformImage], what: str) -> None:
    assert sorted(ours) == sorted(theirs) == ["linux/amd64", "linux/arm64"], what
    for platform, mine in ours.items():
        other = theirs[platform]
        departs = _BUILDAH_DEPARTS.get((case, platform))
        if departs is not None:
            for path, content in departs.items():
                assert (other.root / path).read_text() == content, f"{what} {platform}: buildah fixed {path}?"
            if case == "copy-across":  # the whole image is another platform's: only ours is checked
                assert elf_machine(other.root / "bin" / "busybox") == 183
                assert elf_machine(mine.root / "bin" / "busybox") == 62
                assert (mine.root / "arch").read_text() == UNAME[platform] + "\n"
                continue
            mine = replace(mine, tree={k: v for k, v in mine.tree.items() if k not in departs})
            other = replace(other, tree={k: v for k, v in other.tree.items() if k not in departs})
        diff = tree_diff(mine.tree, _without_stubs(other.tree, mine.tree))
        assert not diff, f"{what} {platform}: file trees differ (anybuild, buildah):\n" + "\n".join(diff[:40])
        assert runtime_config(mine.config) == _without_buildah_label(runtime_config(other.config)), \
            f"{what} {platform}"
        assert _platform_config(mine.config) == _platform_config(other.config), f"{what} {platform}"
        assert (mine.root / "arch").read_text() == UNAME[platform] + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_images_as_buildah_through_every_route(case: str, buildah: Buildah, base_images: BaseImages,
                                                    registry: Registry, tmp_path: Path) -> None:
    base_images.busybox_multi()
    context = _context(case, tmp_path / "context")
    with host_binfmt(want=True):  # buildah needs QEMU in the host's binfmt_misc
        _index, theirs = read_index(_buildah(buildah, case, context, tmp_path), tmp_path / "read-buildah")
    for route in ROUTES:
        if case == "exec" and route == "entrypoint":
            continue  # it emulates the first program only (test_multiplatform checks the error it gives)
        with host_binfmt(want=route == "host"):  # the other routes work with no host handler at all
            layout = _anybuild(case, context, registry, tmp_path / route, route)
        index, ours = read_index(layout, tmp_path / f"read-{route}")
        assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
        _compare(case, ours, theirs, f"{case} via {route}")
        if case == "cross":  # the reference's answer, which buildah departs from for arm64
            for platform, image in ours.items():
                made = (image.root / "usr/local/share/artifact").read_text()
                assert made == f"made on x86_64 for {platform}\n"


def test_arm64_image_runs_in_dockerd_under_qemu(dockerd: Dockerd, base_images: BaseImages, registry: Registry,
                                                tmp_path: Path) -> None:
    """anybuild's index pulled by the test dockerd for linux/arm64 and run under QEMU (the host's binfmt_misc,
    registered for the test): it is aarch64, and so are its binaries."""
    base_images.busybox_multi()
    context = _context("cross", tmp_path / "context")
    layout = _anybuild("cross", context, registry, tmp_path / "build", "userns")
    _index, images = read_index(layout, tmp_path / "read")
    assert elf_machine(images["linux/arm64"].root / "bin" / "busybox") == 183
    assert elf_machine(images["linux/amd64"].root / "bin" / "busybox") == 62
    ref = f"{registry.host}/multi-diff/cross:userns"
    with host_binfmt(want=True):
        dockerd.docker("pull", "--platform", "linux/arm64", ref)
        inspected = dockerd.docker("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref).stdout.strip()
        assert inspected == "linux/arm64"
        ran = dockerd.docker("run", "--rm", "--platform", "linux/arm64", ref, "sh", "-c",
                             "uname -m; cat /arch /usr/local/share/artifact; od -An -tx1 -j18 -N2 /bin/busybox")
        assert ran.stdout.split("\n")[:3] == ["aarch64", "aarch64", "made on x86_64 for linux/arm64"], ran.stdout
        assert ran.stdout.split("\n")[3].split() == ["b7", "00"], ran.stdout  # e_machine 183: EM_AARCH64
        dockerd.docker("rmi", ref, check=False)


def test_load_of_several_platforms_loads_this_machines(dockerd: Dockerd, base_images: BaseImages,
                                                      registry: Registry, tmp_path: Path) -> None:
    """`--load` with two platforms loads the host's platform's image (the index cannot be loaded)."""
    base_images.busybox_multi()
    context = _context("uname", tmp_path / "context")
    tag = "multi-load/uname:1"
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", platform=PLATFORMS, tags=(tag,),
                           load=True, insecure_registries=(registry.host,),
                           registry_mirrors={"docker.io": (registry.host,)})
    env = {**dockerd.env, "ANYBUILD_DATA_DIR": str(tmp_path / "data"), "ANYBUILD_EMULATION": "entrypoint"}
    result = BuiltinBackend(env=env).build(request, ListSink())
    assert result.references == (tag,)
    inspected = dockerd.docker("image", "inspect", "--format", "{{.Os}}/{{.Architecture}} {{.Id}}", tag).stdout
    assert inspected.split()[0] == "linux/amd64"
    amd64 = next(p for p in result.platforms if p.platform == "linux/amd64")
    ran = dockerd.docker("run", "--rm", tag, "cat", "/arch").stdout
    assert ran == "x86_64\n"
    assert amd64.digest != result.digest  # the index's digest is the result's; the image loaded is amd64's
    dockerd.docker("rmi", tag, check=False)
