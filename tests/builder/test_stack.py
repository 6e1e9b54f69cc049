"""The stacked overlay snapshotter: layers unpacked once as overlay lower directories.

The merged view of a stack must equal what applying the same layers one by one
gives (the walk's way), whiteouts, opaque directories, missing parents and all;
a layer whose bytes do not match its diff id leaves nothing behind; a stack too
deep for the mount options is flattened and still right; and snapshots are
shared by builds, pruned least recently used first, never while a build runs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from anybuild.builder.inroot import RootDir
from anybuild.builder.rootfs import OVERLAY_OPAQUE_XATTR, UnpackOptions, unpack_layer
from anybuild.builder.stack import LayerSnapshots, SnapshotUsage, Stacker, chain_ids
from anybuild.errors import IntegrityError
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.digest import Digest
from anybuild.oci.layout import LayoutStore
from anybuild.oci.mediatype import MediaType
from anybuild.process import SubprocessRunner
from tests.builder.layers import E, tar_bytes
from tests.builder.test_overlay import mounts_under

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts, whiteouts and trusted xattrs need root")

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_chain_ids_follow_the_oci_definition() -> None:
    first, second = Digest.parse(A), Digest.parse(B)
    chains = chain_ids([first, second])
    assert chains[0] == first
    assert str(chains[1]) == "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    assert chain_ids([]) == []
    assert chain_ids([second, first])[1] != chains[1]  # the order of the layers is part of the id


LAYERS: list[list[E]] = [
    [  # a base: directories with their own metadata
        E("etc", "dir", mode=0o755), E("etc/motd", data=b"hello\n"), E("etc/old", data=b"old"),
        E("usr", "dir", mode=0o750, uid=7, gid=8), E("usr/bin", "dir", mode=0o755),
        E("usr/bin/tool", data=b"\x7fELF", mode=0o755),
        E("var", "dir"), E("var/lib", "dir"), E("var/lib/app", "dir"), E("var/lib/app/a", data=b"a"),
        E("var/lib/app/sub", "dir"), E("var/lib/app/sub/b", data=b"b"),
        E("srv", "dir"), E("srv/data", "dir"), E("srv/data/f", data=b"f"),
        E("link", "symlink", link="etc/motd"),
    ],
    [  # deletions, an opaque directory, a missing parent, type changes, a hard link
        E("etc/.wh.old"), E("var/lib/app/.wh..wh..opq"), E("var/lib/app/fresh", data=b"fresh"),
        E("usr/bin/new", data=b"new", mode=0o700, uid=1, gid=2),  # no entry for usr/ nor usr/bin/
        E("srv/.wh.data"), E("srv/data", data=b"now a file"),
        E("etc/motd", "dir"), E("etc/motd/inside", data=b"dir now"),
        E("hard", data=b"linked"), E("hard2", "link", link="hard"),
    ],
    [  # a later layer brings a deleted name back and deletes through a replaced directory
        E("etc/old", data=b"back"), E("var/lib/.wh.app"), E("var/lib/app", "dir", mode=0o700),
        E("var/lib/app/z", data=b"z"),
    ],
]


def _store_layers(store: LayoutStore, layers: list[list[E]]) -> tuple[list[Descriptor], list[Digest]]:
    descriptors, diff_ids = [], []
    for entries in layers:
        raw = tar_bytes(entries)
        diff_ids.append(Digest.parse("sha256:" + hashlib.sha256(raw).hexdigest()))
        descriptors.append(store.write_blob([tar_bytes(entries, "gzip")], media_type=MediaType.OCI_LAYER_GZIP))
    return descriptors, diff_ids


def _base_and_rootfs(stacker: Stacker, where: Path) -> tuple[list[Descriptor], list[Digest], Path]:
    """The first layer of LAYERS in *stacker*'s store, and an empty mount point for a step."""
    descriptors, diff_ids = _store_layers(stacker.blobs, LAYERS[:1])
    rootfs = where / "rootfs"
    rootfs.mkdir()
    return descriptors, diff_ids, rootfs


def _devpod_stacker(pod: Path, store: Path) -> Stacker:
    """A stacker whose data directory is *pod*, on an overlay mount: every upper on its tmpfs."""
    scratch = pod / "scratch"
    scratch.mkdir(parents=True)
    return Stacker(snapshots=LayerSnapshots(pod / "snapshots"), blobs=LayoutStore.create(store), scratch=scratch,
                   runner=SubprocessRunner(), upper_on_tmpfs=True)


def _applied(blobs: LayoutStore, descriptors: list[Descriptor], target: Path) -> Path:
    """*target* with the layers applied one by one, the walk's way."""
    target.mkdir()
    with RootDir.open(target) as root:
        for descriptor in descriptors:
            with blobs.open_blob(descriptor.digest) as stream:
                unpack_layer(stream, root, UnpackOptions.for_current_process())
    return target


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below *root*: type, mode, owner and (not for directories, whose mtimes the kernel
    moves as children are written) times and contents."""
    found: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(top) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            kind = stat.S_IFMT(info.st_mode)
            extra: tuple[object, ...] = ()
            if stat.S_ISREG(info.st_mode):
                extra = (path.read_bytes(), info.st_mtime_ns, info.st_nlink)
            elif stat.S_ISLNK(info.st_mode):
                extra = (os.readlink(path), info.st_mtime_ns)
            found[rel] = (kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, *extra)
    return found


@pytest.fixture
def stacker(tmp_path: Path) -> Iterator[Stacker]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    made = Stacker(snapshots=LayerSnapshots(tmp_path / "snapshots"), blobs=LayoutStore.create(tmp_path / "store"),
                   scratch=scratch, runner=SubprocessRunner())
    yield made
    made.close()
    assert mounts_under(tmp_path) == []


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("limit", [4000, 400], ids=["stacked", "flattened"])
def test_stack_view_equals_layers_applied_one_by_one(limit: int, stacker: Stacker, tmp_path: Path) -> None:
    stacker.options_limit = limit
    layers = LAYERS + [[E(f"deep/{i}", data=str(i).encode())] for i in range(12)]  # 15 layers: too many for 400
    descriptors, diff_ids = _store_layers(stacker.blobs, layers)
    applied = _applied(stacker.blobs, descriptors, tmp_path / "applied")

    view = stacker.view(descriptors, diff_ids)

    assert _tree(view) == _tree(applied)
    assert (view / "etc/old").read_bytes() == b"back"
    assert sorted(p.name for p in (view / "var/lib/app").iterdir()) == ["z"]
    assert any(p.name.startswith("flat-") for p in stacker.scratch.iterdir()) is (limit == 400)
    assert stacker.unpacked == len(layers)


HARD_LINKS: list[list[E]] = [
    [E("usr", "dir"), E("usr/lib", "dir", mode=0o750), E("usr/lib/libx.so", data=b"lib", mode=0o755, uid=3, gid=4),
     E("etc", "dir"), E("etc/motd", data=b"motd"), E("etc/gone", data=b"gone"), E("sym", "symlink", link="etc/motd")],
    [E("etc/.wh.motd"), E("etc/motd", data=b"new motd")],  # replaced: a link must reach the new one
    [E("usr/lib/libx.so.1", "link", link="usr/lib/libx.so"),  # to the bottom layer, parents undescribed
     E("motd2", "link", link="etc/motd"), E("sym2", "link", link="sym")],
]


@pytest.mark.root
@needs_root
def test_hard_links_to_lower_layers_copied_up_as_containerd_applies_them(stacker: Stacker, tmp_path: Path) -> None:
    descriptors, diff_ids = _store_layers(stacker.blobs, HARD_LINKS)
    applied = _applied(stacker.blobs, descriptors, tmp_path / "applied")

    view = stacker.view(descriptors, diff_ids)

    assert _tree(view) == _tree(applied)
    assert (view / "motd2").read_bytes() == b"new motd"
    assert (view / "usr/lib/libx.so.1").stat().st_ino == (view / "usr/lib/libx.so").stat().st_ino
    top = stacker.lowers(descriptors, diff_ids)[-1]
    assert stat.S_IMODE((top / "usr/lib").stat().st_mode) == 0o750  # the copy's parents keep the lower's


HOSTILE_LINKS = {
    "deleted-below": [[E("etc", "dir"), E("etc/gone", data=b"x")], [E("etc/.wh.gone")],
                      [E("back", "link", link="etc/gone")]],
    "deleted-here": [[E("etc", "dir"), E("etc/gone", data=b"x")],
                     [E("etc/.wh.gone"), E("back", "link", link="etc/gone")]],
    "opaque-dir": [[E("etc", "dir"), E("etc/gone", data=b"x")],
                   [E("etc/.wh..wh..opq"), E("back", "link", link="etc/gone")]],
    "never-there": [[E("etc", "dir")], [E("back", "link", link="etc/none")]],
    "climbs-out": [[E("etc", "dir")], [E("back", "link", link="../../../etc/passwd")]],
}


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("layers", HOSTILE_LINKS.values(), ids=HOSTILE_LINKS.keys())
@pytest.mark.parametrize("way", ["stacked", "applied"])
def test_hostile_hard_links_refused_by_both_snapshotters(layers: list[list[E]], way: str, stacker: Stacker,
                                                          tmp_path: Path) -> None:
    descriptors, diff_ids = _store_layers(stacker.blobs, layers)
    with pytest.raises(IntegrityError, match=r"neither in this layer|outside the image root"):
        if way == "stacked":
            stacker.view(descriptors, diff_ids)
        else:
            _applied(stacker.blobs, descriptors, tmp_path / "applied")
    assert not (tmp_path / "applied" / "back").exists()


@pytest.mark.root
@needs_root
def test_snapshot_holds_overlay_whiteouts_and_lower_metadata_for_undescribed_dirs(stacker: Stacker) -> None:
    descriptors, diff_ids = _store_layers(stacker.blobs, LAYERS[:2])
    lowers = stacker.lowers(descriptors, diff_ids)

    second = lowers[1]
    whiteout = (second / "etc/old").lstat()
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert os.getxattr(second / "var/lib/app", OVERLAY_OPAQUE_XATTR) == b"y"
    usr = (second / "usr").lstat()  # made for usr/bin/new: takes the base layer's usr/
    assert (stat.S_IMODE(usr.st_mode), usr.st_uid, usr.st_gid) == (0o750, 7, 8)
    assert stat.S_IMODE(second.lstat().st_mode) == 0o755
    assert lowers == tuple(stacker.snapshots.path(c) for c in chain_ids(diff_ids))


@pytest.mark.root
@needs_root
def test_layer_not_matching_its_diff_id_refused_nothing_left(stacker: Stacker) -> None:
    descriptors, _ = _store_layers(stacker.blobs, LAYERS[:1])
    wrong = [Digest.parse(B)]

    with pytest.raises(IntegrityError, match="unpacks to sha256:"):
        stacker.lowers(descriptors, wrong)

    assert not stacker.snapshots.has(wrong[0])
    assert [p.name for p in stacker.snapshots.root.iterdir() if p.name != ".lock"] == []


@pytest.mark.root
@needs_root
def test_snapshots_unpacked_once_shared_by_a_second_build(stacker: Stacker, tmp_path: Path) -> None:
    descriptors, diff_ids = _store_layers(stacker.blobs, LAYERS)
    first = stacker.lowers(descriptors, diff_ids)
    inodes = [p.stat().st_ino for p in first]
    again = Stacker(snapshots=stacker.snapshots, blobs=stacker.blobs, scratch=stacker.scratch,
                    runner=SubprocessRunner())

    assert again.lowers(descriptors, diff_ids) == first
    assert again.unpacked == 0
    assert [p.stat().st_ino for p in first] == inodes


@pytest.mark.root
@needs_root
def test_step_upper_becomes_the_next_snapshot(stacker: Stacker, tmp_path: Path) -> None:
    descriptors, diff_ids, rootfs = _base_and_rootfs(stacker, tmp_path)
    new_chain = Digest.parse(A)
    with stacker.step(rootfs, descriptors, diff_ids) as capture:
        (rootfs / "etc/motd").unlink()
        (rootfs / "added").write_text("x")
        taken = capture.finish()
        capture.keep(new_chain)

    assert taken.changes.added == ("added",)
    assert taken.changes.deleted == ("etc/motd",)
    assert list(rootfs.iterdir()) == []  # nothing mounted, nothing written to the mount point
    kept = stacker.snapshots.path(new_chain)
    assert (kept / "added").read_text() == "x"
    assert stat.S_ISCHR((kept / "etc/motd").lstat().st_mode)


@pytest.mark.root
@needs_root
def test_prune_keeps_recent_snapshots_within_budget_and_waits_for_builds(stacker: Stacker) -> None:
    descriptors, diff_ids = _store_layers(stacker.blobs, [[E(f"f{i}", data=os.urandom(64 * 1024))] for i in range(3)])
    lowers = stacker.lowers(descriptors, diff_ids)
    for age, path in enumerate(reversed(lowers)):  # the top layer most recently used
        os.utime(path, (1_700_000_000 - age * 100, 1_700_000_000 - age * 100))
    store = stacker.snapshots
    one = max(store.usage().size // 3, 1)

    with store.in_use():
        assert store.prune(everything=True) is None
    removed = store.prune(keep_storage=one + one // 2)

    assert removed is not None and removed.count == 2
    assert [p.exists() for p in lowers] == [False, False, True]
    assert store.prune() == SnapshotUsage(count=0, size=0)  # no flag: nothing removed
    assert lowers[2].exists()
    assert store.prune(everything=True) is not None and not lowers[2].exists()


@pytest.mark.root
@needs_root
def test_devpod_stack_data_dir_on_overlayfs_deleting_layers_stay_on_tmpfs(nested_overlay: Path,
                                                                          tmp_path: Path) -> None:
    # The data directory is an overlay mount: it can be a lower layer, never hold a whiteout.
    pod = nested_overlay / f"stack-{tmp_path.name}"
    stacker = _devpod_stacker(pod, tmp_path / "store")
    scratch = stacker.scratch
    try:
        descriptors, diff_ids = _store_layers(stacker.blobs, LAYERS)
        applied = _applied(stacker.blobs, descriptors, tmp_path / "applied")

        lowers = stacker.lowers(descriptors, diff_ids)
        assert _tree(stacker.view(descriptors, diff_ids)) == _tree(applied)
        assert lowers[0].parent == stacker.snapshots.root  # the base deletes nothing: shared in the data dir
        assert all(p.parent != stacker.snapshots.root for p in lowers[1:])  # whiteouts: on the build's tmpfs

        rootfs = scratch / "rootfs"
        rootfs.mkdir()
        adds, deletes = Digest.parse(A), Digest.parse(B)
        with stacker.step(rootfs, descriptors[:1], diff_ids[:1]) as capture:
            (rootfs / "usr/bin/added").write_text("x")
            capture.finish()
            capture.keep(adds)
        with stacker.step(rootfs, descriptors[:1], diff_ids[:1]) as capture:
            (rootfs / "etc/motd").unlink()
            capture.finish()
            capture.keep(deletes)
        assert (stacker.snapshots.path(adds) / "usr/bin/added").read_text() == "x"
        assert not stacker.snapshots.has(deletes)
        kept = scratch / "tmpfs" / "snapshots" / deletes.hex / "etc" / "motd"
        assert stat.S_ISCHR(kept.lstat().st_mode)  # the whiteout, kept on the tmpfs
    finally:
        stacker.close()
    assert mounts_under(pod) == []


@pytest.mark.root
@needs_root
def test_step_staged_in_memory_keeps_its_snapshot_on_the_tmpfs_for_the_build(stacker: Stacker,
                                                                             tmp_path: Path) -> None:
    descriptors, diff_ids, rootfs = _base_and_rootfs(stacker, tmp_path)
    made = Digest.parse(A)  # the new layer's diff id (its blob is the executor's business)
    chain = chain_ids([*diff_ids, made])[-1]

    with stacker.step(rootfs, descriptors, diff_ids, in_memory=True) as capture:
        (rootfs / "etc/added").write_text("in memory")
        taken = capture.finish()
        capture.keep(chain)

    assert capture.upper.is_relative_to(stacker.scratch / "tmpfs")
    assert taken.changes.added == ("etc/added",)
    assert not stacker.snapshots.has(chain)  # nothing written to the data directory
    layer = Descriptor(media_type=MediaType.OCI_LAYER_GZIP, digest=Digest.parse(B), size=1)  # never unpacked
    lowers = stacker.lowers([*descriptors, layer], [*diff_ids, made])
    assert lowers[-1] == stacker.scratch / "tmpfs" / "snapshots" / chain.hex
    assert (stacker.view([*descriptors, layer], [*diff_ids, made]) / "etc/added").read_text() == "in memory"
    assert stacker.unpacked == 1  # the base only


@pytest.mark.root
@needs_root
def test_step_filling_the_memory_tmpfs_fails_with_enospc_then_steps_go_to_disk(stacker: Stacker,
                                                                              tmp_path: Path) -> None:
    descriptors, diff_ids, rootfs = _base_and_rootfs(stacker, tmp_path)
    stacker.memory_limit = 256 * 1024
    big = os.urandom(1024 * 1024)

    with pytest.raises(OSError) as failed, stacker.step(rootfs, descriptors, diff_ids, in_memory=True):
        (rootfs / "big").write_bytes(big)
    assert failed.value.errno == errno.ENOSPC
    assert stacker.memory_limit == 0
    assert list(rootfs.iterdir()) == []  # unmounted

    chain = chain_ids([*diff_ids, Digest.parse(A)])[-1]
    with stacker.step(rootfs, descriptors, diff_ids, in_memory=True) as capture:  # asked again: on disk
        (rootfs / "big").write_bytes(big)
        capture.finish()
        capture.keep(chain)
    assert not capture.upper.is_relative_to(stacker.scratch / "tmpfs")
    assert (stacker.snapshots.path(chain) / "big").read_bytes() == big


@pytest.mark.root
@needs_root
def test_devpod_step_staged_in_memory_stays_on_the_tmpfs_within_the_budget(nested_overlay: Path,
                                                                           tmp_path: Path) -> None:
    """On a devpod every upper is on the tmpfs; one staged in memory is not copied to the data
    directory (on overlayfs, where each file costs most) while the tmpfs holds under the budget."""
    pod = nested_overlay / f"memory-{tmp_path.name}"
    stacker = _devpod_stacker(pod, tmp_path / "store")
    scratch = stacker.scratch
    try:
        descriptors, diff_ids, rootfs = _base_and_rootfs(stacker, scratch)
        kept, copied = (chain_ids([*diff_ids, Digest.parse(d)])[-1] for d in (A, B))
        with stacker.step(rootfs, descriptors, diff_ids, in_memory=True) as capture:
            (rootfs / "etc/added").write_text("kept")
            capture.finish()
            capture.keep(kept)
        stacker.memory_limit = 1  # the tmpfs holds more than that now
        with stacker.step(rootfs, descriptors, diff_ids, in_memory=True) as capture:
            (rootfs / "etc/added").write_text("copied")
            capture.finish()
            capture.keep(copied)

        assert not stacker.snapshots.has(kept)
        assert (scratch / "tmpfs" / "snapshots" / kept.hex / "etc/added").read_text() == "kept"
        assert (stacker.snapshots.path(copied) / "etc/added").read_text() == "copied"
    finally:
        stacker.close()
    assert mounts_under(pod) == []


@pytest.mark.root
@needs_root
def test_a_layer_two_platforms_need_at_once_is_unpacked_once(stacker: Stacker) -> None:
    """The platforms of a build share the stacker: both ask for the same base layer at the same moment (a
    FROM --platform=$BUILDPLATFORM stage); one unpacks it, the other waits and stacks on that snapshot."""
    import threading

    descriptors, diff_ids = _store_layers(stacker.blobs, [[E(f"f{i}", data=b"x" * 2000) for i in range(3000)]])
    start = threading.Barrier(2)
    got: list[tuple[Path, ...]] = []

    def want() -> None:
        start.wait()
        got.append(stacker.lowers(descriptors, diff_ids))

    threads = [threading.Thread(target=want) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 2 and got[0] == got[1]
    assert stacker.unpacked == 1
    assert len(list(got[0][0].iterdir())) == 3000
    assert not list(stacker.snapshots.root.glob(".incoming-*"))
