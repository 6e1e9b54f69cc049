"""COPY / ADD as a step: pick the source roots, apply ADD's archive and URL rules, copy.

Sources come from the build context (``.dockerignore`` applied through the
*ignored* predicate), a stage's rootfs or an image's (``--from``), inline
heredocs, or, for ADD, URLs (``--checksum`` verified; saved 0600 like Docker)
and local tar archives (extracted into the destination directory).
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import hashlib
import lzma
import os
import posixpath
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, cast

import httpx

from anybuild.builder.inroot import RootDir
from anybuild.builder.instructions.copy import (
    CopyPlan,
    Source,
    copy_into,
    expand_sources,
    make_dest_dir,
    parse_chmod,
    write_inline,
)
from anybuild.builder.instructions.metadata import workdir_path
from anybuild.builder.rootfs import RecordedMeta, UnpackOptions, unpack_layer
from anybuild.builder.users import resolve_chown
from anybuild.dockerfile.instructions import Add, Copy
from anybuild.errors import BuildFailed, IntegrityError
from anybuild.oci.config import ContainerConfig

__all__ = ["TransferContext", "transfer_step"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferContext:
    context: Path
    ignored: Callable[[str], bool]
    from_root: Callable[[str], Path]  # --from NAME (stage or image) -> rootfs
    scratch: Path
    http: Callable[[], httpx.Client]
    unpack: UnpackOptions  # and with it, the owners files can have here
    clock: Callable[[], float] = time.time
    file: str = "Dockerfile"
    recorded: dict[str, RecordedMeta] = field(default_factory=dict)  # owners kept by path (the stage's map)


def _is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def _decompressor(head: bytes) -> Callable[[Path], IO[bytes]] | None:
    def opener(module: Callable[..., object]) -> Callable[[Path], IO[bytes]]:
        return lambda p: cast(IO[bytes], module(p, "rb"))

    if head.startswith(b"\x1f\x8b"):
        return opener(gzip.open)
    if head.startswith(b"BZh"):
        return opener(bz2.open)
    if head.startswith(b"\xfd7zXZ\x00"):
        return opener(lzma.open)
    return None


def _archive_reader(path: Path) -> IO[bytes] | None:
    """A decompressing reader if *path* is a tar archive (plain, gzip, bzip2, xz), else None."""
    with path.open("rb") as handle:
        head = handle.read(6)
        handle.seek(257)
        ustar = handle.read(5)
    if ustar == b"ustar":
        return path.open("rb")
    opener = _decompressor(head)
    if opener is None:
        return None
    try:
        with opener(path) as probe:
            block = probe.read(262)
    except (OSError, EOFError, lzma.LZMAError):
        return None
    if block[257:262] != b"ustar":
        return None
    return opener(path)


def _is_archive(path: Path) -> bool:
    reader = _archive_reader(path)
    if reader is None:
        return False
    reader.close()
    return True


def _download(url: str, checksum: str | None, ctx: TransferContext, into: Path) -> tuple[Path, str, float | None]:
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "download"
    target = into / name
    digest = hashlib.sha256()
    try:
        with ctx.http() as client, client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code >= 400:
                raise BuildFailed(f"ADD {url}: HTTP {response.status_code}", hint="check the URL")
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
            modified = response.headers.get("last-modified")
    except httpx.HTTPError as exc:
        raise BuildFailed(f"ADD {url}: {exc}", hint="check the URL and the network") from exc
    if checksum and checksum != "sha256:" + digest.hexdigest():
        raise IntegrityError(f"ADD {url}: checksum sha256:{digest.hexdigest()} does not match --checksum={checksum}",
                             hint="update --checksum or check the download")
    mtime = None
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            mtime = parsedate_to_datetime(modified).timestamp()
    return target, name, mtime


@contextlib.contextmanager
def _open_roots() -> Iterator[list[RootDir]]:
    roots: list[RootDir] = []
    try:
        yield roots
    finally:
        for root in roots:
            root.close()


def transfer_step(instr: Copy | Add, config: ContainerConfig, rootfs: Path, ctx: TransferContext) -> list[str]:
    """Run one COPY/ADD (already expanded) into *rootfs*; return the paths written."""
    what = f"{ctx.file}:{instr.start_line}: {instr.keyword}"
    dest = workdir_path(config.working_dir, instr.dest)
    # Only a trailing slash (or an existing directory) makes the destination a directory: BuildKit
    # copies several sources onto a destination without one, each replacing the last.
    dest_is_dir = instr.dest.endswith("/")
    chmod = parse_chmod(instr.chmod)
    from_name = instr.from_ if isinstance(instr, Copy) else None
    written: list[str] = []
    with RootDir.open(rootfs) as dest_root, _open_roots() as roots, \
            tempfile.TemporaryDirectory(prefix="add-", dir=ctx.scratch) as tmp:
        owner = resolve_chown(instr.chown, dest_root) if instr.chown else None
        base = RootDir.open(ctx.from_root(from_name) if from_name else ctx.context)
        roots.append(base)
        ignored = (lambda _rel: False) if from_name else ctx.ignored
        sources: list[Source] = []
        archives: list[Path] = []
        for source in instr.sources:
            if source.heredoc is not None:
                name = source.path
                target = f"{dest}/{name}" if dest_is_dir or dest == "/" else dest
                written.append(write_inline(dest_root, target, source.heredoc.text().encode(), mode=chmod or 0o644,
                                            owner=owner or (0, 0), mtime_ns=int(ctx.clock() * 1e9),
                                            ownership=ctx.unpack.ownership))
                continue
            if isinstance(instr, Add) and _is_url(source.path):
                path, name, mtime = _download(source.path, instr.checksum, ctx, Path(tmp))
                path.chmod(0o600)
                if mtime is not None:
                    os.utime(path, (mtime, mtime))
                holder = RootDir.open(Path(tmp))
                roots.append(holder)
                sources.append(Source(root=holder, rel=name, name=name))
                continue
            matched = expand_sources(base, source.path, ignored=ignored, what=what)
            if isinstance(instr, Add) and instr.unpack is not False:
                for item in matched:
                    host = base.host_path(item.rel)
                    if host.is_file() and _is_archive(host):
                        archives.append(host)
                    else:
                        sources.append(item)
            else:
                sources.extend(matched)
        # Wildcards that matched nothing copy nothing and make no destination (BuildKit's AllowEmptyWildcard).
        plan = CopyPlan(dest=dest, dest_is_dir=dest_is_dir, owner=owner, keep_owner=from_name is not None,
                        chmod=chmod, excludes=instr.excludes, ignored=None if from_name else ctx.ignored,
                        ownership=ctx.unpack.ownership, recorded=ctx.recorded)
        if sources:
            written += copy_into(dest_root, sources, plan, check=ctx.unpack.interrupted)
        for archive in archives:
            written += _extract(archive, dest, dest_root, ctx, plan)
    return written


def _extract(archive: Path, dest: str, dest_root: RootDir, ctx: TransferContext, plan: CopyPlan) -> list[str]:
    """Unpack a local archive into *dest*, made as a copy makes it; --chown owns every entry."""
    made = make_dest_dir(dest_root, dest, plan)
    rel = dest_root.resolve(dest.lstrip("/") or ".")
    reader = _archive_reader(archive)
    assert reader is not None
    options = dataclasses.replace(ctx.unpack, chown=plan.owner) if plan.owner is not None else ctx.unpack
    with reader, RootDir.open(dest_root.host_path(rel)) as inner:
        report = unpack_layer(reader, inner, options)
    for path, meta in report.recorded.items():
        ctx.recorded[path if rel == "." else f"{rel}/{path}"] = meta
    return [*made, rel]
