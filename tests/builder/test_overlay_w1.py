"""A W1-like step (RUN writing many small files on Debian) with the walk and the overlay snapshotter.

Timings are printed, never asserted (the machine is shared); what is asserted is that
both snapshotters give the same layer. Run with ``-s`` to see the figures. The suite writes
3,000 files (``ANYBUILD_TEST_W1_DIRS`` directories of 100, default 30): as many as W1's 30,000
(``ANYBUILD_TEST_W1_DIRS=300``, bench/builders.py) prove the same thing in ten times the time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.inroot import RootDir
from anybuild.builder.layer import write_layer
from anybuild.builder.overlay import OverlaySnapshotter, UpperPlacement
from anybuild.builder.snapshotter import Snapshotter, SnapshotterKind, WalkSnapshotter
from tests.harness.bases import debian_rootfs_tar

EPOCH = 1_700_000_000
DIRS = int(os.environ.get("ANYBUILD_TEST_W1_DIRS", "30"))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root")

W1 = """\
FROM debian:bookworm
RUN mkdir /data && cd /data && for d in $(seq 1 DIRS); do mkdir d$d; for f in $(seq 1 100); do \\
    echo "file $d $f" > d$d/f$f; done; done
""".replace("DIRS", str(DIRS))


@pytest.mark.slow
@pytest.mark.root
@needs_root
def test_w1_step_walk_vs_overlay_same_digest_timed(tmp_path: Path, base_images, nested_overlay: Path) -> None:
    """RUN creating DIRS × 100 small files on Debian: timings printed (not asserted), digests compared."""
    mirror = base_images.mirror_host
    base_images.debian()
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/Dockerfile").write_text(W1)
    digests: dict[str, str] = {}
    places = {"disk": tmp_path / "disk", "devpod": nested_overlay / f"w1-{tmp_path.name}"}
    for place, where in places.items():
        for snapshotter in ("walk", "overlay"):
            env = {**os.environ, "ANYBUILD_DATA_DIR": str(where / f"data-{snapshotter}"),
                   "SOURCE_DATE_EPOCH": str(EPOCH), "ANYBUILD_SNAPSHOTTER": snapshotter}
            sink = ListSink()
            request = BuildRequest(context=tmp_path / "ctx", dockerfile=tmp_path / "ctx/Dockerfile", no_cache=True,
                                   output=f"oci:{tmp_path / f'out-{place}-{snapshotter}'}",
                                   insecure_registries=(mirror,), registry_mirrors={"docker.io": (mirror,)})
            result = build_image(request, sink, BuildEnvironment(env=env))
            base = next(s.seconds for s in result.steps if "FROM" in s.name)
            run = next(s.seconds for s in result.steps if "RUN" in s.name)
            chosen = next(line for line in sink.lines if line.startswith("anybuild: snapshotter: "))
            print(f"W1 {place:6} {chosen:58} FROM {base:5.2f} s  RUN {run:5.2f} s  "
                  f"build {result.finished - result.started:5.2f} s")
            digests[f"{place}-{snapshotter}"] = result.digest
        shutil.rmtree(where, ignore_errors=True)
    assert len(set(digests.values())) == 1, digests


def _many_files(root: Path) -> None:
    data = root / "data"
    data.mkdir()
    for d in range(DIRS):
        (data / f"d{d}").mkdir()
        for f in range(100):
            (data / f"d{d}" / f"f{f}").write_text(f"file {d} {f}\n")


def _timed_step(snapshotter: Snapshotter, root: Path, out: Path) -> tuple[dict[str, float], str]:
    """Seconds per phase of one step writing DIRS × 100 files, and the layer's diff id."""
    times: dict[str, float] = {}
    clock = time.monotonic()
    before = snapshotter.baseline(root)
    times["baseline"] = time.monotonic() - clock
    clock = time.monotonic()
    with snapshotter.step(root, before) as capture:
        times["mount"], clock = time.monotonic() - clock, time.monotonic()
        _many_files(root)
        times["step writes"], clock = time.monotonic() - clock, time.monotonic()
        taken = capture.finish()
        times["changes"], clock = time.monotonic() - clock, time.monotonic()
        with RootDir.open(taken.source) as source, out.open("wb") as sink:
            blob = write_layer(taken.changes, source, sink, source_date_epoch=EPOCH)
        times["layer (gzip)"], clock = time.monotonic() - clock, time.monotonic()
    times["apply+unmount"] = time.monotonic() - clock
    return times, blob.diff_id


@pytest.mark.slow
@pytest.mark.root
@needs_root
def test_w1_phases_walk_vs_overlay_same_layer_timed(tmp_path: Path, base_images, nested_overlay: Path) -> None:
    """DIRS × 100 small files written on a Debian rootfs: seconds per phase printed (not asserted)."""
    debian = debian_rootfs_tar(cache=base_images.cache)
    ids: set[str] = set()
    places = {"disk": (tmp_path / "disk", UpperPlacement.DATA_DIR),
              "devpod": (nested_overlay / f"w1p-{tmp_path.name}", UpperPlacement.TMPFS)}
    for place, (where, placement) in places.items():
        for kind in SnapshotterKind:
            root = where / kind
            root.mkdir(parents=True)
            subprocess.run(["tar", "-xf", str(debian), "-C", str(root)], check=True)
            snapshotter: Snapshotter = (WalkSnapshotter() if kind is SnapshotterKind.WALK
                                        else OverlaySnapshotter(placement=placement, scratch=where))
            times, diff_id = _timed_step(snapshotter, root, where / f"{kind}.layer")
            cost = sum(v for k, v in times.items() if k != "step writes")
            label = f"{kind} ({placement})" if kind is SnapshotterKind.OVERLAY else str(kind)
            print(f"W1 {place:6} {label:18} " + "  ".join(f"{k} {v:5.2f}" for k, v in times.items())
                  + f"  | snapshotter cost {cost:5.2f} s, step total {cost + times['step writes']:5.2f} s")
            ids.add(diff_id)
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)
        shutil.rmtree(where, ignore_errors=True)
    assert len(ids) == 1
