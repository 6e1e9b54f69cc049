"""COPY and ADD: sources from the context, a stage or an image, into the rootfs.

Docker's rules: a relative destination is relative to WORKDIR; several sources
(or a wildcard) need a directory destination ending in ``/``; a directory
source copies its *contents*; a file copied to an existing directory (or a
destination ending in ``/``) keeps its name. Files from the context are owned
by 0:0, files from a stage or image keep their owner, ``--chown`` (names
resolved in the image) and ``--chmod`` override. Missing destination parents
are created 0755 (owned by the ``--chown`` user). ADD also extracts local tar
archives and downloads URLs (verified with ``--checksum``).

Sources are resolved inside their root and destinations inside the rootfs
(:class:`~anybuild.builder.inroot.RootDir`): nothing is read from outside the
context and nothing written outside the rootfs.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from anybuild.builder.inroot import RootDir, clean_relative, removals, remove_at, write_all
from anybuild.builder.owners import Ownership
from anybuild.builder.rootfs import RecordedMeta
from anybuild.dockerfile.dockerignore import glob_regex
from anybuild.errors import BuildFailed, ContextError

__all__ = ["CopyPlan", "Source", "copy_into", "expand_sources", "is_wildcard", "parse_chmod", "write_inline"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One matched source: its root, its path in that root and how to name it at the destination."""

    root: RootDir
    rel: str  # resolved path in root ("." for the root itself)
    name: str  # basename used when copying into a directory


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyPlan:
    dest: str  # absolute path in the rootfs
    dest_is_dir: bool
    owner: tuple[int, int] | None  # --chown; None: context 0:0, stage/image keep their owners
    keep_owner: bool  # True for --from sources
    chmod: int | None = None
    excludes: tuple[str, ...] = ()
    ignored: Callable[[str], bool] | None = None  # .dockerignore, for context sources
    ownership: Ownership = field(default_factory=Ownership.real_root)
    recorded: dict[str, RecordedMeta] | None = None  # owners of symlinks and the like that cannot be real here


def is_wildcard(path: str) -> bool:
    """BuildKit's containsWildcards: ``*``, ``?`` or ``[`` not escaped with a backslash."""
    i = 0
    while i < len(path):
        if path[i] == "\\":
            i += 2
            continue
        if path[i] in "*?[":
            return True
        i += 1
    return False


def _matcher(part: str) -> Callable[[str], bool]:
    """Go's filepath.Match for one path component (``[^a]`` negates, ``\\`` escapes, ``**`` is ``*``)."""
    if not is_wildcard(part):
        return part.__eq__
    try:
        regex = glob_regex(part)
    except ValueError:
        raise ContextError(f"syntax error in pattern {part!r}",
                           hint="fix the wildcard (Go filepath.Match syntax: * ? [a-z] [^a-z] \\x)") from None
    return lambda name: regex.match(name) is not None


def _present(root: RootDir, rel: str, ignored: Callable[[str], bool]) -> bool:
    """Whether *rel* is in the context Docker's client sends: not excluded by .dockerignore, or a
    directory that holds something an exception (``!dir/file``) re-includes (sent with it)."""
    if not ignored(rel):
        return True
    info = root.lstat(root.resolve(rel))
    if info is None or not stat.S_ISDIR(info.st_mode):
        return False
    return any(_present(root, f"{rel}/{name}", ignored) for name in _entries(root, root.resolve(rel)))


def parse_chmod(value: str | None) -> int | None:
    if not value:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise BuildFailed(f"--chmod={value}: only octal modes are supported", hint="write e.g. --chmod=755") from None
    if not 0 <= mode <= 0o7777:
        raise BuildFailed(f"--chmod={value}: mode out of range", hint="write e.g. --chmod=755")
    return mode


def _entries(root: RootDir, rel: str) -> list[str]:
    return [name for name, _ in _children(root, rel, follow=True)]


def expand_sources(root: RootDir, pattern: str, *, ignored: Callable[[str], bool], what: str) -> list[Source]:
    """The sources *pattern* names in *root* (wildcards matched per path component, as Go's
    filepath.Match, through symlinked directories). A wildcard that matches nothing names nothing
    (BuildKit's AllowEmptyWildcard); a missing plain path is an error."""
    # BuildKit joins a source to the root ("/" + src) and cleans it: ".." stops at the root.
    clean = posixpath.normpath("/" + pattern).lstrip("/") or "."
    if not is_wildcard(clean):
        resolved = root.resolve(clean)
        if root.lstat(resolved) is None or (clean != "." and not _present(root, clean, ignored)):
            raise ContextError(f"{what}: {pattern!r} not found in the build context",
                               hint="check the path and .dockerignore")
        name = posixpath.basename(clean) if clean != "." else ""
        return [Source(root=root, rel=resolved, name=name)]
    matches: list[str] = ["."]
    for part in clean.split("/"):
        match = _matcher(part)
        nxt: list[str] = []
        for base in matches:
            info = root.lstat(root.resolve(base))
            if info is None or not stat.S_ISDIR(info.st_mode):
                continue
            for name in _entries(root, root.resolve(base)):
                if match(name):
                    nxt.append(name if base == "." else f"{base}/{name}")
        matches = nxt
    return [Source(root=root, rel=root.resolve(m), name=posixpath.basename(m))
            for m in matches if _present(root, m, ignored)]


def _excluded(rel: str, excludes: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(posixpath.basename(rel), p) for p in excludes)


def _children(root: RootDir, rel: str, *, follow: bool = False) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of directory *rel*'s entries, sorted by name (one ``fstatat`` each)."""
    fd = root.open_dir(rel, follow=follow)
    try:
        readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            found: list[tuple[str, os.stat_result]] = []
            with os.scandir(readable) as entries:
                for entry in entries:
                    try:
                        found.append((entry.name, entry.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue  # removed since it was listed
            return sorted(found, key=lambda item: item[0])
        finally:
            os.close(readable)
    finally:
        os.close(fd)


def _walk(root: RootDir, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to *rel*, lstat) of *rel*'s descendants, parents first, sorted."""
    for name, info in _children(root, rel):
        child = name if rel == "." else f"{rel}/{name}"
        yield child, info
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(root, child)


def _kept(entries: list[tuple[str, os.stat_result]], ignored: Callable[[str], bool]) -> set[str]:
    """The walked entries in the context Docker sends: those not excluded by .dockerignore, and the
    excluded directories above a re-included one (Docker's client sends those parents, as they are)."""
    kept: set[str] = set()
    holding: set[str] = set()  # directories with something kept below
    for rel, info in reversed(entries):  # children before their parents
        if not ignored(rel) or (stat.S_ISDIR(info.st_mode) and rel in holding):
            kept.add(rel)
            holding.add(posixpath.dirname(rel))
    return kept


@dataclass(slots=True)
class _Writer:
    dest_root: RootDir
    plan: CopyPlan
    written: list[str]
    dir_times: list[tuple[str, tuple[int, int]]]
    # resolved destination directories; a removal or a symlink written here can change them
    _resolved: dict[str, str] = field(default_factory=dict)
    _removals: int = -1
    # the first copy of each multiply-linked source file, by (device, inode): the others become hard
    # links to it, as BuildKit's copier does within one source (tonistiigi/fsutil copy getLinkSource)
    links: dict[tuple[int, int], str] = field(default_factory=dict)

    def resolve_dir(self, rel: str) -> str:
        """``dest_root.resolve(rel)``, remembered while nothing is removed and no symlink is written."""
        if self._removals != removals():
            self._resolved.clear()
            self._removals = removals()
        found = self._resolved.get(rel)
        if found is None:
            found = self._resolved[rel] = self.dest_root.resolve(rel)
        return found

    def owner(self, src: Source, src_rel: str, info: os.stat_result) -> tuple[int, int]:
        if self.plan.owner is not None:
            return self.plan.owner
        if not self.plan.keep_owner:
            return 0, 0
        if self.plan.ownership.full:
            return info.st_uid, info.st_gid
        if src_rel == ".":
            return self.plan.ownership.owner_of(str(src.root.host_path(".")), info.st_uid, info.st_gid)
        with src.root.parent(src_rel, follow=False) as (fd, name):
            return self.plan.ownership.owner_of(name, info.st_uid, info.st_gid, dir_fd=fd)

    def give(self, target: int | str, rel: str, uid: int, gid: int, mode: int, *, dir_fd: int | None = None) -> None:
        """*target* (an fd, or a name in *dir_fd*) belongs to *uid*:*gid* in the image."""
        if not self.plan.ownership.give(target, uid, gid, dir_fd=dir_fd) and self.plan.recorded is not None:
            self.plan.recorded[rel] = RecordedMeta(uid=uid, gid=gid, mode=mode)

    def ensure_dir(self, rel: str) -> None:
        """Create *rel* and missing parents (0755, the --chown owner or root)."""
        parts = [p for p in rel.split("/") if p]
        current = ""
        for part in parts:
            current = f"{current}/{part}" if current else part
            resolved = self.dest_root.resolve(current)
            info = self.dest_root.lstat(resolved)
            if info is not None and stat.S_ISDIR(info.st_mode):
                continue
            with self.dest_root.parent(resolved, create=True) as (fd, name):
                if info is not None:
                    remove_at(fd, name)
                os.mkdir(name, 0o755, dir_fd=fd)
                uid, gid = self.plan.owner or (0, 0)
                self.give(name, resolved, uid, gid, 0o755, dir_fd=fd)
                os.chmod(name, 0o755, dir_fd=fd)  # noqa: S103 - Docker's mode for created parents
            self.written.append(resolved)

    def put(self, src: Source, src_rel: str, info: os.stat_result, dest: str) -> None:
        """Copy one entry (not its children) to *dest* (a clean path in the rootfs)."""
        head, _, name = dest.rpartition("/")
        resolved = self.resolve_dir(head or ".")
        target = f"{resolved}/{name}" if resolved != "." else name
        uid, gid = self.owner(src, src_rel, info)
        mode = stat.S_IMODE(info.st_mode)
        if self.plan.chmod is not None and not stat.S_ISLNK(info.st_mode):
            mode = self.plan.chmod & 0o777  # BuildKit keeps only the permission bits of --chmod
        times = (info.st_atime_ns, info.st_mtime_ns)
        if stat.S_ISREG(info.st_mode):  # the common case, in the fewest system calls
            key = (info.st_dev, info.st_ino)
            first = self.links.get(key) if info.st_nlink > 1 else None
            if first is not None and self._link(first, target):
                self.written.append(target)
                return
            parent = self.dest_root.borrow_dir(resolved, create=True)
            self._file(src, src_rel, parent, name, meta=(uid, gid, mode), times=times, rel=target)
            if info.st_nlink > 1:
                self.links[key] = target
            self.written.append(target)
            return
        with self.dest_root.parent(target, create=True) as (fd, name):
            existing = _lstat_at(fd, name)
            if stat.S_ISDIR(info.st_mode):
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    remove_at(fd, name)
                    existing = None
                if existing is None:
                    os.mkdir(name, 0o700, dir_fd=fd)
                self.give(name, target, uid, gid, mode, dir_fd=fd)
                os.chmod(name, mode, dir_fd=fd)
                self.dir_times.append((target, times))
            else:
                if existing is not None:
                    remove_at(fd, name)
                if stat.S_ISLNK(info.st_mode):
                    with src.root.parent(src_rel, follow=False) as (sfd, sname):
                        os.symlink(os.readlink(sname, dir_fd=sfd), name, dir_fd=fd)
                    self._resolved.clear()  # a path through it now resolves elsewhere
                    self.give(name, target, uid, gid, mode, dir_fd=fd)
                elif stat.S_ISFIFO(info.st_mode):
                    os.mkfifo(name, mode, dir_fd=fd)
                    self.give(name, target, uid, gid, mode, dir_fd=fd)
                elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                    os.mknod(name, stat.S_IFMT(info.st_mode) | mode, info.st_rdev, dir_fd=fd)
                    self.give(name, target, uid, gid, mode, dir_fd=fd)
                elif stat.S_ISSOCK(info.st_mode) and not self.plan.keep_owner:
                    # BuildKit's context transfer sends a socket as an empty regular file with its mode
                    # (moby/buildkit frontend/dockerfile testCopySocket); one in a stage is not copied.
                    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                  dir_fd=fd)
                    try:
                        self.give(out, target, uid, gid, mode)
                        os.fchmod(out, mode)
                    finally:
                        os.close(out)
                else:
                    return
                os.utime(name, ns=times, dir_fd=fd, follow_symlinks=False)
        self.written.append(target)

    def _link(self, first: str, target: str) -> bool:
        """Make *target* a hard link to *first* (copied earlier in this source); False when *first* is gone."""
        with self.dest_root.parent(first) as (ffd, fname):
            existing = _lstat_at(ffd, fname)
            if existing is None or not stat.S_ISREG(existing.st_mode):
                return False
            with self.dest_root.parent(target, create=True) as (fd, name):
                if _lstat_at(fd, name) is not None:
                    remove_at(fd, name)
                os.link(fname, name, src_dir_fd=ffd, dst_dir_fd=fd, follow_symlinks=False)
        if self.plan.recorded is not None and first in self.plan.recorded:
            self.plan.recorded[target] = self.plan.recorded[first]
        return True

    def finish(self) -> None:
        """Directory times last (writing children changes them), deepest first."""
        for target, times in reversed(self.dir_times):
            with self.dest_root.parent(target) as (fd, name):
                os.utime(name, ns=times, dir_fd=fd, follow_symlinks=False)

    def _file(self, src: Source, src_rel: str, fd: int, name: str, *, meta: tuple[int, int, int],
              times: tuple[int, int], rel: str) -> None:
        """Copy a regular file to *name* in *fd*, replacing whatever is there."""
        uid, gid, mode = meta
        source = src.root.open_file(src_rel, follow=True)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                out = os.open(name, flags, 0o600, dir_fd=fd)
            except FileExistsError:
                remove_at(fd, name)
                out = os.open(name, flags, 0o600, dir_fd=fd)
            try:
                while chunk := os.read(source, _CHUNK):
                    write_all(out, chunk)
                self.give(out, rel, uid, gid, mode)
                os.fchmod(out, mode)
                os.utime(out, ns=times)
            finally:
                os.close(out)
        finally:
            os.close(source)


def _lstat_at(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def copy_into(dest_root: RootDir, sources: Sequence[Source], plan: CopyPlan, *,
              check: Callable[[], None] = lambda: None) -> list[str]:
    """Copy *sources* to ``plan.dest`` in *dest_root*; return the rootfs paths written. *check* is called
    for each file; what it raises (a cancellation) stops the copy."""
    written: list[str] = []
    writer = _Writer(dest_root=dest_root, plan=plan, written=written, dir_times=[])
    dest = clean_relative(plan.dest) or "."
    dest_info = dest_root.lstat(dest_root.resolve(dest)) if dest != "." else dest_root.lstat(".")
    into_dir = plan.dest_is_dir or dest == "." or (dest_info is not None and stat.S_ISDIR(dest_info.st_mode))
    for src in sources:
        writer.links.clear()  # BuildKit copies each source on its own: links between sources are not kept
        info = src.root.lstat(src.rel) if src.rel != "." else src.root.lstat(".")
        if info is None:
            raise ContextError(f"{src.rel!r} disappeared while copying",
                               hint="do not change the context during a build")
        if stat.S_ISDIR(info.st_mode):
            if dest != ".":
                writer.ensure_dir(dest)  # created 0755 like BuildKit; the source directory's mode is not copied
            entries = list(_walk(src.root, src.rel))
            kept = _kept(entries, plan.ignored) if plan.ignored else None
            for rel, child in entries:
                inner = rel if src.rel == "." else rel[len(src.rel) + 1 :]
                if (plan.excludes and _excluded(inner, plan.excludes)) or (kept is not None and rel not in kept):
                    continue
                check()
                writer.put(src, rel, child, inner if dest == "." else f"{dest}/{inner}")
            continue
        if into_dir:
            if dest != ".":
                writer.ensure_dir(dest)
            target = src.name if dest == "." else f"{dest}/{src.name}"
        else:
            writer.ensure_dir(posixpath.dirname(dest))
            target = dest
        writer.put(src, src.rel, info, target)
    writer.finish()
    return written


def make_dest_dir(dest_root: RootDir, dest: str, plan: CopyPlan) -> list[str]:
    """Create the directory *dest* and its missing parents as a copy does (0755, the --chown owner)."""
    written: list[str] = []
    rel = clean_relative(dest) or "."
    if rel != ".":
        _Writer(dest_root=dest_root, plan=plan, written=written, dir_times=[]).ensure_dir(rel)
    return written


def write_inline(dest_root: RootDir, dest: str, content: bytes, *, mode: int, owner: tuple[int, int],
                 mtime_ns: int, ownership: Ownership) -> str:
    """A heredoc source (``COPY <<EOF /path``) written as one file."""
    clean = clean_relative(dest) or "."
    resolved_parent = dest_root.resolve(posixpath.dirname(clean) or ".")
    target = posixpath.join(resolved_parent, posixpath.basename(clean)) if resolved_parent != "." else clean
    with dest_root.parent(target, create=True) as (fd, name):
        if _lstat_at(fd, name) is not None:
            remove_at(fd, name)
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            write_all(out, content)
            ownership.give(out, *owner)
            os.fchmod(out, mode)
            os.utime(out, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(out)
    return target

