"""A rebuild + push with nothing changed, answered without starting the builder (issue 23).

After a built-in build that pushed, a record is kept under ``<data dir>/cache/unchanged/``, named
by a digest of everything the image depends on:

- the request, every field of it (the Dockerfile's and the context's paths, build arguments,
  labels, target, platform, tags, registry mirrors, insecure hosts...), the Dockerfile's bytes;
  the backend's settings, every field but its runner, environment and cancellation;
- every entry of the context, by its metadata (``lstat``: type, mode, size, inode, owner,
  mtime and ctime, a symlink's target), with no file read; the ``.dockerignore`` files beside
  the Dockerfile;
- what shapes the build here: the ids, capabilities and user-namespace map of this process, the
  kernel release, ``SOURCE_DATE_EPOCH`` and the ``ANYBUILD_*`` settings (secrets left out);
- anybuild's own code (every module's size and mtime).

The record holds the image's digest, its steps, and each base image as resolved then: the
repository that served it (a mirror or the origin) and the digest served. The next build with
the same digest of inputs asks the registry one ``HEAD`` per base image and one per tag; when all
answer the recorded digests, that is the build: the steps are reported cached and the tags as
pushed. Anything else (a moved base tag, a tag pushed over, an unreachable registry, a missing or
unreadable record) falls through to the real build, which decides.

Not answered here (the builder decides each time): builds without ``--push``, with an output,
``--load``, ``--no-cache``, secrets or ``--cache-to``; an ``ADD`` in a Dockerfile that names a URL, a git
repository or a variable anywhere;
contexts of more than :data:`MAX_ENTRIES` entries. A record is written only when every entry of
the context is older than :data:`RACY_SECONDS` (a file changed within the filesystem's clock tick
could keep its time), so an edit after the build always changes the digest of inputs (ctime
cannot be set back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, PlatformImage, StepTiming
from anybuild.cancellation import Cancellation
from anybuild.config import BackendName
from anybuild.errors import AnybuildError, Interrupted
from anybuild.files import replace_text

__all__ = ["KEEP", "MAX_ENTRIES", "RACY_SECONDS", "Inputs", "Record", "answer", "forget", "inputs_of", "load", "save"]

FORMAT = 1
MAX_ENTRIES = 50_000
KEEP = 500  # records kept (the newest): each is ~1 KB, one per distinct inputs that were pushed
RACY_SECONDS = 2.0
_SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "AUTH", "CREDENTIAL")
_ADD = re.compile(r"^\s*ADD\b", re.IGNORECASE | re.MULTILINE)
_REMOTE = ("://", "git@", ".git", "$")  # a URL, a repository, or what a variable may make one
_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Inputs:
    """The digest of a build's inputs, and whether its context is too fresh to record."""

    key: str
    racy: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    key: str
    digest: str
    bases: tuple[tuple[str, str], ...]  # (the repository that served a base image, the digest it served)
    steps: tuple[tuple[str, bool], ...]  # (name, cached)
    size: int | None
    layers: int | None
    sandbox: str | None
    built: float  # time.time() of the build
    platforms: tuple[PlatformImage, ...] = ()  # a multi-platform build's images (then digest is the index's)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "digest": self.digest, "bases": [list(b) for b in self.bases],
                "steps": [list(s) for s in self.steps], "size": self.size, "layers": self.layers,
                "sandbox": self.sandbox, "built": self.built, "platforms": [p.to_dict() for p in self.platforms]}

    @classmethod
    def from_json(cls, data: Any) -> Record | None:
        try:
            if data["format"] != FORMAT:
                return None
            return cls(key=str(data["key"]), digest=str(data["digest"]),
                       bases=tuple((str(s), str(d)) for s, d in data["bases"]),
                       steps=tuple((str(n), bool(c)) for n, c in data["steps"]),
                       size=data["size"], layers=data["layers"], sandbox=data["sandbox"], built=float(data["built"]),
                       platforms=tuple(PlatformImage(platform=str(p["platform"]), digest=str(p["digest"]),
                                                     size=p.get("size"), layers=p.get("layers"),
                                                     emulation=p.get("emulation"))
                                       for p in data.get("platforms") or ()))
        except (KeyError, TypeError, ValueError):
            return None


def data_dir(env: Mapping[str, str]) -> Path:
    """As :func:`anybuild.builder.build.data_dir` (not imported from there: that loads the builder)."""
    if env.get("ANYBUILD_DATA_DIR"):
        return Path(env["ANYBUILD_DATA_DIR"])
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else Path(env.get("HOME", "/root")) / ".local/share"
    return base / "anybuild"


def _record_path(env: Mapping[str, str], key: str) -> Path:
    return data_dir(env) / "cache" / "unchanged" / f"{key}.json"


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_mode, st.st_size, st.st_ino, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns]


def _walk(root: Path, digest: Any, newest: list[int], count: list[int]) -> bool:
    """Feed every entry under *root* (sorted, not following symlinks) to *digest*; False past MAX_ENTRIES."""
    with os.scandir(root) as listing:
        entries = sorted(listing, key=lambda e: e.name)
    for entry in entries:
        count[0] += 1
        if count[0] > MAX_ENTRIES:
            return False
        st = entry.stat(follow_symlinks=False)
        newest[0] = max(newest[0], st.st_mtime_ns, st.st_ctime_ns)
        fields = [os.fsencode(entry.path), *(b"%d" % n for n in _stamp(st))]  # a path holds no NUL
        if stat.S_ISLNK(st.st_mode):
            fields.append(os.fsencode(Path(entry.path).readlink()))
        digest.update(b"\0".join(fields) + b"\n")
        if stat.S_ISDIR(st.st_mode) and not _walk(Path(entry.path), digest, newest, count):
            return False
    return True


def _code_stamp() -> list[Any]:
    stamps: list[Any] = []
    for directory, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = Path(directory, name).stat()
                stamps.append([directory, name, st.st_size, st.st_mtime_ns])
    return stamps


def _identity() -> list[Any]:
    status = ""
    with contextlib.suppress(OSError):
        status = Path("/proc/self/status").read_text()
    uid_map = ""
    with contextlib.suppress(OSError):
        uid_map = Path("/proc/self/uid_map").read_text()
    return [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.uname().release, uid_map,
            [line for line in status.splitlines() if line.startswith(("CapEff:", "CapBnd:", "NoNewPrivs:"))]]


def _fields(request: BuildRequest) -> list[list[str]]:
    """Every field of the request (a field added later is in the key without anyone remembering to)."""
    found: list[list[str]] = []
    for item in dataclasses.fields(request):
        value = getattr(request, item.name)
        if isinstance(value, Path):
            shown = str(value.resolve())
        elif isinstance(value, Mapping):
            shown = repr(sorted((str(k), repr(v)) for k, v in value.items()))
        else:
            shown = repr(value)
        found.append([item.name, shown])
    return found


def inputs_of(request: BuildRequest, *, env: Mapping[str, str], settings: Mapping[str, Any],
              clock: Callable[[], float] = time.time) -> Inputs | None:
    """The digest of everything the image of *request* depends on; None when this request is always built."""
    if (not request.push or not request.tags or request.output or request.load or request.no_cache
            or request.secrets or settings.get("cache_to")):
        return None
    try:
        dockerfile = request.dockerfile.read_bytes()
        text = dockerfile.decode(errors="replace")
        if _ADD.search(text) and any(mark in part for part in (text, *request.build_args.values())
                                     for mark in _REMOTE):
            return None  # ADD may fetch something: the builder asks the network each time
        digest = hashlib.sha256()
        now_ns = int(clock() * 1e9)
        newest, count = [0], [0]
        ignores = [request.dockerfile.with_name(request.dockerfile.name + ".dockerignore"),
                   request.dockerfile.parent / ".dockerignore"]
        head = {
            "format": FORMAT,
            "dockerfile": hashlib.sha256(dockerfile).hexdigest(),
            "request": _fields(request),
            "settings": sorted((k, repr(v)) for k, v in settings.items()),
            "ignores": [[str(p), _stamp(p.stat()) if p.exists() else None] for p in ignores],
            "env": sorted((k, v) for k, v in env.items()
                          if (k.startswith("ANYBUILD_") or k in ("SOURCE_DATE_EPOCH", "HOME", "XDG_DATA_HOME"))
                          and not any(w in k.upper() for w in _SECRET_WORDS)),
            "identity": _identity(),
            "code": _code_stamp(),
        }
        for path in ignores:
            if path.exists():
                newest[0] = max(newest[0], path.stat().st_mtime_ns, path.stat().st_ctime_ns)
        digest.update(json.dumps(head, sort_keys=True, default=str).encode())
        if not _walk(request.context, digest, newest, count):
            return None
    except (OSError, UnicodeError):
        return None
    return Inputs(key=digest.hexdigest(), racy=newest[0] >= now_ns - int(RACY_SECONDS * 1e9))


def load(env: Mapping[str, str], key: str) -> Record | None:
    try:
        record = Record.from_json(json.loads(_record_path(env, key).read_text()))
    except (OSError, ValueError):
        return None
    return record if record is not None and record.key == key else None


def save(env: Mapping[str, str], inputs: Inputs, result: BuildResult, request: BuildRequest) -> None:
    """Keep what this build made, when its inputs can be trusted next time (a failure is silent)."""
    if inputs.racy or result.digest is None or set(request.tags) - set(result.references):
        return
    record = Record(key=inputs.key, digest=result.digest, bases=result.bases,
                    steps=tuple((s.name, s.cached) for s in result.steps), size=result.size, layers=result.layers,
                    sandbox=result.sandbox, built=result.finished or time.time(), platforms=result.platforms)
    path = _record_path(env, inputs.key)
    if replace_text(path, json.dumps(record.to_json())):
        _keep_newest(path.parent, KEEP)


def _keep_newest(directory: Path, keep: int) -> int:
    """Remove all but the *keep* newest records; how many were removed."""
    with contextlib.suppress(OSError):
        records = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in records[keep:]:
            with contextlib.suppress(OSError):
                old.unlink()
        return max(0, len(records) - keep)
    return 0


def forget(env: Mapping[str, str]) -> int:
    """Remove every record (``cache prune``): the next build of each runs the builder again."""
    return _keep_newest(data_dir(env) / "cache" / "unchanged", 0)


def answer(record: Record, request: BuildRequest, sink: LogSink, *, env: Mapping[str, str],
           cancel: Cancellation, clock: Callable[[], float] = time.time) -> BuildResult | None:
    """The build's result when the registry still holds what *record* says (one HEAD per base and per
    tag); None when anything differs or cannot be asked, for the real build to decide."""
    from anybuild.registry.client import RegistryClient
    from anybuild.registry.credentials import CredentialResolver
    from anybuild.registry.http import RegistryTimeouts
    from anybuild.registry.reference import Reference

    started = clock()
    credentials = CredentialResolver(env=env, home=Path(env.get("HOME", "/root")))
    try:
        with RegistryClient(credentials=credentials.resolve, insecure=frozenset(request.insecure_registries),
                            timeouts=RegistryTimeouts.from_env(env), cancel=cancel) as client:
            for source, digest in record.bases:
                found = client.head_manifest(Reference.parse(source))
                if found is None or str(found) != digest:
                    return None
            for tag in request.tags:
                found = client.head_manifest(Reference.parse(tag).defaulted())
                if found is None or str(found) != record.digest:
                    return None
    except Interrupted:
        raise
    except AnybuildError:
        return None
    when = datetime.fromtimestamp(record.built, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    sink.line(f"anybuild: nothing changed since the build of {when} (context, Dockerfile, arguments, "
              f"anybuild), and the registry still serves its base images and tags: {record.digest}")
    for name, cached in record.steps:
        sink.line(f"#{name} CACHED" if cached else f"#{name}")
    for tag in request.tags:
        sink.line(f"pushed {tag}@{record.digest} (already there)")
    finished = clock()
    return BuildResult(backend=BackendName.BUILTIN, digest=record.digest, references=tuple(request.tags),
                       size=record.size, layers=record.layers,
                       steps=tuple(StepTiming(name=n, seconds=0.0, cached=c) for n, c in record.steps),
                       sandbox=record.sandbox, cache_hits=sum(c for _, c in record.steps), bases=record.bases,
                       platforms=record.platforms, started=started, finished=finished)
