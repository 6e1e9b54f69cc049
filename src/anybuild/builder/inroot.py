"""Paths resolved *inside* a root directory, never escaping it.

:class:`RootDir` is the one way the builder touches a root filesystem. Every
path is resolved component by component from an ``O_PATH`` descriptor of the
root, with ``O_NOFOLLOW`` on each step, like ``openat2(RESOLVE_IN_ROOT)``:

- ``..`` at the root stays at the root;
- a symlink met in a *parent* component is read and resolved again from the
  root (an absolute target means the root, not the host's ``/``), at most
  :data:`MAX_SYMLINKS` times;
- the *final* component is never followed: callers operate on it with the
  parent's descriptor (``dir_fd=``) and ``follow_symlinks=False``.

So no tar entry, symlink value or hard link can make a write land outside the
root, whatever the rootfs contains.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MAX_SYMLINKS", "NO_SPACE", "RootDir", "clean_relative", "remove_at", "write_all"]

MAX_SYMLINKS = 40
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # the filesystem (or the quota) is full

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def clean_relative(name: str) -> str | None:
    """Normalise a path to be relative to a root; ``None`` if it climbs above it.

    ``/etc/passwd`` and ``./etc//passwd`` give ``etc/passwd``; ``a/../../x`` gives
    ``None`` (Docker refuses such entries as a "breakout"); the root is ``"."``.
    """
    cleaned = posixpath.normpath(name.lstrip("/") or ".")
    if cleaned == ".." or cleaned.startswith("../"):
        return None
    return cleaned


_CACHED_DIRS = 512
_removals = [0]  # bumped by every remove_at: a cached directory descriptor may no longer be what a path names


def removals() -> int:
    """How many removals :func:`remove_at` has made in this process (memories of paths compare it)."""
    return _removals[0]


@dataclass(slots=True)
class RootDir:
    """An open root directory; resolve and operate on paths strictly inside it.

    Directories resolved once are remembered (as descriptors) for the life of the
    instance, so a COPY of 2,000 files or a layer of 30,000 does not walk every
    parent again for each. An instance lives for one operation of the builder, while
    no sandboxed process runs; the memory is dropped whenever anything is removed
    (the only way a resolved directory can stop being what its path names here).
    """

    path: Path
    fd: int
    _dirs: dict[tuple[str, bool], int] = field(default_factory=dict)
    _removals: int = 0

    @classmethod
    def open(cls, path: Path) -> RootDir:
        return cls(path=path, fd=os.open(path, _DIR_FLAGS), _removals=_removals[0])

    def _forget(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        self._removals = _removals[0]

    def close(self) -> None:
        self._forget()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RootDir:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- resolution ---------------------------------------------------------------------------

    def open_dir(self, rel: str, *, create: bool = False, follow: bool = True) -> int:
        """An ``O_PATH`` descriptor of directory *rel* (the caller closes it).

        With *create*, missing components are made (mode 0755). With ``follow=False``
        a symlink in any component is an error (``ELOOP``) instead of being resolved.
        Raises ``FileNotFoundError``, ``NotADirectoryError`` or ``OSError(ELOOP)``.
        """
        return os.dup(self.borrow_dir(rel, create=create, follow=follow))

    def borrow_dir(self, rel: str, *, create: bool = False, follow: bool = True) -> int:
        """:meth:`open_dir`'s descriptor itself, still the instance's: the caller must not close it.

        It stays valid until the next call on this instance (which may drop a stale
        memory) or :meth:`close`; so use it at once, for one operation. This saves the
        ``dup`` and ``close`` per file that a copy of thousands of files would pay.
        """
        if self._removals != _removals[0]:
            self._forget()
        key = (rel, follow)
        cached = self._dirs.get(key)
        if cached is not None:
            if os.fstat(cached).st_nlink > 0:
                return cached
            os.close(self._dirs.pop(key))
        fd = self._walk(rel, create=create, follow=follow)
        if len(self._dirs) >= _CACHED_DIRS:
            self._forget()
        self._dirs[key] = fd
        return fd

    def borrow_parent(self, rel: str, *, create: bool = False, follow: bool = True) -> tuple[int, str]:
        """``(dir_fd, name)`` like :meth:`parent`, with the borrowed descriptor of :meth:`borrow_dir`."""
        head, name = _split(rel)
        return self.borrow_dir(head, create=create, follow=follow), name

    def _walk(self, rel: str, *, create: bool, follow: bool) -> int:
        stack = [os.dup(self.fd)]
        pending = [p for p in reversed(rel.split("/")) if p not in ("", ".")]
        links = 0
        try:
            while pending:
                part = pending.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                current = stack[-1]
                try:
                    stack.append(os.open(part, _DIR_FLAGS, dir_fd=current))
                    continue
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=current)
                    pending.append(part)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                info = os.stat(part, dir_fd=current, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", part)
                if not follow:
                    raise OSError(errno.ELOOP, "symlink in path", part)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", rel)
                target = os.readlink(part, dir_fd=current)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    @contextlib.contextmanager
    def parent(self, rel: str, *, create: bool = False, follow: bool = True) -> Iterator[tuple[int, str]]:
        """``(dir_fd, name)`` for the final component of *rel*, which is never followed.

        *rel* must already be clean (see :func:`clean_relative`) and not the root.
        """
        head, name = _split(rel)
        fd = self.open_dir(head, create=create, follow=follow)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def lstat(self, rel: str, *, follow: bool = True) -> os.stat_result | None:
        """``lstat`` of *rel* inside the root, or ``None`` when it does not exist."""
        if rel == ".":
            return os.fstat(self.fd)
        try:
            fd, name = self.borrow_parent(rel, follow=follow)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open_file(self, rel: str, flags: int = os.O_RDONLY, mode: int = 0o600, *, follow: bool = True) -> int:
        """Open the final component of *rel* with ``O_NOFOLLOW`` (a symlink there fails)."""
        fd, name = self.borrow_parent(rel, create=bool(flags & os.O_CREAT), follow=follow)
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)

    def remove(self, rel: str) -> bool:
        """Remove *rel* (a whole tree for a directory), never following a symlink."""
        try:
            with self.parent(rel) as (fd, name):
                return remove_at(fd, name)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def resolve(self, rel: str) -> str:
        """*rel* with every symlink (the final one too) resolved inside the root.

        The result is clean and relative (``"."`` for the root); its final component
        may not exist. Raises ``OSError(ELOOP)`` after :data:`MAX_SYMLINKS` links.
        """
        pending = [p for p in reversed(rel.split("/")) if p not in ("", ".")]
        done: list[str] = []
        links = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/".join([*done, part])
            info = self.lstat(candidate, follow=False)
            if info is not None and stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", rel)
                with self.parent(candidate, follow=False) as (fd, name):
                    target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    done = []
                pending.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
                continue
            done.append(part)
        return "/".join(done) or "."

    def host_path(self, rel: str) -> Path:
        """The host path of *rel* with its parents resolved inside the root (for mounts)."""
        head, name = posixpath.split(rel)
        fd = self.open_dir(head, create=False)
        try:
            parent = Path(f"/proc/self/fd/{fd}").readlink()
        finally:
            os.close(fd)
        resolved = parent / name if name else parent
        if resolved != self.path.resolve() and self.path.resolve() not in resolved.parents:
            raise OSError(errno.EXDEV, "path resolved outside the root", rel)
        return resolved


def _split(rel: str) -> tuple[str, str]:
    """(parent, final component) of a clean relative path that is not the root."""
    head, _, name = rel.rpartition("/")
    if name in ("", ".", ".."):
        raise ValueError(f"{rel!r} has no final component")
    return head, name


def write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to *fd*: ``write(2)`` may write less (a filesystem filling up does,
    then the next call fails with ``ENOSPC``); a short copy must fail, never pass as a whole file."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def remove_at(dir_fd: int, name: str) -> bool:
    """Remove *name* in *dir_fd* (recursively for a directory); ``False`` when absent."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    _removals[0] += 1
    if stat.S_ISDIR(info.st_mode):
        _make_removable(dir_fd, name)
        # shutil.rmtree with dir_fd is fd-based and never follows symlinks
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
    return True


def _make_removable(dir_fd: int, name: str) -> None:
    """Give owner rwx to every directory of a tree, so a non-root rmtree cannot fail on 0555 dirs."""
    if os.geteuid() == 0:
        return
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.chmod(name, 0o700, dir_fd=dir_fd)
        return
    try:
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o700)
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _make_removable(fd, entry.name)
    finally:
        os.close(fd)
