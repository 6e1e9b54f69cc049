"""An overlay upper directory as a :class:`~anybuild.builder.snapshot.Changeset`, and applied back.

After a step ran on an overlay mount (lower = the rootfs, upper = a fresh
directory), the upper directory holds exactly what the step changed:

- a character device 0:0 is a *whiteout*: the path was deleted;
- a directory with ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` for an
  overlay mounted in a user namespace, :data:`USER_FLAVOR`) hides everything
  below it in the lower layer (it was removed and made again);
- everything else was created, or copied up because it was written or its
  metadata changed (parent directories are copied up with their children).

:func:`changes_from_upper` (reading only the upper directory and the lower
paths it names) gives the same changeset as the portable ``scan``/``diff``
would for the same step: opaque markers only where a *directory* is replaced,
whiteouts only for paths the lower layer has, copied-up directories only when
their metadata changed, and a copied-up regular file whose metadata and bytes
equal the lower one is not a change (as ``diff`` decides for files it hashed).

:func:`apply_upper` then makes the rootfs equal to the merged view: by
``rename`` when upper and rootfs share a filesystem, by copying (ownership,
modes, times, extended attributes, hard links kept) when the upper directory
lives on a tmpfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.builder.owners import read_record
from anybuild.builder.rootfs import OVERLAY_OPAQUE_XATTR, is_whiteout
from anybuild.builder.snapshot import Changeset, path_key

__all__ = ["OPAQUE_XATTR", "TRUSTED_FLAVOR", "USER_FLAVOR", "OverlayFlavor", "apply_upper", "changes_from_upper",
           "is_whiteout"]

OPAQUE_XATTR = OVERLAY_OPAQUE_XATTR
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class OverlayFlavor:
    """Where overlayfs keeps its markers: ``trusted.`` attributes need CAP_SYS_ADMIN in the initial
    user namespace; in a user namespace of its own the builder mounts with ``userxattr``."""

    opaque_xattr: str
    option: str  # appended to the mount options
    redirect_dir: str  # what the kernel accepts for "make no redirects" (userxattr refuses "off")

    @property
    def in_userns(self) -> bool:
        return self is USER_FLAVOR


TRUSTED_FLAVOR = OverlayFlavor(OPAQUE_XATTR, "", "off")
USER_FLAVOR = OverlayFlavor("user.overlay.opaque", ",userxattr", "nofollow")


def _opaque(path: Path, xattr: str) -> bool:
    try:
        return os.getxattr(path, xattr, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _same_metadata(a: os.stat_result, b: os.stat_result) -> bool:
    """What :meth:`~anybuild.builder.snapshot.Entry.same_metadata` compares."""
    return (
        stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode) and stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode)
        and a.st_uid == b.st_uid and a.st_gid == b.st_gid and a.st_mtime_ns == b.st_mtime_ns
        and (not stat.S_ISREG(a.st_mode) or a.st_size == b.st_size) and a.st_rdev == b.st_rdev
    )


def _same_bytes(a: Path, b: Path) -> bool:
    fa = os.open(a, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fb = os.open(b, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while True:
                ca, cb = os.read(fa, _CHUNK), os.read(fb, _CHUNK)
                if ca != cb:
                    return False
                if not ca:
                    return True
        finally:
            os.close(fb)
    finally:
        os.close(fa)


@dataclass(slots=True)
class _Acc:
    upper: Path
    lower: Path
    opaque_xattr: str
    records: bool = False  # owners are recorded on files (owners.OWNER_XATTR): a change of one is a change
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)

    def visit(self, rel: str, *, new: bool) -> None:
        """Walk one upper directory; *new* when nothing of the lower layer shows below it."""
        with os.scandir(self.upper / rel if rel else self.upper) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            path = f"{rel}/{child.name}" if rel else child.name
            info = child.stat(follow_symlinks=False)
            if is_whiteout(info):
                if not new and _lstat(self.lower / path) is not None:
                    self.deleted.append(path)
                continue
            if new:
                self.added.append(path)
                if stat.S_ISDIR(info.st_mode):
                    self.visit(path, new=True)
                continue
            self._entry(path, info, _lstat(self.lower / path))

    def _same_record(self, path: str) -> bool:
        """Whether a copied-up path keeps the owner recorded below (always, where none are recorded)."""
        if not self.records:
            return True
        return read_record(str(self.upper / path)) == read_record(str(self.lower / path))

    def _entry(self, path: str, info: os.stat_result, below: os.stat_result | None) -> None:
        directory = stat.S_ISDIR(info.st_mode)
        if below is None:
            self.added.append(path)
        elif stat.S_IFMT(below.st_mode) != stat.S_IFMT(info.st_mode):
            self.modified.append(path)  # replaced by another type: nothing below it needs a whiteout
        elif directory and _opaque(self.upper / path, self.opaque_xattr):
            self.opaque.append(path)
            self.added.append(path)
        elif directory:
            if not _same_metadata(below, info) or not self._same_record(path):
                self.modified.append(path)
            self.visit(path, new=False)
            return
        elif not (stat.S_ISREG(info.st_mode) and _same_metadata(below, info) and self._same_record(path)
                  and info.st_nlink == below.st_nlink  # a new hard link to it: the layer needs both names
                  and _same_bytes(self.upper / path, self.lower / path)):
            self.modified.append(path)  # written, or copied up for a metadata change
        if directory:
            self.visit(path, new=True)


def changes_from_upper(upper: Path, lower: Path, flavor: OverlayFlavor = TRUSTED_FLAVOR, *,
                       records: bool = False) -> Changeset:
    """The changeset an overlay step left in *upper*, over the (unmounted) *lower* rootfs."""
    acc = _Acc(upper=upper, lower=lower, opaque_xattr=flavor.opaque_xattr, records=records)
    acc.visit("", new=False)
    return Changeset(
        added=tuple(sorted(acc.added, key=path_key)), modified=tuple(sorted(acc.modified, key=path_key)),
        deleted=tuple(sorted(acc.deleted, key=path_key)), opaque=tuple(sorted(acc.opaque, key=path_key)),
    )


# -- applying ---------------------------------------------------------------------------


def _remove(path: Path) -> None:
    info = _lstat(path)
    if info is None:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _copy_xattrs(src: int | Path, dst: int | Path, *, follow: bool = True) -> None:
    with contextlib.suppress(OSError):
        for name in os.listxattr(src, follow_symlinks=follow):
            if name.startswith(_OVERLAY_XATTRS):
                continue
            try:
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=follow), follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EINVAL):
                    raise


def _set_meta(src: Path, dst: Path, info: os.stat_result) -> None:
    """Owner, mode, extended attributes and times of *src* onto *dst* (never following a symlink)."""
    os.chown(dst, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        dst.chmod(stat.S_IMODE(info.st_mode))  # after chown, which clears setuid bits
        _copy_xattrs(src, dst)
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


@dataclass(slots=True)
class _Applier:
    move: bool
    opaque_xattr: str
    links: dict[tuple[int, int], Path] = field(default_factory=dict)

    def merge(self, upper: Path, target: Path) -> None:
        """Apply the upper directory *upper* onto the existing directory *target*."""
        with os.scandir(upper) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            src, dst = upper / child.name, target / child.name
            info = child.stat(follow_symlinks=False)
            if is_whiteout(info):
                _remove(dst)
                continue
            below = _lstat(dst)
            merged = below is not None and stat.S_ISDIR(below.st_mode) and not _opaque(src, self.opaque_xattr)
            if stat.S_ISDIR(info.st_mode) and merged:
                self.merge(src, dst)
                _set_meta(src, dst, info)
                continue
            if below is not None:
                _remove(dst)
            self.place(src, dst, info)

    def place(self, src: Path, dst: Path, info: os.stat_result) -> None:
        """Put *src* (an upper entry with nothing of the lower layer below it) at *dst*."""
        if self.move:
            src.rename(dst)
            return
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            dst.mkdir(0o700)
            with os.scandir(src) as it:
                children = sorted(it, key=lambda e: e.name)
            for child in children:
                child_info = child.stat(follow_symlinks=False)
                if not is_whiteout(child_info):
                    self.place(src / child.name, dst / child.name, child_info)
        elif stat.S_ISREG(mode):
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and key in self.links:
                os.link(self.links[key], dst, follow_symlinks=False)
                return
            shutil.copyfile(src, dst, follow_symlinks=False)
            if info.st_nlink > 1:
                self.links[key] = dst
        elif stat.S_ISLNK(mode):
            dst.symlink_to(src.readlink())
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(dst, mode, info.st_rdev)
        else:
            return  # sockets are never part of an image
        _set_meta(src, dst, info)


def apply_upper(upper: Path, rootfs: Path, *, move: bool, flavor: OverlayFlavor = TRUSTED_FLAVOR) -> None:
    """Make *rootfs* what the overlay showed: *upper* applied onto it (*upper* is consumed when *move*)."""
    _Applier(move=move, opaque_xattr=flavor.opaque_xattr).merge(upper, rootfs)
    info = os.lstat(upper)
    os.chown(rootfs, info.st_uid, info.st_gid)
    rootfs.chmod(stat.S_IMODE(info.st_mode))
