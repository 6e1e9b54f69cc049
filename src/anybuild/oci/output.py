"""Where an image is written on disk: ``oci:DIR[:NAME]`` or ``docker-archive:FILE``.

:meth:`Output.parse` reads the option, :meth:`Output.check` refuses at once, as an input error
naming the value and the fix, what writing would fail on after a long build or pull (an archive
path that is a directory, a layout path that is a file or some other directory, a parent that is
a file or cannot be written), and :meth:`Output.write` writes the image so that an interrupted
write leaves nothing: an archive is renamed into place whole, a new layout is made beside its
place and renamed into it; into an existing layout the blobs go first and its index last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from anybuild.errors import UsageError
from anybuild.leftovers import owner_tag, sweep_stale
from anybuild.oci.archive import write_docker_archive
from anybuild.oci.descriptor import Descriptor
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Index, Manifest, parse_document

__all__ = ["Output", "OutputKind"]


class OutputKind(StrEnum):
    OCI = "oci"
    DOCKER_ARCHIVE = "docker-archive"


Check = Callable[[], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Output:
    kind: OutputKind
    path: Path
    name: str | None = None  # oci:DIR:NAME, the ref.name in the layout
    text: str = ""  # as given, for messages
    option: str = "--output"

    @classmethod
    def parse(cls, text: str, cwd: Path, *, option: str = "--output", names: bool = False) -> Output:
        """``oci:DIR`` (``oci:DIR:NAME`` with *names*) or ``docker-archive:FILE``, relative to *cwd*."""
        kind, sep, rest = text.partition(":")
        if not sep or kind not in (OutputKind.OCI, OutputKind.DOCKER_ARCHIVE):
            raise UsageError(f"{option} {text!r}: unknown output type {kind!r}" if sep else
                             f"{option} {text!r} names no output type",
                             hint="write oci:DIR or docker-archive:FILE")
        name = None
        if kind == OutputKind.OCI and names:
            rest, _, found = rest.partition(":")
            name = found or None
        if not rest:
            raise UsageError(f"{option} {text!r} names no destination",
                             hint="write oci:DIR" + ("[:NAME]" if names else "") + " or docker-archive:FILE")
        path = Path(rest).expanduser()
        return cls(kind=OutputKind(kind), path=path if path.is_absolute() else cwd / path, name=name, text=text,
                   option=option)

    def _refuse(self, problem: str, hint: str) -> UsageError:
        return UsageError(f"{self.option} {self.text}: {problem}", hint=hint)

    def check(self) -> None:
        """Refuse what writing would fail on (see the module's doc), before any work is done."""
        path = self.path
        parent = next((p for p in (path.parent, *path.parent.parents) if p.exists() or p.is_symlink()), None)
        if parent is not None and not parent.is_dir():
            raise self._refuse(f"{parent} is a file, not a directory",
                               hint=f"give a path whose parent directories are directories ({parent} is in the way)")
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise self._refuse(f"cannot write in {parent} (permission denied)",
                               hint="give a path in a directory you can write to")
        if self.kind is OutputKind.DOCKER_ARCHIVE:
            if path.is_dir():
                raise self._refuse(f"{path} is a directory; a docker archive is a file",
                                   hint=f"name the file to write, e.g. docker-archive:{path / 'image.tar'} "
                                        f"(or write oci:{path} for an OCI layout directory)")
            if path.exists() and not path.is_file():
                raise self._refuse(f"{path} exists and is not a regular file",
                                   hint="name a new file or a regular file to replace")
            return
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise self._refuse(f"{path} is a file; an OCI layout is a directory",
                                   hint=f"name a new directory, e.g. oci:{path.with_suffix('')}-layout "
                                        f"(or write docker-archive:{path} for an archive file)")
            if any(path.iterdir()) and not (path / "oci-layout").is_file():
                raise self._refuse(f"{path} is a directory with other files in it, not an OCI image layout",
                                   hint="name a new or empty directory, or an existing layout to add the image to")

    def write(self, store: LayoutStore, manifest: Descriptor, tags: Sequence[str] = (), *,
              check: Check = lambda: None) -> None:
        """Write the image of *manifest* from *store*; *check* (called between blobs) may raise to stop it,
        and then nothing was written."""
        self.check()
        if self.kind is OutputKind.DOCKER_ARCHIVE:
            check()
            write_docker_archive(store, manifest, self.path, repo_tags=tuple(tags), check=check)
            return
        names = (self.name,) if self.name else tuple(tags)
        if (self.path / "oci-layout").is_file():
            _copy_image(store, manifest, LayoutStore.create(self.path), names, check)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(self.path.parent, f".{self.path.name}.", ".partial")  # what a killed writer left
        staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.{owner_tag()}.", suffix=".partial",
                                        dir=self.path.parent))
        try:
            _copy_image(store, manifest, LayoutStore.create(staging), names, check)
            check()
            with contextlib.suppress(OSError):
                self.path.rmdir()  # an empty directory given: replaced whole
            staging.rename(self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _blobs(store: LayoutStore, manifest: Descriptor) -> list[Descriptor]:
    document = parse_document(store.read_blob(manifest), media_type=manifest.media_type,
                              what=f"manifest {manifest.digest}")
    if isinstance(document, Index):
        found: list[Descriptor] = []
        for child in document.manifests:
            found += _blobs(store, child)
        return [*found, manifest]
    assert isinstance(document, Manifest)
    return [document.config, *document.layers, manifest]


def _copy_image(store: LayoutStore, manifest: Descriptor, out: LayoutStore, names: Sequence[str],
                check: Check) -> None:
    """The image's blobs into *out* (linked where they can be), then its index entries."""
    for blob in _blobs(store, manifest):
        check()
        if out.has_blob(blob.digest):
            continue
        source, target = store.blob_path(blob.digest), out.blob_path(blob.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            with source.open("rb") as stream:
                out.write_blob(_checked(stream, check), expected=blob)
    check()
    for name in names or ("",):
        out.put_manifest(manifest, name or None)


def _checked(stream: IO[bytes], check: Check, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := stream.read(size):
        check()
        yield chunk
