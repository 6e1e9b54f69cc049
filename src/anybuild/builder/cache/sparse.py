"""Sparse materialisation: a stage's cached layers unpacked only where the next step looks.

Without the stacker (no overlay mounts: a pod with no user namespace, the ``walk`` snapshotter), a
step that misses after cache hits needs the stage's rootfs on disk. For a RUN that is the whole
rootfs. A COPY, ADD or WORKDIR only reads and writes below its destination (and /etc/passwd and
/etc/group for owners): unpacking a 30,000-file RUN layer, then deleting it at the end of the build,
to add one changed source file is what made a one-file rebuild slower than the first build there.

:class:`LayerIndex` reads the pending layers' tar headers (no file is written) and merges them as
:mod:`anybuild.builder.rootfs` unpacks them — whiteouts, opaque directories, a non-directory
replacing a directory — into the final view: each path's surviving entry and the layer it comes
from. :meth:`LayerIndex.closure` is the set of paths a step with given destinations can reach: the
destinations' ancestors, their subtrees, what symlinks there point to and hard-link partners, all
closed under ancestry. The stage gets exactly those paths' final entries (``sparse`` unpack); the
rest follows, the same way and disjoint from it, when a later step needs the whole rootfs.

Whatever the index cannot vouch for (a hard link whose target was replaced after it was made, an
entry below a symlink, a closure of more than half the entries, a path outside the root) answers
None, and the stage is unpacked whole as before.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from anybuild.builder.inroot import RootDir, clean_relative
from anybuild.builder.rootfs import OPAQUE, WHITEOUT_PREFIX, RecordedMeta, UnpackOptions, decompressed, unpack_layer

__all__ = ["LayerIndex", "Node", "complete", "headers", "unpack_chosen"]

_MAX_HOPS = 40  # symlinks followed resolving one path (Linux's MAXSYMLINKS)


@dataclass(slots=True, eq=False)
class Node:
    """A path's surviving entry: the layer it comes from, its type, a link's target."""

    layer: int
    ordinal: int  # its place among the layer's tar members (0 first)
    kind: str  # "dir", "file", "symlink", "hardlink", "other"
    link: str = ""  # symlink: its target as written; hardlink: the target's relative path
    target: Node | None = None  # hardlink: the entry it linked to when it was made


@dataclass(slots=True)
class LayerIndex:
    final: dict[str, Node] = field(default_factory=dict)
    kids: dict[str, set[str]] = field(default_factory=dict)
    touched: dict[str, int] = field(default_factory=dict)  # the last layer that wrote a path or below it
    symlinks: set[str] = field(default_factory=set)
    unsafe: str | None = None  # why sparse unpacking cannot be trusted for these layers

    @classmethod
    def read(cls, layers: Iterable[Callable[[], IO[bytes]]]) -> LayerIndex:
        """The merged view of *layers* (openers of the blobs, bottom first)."""
        index = cls()
        for number, opener in enumerate(layers):
            with opener() as stream:
                try:
                    for ordinal, (name, kind, link) in enumerate(headers(stream)):
                        index._apply(number, ordinal, name, kind, link)
                        if index.unsafe is not None:
                            return index
                except _Unknown as exc:
                    index.unsafe = str(exc)
                    return index
        for node in index.final.values():
            if node.kind == "hardlink" and index.final.get(node.link) is not node.target:
                index.unsafe = f"a hard link to {node.link!r}, replaced after the link was made"
                break
        return index

    # -- merging, as rootfs._State applies entries --------------------------------------------

    def _apply(self, layer: int, ordinal: int, name: str, kind: str, link: str) -> None:
        rel = clean_relative(name)
        if rel is None:
            self.unsafe = f"entry {name!r} outside the root"
            return
        if rel == ".":
            return
        base = posixpath.basename(rel)
        parent = posixpath.dirname(rel) or "."
        if base == OPAQUE:
            self._prune(parent, layer)
            return
        if base.startswith(WHITEOUT_PREFIX):
            self._remove(posixpath.join(posixpath.dirname(rel), base[len(WHITEOUT_PREFIX):]))
            return
        if self.symlinks and self._below_symlink(parent):
            self.unsafe = f"entry {rel!r} below a symlink"
            return
        self._touch(rel, layer)
        existing = self.final.get(rel)
        if kind == "dir":
            if existing is not None and existing.kind != "dir":
                self._remove(rel)
            self._insert(rel, Node(layer=layer, ordinal=ordinal, kind="dir"))
            return
        if existing is not None or rel in self.kids:
            self._remove(rel)
        if kind == "hardlink":
            target = clean_relative(link)
            if target is None or target == ".":
                self.unsafe = f"hard link {rel!r} outside the root"
                return
            node = Node(layer=layer, ordinal=ordinal, kind=kind, link=target, target=self.final.get(target))
        else:
            node = Node(layer=layer, ordinal=ordinal, kind=kind, link=link if kind == "symlink" else "")
            if kind == "symlink":
                self.symlinks.add(rel)
        self._insert(rel, node)

    def _below_symlink(self, parent: str) -> bool:
        while parent != ".":
            if parent in self.symlinks:
                return True
            parent = posixpath.dirname(parent) or "."
        return False

    def _touch(self, rel: str, layer: int) -> None:
        while rel != "." and self.touched.get(rel) != layer:
            self.touched[rel] = layer
            rel = posixpath.dirname(rel) or "."

    def _insert(self, rel: str, node: Node) -> None:
        self.final[rel] = node
        child = rel
        while child != ".":
            parent = posixpath.dirname(child) or "."
            siblings = self.kids.setdefault(parent, set())
            if child in siblings:
                break
            siblings.add(child)
            child = parent

    def _remove(self, rel: str) -> None:
        for child in self.kids.pop(rel, set()):
            self._remove(child)
        self.final.pop(rel, None)
        self.touched.pop(rel, None)
        self.symlinks.discard(rel)
        parent = posixpath.dirname(rel) or "."
        if parent in self.kids:
            self.kids[parent].discard(rel)

    def _prune(self, directory: str, layer: int) -> None:
        """An opaque directory: what lower layers put below it goes; what this layer wrote stays."""
        for child in list(self.kids.get(directory, ())):
            if self.touched.get(child) != layer:
                self._remove(child)
            else:
                self._prune(child, layer)

    # -- what a step reaches -------------------------------------------------------------------

    def subtree(self, rel: str) -> Iterator[str]:
        stack = [rel]
        while stack:
            path = stack.pop()
            yield path
            stack.extend(self.kids.get(path, ()))

    def resolve(self, path: str, reached: set[str]) -> str | None:
        """*path* (absolute in the image) with its symlinks followed in the index, every step of the way
        added to *reached*; None: it leaves the root or loops."""
        rel = clean_relative(path.lstrip("/") or ".")
        if rel is None:
            return None
        pending = [] if rel == "." else rel.split("/")
        pending.reverse()
        current = "."
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                current = posixpath.dirname(current) or "."
                continue
            candidate = part if current == "." else f"{current}/{part}"
            reached.add(candidate)
            node = self.final.get(candidate)
            if node is not None and node.kind == "symlink":
                hops += 1
                if hops > _MAX_HOPS:
                    return None
                if node.link.startswith("/"):
                    current = "."
                pending.extend(reversed([p for p in node.link.split("/") if p]))
                continue
            current = candidate
        return current

    def closure(self, destinations: Iterable[str]) -> set[str] | None:
        """The paths a step writing below *destinations* can reach, closed under ancestry; None where
        the index cannot vouch for it or it is most of the image (then unpack the whole)."""
        if self.unsafe is not None:
            return None
        reached: set[str] = set()
        linked: dict[str, list[str]] = {}
        for rel, entry in self.final.items():
            if entry.kind == "hardlink":
                linked.setdefault(entry.link, []).append(rel)
        work = list(destinations)
        seen: set[str] = set()
        while work:
            path = work.pop()
            if path in seen:
                continue
            seen.add(path)
            end = self.resolve(path, reached)
            if end is None:
                return None
            for rel in self.subtree(end):
                if rel == ".":
                    continue
                reached.add(rel)
                node = self.final.get(rel)
                if node is None:
                    continue
                if node.kind == "symlink":
                    target = node.link if node.link.startswith("/") else \
                        posixpath.join("/", posixpath.dirname(rel), node.link)
                    work.append(target)
                elif node.kind == "hardlink":
                    work.append("/" + node.link)
                work.extend("/" + other for other in linked.get(rel, ()))
            if len(reached) * 2 > len(self.final):
                return None
        closed: set[str] = set()
        for rel in reached:
            while rel not in (".", "") and rel not in closed:
                closed.add(rel)
                rel = posixpath.dirname(rel)
        return closed


def unpack_chosen(openers: Sequence[Callable[[], IO[bytes]]], index: LayerIndex, root: RootDir,
                  options: UnpackOptions, chosen: Callable[[str], bool]) -> dict[str, RecordedMeta]:
    """Apply the surviving entries of the paths *chosen* accepts, each from the layer it survives in.

    A layer with none of them is not read; one is read up to its last such entry only (a changed
    file after a cached 30,000-file RUN layer does not parse that layer's headers twice).
    """
    final = index.final
    wanted: dict[int, dict[str, int]] = {}  # layer -> rel -> ordinal
    for rel, node in final.items():
        if chosen(rel):
            wanted.setdefault(node.layer, {})[rel] = node.ordinal
    recorded: dict[str, RecordedMeta] = {}
    for number, opener in enumerate(openers):
        here = wanted.get(number)
        if not here:
            continue
        seen: set[str] = set()

        def keep(rel: str, here: dict[str, int] = here, seen: set[str] = seen) -> bool:
            if rel in here:
                seen.add(rel)
                return True
            return False

        with opener() as stream:
            report = unpack_layer(stream, root, options, keep=keep, limit=max(here.values()) + 1)
        if len(seen) != len(here):  # the index counted the members otherwise: read the layer whole
            with opener() as stream:
                report = unpack_layer(stream, root, options, keep=keep)
        recorded.update(report.recorded)
    return recorded


def complete(openers: Sequence[Callable[[], IO[bytes]]], index: LayerIndex, applied: set[str], root: RootDir,
             options: UnpackOptions) -> dict[str, RecordedMeta]:
    """The entries a sparse unpack of *applied* left out; the directories it made keep their times (a
    child added now must not look like a change of the directory)."""
    times: dict[str, tuple[int, int]] = {}
    for rel in applied:
        info = root.lstat(rel, follow=False)
        if info is not None and stat.S_ISDIR(info.st_mode):
            times[rel] = (info.st_atime_ns, info.st_mtime_ns)
    recorded = unpack_chosen(openers, index, root, options, lambda rel: rel not in applied)
    for rel, ns in times.items():
        with root.parent(rel, follow=False) as (fd, name):
            os.utime(name, ns=ns, dir_fd=fd, follow_symlinks=False)
    return recorded


class _Unknown(Exception):
    """A tar header the lean reader does not vouch for (the index declines; the layer unpacks whole)."""


_KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir", b"2": "symlink", b"1": "hardlink",
          b"3": "other", b"4": "other", b"6": "other"}
_BLOCK = 512


def headers(stream: IO[bytes]) -> Iterator[tuple[str, str, str]]:
    """``(name, kind, link)`` of each member of a layer stream (compressed or not), in order, as
    tarfile reads them (pax and GNU long names applied), without tarfile's per-member cost: the index
    reads every header of every cached layer, which with tarfile cost three times the decompression."""
    reader = _Reader(decompressed(stream))
    pax: dict[str, str] = {}
    long_name: str | None = None
    long_link: str | None = None
    while True:
        block = reader.read(_BLOCK)
        if len(block) < _BLOCK or block == bytes(_BLOCK):
            return
        size = _number(block[124:136])
        flag = block[156:157]
        if flag in (b"x", b"g", b"L", b"K"):
            data = reader.read(size)[:size]
            _skip(reader, (-size) % _BLOCK)
            if flag == b"x":
                pax = _pax(data)
            elif flag == b"L":
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif flag == b"K":
                long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        kind = _KINDS.get(flag)
        if kind is None:
            raise _Unknown(f"tar member type {flag!r}")
        name = _text(block[0:100])
        if block[257:262] == b"ustar" and (prefix := _text(block[345:500])):
            name = f"{prefix}/{name}"
        link = _text(block[157:257])
        name = pax.get("path", long_name if long_name is not None else name)
        link = pax.get("linkpath", long_link if long_link is not None else link)
        if "size" in pax:
            size = int(pax["size"])
        if kind == "file" and flag == b"\0" and name.endswith("/"):
            kind = "dir"  # V7: a directory is a regular file whose name ends in a slash
        if kind == "dir":
            name = name.rstrip("/")
        pax, long_name, long_link = {}, None, None
        yield name, kind, link
        if kind == "file":
            _skip(reader, size + (-size) % _BLOCK)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(raw: bytes) -> int:
    if raw[:1] in (b"\x80", b"\xff"):  # base-256 (GNU)
        value = int.from_bytes(raw[1:], "big")
        return value if raw[:1] == b"\x80" else value - (1 << (8 * (len(raw) - 1)))
    text = raw.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise _Unknown(f"tar header size {raw!r}") from None


def _pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            raise _Unknown("a malformed pax header") from None
        if length <= 0:
            raise _Unknown("a malformed pax header")
        record = data[space + 1 : position + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


class _Reader:
    """Reads of a few hundred bytes served from megabyte reads of the decompressed stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buffer = b""
        self.position = 0

    def read(self, count: int) -> bytes:
        while len(self.buffer) - self.position < count:
            try:
                more = self.stream.read(1 << 20)
            except Exception as exc:  # a corrupt stream: the real unpack reports it
                raise _Unknown(f"the layer cannot be read: {exc}") from exc
            if not more:
                break
            self.buffer = self.buffer[self.position:] + more
            self.position = 0
        data = self.buffer[self.position:self.position + count]
        self.position += len(data)
        return data


def _skip(reader: _Reader, count: int) -> None:
    while count > 0:
        chunk = reader.read(min(count, 1 << 20))
        if not chunk:
            raise _Unknown("a truncated layer")
        count -= len(chunk)
