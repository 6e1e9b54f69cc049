from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from anybuild.builder.inroot import RootDir, clean_relative, remove_at
from anybuild.builder.owners import IdRanges, Ownership, read_device, read_record
from anybuild.builder.rootfs import UnpackOptions, unpack_layer
from anybuild.errors import IntegrityError
from tests.builder.layers import E, tar_bytes

ROOT = os.geteuid() == 0
AS_ROOT = UnpackOptions(ownership=Ownership.real_root(), mknod=True)
# a builder that cannot chown (no CAP_CHOWN; its own files stand for root's): the builder's uid here
AS_USER = UnpackOptions(ownership=Ownership(uids=IdRanges(((0, 1),)), gids=IdRanges(((0, 1),)), chown=False,
                                            own=(os.geteuid(), os.getegid())), mknod=False)


def tree(path: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under *path*: (type, mode, content hash or link target)."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[str(full.relative_to(path))] = ("l", 0, os.readlink(full))
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                out[str(full.relative_to(path))] = ("f", stat.S_IMODE(info.st_mode), digest)
            else:
                out[str(full.relative_to(path))] = ("d" if stat.S_ISDIR(info.st_mode) else "o",
                                                    stat.S_IMODE(info.st_mode), "")
    return out


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """(rootfs, outside): an empty rootfs and a sibling directory that must never change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious\n")
    rootfs = tmp_path / "a" / "b" / "rootfs"
    rootfs.mkdir(parents=True)
    return rootfs, outside


def unpack(rootfs: Path, entries: list[E], options: UnpackOptions = AS_ROOT, compression: str = "none"):
    with RootDir.open(rootfs) as root:
        return unpack_layer(io.BytesIO(tar_bytes(entries, compression)), root, options)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("/etc/passwd", "etc/passwd"), ("./a//b/", "a/b"), ("a/../b", "b"), ("../x", None),
     ("a/../../x", None), ("/", "."), ("..", None)],
    ids=["absolute", "dot-slashes", "inner-dotdot", "dotdot", "climb", "root", "bare-dotdot"],
)
def test_clean_relative_names_normalised_or_refused(name: str, expected: str | None) -> None:
    assert clean_relative(name) == expected


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_unpack_compression_detected_files_written(world: tuple[Path, Path], compression: str) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("etc", "dir"), E("etc/hello", data=b"hi\n", mode=0o640)], compression=compression)
    assert (rootfs / "etc/hello").read_bytes() == b"hi\n"
    assert stat.S_IMODE((rootfs / "etc/hello").stat().st_mode) == 0o640
    assert (rootfs / "etc/hello").stat().st_mtime == 1_700_000_000


def test_unpack_parent_missing_created(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("a/b/c", data=b"x")])
    assert (rootfs / "a/b/c").read_bytes() == b"x"


def test_unpack_directory_mode_and_mtime_applied_after_children(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("ro", "dir", mode=0o555, mtime=1000), E("ro/f", data=b"1")])
    info = (rootfs / "ro").stat()
    assert stat.S_IMODE(info.st_mode) == 0o555
    assert info.st_mtime == 1000


def test_unpack_whiteout_removes_lower_file_and_dir(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("d", "dir"), E("d/f", data=b"1"), E("d/sub", "dir"), E("d/sub/g", data=b"2"),
                    E("keep", data=b"k")])
    unpack(rootfs, [E("d/.wh.f"), E("d/.wh.sub")])
    assert tree(rootfs) == {"d": ("d", 0o755, ""), "keep": tree(rootfs)["keep"]}
    assert not any(".wh." in p for p in tree(rootfs))


def test_unpack_opaque_dir_keeps_only_same_layer_entries(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("d", "dir"), E("d/old", data=b"1"), E("d/olddir", "dir"), E("d/olddir/x", data=b"2")])
    unpack(rootfs, [E("d", "dir"), E("d/new", data=b"3"), E("d/.wh..wh..opq"), E("d/later", data=b"4")])
    assert sorted(p for p in tree(rootfs) if p.startswith("d/")) == ["d/later", "d/new"]


def test_unpack_file_replaces_directory_and_symlink(world: tuple[Path, Path]) -> None:
    rootfs, outside = world
    unpack(rootfs, [E("x", "dir"), E("x/y", data=b"1"), E("s", "symlink", link=str(outside / "victim"))])
    unpack(rootfs, [E("x", data=b"file now"), E("s", data=b"not through the link")])
    assert (rootfs / "x").read_bytes() == b"file now"
    assert not (rootfs / "s").is_symlink()
    assert (outside / "victim").read_text() == "precious\n"


def test_unpack_symlinks_dangling_and_absolute_stored_verbatim(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("abs", "symlink", link="/etc/passwd"), E("dangling", "symlink", link="nowhere/x"),
                    E("self", "symlink", link="self")])
    assert os.readlink(rootfs / "abs") == "/etc/passwd"
    assert os.readlink(rootfs / "dangling") == "nowhere/x"
    assert os.readlink(rootfs / "self") == "self"


def test_unpack_hardlink_shares_inode(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("bin", "dir"), E("bin/busybox", data=b"ELF", mode=0o755),
                    E("bin/sh", "link", link="bin/busybox")])
    assert (rootfs / "bin/sh").stat().st_ino == (rootfs / "bin/busybox").stat().st_ino


def test_unpack_symlinked_parent_resolved_inside_root(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    unpack(rootfs, [E("usr/bin", "dir"), E("bin", "symlink", link="/usr/bin")])
    unpack(rootfs, [E("bin/tool", data=b"t")])
    assert (rootfs / "usr/bin/tool").read_bytes() == b"t"
    assert (rootfs / "bin").is_symlink()


@pytest.mark.skipif(not ROOT, reason="ownership and device nodes need root")
def test_unpack_as_root_ownership_setuid_devices_applied(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    report = unpack(rootfs, [E("su", data=b"x", mode=0o4755, uid=1000, gid=1001),
                             E("null", "char", mode=0o666, dev=(1, 3)), E("pipe", "fifo", mode=0o600),
                             E("ln", "symlink", link="su", uid=5, gid=6)])
    info = (rootfs / "su").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1000, 1001, 0o4755)
    assert stat.S_ISCHR((rootfs / "null").lstat().st_mode)
    assert (rootfs / "null").lstat().st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO((rootfs / "pipe").lstat().st_mode)
    assert ((rootfs / "ln").lstat().st_uid, (rootfs / "ln").lstat().st_gid) == (5, 6)
    assert report.recorded == {}


@pytest.mark.skipif(not ROOT, reason="ownership needs root")
def test_unpack_chown_owns_every_entry(world: tuple[Path, Path]) -> None:
    # ADD --chown=100:200 of a local archive: every entry, whatever the archive says (moby/buildkit#5987)
    rootfs, _ = world
    unpack(rootfs, [E("d", "dir", uid=5, gid=6), E("d/f", data=b"x", uid=1000, gid=1001),
                    E("ln", "symlink", link="d/f", uid=7, gid=8)], dataclasses.replace(AS_ROOT, chown=(100, 200)))
    for name in ("d", "d/f", "ln"):
        info = (rootfs / name).lstat()
        assert (info.st_uid, info.st_gid) == (100, 200), name


def test_unpack_without_privileges_ownership_and_devices_recorded(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    report = unpack(rootfs, [E("owned", data=b"x", uid=1000, gid=1000), E("dir", "dir", uid=33, gid=33),
                             E("ln", "symlink", link="owned", uid=7, gid=8),
                             E("null", "char", mode=0o666, dev=(1, 3)), E("plain", data=b"y")],
                    options=AS_USER)
    # files and directories carry their owner themselves, what cannot (symlinks) is kept by path, and an
    # empty file stands in for a device node the kernel would not make, marked as one
    assert set(report.recorded) == {"ln"}
    assert (report.recorded["ln"].uid, report.recorded["ln"].gid) == (7, 8)
    assert read_device(str(rootfs / "null")) == ("char", 1, 3)
    assert (rootfs / "null").lstat().st_size == 0
    assert read_record(str(rootfs / "owned")) == (1000, 1000)
    assert read_record(str(rootfs / "dir")) == (33, 33)
    assert read_record(str(rootfs / "plain")) is None  # root's: the builder's own files stand for it
    ownership = AS_USER.ownership
    info = (rootfs / "plain").lstat()
    assert ownership.owner_of(str(rootfs / "plain"), info.st_uid, info.st_gid) == (0, 0)



def test_unpack_xattr_capability_applied(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    report = unpack(rootfs, [E("f", data=b"x", pax={"SCHILY.xattr.user.note": "hello"})])
    try:
        value = os.getxattr(rootfs / "f", "user.note")
    except OSError:
        assert report.skipped, "an xattr that could not be set must be reported"
        return
    assert value == b"hello"


# -- hostile layers: nothing outside the rootfs may change ----------------------------------------


HOSTILE = {
    "dotdot-file": [E("../../../outside/victim", data=b"pwned")],
    "dotdot-dir": [E("../../../outside/newdir", "dir")],
    "dotdot-whiteout": [E("../../../outside/.wh.victim")],
    "hardlink-outside": [E("ln", "link", link="../../../outside/victim")],
}

CONTAINED = {
    "absolute-file": [E("/outside/victim", data=b"pwned")],
    "symlink-then-file": [E("evil", "symlink", link="../../../outside"), E("evil/victim", data=b"pwned")],
    "abs-symlink-then-file": [E("evil", "symlink", link=""), E("evil2", "symlink", link="/"),
                              E("evil2/victim", data=b"pwned")],
    "symlink-dir-then-dir": [E("evil", "symlink", link="/../../../outside"), E("evil/sub", "dir"),
                             E("evil/sub/f", data=b"pwned")],
    "symlink-then-hardlink": [E("evil", "symlink", link="../../../outside"), E("ln", "link", link="evil/victim")],
    "symlink-then-whiteout": [E("evil", "symlink", link="../../../outside"), E("evil/.wh.victim")],
    "symlink-then-opaque": [E("evil", "symlink", link="../../../outside"), E("evil/.wh..wh..opq")],
    "symlink-then-symlink": [E("evil", "symlink", link="../../../outside"),
                             E("evil/victim", "symlink", link="/x")],
    "hardlink-absolute": [E("ln", "link", link="/outside/victim")],
}


@pytest.mark.parametrize("entries", list(HOSTILE.values()), ids=list(HOSTILE))
def test_unpack_hostile_climbing_entry_refused_outside_unchanged(world: tuple[Path, Path], entries: list[E]) -> None:
    rootfs, outside = world
    before = tree(outside.parent)
    with pytest.raises(IntegrityError):
        unpack(rootfs, entries)
    assert {k: v for k, v in tree(outside.parent).items() if not k.startswith("a/")} == {
        k: v for k, v in before.items() if not k.startswith("a/")
    }


@pytest.mark.parametrize("entries", list(CONTAINED.values()), ids=list(CONTAINED))
def test_unpack_hostile_link_tricks_contained_outside_unchanged(world: tuple[Path, Path], entries: list[E]) -> None:
    rootfs, outside = world
    before = tree(outside)
    with contextlib.suppress(IntegrityError):  # refusing is as good as containing
        unpack(rootfs, entries)
    assert tree(outside) == before
    assert (outside / "victim").read_text() == "precious\n"
    assert sorted(os.listdir(rootfs.parent)) == ["rootfs"]


def test_unpack_symlink_loop_refused(world: tuple[Path, Path]) -> None:
    rootfs, outside = world
    with pytest.raises(IntegrityError, match=r"symbolic links|symlink"):
        unpack(rootfs, [E("a", "symlink", link="b"), E("b", "symlink", link="a"), E("a/f", data=b"x")])
    assert tree(outside) == {"victim": tree(outside)["victim"]}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_unpack_onto_a_full_filesystem_fails_with_enospc_not_a_short_file(tmp_path: Path) -> None:
    """A layer unpacked onto a filling disk must fail as a full disk (ENOSPC), not leave a truncated
    file behind (write(2) returns short first), nor blame the layer (IntegrityError)."""
    import errno
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        with RootDir.open(small) as root, pytest.raises(OSError) as failed:
            unpack_layer(io.BytesIO(tar_bytes([E("big.bin", data=os.urandom(1024 * 1024))])), root, AS_ROOT)
        assert failed.value.errno == errno.ENOSPC
        assert not isinstance(failed.value, IntegrityError)
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_unpack_not_a_tar_integrity_error(world: tuple[Path, Path]) -> None:
    rootfs, _ = world
    with RootDir.open(rootfs) as root, pytest.raises(IntegrityError, match="not a valid tar"):
        unpack_layer(io.BytesIO(b"\x1f\x8b" + b"garbage" * 100), root, AS_ROOT)


# -- remembered directories -----------------------------------------------------------------


def test_rootdir_remembered_dir_forgotten_when_replaced_by_symlink(tmp_path: Path) -> None:
    root_path = tmp_path / "root"
    (root_path / "a").mkdir(parents=True)
    (root_path / "elsewhere").mkdir()
    with RootDir.open(root_path) as root:
        with root.parent("a/x", create=True) as (fd, name):
            os.mkdir(name, dir_fd=fd)  # "a" is remembered now
        with root.parent("a") as (fd, name):
            remove_at(fd, name)
        (root_path / "a").symlink_to("elsewhere")
        with root.parent("a/y", create=True) as (fd, name):
            os.mkdir(name, dir_fd=fd)

    assert (root_path / "elsewhere" / "y").is_dir()  # through the new symlink, not into the removed directory


def test_rootdir_remembered_dir_removed_behind_its_back_walked_again(tmp_path: Path) -> None:
    root_path = tmp_path / "root"
    (root_path / "a").mkdir(parents=True)
    with RootDir.open(root_path) as root:
        assert root.lstat("a/missing") is None  # "a" is remembered now
        (root_path / "a").rmdir()  # not through remove_at: only the link count tells
        (root_path / "a").mkdir()
        fd = root.open_file("a/new", os.O_WRONLY | os.O_CREAT)
        os.close(fd)

    assert (root_path / "a" / "new").is_file()


def test_unpack_stops_at_a_cancellation_between_entries(tmp_path: Path) -> None:
    from anybuild.cancellation import Cancellation
    from anybuild.errors import Interrupted

    cancel = Cancellation()
    seen: list[int] = []

    def interrupted() -> None:
        seen.append(1)
        if len(seen) == 2:
            cancel.cancel()
        cancel.check("while unpacking")

    root = tmp_path / "root"
    root.mkdir()
    layer = tar_bytes([E(f"f{i}", data=b"x") for i in range(500)])
    with RootDir.open(root) as handle, pytest.raises(Interrupted, match="while unpacking"):
        unpack_layer(io.BytesIO(layer), handle, UnpackOptions(ownership=Ownership.real_root(), mknod=False,
                                                              interrupted=interrupted))
    assert 0 < len(list(root.iterdir())) < 500  # stopped part-way, not at the end
