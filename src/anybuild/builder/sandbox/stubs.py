"""Mount-point stubs that leave no trace, and a safety net for leftover mounts.

A mount needs its target to exist in the rootfs. :func:`make_stubs` creates the
missing ones (``/proc`` in a ``scratch`` image, ``/etc/resolv.conf``,
``/run/secrets/ID``) and remembers them; :func:`remove_stubs` deletes each stub
that is still empty after the run and puts back its parent directory's times,
unless the RUN itself changed that directory. So nothing of the sandbox becomes
part of a layer (BuildKit's "mount stub cleaner" does the same).

:func:`unmount_below` lazily unmounts anything still mounted under a rootfs
(read from ``/proc/self/mountinfo``), deepest first: it runs in a ``finally``
so that an interrupted ``chroot`` sandbox leaves no mount behind.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from anybuild.builder.inroot import RootDir
from anybuild.builder.sandbox.model import MountPointError
from anybuild.cancellation import cleanup
from anybuild.process import Runner

__all__ = ["Stub", "make_stubs", "mount_points", "remove_stubs", "unmount_below"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Stub:
    path: str  # the top-most component that was created (relative to the root)
    parent_times: tuple[int, int]  # (atime_ns, mtime_ns) of its parent before
    parent_mtime_after: int  # the parent's mtime right after creating the stub


def make_stubs(root: RootDir, targets: Sequence[tuple[str, bool]]) -> tuple[list[Stub], list[str]]:
    """Ensure every ``(target, is_dir)`` exists; return the stubs made and the resolved targets."""
    stubs: list[Stub] = []
    resolved: list[str] = []
    for target, is_dir in targets:
        try:
            _make_stub(root, target, is_dir, stubs, resolved)
        except OSError as exc:
            remove_stubs(root, stubs)
            raise MountPointError(f"RUN mount target {target}: cannot make it in the image: "
                                  f"{exc.strerror or exc}",
                                  hint="mount on a path whose parents are directories in the image") from exc
    return stubs, resolved


def _make_stub(root: RootDir, target: str, is_dir: bool, stubs: list[Stub], resolved: list[str]) -> None:
    rel = root.resolve(target)
    resolved.append(rel)
    if rel == "." or root.lstat(rel) is not None:
        return
    parts = rel.split("/")
    top = next(
        "/".join(parts[: i + 1]) for i in range(len(parts)) if root.lstat("/".join(parts[: i + 1])) is None
    )
    parent = posixpath.dirname(top) or "."
    before = root.lstat(parent)
    assert before is not None
    if is_dir:
        fd = root.open_dir(rel, create=True)
        os.close(fd)
    else:
        os.close(root.open_file(rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    after = root.lstat(parent)
    assert after is not None
    stubs.append(Stub(path=top, parent_times=(before.st_atime_ns, before.st_mtime_ns),
                      parent_mtime_after=after.st_mtime_ns))


def remove_stubs(root: RootDir, stubs: Sequence[Stub]) -> None:
    """Remove the stubs still empty, newest first, and restore their parents' times."""
    for stub in reversed(stubs):
        if not _only_empty(root, stub.path):
            continue
        parent = posixpath.dirname(stub.path) or "."
        current = root.lstat(parent)
        root.remove(stub.path)
        if current is not None and current.st_mtime_ns == stub.parent_mtime_after:
            if parent == ".":
                os.utime(f"/proc/self/fd/{root.fd}", ns=stub.parent_times)
            else:
                with root.parent(parent) as (fd, name):
                    os.utime(name, ns=stub.parent_times, dir_fd=fd, follow_symlinks=False)


def _only_empty(root: RootDir, rel: str) -> bool:
    info = root.lstat(rel, follow=False)
    if info is None:
        return False
    if stat.S_ISREG(info.st_mode):
        return info.st_size == 0
    if not stat.S_ISDIR(info.st_mode):
        return False
    fd = root.open_dir(rel, follow=False)
    try:
        readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            names = [e.name for e in os.scandir(readable)]
        finally:
            os.close(readable)
    finally:
        os.close(fd)
    return all(_only_empty(root, f"{rel}/{name}") for name in names)


def mount_points(mountinfo: str) -> list[str]:
    """Mount points listed in a ``/proc/self/mountinfo`` text, unescaped."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def unmount_below(
    rootfs: Path,
    *,
    runner: Runner,
    read_mountinfo: Callable[[], str] = lambda: Path("/proc/self/mountinfo").read_text(),
    include_root: bool = True,
) -> list[str]:
    """Lazily unmount everything mounted at (unless not *include_root*) or under *rootfs*, deepest first.

    A RUN sandbox passes ``include_root=False``: the rootfs itself may be the overlay
    mount of the snapshotter (:mod:`anybuild.builder.overlay`), which outlives the run.
    """
    base = str(rootfs.resolve())
    below = [p for p in mount_points(read_mountinfo())
             if (include_root and p == base) or p.startswith(base + "/")]
    done = []
    with cleanup():  # after a cancellation too: it is what undoes a stopped RUN
        for point in sorted(set(below), key=lambda p: p.count("/"), reverse=True):
            runner.run(["umount", "-l", point], timeout=30)
            done.append(point)
    return done
