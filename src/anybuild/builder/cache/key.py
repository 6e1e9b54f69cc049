"""Cache keys of build steps: pure functions of what a step reads.

A step's key is the sha256 of a canonical JSON document holding the parent's
key, the expanded instruction (variables substituted, source location left
out), the environment a RUN sees (so a build argument it uses changes its key)
and the digests of the files it reads (COPY/ADD sources after
``.dockerignore``, ``RUN --mount=type=bind`` sources, the keys of the stages
or images ``--from`` names). Secrets enter a key by their *id* only: their
values are never part of an instruction, an environment or a file list here.

:func:`hash_files` is the one effect (it reads files); everything else is pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from anybuild.builder.cache.hashes import ContextHashes

__all__ = [
    "KEY_VERSION",
    "FileDigest",
    "base_key",
    "canonical",
    "hash_files",
    "step_key",
    "under",
]

KEY_VERSION = "anybuild-step-cache-v1"
_LOCATION_FIELDS = frozenset({"start_line", "end_line", "original", "raw"})

FileDigest = tuple[str, str]  # (path relative to its root, "mode:sha256:…" or "link:target")


def canonical(value: Any) -> Any:
    """A JSON-able form of an (expanded) instruction, without where it was written."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"_type": type(value).__name__}
        for f in dataclasses.fields(value):
            if f.name not in _LOCATION_FIELDS:
                out[f.name] = canonical(getattr(value, f.name))
        return out
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _digest(document: Mapping[str, Any]) -> str:
    data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode("utf-8", "surrogateescape")).hexdigest()


def base_key(*, image: str, digest: str | None, platform: str) -> str:
    """The key of a stage's FROM: the base image's manifest digest (its name when it has none)."""
    return _digest({"v": KEY_VERSION, "from": digest or image, "platform": platform})


def step_key(
    parent: str,
    instruction: Any,
    *,
    env: Mapping[str, str] | None = None,
    files: Sequence[FileDigest] = (),
    refs: Mapping[str, str] | None = None,
) -> str:
    """The key of one step after *parent*.

    *env* is the environment of a RUN (build args and ENV it sees), *files* the
    digests of the files it reads, *refs* the keys of the stages/images it reads
    by name (``--from``).
    """
    document = {
        "v": KEY_VERSION,
        "parent": parent,
        "instruction": canonical(instruction),
        "env": dict(sorted((env or {}).items())),
        "files": [list(f) for f in files],
        "refs": dict(sorted((refs or {}).items())),
    }
    return _digest(document)


def under(files: Sequence[str], prefix: str) -> list[str]:
    """The *files* inside directory *prefix* (or equal to it); "" or "." selects all."""
    clean = prefix.strip("/")
    if clean in ("", "."):
        return list(files)
    return [f for f in files if f == clean or f.startswith(clean + "/")]


def hash_files(root: Path, files: Sequence[str], hashes: ContextHashes | None = None) -> list[FileDigest]:
    """(path, digest) for each file under *root*: content and permission bits, or a symlink's target.

    Modification times are left out, as BuildKit leaves them out of its content keys.
    *hashes* remembers content digests between builds (a file is read again only when
    its metadata changed).
    """
    hashes = hashes if hashes is not None else ContextHashes()
    out: list[FileDigest] = []
    top = str(root)
    for rel in files:
        path = f"{top}/{rel}"  # strings, not Paths: this runs for every context file on every build
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            out.append((rel, "missing"))
            continue
        if stat.S_ISLNK(info.st_mode):
            out.append((rel, "link:" + str(Path(path).readlink())))
            continue
        if not stat.S_ISREG(info.st_mode):
            out.append((rel, f"{stat.S_IFMT(info.st_mode):o}:{stat.S_IMODE(info.st_mode):o}"))
            continue
        out.append((rel, f"{stat.S_IMODE(info.st_mode):o}:sha256:{hashes.sha256(path, rel, info)}"))
    return out
