"""The upstream conformance cases (tests/builder/upstream/): loading, preparing a context, comparing.

Each case is a directory holding a Dockerfile (its first lines name the upstream test it comes
from) and the files of its build context; `cases.toml` holds what git cannot (file modes, empty
directories, sockets) and how a case is built (build args, target, variants) or judged (an
expected refusal, a difference that is Docker 20.10's own, with the reason). See upstream/README.md.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import socket
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_TAGS",
    "CASES_DIR",
    "NO_BASE",
    "DockerDiffers",
    "FileServer",
    "UpstreamCase",
    "load_cases",
    "prepare_context",
    "rewrite_bases",
    "serving",
]

CASES_DIR = Path(__file__).parent / "upstream"
# The offline stand-ins for Docker Hub's busybox (and alpine, where no apk is used), per kind of base:
# "full" has the top-level mount points /proc and /sys, "bare" has not (as Docker Hub's busybox,
# distroless and other minimal bases). Both are pushed by tests/harness/bases.py.
BASE_TAGS: Mapping[str, str] = {"full": "busybox:full", "bare": "busybox:bare"}
NO_BASE = "none"  # the kind of a case that uses no base image (scratch and its own stages only)
_IMAGE = re.compile(r"^(docker\.io/)?(library/)?(busybox|alpine)(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")
_SOURCE = re.compile(r"^#\s*Source:\s*(moby/buildkit|moby/moby|containers/buildah)\s+(\S+)\s+(.+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerDiffers:
    """Paths where Docker 20.10's image differs from anybuild's, which follows current BuildKit."""

    paths: frozenset[str]
    reason: str
    kinds: frozenset[str] = frozenset()  # empty: every kind of base


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamCase:
    name: str  # directory name, plus "@variant" for a variant's build
    directory: Path
    repo: str  # moby/buildkit | moby/moby | containers/buildah
    path: str  # the upstream test file
    test: str  # the upstream test function (and any note)
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    modes: Mapping[str, int] = field(default_factory=dict)
    dirs: Mapping[str, int] = field(default_factory=dict)
    sockets: tuple[str, ...] = ()
    owners: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # context files' uid:gid
    http: Mapping[str, str] = field(default_factory=dict)  # files served for ADD URL, at @SERVER@/NAME
    expect: str = "image"  # what current BuildKit, and so anybuild, does: "image" | "error" (refuses it)
    docker: str | None = None  # a Docker 20.10 bug: it does the opposite (refuses it, or builds what it should refuse)
    newer: str | None = None  # a feature newer than Docker 20.10's frontend: it does the opposite, anybuild checks
    skip: str | None = None  # why it is not run at all
    docker_panics: bool = False  # Docker 20.10 panics on it and dockerd dies: it is not asked (a `newer` case)
    docker_differs: DockerDiffers | None = None
    mount_stubs: frozenset[str] = frozenset()  # RUN --mount stubs Docker 20.10 leaves (normalized, as test_conformance)
    dockerfile: str = "Dockerfile"

    @property
    def text(self) -> str:
        return (self.directory / self.dockerfile).read_text()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of base it is built on: both when it names busybox or alpine, else none."""
        text = self.text
        return tuple(BASE_TAGS) if rewrite_bases(text, BASE_TAGS["full"]) != text else (NO_BASE,)

    @property
    def uses_cache_mounts(self) -> bool:
        return re.search(r"type=cache|type=\$", self.text) is not None

    @property
    def runs(self) -> bool:
        """True when a RUN (or an ONBUILD RUN) runs, so that the sandbox matters."""
        return re.search(r"(?im)^\s*(ONBUILD\s+)?RUN\b", self.text) is not None

    def docker_differs_for(self, kind: str) -> DockerDiffers | None:
        known = self.docker_differs
        if known is None or (known.kinds and kind not in known.kinds):
            return None
        return known


def _modes(table: Mapping[str, Any], key: str) -> dict[str, int]:
    return {path: int(str(mode), 8) for path, mode in (table.get(key) or {}).items()}


def _case(directory: Path, options: Mapping[str, Any], variant: str | None = None) -> UpstreamCase:
    extra = dict(options.get("variants", {}).get(variant, {})) if variant else {}
    dockerfile = str(extra.get("dockerfile", options.get("dockerfile", "Dockerfile")))
    text = (directory / dockerfile).read_text()
    source = _SOURCE.search(text)
    if source is None:
        raise ValueError(f"{directory.name}: {dockerfile} has no '# Source: OWNER/REPO FILE TEST' line")
    known = extra.get("docker_differs", options.get("docker_differs"))
    args = {**options.get("args", {}), **extra.get("args", {})}
    return UpstreamCase(
        name=directory.name + (f"@{variant}" if variant else ""), directory=directory,
        repo=source.group(1), path=source.group(2), test=source.group(3).strip(),
        build_args=args, target=extra.get("target", options.get("target")),
        modes=_modes(options, "modes"), dirs=_modes(options, "dirs"), sockets=tuple(options.get("sockets", ())),
        http=dict(options.get("http", {})),
        owners={path: (int(value.split(":")[0]), int(value.split(":")[1]))
                for path, value in options.get("owners", {}).items()},
        expect=str(extra.get("expect", options.get("expect", "image"))),
        docker=extra.get("docker", options.get("docker")) or None,
        newer=extra.get("newer", options.get("newer")) or None,
        mount_stubs=frozenset(extra.get("mount_stubs", options.get("mount_stubs", ()))),
        skip=options.get("skip"), dockerfile=dockerfile, docker_panics=bool(options.get("docker_panics", False)),
        docker_differs=DockerDiffers(paths=frozenset(known["paths"]), reason=known["reason"],
                               kinds=frozenset(known.get("kinds", ()))) if known else None,
    )


def load_cases(root: Path = CASES_DIR) -> list[UpstreamCase]:
    """Every case and every variant of a case, sorted by name."""
    index = root / "cases.toml"
    options: dict[str, Any] = tomllib.loads(index.read_text()) if index.is_file() else {}
    unknown = sorted(set(options) - {p.name for p in root.iterdir() if p.is_dir()})
    if unknown:
        raise ValueError(f"cases.toml names cases that have no directory: {unknown}")
    cases: list[UpstreamCase] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        table = options.get(directory.name, {})
        cases.append(_case(directory, table))
        cases.extend(_case(directory, table, variant) for variant in table.get("variants", {}))
    return cases


def rewrite_bases(text: str, image: str) -> str:
    """*text* with every busybox/alpine image (FROM, COPY --from, RUN --mount from=, ARG defaults) made *image*."""

    def name(word: str) -> str:
        return image if _IMAGE.match(word) and not re.search(r"\bapk\b", text) else word

    def line(match: re.Match[str]) -> str:
        return match.group(1) + name(match.group(2))

    text = re.sub(r"(?im)^(\s*(?:ONBUILD\s+)?FROM\s+(?:--platform=\S+\s+)?)(\S+)", line, text)
    text = re.sub(r"(--from=|\bfrom=)([^\s,]+)", line, text)
    return re.sub(r"(?im)^(\s*ARG\s+\w+=)(\S+)", line, text)


@dataclass(frozen=True, slots=True)
class FileServer:
    """An HTTP server on 127.0.0.1 serving *root*: the stand-in for the tests' fakeStorage."""

    root: Path
    url: str


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serving(root: Path) -> Iterator[FileServer]:
    """Serve *root* over HTTP (Last-Modified from the files' mtimes) until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(root=root, url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def prepare_context(case: UpstreamCase, kind: str, dest: Path, server: FileServer | None = None) -> Path:
    """A copy of the case's context at *dest* with its modes, empty dirs and sockets, bases rewritten,
    and its served files in place (``@SERVER@`` in the Dockerfile is their URL)."""
    shutil.copytree(case.directory, dest, symlinks=True)
    for path in sorted(case.dirs):
        (dest / path).mkdir(parents=True, exist_ok=True)
    for path, mode in sorted(case.modes.items(), key=lambda item: -item[0].count("/")):
        os.chmod(dest / path, mode, follow_symlinks=False)
    for path, mode in case.dirs.items():
        os.chmod(dest / path, mode)
    for path in case.sockets:
        with socket.socket(socket.AF_UNIX) as sock:  # a bound socket leaves its file behind
            sock.bind(str(dest / path))
    for path, (uid, gid) in case.owners.items():
        os.chown(dest / path, uid, gid, follow_symlinks=False)
    dockerfile = dest / case.dockerfile
    text = dockerfile.read_text()
    if case.http:
        if server is None:
            raise ValueError(f"{case.name} serves files over HTTP: pass a FileServer")
        folder = server.root / case.directory.name
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in case.http.items():
            (folder / name).write_text(content)
            os.utime(folder / name, (1_600_000_000, 1_600_000_000))
        text = text.replace("@SERVER@", f"{server.url}/{case.directory.name}")
    if kind != NO_BASE:
        text = rewrite_bases(text, BASE_TAGS[kind])
    dockerfile.write_text(text)
    return dest
