"""The overlay snapshotter against the portable walk: same changesets, same layers, same rootfs.

Each case builds the same base twice, runs the same mutation under the walk and
under an overlay mount (upper in the data directory, applied by rename, and upper
on a tmpfs, applied by copying), and compares the changesets, the layer diff ids
and the resulting rootfs. Overlay mounts need root; without it these tests skip.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.builder.inroot import RootDir
from anybuild.builder.layer import Compression, write_layer
from anybuild.builder.overlay import (
    LibcMounter,
    OverlaySnapshotter,
    SnapshotterChoice,
    UpperPlacement,
    choose_snapshotter,
    filesystem_type,
    make_snapshotter,
)
from anybuild.builder.snapshot import Changeset
from anybuild.builder.snapshotter import Snapshotter, SnapshotterKind, WalkSnapshotter
from anybuild.errors import BackendError, BuildFailed

OLD = 1_600_000_000_000_000_000
EPOCH = 1_700_000_000

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root")


def mounts_under(path: Path) -> list[str]:
    base = str(path.resolve())
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [f.split()[4] for f in lines if f.split()[4] == base or f.split()[4].startswith(base + "/")]


def make_base(root: Path) -> None:
    for d in ("etc", "usr/bin", "var/lib/app/sub", "srv/data", "opt/tool"):
        (root / d).mkdir(parents=True)
    (root / "etc/conf").write_text("key=1\n")
    (root / "etc/motd").write_text("hello\n")
    (root / "usr/bin/tool").write_bytes(b"\x7fELF" * 64)
    (root / "usr/bin/tool").chmod(0o755)
    (root / "var/lib/app/a").write_text("a")
    (root / "var/lib/app/b").write_text("b")
    (root / "var/lib/app/sub/c").write_text("c")
    (root / "srv/data/file").write_text("data")
    (root / "opt/tool/run").write_text("#!/bin/sh\n")
    (root / "link").symlink_to("etc/conf")
    (root / "etc/alias").symlink_to("/etc/motd")
    for path in [*root.rglob("*")]:
        os.utime(path, ns=(OLD, OLD), follow_symlinks=False)


def _replace_dir(root: Path) -> None:
    fresh = root / "var/lib/app.new"
    fresh.mkdir()
    (fresh / "only").write_text("new")
    shutil.rmtree(root / "var/lib/app")
    fresh.rename(root / "var/lib/app")


def _dir_to_file(root: Path) -> None:
    shutil.rmtree(root / "srv/data")
    (root / "srv/data").write_text("now a file")


def _file_to_dir(root: Path) -> None:
    (root / "etc/motd").unlink()
    (root / "etc/motd").mkdir()
    (root / "etc/motd/part").write_text("x")


def _symlinks(root: Path) -> None:
    (root / "link").unlink()
    (root / "link").symlink_to("etc/motd")
    (root / "usr/bin/dangling").symlink_to("/nowhere")
    (root / "etc/alias").unlink()


def _hardlinks(root: Path) -> None:
    (root / "usr/bin/new").write_text("linked")
    os.link(root / "usr/bin/new", root / "usr/bin/new2")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-alias")  # to a base file


def _permissions(root: Path) -> None:
    (root / "etc/conf").chmod(0o600)
    os.chown(root / "opt/tool/run", 1000, 1000)
    (root / "opt/tool").chmod(0o700)
    (root / "usr/bin/tool").chmod(0o4755)


def _touch_dir(root: Path) -> None:
    (root / "srv/data/tmp").write_text("gone soon")
    (root / "srv/data/tmp").unlink()


def _mixed(root: Path) -> None:
    (root / "etc/new.d/deep").mkdir(parents=True)
    (root / "etc/new.d/deep/x").write_text("x")
    (root / "etc/conf").write_text("key=2\n")
    shutil.rmtree(root / "var/lib/app/sub")
    (root / "var/lib/app/a").unlink()
    (root / ("long" * 40)).write_text("a long name")


CASES: dict[str, Callable[[Path], None]] = {
    "add": lambda r: [(r / "etc/new").write_text("new"), (r / "new/tree").mkdir(parents=True),
                      (r / "new/tree/f").write_text("f")],
    "modify": lambda r: (r / "etc/conf").write_text("key=2\n"),
    "delete-file": lambda r: (r / "var/lib/app/a").unlink(),
    "delete-tree": lambda r: shutil.rmtree(r / "var/lib/app"),
    "replace-dir": _replace_dir,
    "dir-to-file": _dir_to_file,
    "file-to-dir": _file_to_dir,
    "symlinks": _symlinks,
    "hardlinks": _hardlinks,
    "permissions": _permissions,
    "dir-mtime-only": _touch_dir,
    "mixed": _mixed,
    "nothing": lambda r: None,
}


def tree(root: Path, *, times: bool) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        content: object = None
        if stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(info.st_mode):
            content = str(path.readlink())
        out[str(path.relative_to(root))] = (
            stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
            None if stat.S_ISDIR(info.st_mode) else info.st_nlink, content,  # overlay counts dir links as 1
            info.st_mtime_ns if times else None,
        )
    return out


def run_step(snapshotter: Snapshotter, root: Path,
             mutate: Callable[[Path], None]) -> tuple[Changeset, str, dict[str, tuple[object, ...]]]:
    """Mutate *root* under *snapshotter*: (changes, layer diff id, the tree the step saw)."""
    before = snapshotter.baseline(root)
    with snapshotter.step(root, before) as capture:
        mutate(root)
        seen = tree(root, times=True)
        taken = capture.finish()
        with RootDir.open(taken.source) as source:
            blob = write_layer(taken.changes, source, io.BytesIO(), source_date_epoch=EPOCH,
                               compression=Compression.NONE)
    return taken.changes, blob.diff_id, seen


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("placement", list(UpperPlacement), ids=str)
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_overlay_step_same_layer_as_walk(case: str, placement: UpperPlacement, tmp_path: Path) -> None:
    walk_root, over_root, scratch = tmp_path / "walk", tmp_path / "overlay", tmp_path / "scratch"
    scratch.mkdir()
    make_base(walk_root)
    make_base(over_root)
    walk_changes, walk_id, _ = run_step(WalkSnapshotter(), walk_root, CASES[case])
    overlay = OverlaySnapshotter(placement=placement, scratch=scratch)
    over_changes, over_id, over_seen = run_step(overlay, over_root, CASES[case])
    assert over_changes == walk_changes
    assert over_id == walk_id
    assert mounts_under(tmp_path) == []
    assert tree(over_root, times=True) == over_seen  # the upper applied: exactly what the step saw
    assert tree(over_root, times=False) == tree(walk_root, times=False)
    assert list(scratch.iterdir()) == []
    if case == "nothing":
        assert over_changes.empty


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("error", [RuntimeError("step failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
@pytest.mark.parametrize("placement", list(UpperPlacement), ids=str)
def test_overlay_step_interrupted_unmounted_rootfs_unchanged(error: BaseException, placement: UpperPlacement,
                                                             tmp_path: Path) -> None:
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    scratch.mkdir()
    make_base(root)
    before = tree(root, times=True)
    snapshotter = OverlaySnapshotter(placement=placement, scratch=scratch)
    with pytest.raises(type(error)), snapshotter.step(root, snapshotter.baseline(root)):
        (root / "etc/conf").write_text("changed")
        shutil.rmtree(root / "var")
        raise error
    assert mounts_under(tmp_path) == []
    assert tree(root, times=True) == before
    assert list(scratch.iterdir()) == []


@pytest.mark.root
@needs_root
def test_overlay_step_busy_mount_detached(tmp_path: Path) -> None:
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    scratch.mkdir()
    make_base(root)
    snapshotter = OverlaySnapshotter(placement=UpperPlacement.DATA_DIR, scratch=scratch)
    with snapshotter.step(root, snapshotter.baseline(root)) as capture:
        held = os.open(root / "etc", os.O_RDONLY | os.O_DIRECTORY)  # as a process left running would
        try:
            os.chdir(root / "etc")
            (root / "etc/new").write_text("new")
            taken = capture.finish()
        finally:
            os.chdir(tmp_path)
            os.close(held)
    assert taken.changes == Changeset(added=("etc/new",), modified=("etc",))
    assert mounts_under(tmp_path) == []
    assert (root / "etc/new").read_text() == "new"


@pytest.mark.parametrize("metadata_only", [False, True], ids=["flag", "instruction"])
def test_overlay_step_not_filesystem_no_mount(metadata_only: bool, tmp_path: Path) -> None:
    class Refusing(LibcMounter):
        def mount(self, source: str, target: Path, fstype: str, options: str) -> None:
            raise AssertionError("no mount for a metadata instruction")

    snapshotter = OverlaySnapshotter(placement=UpperPlacement.DATA_DIR, scratch=tmp_path, mounter=Refusing())
    with snapshotter.step(tmp_path, snapshotter.baseline(tmp_path), filesystem=False) as capture:
        assert capture.finish().changes.empty


# -- the choice --------------------------------------------------------------------------------


@contextlib.contextmanager
def overlay_mount(work: Path) -> Iterator[Path]:
    """A directory inside an overlay mount: a devpod's container filesystem."""
    dirs = [work / n for n in ("lower", "upper", "work", "merged")]
    for d in dirs:
        d.mkdir(parents=True)
    LibcMounter().mount("overlay", dirs[3], "overlay", f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}")
    try:
        yield dirs[3]
    finally:
        LibcMounter().unmount(dirs[3])


@pytest.mark.root
@needs_root
def test_choose_snapshotter_plain_disk_upper_in_data_dir(tmp_path: Path) -> None:
    choice = choose_snapshotter({}, tmp_path)
    assert (choice.kind, choice.placement) == (SnapshotterKind.OVERLAY, UpperPlacement.DATA_DIR)
    assert choice.describe() == "overlay (upper in the data dir)"
    assert list(tmp_path.iterdir()) == []
    assert mounts_under(tmp_path) == []


@pytest.mark.root
@needs_root
def test_choose_snapshotter_data_dir_on_overlayfs_upper_on_tmpfs(tmp_path: Path) -> None:
    with overlay_mount(tmp_path / "pod") as merged:
        data = merged / "data"
        data.mkdir()
        choice = choose_snapshotter({}, data)
        assert mounts_under(merged) == [str(merged)]  # the pod's own mount only
        snapshotter = make_snapshotter(choice, scratch=data)
        assert isinstance(snapshotter, OverlaySnapshotter)
        (data / "rootfs").mkdir()
        with snapshotter.step(data / "rootfs", snapshotter.baseline(data / "rootfs")) as capture:
            (data / "rootfs/f").write_text("f")
            assert capture.finish().changes == Changeset(added=("f",))
        assert (data / "rootfs/f").read_text() == "f"
    assert choice.describe() == "overlay (upper on tmpfs: data dir is on overlayfs)"
    assert choice.placement is UpperPlacement.TMPFS


def test_choose_snapshotter_walk_requested_no_trial(tmp_path: Path) -> None:
    choice = choose_snapshotter({"ANYBUILD_SNAPSHOTTER": "walk"}, tmp_path / "absent")
    assert choice == SnapshotterChoice(kind=SnapshotterKind.WALK, reason="requested by ANYBUILD_SNAPSHOTTER=walk")
    assert isinstance(make_snapshotter(choice, scratch=tmp_path), WalkSnapshotter)


def test_choose_snapshotter_not_root_walk(tmp_path: Path) -> None:
    choice = choose_snapshotter({}, tmp_path, euid=1000)
    assert choice.describe() == "walk (overlay mounts need root)"


@pytest.mark.parametrize(("env", "fragment"), [
    ({"ANYBUILD_SNAPSHOTTER": "zfs"}, "unknown snapshotter 'zfs'"),
    ({"ANYBUILD_SNAPSHOTTER": "overlay"}, "overlay snapshotter was requested but cannot work here"),
], ids=["unknown", "overlay-not-root"])
def test_choose_snapshotter_bad_request_error(env: dict[str, str], fragment: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError) as caught:
        choose_snapshotter(env, tmp_path, euid=1000)
    assert fragment in caught.value.message
    assert "ANYBUILD_SNAPSHOTTER" in (caught.value.hint or "")


def test_choose_snapshotter_unsafe_path_walk(tmp_path: Path) -> None:
    data = tmp_path / "a,b"
    data.mkdir()
    assert "overlay options cannot carry" in choose_snapshotter({}, data, euid=0).reason


MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:35 / /tmp/pod/merged rw,relatime shared:2 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
41 40 0:36 / /tmp/pod/merged/run rw shared:3 - tmpfs tmpfs rw
43 22 0:37 / /srv/with\\040space rw shared:4 - xfs /dev/vdb rw
"""


@pytest.mark.parametrize(("path", "kind"), [
    ("/tmp/pod/merged/data", "overlay"), ("/tmp/pod/merged", "overlay"), ("/tmp/pod/merged/run/x", "tmpfs"),
    ("/tmp/pod/mergedx", "ext4"), ("/srv/with space/d", "xfs"), ("/", "ext4"),
], ids=["inside", "mount-point", "nested", "prefix-only", "escaped", "root"])
def test_filesystem_type_longest_mount_prefix(path: str, kind: str) -> None:
    assert filesystem_type(Path(path), MOUNTINFO) == kind


# -- whole builds -------------------------------------------------------------------------------

STEPS = """\
FROM busybox:1.36
RUN mkdir -p /opt/app/sub && echo a > /opt/app/a && echo c > /opt/app/sub/c && ln -s /opt/app/a /opt/link \\
    && echo x > /etc/x && touch /etc/gone
RUN rm -rf /opt/app/sub /etc/gone && echo b >> /opt/app/a && chmod 600 /etc/x && ln /etc/x /etc/x2 \\
    && rm /opt/link && ln -s app/a /opt/link && chown 1000:1000 /opt/app/a
RUN mkdir /opt/app.new && echo n > /opt/app.new/n && rm -rf /opt/app && mv /opt/app.new /opt/app \\
    && rm -rf /etc/x2 && mkdir /etc/x2 && rm -rf /home && echo home > /home
ENV A=1
WORKDIR /srv/www
COPY site/ ./
RUN true
"""


def build_with(tmp_path: Path, busybox: dict[str, str], name: str, dockerfile: str,
               snapshotter: str | None) -> tuple[object, list[str], Path]:
    context, data = tmp_path / "ctx", tmp_path / f"data-{name}"
    (context / "site").mkdir(parents=True, exist_ok=True)
    (context / "site/index.html").write_text("<h1>hi</h1>\n")
    (context / "Dockerfile").write_text(dockerfile)
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(data), "SOURCE_DATE_EPOCH": str(EPOCH)}
    env.pop("ANYBUILD_SNAPSHOTTER", None)
    if snapshotter is not None:
        env["ANYBUILD_SNAPSHOTTER"] = snapshotter
    sink = ListSink()
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", no_cache=True,
                           output=f"oci:{tmp_path / f'out-{name}'}")
    result = build_image(request, sink, BuildEnvironment(env=env, named_images=busybox))
    return result, sink.lines, data


@pytest.mark.root
@needs_root
def test_build_image_overlay_and_walk_same_digest(tmp_path: Path, base_images) -> None:
    busybox = {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}
    walk, walk_log, _ = build_with(tmp_path, busybox, "walk", STEPS, "walk")
    overlay, overlay_log, data = build_with(tmp_path, busybox, "overlay", STEPS, None)
    assert "anybuild: snapshotter: walk (requested by ANYBUILD_SNAPSHOTTER=walk)" in walk_log
    assert "anybuild: snapshotter: overlay (upper in the data dir) over layer snapshots" in overlay_log
    assert overlay.digest == walk.digest  # type: ignore[attr-defined]
    assert overlay.layers == walk.layers == 6  # type: ignore[attr-defined]
    assert mounts_under(data) == []
    assert list((data / "tmp").iterdir()) == []


@pytest.mark.root
@needs_root
def test_build_image_overlay_failed_run_nothing_mounted(tmp_path: Path, base_images) -> None:
    busybox = {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}
    with pytest.raises(BuildFailed):
        build_with(tmp_path, busybox, "failing", "FROM busybox:1.36\nRUN echo x > /x && exit 3\n", "overlay")
    assert mounts_under(tmp_path) == []
    assert list((tmp_path / "data-failing" / "tmp").iterdir()) == []
