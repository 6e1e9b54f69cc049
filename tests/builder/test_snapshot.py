from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from anybuild.builder.inroot import RootDir
from anybuild.builder.layer import Compression, write_layer
from anybuild.builder.rootfs import UnpackOptions, decompressed, unpack_layer
from anybuild.builder.snapshot import Changeset, Entry, Kind, Snapshot, diff, file_digest, scan
from tests.builder.test_rootfs import tree

OLD = 1_600_000_000_000_000_000  # ns; far from "now", so nothing is racy


def entry(kind: Kind = Kind.FILE, **kw: object) -> Entry:
    base: dict[str, object] = {"kind": kind, "mode": 0o644, "uid": 0, "gid": 0, "size": 1, "mtime_ns": OLD,
                               "ctime_ns": OLD, "ino": 1}
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def snap(**entries: Entry) -> Snapshot:
    return Snapshot(entries={k.replace("__", "/"): v for k, v in entries.items()})


# -- diff: pure -----------------------------------------------------------------------------------


def test_diff_identical_snapshots_empty() -> None:
    s = snap(a=entry(), d=entry(Kind.DIR, ino=2))
    assert diff(s, s).empty


@pytest.mark.parametrize(
    "change",
    [{"mode": 0o755}, {"uid": 1}, {"gid": 1}, {"size": 2}, {"mtime_ns": OLD + 1}, {"kind": Kind.SYMLINK},
     {"ctime_ns": OLD + 5}, {"ino": 9}],
    ids=["mode", "uid", "gid", "size", "mtime", "type", "ctime-only", "inode-only"],
)
def test_diff_metadata_change_modified(change: dict[str, object]) -> None:
    before = snap(f=entry())
    after = snap(f=entry(**change))
    assert diff(before, after).modified == ("f",)


def test_diff_racy_file_new_hard_link_modified_without_hashing() -> None:
    before = snap(f=entry(digest="sha256:aa"))
    after = snap(f=entry(nlink=2, ctime_ns=OLD + 1), g=entry(nlink=2, ctime_ns=OLD + 1))
    assert diff(before, after, digest=lambda p: "sha256:aa") == Changeset(added=("g",), modified=("f",))


@pytest.mark.parametrize(
    ("before_generation", "after_generation", "opaque"),
    [(7, 8, ("d",)), (7, 7, ()), (None, 8, ()), (7, None, ())],
    ids=["number-reused", "same-inode", "unknown-before", "unknown-after"],
)
def test_diff_directory_with_its_number_reused_is_opaque(before_generation: int | None,
                                                         after_generation: int | None,
                                                         opaque: tuple[str, ...]) -> None:
    """The same inode number with another generation is another directory (made again); unknown: the same."""
    before = snap(d=entry(Kind.DIR, ino=5, generation=before_generation), d__old=entry())
    after = snap(d=entry(Kind.DIR, ino=5, generation=after_generation))
    changes = diff(before, after)
    assert changes.opaque == opaque
    assert changes.deleted == (() if opaque else ("d/old",))


def test_diff_directory_ctime_only_unchanged() -> None:
    assert diff(snap(d=entry(Kind.DIR)), snap(d=entry(Kind.DIR, ctime_ns=OLD + 9))).empty


def test_diff_racy_file_same_digest_unchanged_without_metadata_change() -> None:
    before = snap(f=entry(digest="sha256:aa"))
    calls: list[str] = []
    assert diff(before, snap(f=entry()), digest=lambda p: calls.append(p) or "sha256:aa").empty
    assert calls == ["f"]
    assert diff(before, snap(f=entry()), digest=lambda p: "sha256:bb").modified == ("f",)


def test_diff_metadata_decides_no_hashing() -> None:
    def boom(path: str) -> str:
        raise AssertionError(f"hashed {path}")

    before = snap(a=entry(), b=entry(ino=2))
    after = snap(a=entry(), b=entry(ino=2, size=5))
    assert diff(before, after, digest=boom).modified == ("b",)


def test_diff_deleted_tree_topmost_whiteout_only() -> None:
    before = snap(d=entry(Kind.DIR), d__x=entry(ino=2), d__sub=entry(Kind.DIR, ino=3), d__sub__y=entry(ino=4),
                  keep=entry(ino=5))
    after = snap(keep=entry(ino=5))
    assert diff(before, after).deleted == ("d",)


def test_diff_replaced_directory_opaque_with_new_children_added() -> None:
    before = snap(d=entry(Kind.DIR, ino=1), d__old=entry(ino=2))
    after = snap(d=entry(Kind.DIR, ino=7), d__new=entry(ino=8))
    result = diff(before, after)
    assert result == Changeset(added=("d", "d/new"), opaque=("d",))


def test_diff_dir_replaced_by_file_no_whiteouts_below() -> None:
    before = snap(x=entry(Kind.DIR), x__y=entry(ino=2))
    after = snap(x=entry(ino=3))
    assert diff(before, after) == Changeset(modified=("x",))


def test_diff_order_directory_before_children_before_siblings() -> None:
    after = snap(**{"a": entry(Kind.DIR), "a__b": entry(ino=2), "a.txt": entry(ino=3)})
    assert diff(snap(), after).added == ("a", "a/b", "a.txt")


# -- scan + write_layer: real files ------------------------------------------------------------------


def make_base(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF" * 100)
    (root / "bin/busybox").chmod(0o755)
    os.link(root / "bin/busybox", root / "bin/sh")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "var/cache").mkdir(parents=True)
    (root / "var/cache/junk").write_text("junk")
    (root / "opt/app").mkdir(parents=True)
    (root / "opt/app/old").write_text("old")
    for path in root.rglob("*"):
        os.utime(path, ns=(OLD, OLD), follow_symlinks=False)


def mutate(root: Path) -> None:
    (root / "etc/new.conf").write_text("new\n")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home:/bin/sh\n")
    shutil.rmtree(root / "var/cache")
    # Replace opt/app by a new directory. The old one is moved out, not deleted, so the new one cannot
    # get its inode number back: a scan tells a replaced directory by its inode, and reuse would turn
    # the opaque directory into whiteouts (a valid layer, but another digest).
    (root / "opt/app").rename(root.parent / f"{root.name}-removed-app")
    (root / "opt/app").mkdir()
    (root / "opt/app/fresh").write_text("fresh")
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/tool").write_text("#!/bin/sh\n")
    (root / "usr/local/bin/tool").chmod(0o4755)
    os.link(root / "usr/local/bin/tool", root / "usr/local/bin/tool2")
    (root / "usr/local/bin/dangling").symlink_to("/nowhere")
    (root / ("long" * 40)).write_text("long name")


def layer_names(blob: bytes) -> list[str]:
    with tarfile.open(fileobj=decompressed(io.BytesIO(blob)), mode="r|") as tar:
        return [m.name for m in tar]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """(built, replay): the same base twice; *built* will be mutated, *replay* gets the layer."""
    built, replay = tmp_path / "built", tmp_path / "replay"
    make_base(built)
    shutil.copytree(built, replay, symlinks=True)
    for path in [replay, *replay.rglob("*")]:
        os.utime(path, ns=(OLD, OLD), follow_symlinks=False)
    return built, replay


def build_layer(built: Path, compression: Compression = Compression.GZIP, epoch: int | None = 1_700_000_000):
    before = scan(built)
    mutate(built)
    changes = diff(before, scan(built), digest=lambda p: file_digest(built / p))
    out = io.BytesIO()
    with RootDir.open(built) as root:
        blob = write_layer(changes, root, out, source_date_epoch=epoch, compression=compression)
    return changes, blob, out.getvalue()


def test_scan_excluded_paths_skipped(tmp_path: Path) -> None:
    make_base(tmp_path)
    assert not any(p.startswith("var") for p in scan(tmp_path, exclude={"var"}).entries)


def test_scan_racy_file_digested(tmp_path: Path) -> None:
    (tmp_path / "fresh").write_text("x")
    (tmp_path / "old").write_text("y")
    os.utime(tmp_path / "old", ns=(OLD, OLD))
    entries = scan(tmp_path, clock=lambda: OLD + 1).entries
    assert entries["old"].digest is not None  # ctime is recent: racy
    assert scan(tmp_path, clock=lambda: OLD * 2).entries["old"].digest is None


def test_write_layer_changes_whiteouts_opaque_in_walk_order(pair: tuple[Path, Path]) -> None:
    built, _ = pair
    _, blob, data = build_layer(built)
    names = layer_names(data)
    assert names == sorted(names, key=lambda n: n.rstrip("/").split("/"))
    assert "var/.wh.cache" in names
    # opt/app was replaced. The walk sees that by the directory's new inode (opaque marker). Where a
    # filesystem hands the same inode back it sees the old child gone (a whiteout): that hides it too,
    # but mutate() keeps the old directory alive so the layer is one and the same in every run.
    assert "opt/app/.wh..wh..opq" in names and "opt/app/.wh.old" not in names
    assert "opt/app/fresh" in names
    assert "usr" in names and "usr/local" in names  # parents of changes, as BuildKit includes them
    assert "bin/busybox" not in names
    assert blob.size == len(data)


def test_write_layer_hardlinks_setuid_long_names_kept(pair: tuple[Path, Path]) -> None:
    built, _ = pair
    _, _, data = build_layer(built)
    with tarfile.open(fileobj=decompressed(io.BytesIO(data)), mode="r|") as tar:
        members = {m.name: m for m in tar}
    assert members["usr/local/bin/tool2"].islnk()
    assert members["usr/local/bin/tool2"].linkname == "usr/local/bin/tool"
    assert members["usr/local/bin/tool"].mode == 0o4755
    assert members["usr/local/bin/dangling"].linkname == "/nowhere"
    assert ("long" * 40) in members
    assert all(m.uname == "" and m.mtime <= 1_700_000_000 for m in members.values())


@pytest.mark.parametrize("compression", list(Compression), ids=[c.value for c in Compression])
def test_write_layer_replayed_on_base_reproduces_tree(pair: tuple[Path, Path], compression: Compression) -> None:
    built, replay = pair
    _, _, data = build_layer(built, compression)
    with RootDir.open(replay) as root:
        unpack_layer(io.BytesIO(data), root, UnpackOptions.for_current_process())
    assert tree(replay) == tree(built)


def test_write_layer_same_changes_epoch_same_digests(tmp_path: Path) -> None:
    digests = set()
    for name in ("one", "two"):
        built = tmp_path / name
        make_base(built)
        _, blob, _ = build_layer(built, epoch=1_234)
        digests.add((blob.digest, blob.diff_id))
    assert len(digests) == 1


def test_write_layer_diff_id_is_uncompressed_sha(pair: tuple[Path, Path]) -> None:
    import gzip
    import hashlib

    built, _ = pair
    _, blob, data = build_layer(built)
    assert blob.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert blob.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()


def test_directory_made_again_with_its_old_inode_number_is_still_opaque(tmp_path: Path) -> None:
    """ext4 often hands a freed inode number straight back: the generation tells the new directory."""
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "old").write_text("x")
    before = scan(root)
    if before.entries["d"].generation is None:
        pytest.skip(f"{tmp_path} keeps no inode generations (tmpfs); nor does it reuse inode numbers at once")
    for _ in range(50):  # until the number comes back (it does at once on ext4 here)
        shutil.rmtree(root / "d")
        (root / "d").mkdir()
        if (root / "d").stat().st_ino == before.entries["d"].ino:
            break
    else:
        pytest.skip(f"{tmp_path}'s filesystem did not reuse the inode number in 50 tries")
    (root / "d" / "new").write_text("y")

    changes = diff(before, scan(root))

    assert changes.opaque == ("d",)
    assert changes.deleted == ()  # the opaque marker hides "old"; no whiteout is needed
    assert set(changes.added) == {"d", "d/new"}
