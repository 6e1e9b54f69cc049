"""Files replaced whole: written beside their path, then renamed onto it.

A reader never sees half a file; a writer killed outright leaves its temporary file, named after
it, for the next writer of the same path to remove (:mod:`anybuild.leftovers`). A light module:
the probe cache and the unchanged-build record write through it on a build's fast path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from anybuild.leftovers import owner_tag, sweep_stale

__all__ = ["atomic_write", "replace_text"]


@contextlib.contextmanager
def atomic_write(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file beside *path*; rename it onto *path* only if the block succeeds. *durable*:
    fsync before the rename (a cache that is rebuilt when lost does without)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent, f".{path.name}.", ".tmp")  # what a killed writer left
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        tmp_path.replace(path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def replace_text(path: Path, text: str) -> bool:
    """*path* replaced by *text* (a cache: not fsynced); False where it could not be written."""
    try:
        with atomic_write(path, durable=False) as stream:
            stream.write(text.encode())
    except OSError:
        return False
    return True
