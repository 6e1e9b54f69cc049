"""The platforms of one build run in parallel (ANYBUILD_PLATFORM_JOBS), and share what they can.

Real two-platform builds from the harness's multi-platform busybox, the arm64 RUN steps under QEMU through a
binfmt_misc of the build's own user namespace (no host handler): the index is the same whether the platforms
ran one after the other or at once; they really overlap; a ``FROM --platform=$BUILDPLATFORM`` stage both need
runs once; the first platform that fails stops the other's RUN at once, and its error is the one reported.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, BuildResult, ListSink
from anybuild.backends.builtin import BuiltinBackend
from anybuild.builder.build import PLATFORM_JOBS_ENV, platform_jobs
from anybuild.errors import AnybuildError, BuildFailed, UsageError
from anybuild.oci.layout import LayoutStore
from tests.builder.multiplatform import CASES, UNAME, host_binfmt, read_index
from tests.harness import procs
from tests.harness.bases import BaseImages
from tests.harness.registry import Registry

_TWO = "linux/amd64,linux/arm64"


def test_platform_jobs_follows_cores_and_the_override() -> None:
    assert platform_jobs({}, 2, cores=2) == 2
    assert platform_jobs({}, 3, cores=2) == 2
    assert platform_jobs({}, 1, cores=8) == 1
    assert platform_jobs({PLATFORM_JOBS_ENV: "1"}, 2, cores=2) == 1
    assert platform_jobs({PLATFORM_JOBS_ENV: " 4 "}, 2, cores=8) == 2
    assert platform_jobs({PLATFORM_JOBS_ENV: "8"}, 4, cores=2) == 2
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(UsageError, match=PLATFORM_JOBS_ENV) as info:
            platform_jobs({PLATFORM_JOBS_ENV: bad}, 2, cores=2)
        assert repr(bad) in info.value.message and "=1" in info.value.hint


def _build(dockerfile: str, base_images: BaseImages, registry: Registry, tmp_path: Path, name: str, *,
           jobs: int, output: bool = True, build_args: dict[str, str] | None = None,
           ) -> tuple[ListSink, BuildResult, Path]:
    base_images.busybox_multi()
    context = tmp_path / f"context-{name}"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    layout = tmp_path / f"out-{name}"
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", platform=_TWO,
                           output=f"oci:{layout}" if output else None, insecure_registries=(registry.host,),
                           build_args=build_args or {},
                           registry_mirrors={"docker.io": (registry.host,)})
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / f"data-{name}"), "ANYBUILD_EMULATION": "userns",
           "SOURCE_DATE_EPOCH": "1700000000", PLATFORM_JOBS_ENV: str(jobs)}
    sink = ListSink()
    result = BuiltinBackend(env=env).build(request, sink)
    return sink, result, layout


def _blobs(layout: Path) -> dict[str, bytes]:
    store = LayoutStore.open(layout)
    return {path.name: path.read_bytes() for path in (store.root / "blobs" / "sha256").iterdir()}


def test_parallel_index_is_the_sequential_one(base_images: BaseImages, registry: Registry, tmp_path: Path) -> None:
    """Each in a data directory of its own (no cache between them): the same index, manifests, configs, layers."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    with host_binfmt(want=False):
        one_sink, one, one_layout = _build(CASES["cross"], base_images, registry, tmp_path, "one", jobs=1)
        two_sink, two, two_layout = _build(CASES["cross"], base_images, registry, tmp_path, "two", jobs=2)
    assert not any("at a time" in line for line in one_sink.lines), one_sink.lines
    assert any("building 2 platforms, 2 at a time" in line for line in two_sink.lines), two_sink.lines
    assert two.digest == one.digest
    assert [(p.platform, p.digest) for p in two.platforms] == [(p.platform, p.digest) for p in one.platforms]
    assert (two_layout / "index.json").read_bytes() == (one_layout / "index.json").read_bytes()
    assert _blobs(two_layout) == _blobs(one_layout)
    # the result's steps are grouped per platform, in the order given, as in a sequential build
    assert [s.name.split("]")[0] for s in two.steps] == [s.name.split("]")[0] for s in one.steps]
    index, images = read_index(two_layout, tmp_path / "read")
    assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
    for platform, image in images.items():
        assert (image.root / "arch").read_text() == UNAME[platform] + "\n"


# Each platform's RUN says it started (a file in a cache mount both see) and waits, up to WAIT seconds, for the
# other's: both pass only if the two ran at the same time.
_OVERLAP = """\
FROM busybox:1.36-multi
ARG WAIT=120
RUN --mount=type=cache,target=/meet touch /meet/$(uname -m) && i=0 \\
    && while [ ! -e /meet/x86_64 ] || [ ! -e /meet/aarch64 ]; do \\
         i=$((i+1)); [ $i -le $WAIT ] || { echo "alone after $WAIT s"; exit 9; }; sleep 1; done \\
    && uname -m > /arch
"""


def test_platforms_overlap(base_images: BaseImages, registry: Registry, tmp_path: Path) -> None:
    """In parallel both RUN steps meet; one after the other (JOBS=1), the first waits alone and fails."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    with host_binfmt(want=False):
        _sink, result, _layout = _build(_OVERLAP, base_images, registry, tmp_path, "two", jobs=2, output=False)
        assert [p.platform for p in result.platforms] == ["linux/amd64", "linux/arm64"]
        with pytest.raises(BuildFailed, match="exit code 9") as alone:
            _build(_OVERLAP, base_images, registry, tmp_path, "one", jobs=1, output=False, build_args={"WAIT": "3"})
    assert alone.value.message.startswith("linux/amd64: "), alone.value.message


_SHARED = """\
FROM --platform=$BUILDPLATFORM busybox:1.36-multi AS tools
RUN sleep 2 && date +%s%N > /made
FROM busybox:1.36-multi
COPY --from=tools /made /made
"""


def test_shared_buildplatform_stage_is_built_once(base_images: BaseImages, registry: Registry,
                                                  tmp_path: Path) -> None:
    """Both platforms need the native tools stage at the same moment: one runs its RUN, the other waits for it
    and takes the result from the step cache."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    with host_binfmt(want=False):
        sink, result, layout = _build(_SHARED, base_images, registry, tmp_path, "two", jobs=2)
    ran = [line for line in sink.lines if "#[tools 1/1] DONE" in line]
    cached = [line for line in sink.lines if "#[tools 1/1] RUN" in line and line.endswith("CACHED")]
    assert (len(ran), len(cached)) == (1, 1), sink.lines
    assert result.cache_hits == 1
    _index, images = read_index(layout, tmp_path / "read")
    made = {p: (i.root / "made").read_text() for p, i in images.items()}
    assert made["linux/amd64"] == made["linux/arm64"], made


# amd64's RUN fails once arm64's has started its long sleep (they meet in a cache mount)
_FAILING = """\
FROM busybox:1.36-multi
ARG TARGETARCH
RUN --mount=type=cache,target=/meet if [ "$TARGETARCH" = amd64 ]; then i=0; \\
      while [ ! -e /meet/sleeping ] && [ $i -lt 120 ]; do i=$((i+1)); sleep 1; done; echo amd64 gives up; exit 3; \\
    fi; touch /meet/sleeping; sleep 317
"""


def _sleepers() -> list[int]:
    """Processes sleeping the failing build's marker time (`sleep 317`, native or under QEMU)."""
    return procs.processes(lambda argv: b"317" in argv and any(a.endswith(b"sleep") for a in argv))


def _mounts_below(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line]


def test_first_failure_stops_the_other_platform(base_images: BaseImages, registry: Registry,
                                                tmp_path: Path) -> None:
    """amd64's RUN fails while arm64's sleeps 317 s: the build fails promptly with amd64's error, naming it, and
    no sleep, mount or scratch directory is left."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    assert not _sleepers()
    started = time.monotonic()
    with host_binfmt(want=False), pytest.raises(BuildFailed) as failed:
        _build(_FAILING, base_images, registry, tmp_path, "fail", jobs=2, output=False)
    took = time.monotonic() - started
    assert failed.value.message.startswith("linux/amd64: "), failed.value.message
    assert "exit code 3" in failed.value.message, failed.value.message
    assert took < 150, f"the arm64 RUN was not stopped: the build took {took:.0f}s"  # its sleep is 317 s
    meet = tmp_path / "data-fail" / "cache" / "mounts" / hashlib.sha256(b"/meet").hexdigest()[:24]
    assert (meet / "sleeping").exists()  # amd64 failed while arm64 slept
    assert not _sleepers()
    assert not _mounts_below(tmp_path / "data-fail")
    assert not [p for p in (tmp_path / "data-fail" / "tmp").iterdir() if not p.name.startswith(".")]


def test_sequential_failure_names_its_platform(base_images: BaseImages, registry: Registry,
                                               tmp_path: Path) -> None:
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    dockerfile = "FROM busybox:1.36-multi\nARG TARGETARCH\nRUN [ \"$TARGETARCH\" != arm64 ]\n"
    with host_binfmt(want=False), pytest.raises(AnybuildError) as failed:
        _build(dockerfile, base_images, registry, tmp_path, "fail", jobs=1, output=False)
    assert failed.value.message.startswith("linux/arm64: "), failed.value.message


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    anybuild = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv")) / "bin" / "anybuild"
    return subprocess.Popen([str(anybuild), *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_ctrl_c_stops_every_platform(base_images: BaseImages, registry: Registry, tmp_path: Path) -> None:
    """SIGINT while both platforms sleep in their RUN: exit 130, the interruption said, nothing left running."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    base_images.busybox_multi()
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox:1.36-multi\nRUN sleep 317\n")
    env = dict(os.environ, ANYBUILD_DATA_DIR=str(tmp_path / "data"), ANYBUILD_EMULATION="userns",
               **{PLATFORM_JOBS_ENV: "2"})
    with host_binfmt(want=False):
        proc = _cli(["build", "--backend", "builtin", "--progress", "plain", "--platform", _TWO,
                     "--insecure-registry", registry.host, "--registry-mirror", registry.host, str(context)],
                    env, tmp_path)
        try:
            deadline = time.monotonic() + 240
            while len(_sleepers()) < 2 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            assert len(_sleepers()) >= 2, "both platforms' RUN steps never ran at once"
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted by SIGINT" in err, err[-3000:]
    assert not _sleepers()
    assert not _mounts_below(tmp_path / "data")


def test_base_index_is_fetched_once(base_images: BaseImages, registry: Registry, tmp_path: Path) -> None:
    """Both platforms pull busybox at once: one GET of its index (by tag) for the build, one per platform image."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    base_images.busybox_multi()
    before = len(registry.requests())
    with host_binfmt(want=False):
        _build(CASES["uname"], base_images, registry, tmp_path, "two", jobs=2, output=False)
    served = registry.requests()[before:]
    tag = [r for r in served if r.method == "GET" and r.path.endswith("/library/busybox/manifests/1.36-multi")]
    by_digest = [r for r in served if r.method == "GET" and "/library/busybox/manifests/sha256:" in r.path]
    assert (len(tag), len(by_digest)) == (1, 2), served


_LOCKED = """\
FROM busybox:1.36-multi
RUN --mount=type=cache,target=/c,sharing=locked echo "start $(uname -m)" >> /c/log && sleep 3 \\
    && echo "end $(uname -m)" >> /c/log
"""


def test_locked_cache_mount_is_used_by_one_platform_at_a_time(base_images: BaseImages, registry: Registry,
                                                              tmp_path: Path) -> None:
    """`sharing=locked`: the platforms' RUN steps take turns with the cache directory, as in BuildKit."""
    procs.require_root("the built-in builder's overlay and chroot sandboxes")
    with host_binfmt(want=False):
        sink, _result, _layout = _build(_LOCKED, base_images, registry, tmp_path, "two", jobs=2, output=False)
    cache = tmp_path / "data-two" / "cache" / "mounts" / hashlib.sha256(b"/c").hexdigest()[:24]
    lines = (cache / "log").read_text().split("\n")[:-1]
    assert len(lines) == 4 and lines[0].split()[1] == lines[1].split()[1], lines
    assert [line.split()[0] for line in lines] == ["start", "end", "start", "end"], lines
    assert sorted({line.split()[1] for line in lines}) == ["aarch64", "x86_64"], lines
    assert any("waiting for another RUN to release its cache mount" in line for line in sink.lines), sink.lines
