"""`--platform linux/amd64,linux/arm64` on the built-in builder: one image index, foreign RUN steps under QEMU.

Every case is built for both platforms from the harness's multi-platform busybox (an index pushed to the test
registry); the arm64 RUN steps run under qemu-aarch64-static through each route this machine offers, forced
with ANYBUILD_EMULATION: the host's binfmt_misc (a handler registered for the test and removed after), a
binfmt_misc of the build's own user namespace (no host handler at all), and the explicit entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.backends.builtin import BuiltinBackend
from anybuild.builder.build import parse_platforms
from anybuild.builder.emulation import Emulation, Route, emulator_path, foreign, probe_program, qemu_arch
from anybuild.errors import BuildFailed, EnvironmentUnsupported, UsageError
from anybuild.oci.manifest import Index
from anybuild.oci.platform import Platform
from tests.builder.multiplatform import ARM64, CASES, UNAME, elf_machine, host_binfmt, read_index
from tests.harness import procs
from tests.harness.bases import BaseImages
from tests.harness.registry import Registry

AMD64 = Platform.parse("linux/amd64")
_EMULATED = ("arm64", "arm", "riscv64", "ppc64le", "s390x")


@pytest.mark.parametrize("arch", _EMULATED)
def test_probe_program_exits_42_under_its_emulator(arch: str, tmp_path: Path) -> None:
    platform = Platform.parse(f"linux/{arch}")
    emulator = emulator_path(platform, os.environ)
    if emulator is None:
        procs.unavailable(f"qemu-{qemu_arch(platform)}-static not found: install Debian package qemu-user-static")
    program = tmp_path / "probe"
    program.write_bytes(probe_program(platform))
    program.chmod(0o755)
    done = subprocess.run([str(emulator), str(program)], check=False, capture_output=True, timeout=30)
    assert done.returncode == 42, done.stderr


def test_platform_lists() -> None:
    assert parse_platforms(None, AMD64) == (AMD64,)
    assert parse_platforms("linux/amd64, linux/arm64,linux/arm64/v8", AMD64) == (AMD64, ARM64)
    for bad in ("linux/amd64,,linux/arm64", "linux/arm64/v8/x", "linux/amd64,linux/x 86", ","):
        with pytest.raises(UsageError):
            parse_platforms(bad, AMD64)
    assert not foreign(AMD64, Platform.parse("linux/386"))
    assert foreign(AMD64, ARM64)


@pytest.mark.parametrize("forced", ["", "userns", "entrypoint"])
def test_no_emulator_names_the_package(forced: str, tmp_path: Path) -> None:
    """Where no qemu-aarch64-static is found (an empty PATH and no other place to look), and the host has no
    handler (none registered by this test; another's would make the automatic choice take it), the error
    names the package to install."""
    emulation = Emulation(host=AMD64, env={"PATH": str(tmp_path), "ANYBUILD_EMULATION": forced or "auto"},
                          scratch=tmp_path, in_userns=False, emulator_dirs="")
    with host_binfmt(want=False), pytest.raises(EnvironmentUnsupported, match="qemu-aarch64-static") as info:
        emulation.choice(ARM64, "Dockerfile:2")
    assert "Dockerfile:2: RUN for linux/arm64" in info.value.message
    assert "apt-get install qemu-user-static" in info.value.hint
    with pytest.raises(EnvironmentUnsupported, match="none is known"):
        emulation.choice(Platform.parse("linux/mips"), "Dockerfile:3")


def test_bad_emulation_override_is_an_input_error(tmp_path: Path) -> None:
    emulation = Emulation(host=AMD64, env={"ANYBUILD_EMULATION": "magic"}, scratch=tmp_path, in_userns=False)
    with pytest.raises(UsageError, match="ANYBUILD_EMULATION='magic'"):
        emulation.choice(ARM64)


def _build(case: str, base_images: BaseImages, registry: Registry, tmp_path: Path, route: str,
           extra: dict[str, str] | None = None) -> tuple[ListSink, Path, object]:
    base_images.busybox_multi()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(CASES[case])
    layout = tmp_path / "out"
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", platform="linux/amd64,linux/arm64",
                           tags=(f"{registry.host}/multi/{case}:{route}",), output=f"oci:{layout}", push=True,
                           insecure_registries=(registry.host,), registry_mirrors={"docker.io": (registry.host,)})
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data"), "ANYBUILD_EMULATION": route, **(extra or {})}
    sink = ListSink()
    result = BuiltinBackend(env=env).build(request, sink)
    return sink, layout, result


def _check(case: str, layout: Path, work: Path, result: object, route: str) -> None:
    index, images = read_index(layout, work)
    assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
    for platform, image in images.items():
        arch = platform.split("/")[1]
        assert image.config["architecture"] == arch and image.config["os"] == "linux"
        assert (image.root / "arch").read_text() == UNAME[platform] + "\n", (case, platform)
        assert elf_machine(image.root / "bin" / "busybox") == {"amd64": 62, "arm64": 183}[arch]
    if case == "cross":
        for platform, image in images.items():
            made = (image.root / "usr/local/share/artifact").read_text()
            assert made == f"made on x86_64 for {platform}\n"
    if case == "args":
        for platform, image in images.items():
            assert (image.root / "platforms").read_text() == f"{platform} built on linux/amd64 variant=\n"
            assert f"ARCH={platform.split('/')[1]}" in image.config["config"]["Env"]
    if case == "exec":
        for platform, image in images.items():
            assert (image.root / "lines").read_text().strip() == "1"
            assert (image.root / "arch.sorted").read_text() == UNAME[platform] + "\n"
            assert (image.root / "magic").read_text().split() == ["7f", "45", "4c", "46"]
    if case == "copy-across":
        for platform, image in images.items():
            assert (image.root / "native").read_text() == UNAME[platform] + "\n"
            assert (image.root / "arm").read_text() == "aarch64\n"
    from anybuild.backends.base import BuildResult

    assert isinstance(result, BuildResult)
    assert result.digest == str(LayoutIndex.digest(layout))
    assert [p.platform for p in result.platforms] == ["linux/amd64", "linux/arm64"]
    assert [p.emulation for p in result.platforms] == [None, str(Route(route_name(route)))]


def route_name(route: str) -> str:
    return {"host": "host-binfmt", "userns": "userns-binfmt", "entrypoint": "entrypoint"}[route]


class LayoutIndex:
    @staticmethod
    def digest(layout: Path) -> str:
        from anybuild.oci.layout import LayoutStore

        return str(LayoutStore.open(layout).index().manifests[0].digest)


@pytest.mark.parametrize("route", ["host", "userns", "entrypoint"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_two_platforms_one_index(case: str, route: str, base_images: BaseImages, registry: Registry,
                                 tmp_path: Path) -> None:
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    if case == "exec" and route == "entrypoint":  # the entry point emulates the first program only
        with host_binfmt(want=False), pytest.raises(BuildFailed, match="exit code 126") as failed:
            _build(case, base_images, registry, tmp_path, route)
        assert "emulates the first program only" in failed.value.hint
        return
    with host_binfmt(want=route == "host"):
        sink, layout, result = _build(case, base_images, registry, tmp_path, route)
    log = "\n".join(sink.lines)
    assert f"({route_name(route)})" in log, log
    _check(case, layout, tmp_path / "read", result, route)


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    anybuild = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv")) / "bin" / "anybuild"
    return subprocess.run([str(anybuild), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


def test_cli_result_and_summary_name_every_platform(base_images: BaseImages, registry: Registry,
                                                   tmp_path: Path) -> None:
    """`anybuild build --platform a,b --push`: the JSON result (valid against the published schema) holds the
    index digest and each platform's, the registry serves that index under the tag, and the summary table
    shows the platforms and how the foreign one ran."""
    import jsonschema

    from anybuild.registry.client import RegistryClient
    from anybuild.registry.reference import Reference
    from anybuild.result import load_result_schema

    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    base_images.busybox_multi()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(CASES["cross"])
    time.sleep(2.1)  # a context younger than 2 s is never recorded as unchanged (backends.unchanged)
    ref = f"{registry.host}/multi/cli:1"
    env = dict(os.environ, ANYBUILD_DATA_DIR=str(tmp_path / "data"), ANYBUILD_EMULATION="entrypoint")
    # --reproducible: the created label from SOURCE_DATE_EPOCH, not the clock, so that a rebuild can be a no-op
    common = ["build", "--backend", "builtin", "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push",
              "--reproducible", "--insecure-registry", registry.host, "--registry-mirror", registry.host, str(context)]
    done = _cli(["--json", *common], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    jsonschema.validate(result, load_result_schema())
    [image] = result["images"]
    assert [(p["platform"], p["emulation"]) for p in image["platforms"]] == [("linux/amd64", None),
                                                                            ("linux/arm64", "entrypoint")]
    with RegistryClient(insecure=frozenset({registry.host})) as client:
        fetched = client.get_manifest(Reference.parse(ref))
    assert str(fetched.descriptor.digest) == image["digest"]
    served = Index.from_json(fetched.data)
    assert [(str(m.platform), str(m.digest)) for m in served.manifests] == [
        (p["platform"], p["digest"]) for p in image["platforms"]]
    # every step cached: the same index, and no RUN ran under an emulator this time
    again = _cli(["build", "--progress", "plain", *common[1:]], {**env, "COLUMNS": "250"}, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    table = again.stdout
    assert "platforms" in table and "linux/amd64" in table and "linux/arm64" in table, table
    assert image["digest"][:19] in table, table
    assert "anybuild: emulation:" not in again.stderr
    # nothing changed: answered from the record of the inputs (backends.unchanged), platforms and all
    noop = _cli(["--json", *common], env, tmp_path)
    assert noop.returncode == 0, noop.stderr[-3000:]
    assert "nothing changed since the build of" in noop.stderr, noop.stderr[-3000:]
    [same] = json.loads(noop.stdout)["images"]
    assert (same["digest"], same["platforms"]) == (image["digest"], image["platforms"])


@pytest.mark.parametrize("host_handler", [True, False], ids=["host-handler", "no-host-handler"])
def test_doctor_says_which_platforms_build_here_and_how(host_handler: bool, tmp_path: Path) -> None:
    """From attempts: with the host's handler, arm64 runs through it; without, through a binfmt_misc of the
    build's own user namespace (Linux 6.7+); the entry point is tried either way; amd64 is native."""
    procs.require_root("registering a binfmt_misc handler on the host, and an identity-mapped user namespace")
    env = dict(os.environ, ANYBUILD_DATA_DIR=str(tmp_path / "data"))
    with host_binfmt(want=host_handler):
        done = _cli(["doctor", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    fact = json.loads(done.stdout)["facts"]["builder.platforms"]
    value = dict(item.split(": ", 1) for item in fact["value"])
    assert value["linux/amd64"] == "native"
    assert value["linux/arm64"] == ("host-binfmt" if host_handler else "userns-binfmt"), fact
    assert "linux/arm64: host-binfmt: " + ("ok" if host_handler else "the kernel cannot run") in fact["evidence"]
    assert "entrypoint: ok" in fact["evidence"]


@pytest.mark.parametrize("route", ["host", "userns", "entrypoint"])
def test_devpod_data_dir_on_overlayfs(route: str, nested_overlay: Path, base_images: BaseImages, registry: Registry,
                                      tmp_path: Path) -> None:
    """The devpod configuration: the data directory on overlayfs (uppers then live on a tmpfs of the build's);
    each route builds the cross-compiling case and the arm64 RUN steps, and the userns route's binfmt_misc
    mount lives in the build's scratch directory there."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    data = nested_overlay / f"anybuild-multi-{route}-{os.getpid()}"
    case = "cross" if route == "entrypoint" else "exec"
    try:
        with host_binfmt(want=route == "host"):
            sink, layout, result = _build(case, base_images, registry, tmp_path, route,
                                          {"ANYBUILD_DATA_DIR": str(data)})
        log = "\n".join(sink.lines)
        assert "data dir is on overlayfs" in log, log
        _check(case, layout, tmp_path / "read", result, route)
    finally:
        procs.unmount_under(data)
        procs.remove_tree(data)


def test_docker_format_is_a_manifest_list(base_images: BaseImages, registry: Registry, tmp_path: Path) -> None:
    """`--format docker`: the index is a Docker manifest list of Docker image manifests, pushed as such."""
    from anybuild.oci.mediatype import MediaType
    from anybuild.registry.client import RegistryClient
    from anybuild.registry.reference import Reference

    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    base_images.busybox_multi()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(CASES["args"])
    ref = f"{registry.host}/multi/docker-format:1"
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", platform="linux/amd64,linux/arm64",
                           tags=(ref,), push=True, insecure_registries=(registry.host,),
                           registry_mirrors={"docker.io": (registry.host,)})
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data"), "ANYBUILD_EMULATION": "entrypoint"}
    result = BuiltinBackend(env=env, docker_media_types=True).build(request, ListSink())
    with RegistryClient(insecure=frozenset({registry.host})) as client:
        fetched = client.get_manifest(Reference.parse(ref))
        index = Index.from_json(fetched.data)
        assert index.media_type is MediaType.DOCKER_MANIFEST_LIST
        assert str(fetched.descriptor.digest) == result.digest
        for entry in index.manifests:
            assert entry.media_type == MediaType.DOCKER_MANIFEST
            child = client.get_manifest(Reference.parse(ref).at(entry.digest))
            assert child.media_type == MediaType.DOCKER_MANIFEST


def test_docker_archive_of_several_platforms_refused_before_building(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(CASES["uname"])
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", platform="linux/amd64,linux/arm64",
                           output=f"docker-archive:{tmp_path / 'out.tar'}")
    from anybuild.builder.build import BuildEnvironment, build_image

    env = BuildEnvironment(env={**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")})
    with pytest.raises(UsageError, match="a docker archive holds one platform's image") as info:
        build_image(request, ListSink(), env)
    assert "--output oci:DIR" in info.value.hint
    assert not (tmp_path / "data").exists()  # refused before the data directory was touched


@pytest.mark.slow
@pytest.mark.parametrize("route", ["host", "userns"])
def test_debian_for_two_platforms(route: str, base_images: BaseImages, registry: Registry, tmp_path: Path) -> None:
    """The harness's Debian index (amd64 debootstrap; arm64 debootstrap --foreign completed under the
    emulator): dpkg and apt run for both platforms, the arm64 ones under QEMU through *route*."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    base_images.debian_multi()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM debian:bookworm-multi\n"
        "RUN dpkg --print-architecture > /dpkg-arch && uname -m > /arch && apt-get --version | head -n1 > /apt\n")
    layout = tmp_path / "out"
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", platform="linux/amd64,linux/arm64",
                           output=f"oci:{layout}", insecure_registries=(registry.host,),
                           registry_mirrors={"docker.io": (registry.host,)})
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data"), "ANYBUILD_EMULATION": route}
    with host_binfmt(want=route == "host"):
        BuiltinBackend(env=env).build(request, ListSink())
    _index, images = read_index(layout, tmp_path / "read")
    for platform, image in images.items():
        arch = platform.split("/")[1]
        assert (image.root / "dpkg-arch").read_text() == arch + "\n"
        assert (image.root / "arch").read_text() == UNAME[platform] + "\n"
        assert (image.root / "apt").read_text().startswith("apt 2.6")
        assert elf_machine(image.root / "usr/bin/apt-get") == {"amd64": 62, "arm64": 183}[arch]


def test_bad_from_platform_names_the_line(tmp_path: Path) -> None:
    from anybuild.builder.build import BuildEnvironment, build_image
    from anybuild.errors import DockerfileError

    procs.require_root("the built-in builder's sandboxes")
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch AS a\nFROM --platform=linux/arm/v7/x scratch\n"
                                        "COPY --from=a / /\n")
    env = BuildEnvironment(env={**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")})
    with pytest.raises(DockerfileError, match="FROM --platform=linux/arm/v7/x: invalid platform") as info:
        build_image(BuildRequest(context=context, dockerfile=context / "Dockerfile"), ListSink(), env)
    assert info.value.line == 2
