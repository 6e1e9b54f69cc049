"""``.dockerignore`` with Docker's exact semantics, and the context files a build reads.

- :func:`read_ignore_patterns`: the file's lines as Docker reads them (comments
  only at column 1, white space trimmed, ``!`` exceptions, patterns cleaned like
  Go's ``filepath.Clean`` with a leading ``/`` dropped).
- :class:`DockerIgnore`: Docker's pattern matcher (Go ``filepath.Match``
  syntax with ``**``, later patterns win, a pattern matching a directory
  excludes everything under it).
- :func:`select_context_files`: the files (and symlinks) of a context that the
  builder receives, walking like the client's fsutil: an excluded directory is
  only entered when an exception could re-include something inside it. Which
  exceptions count changed in Docker 23 (:class:`IgnoreMode`).
- :func:`find_ignore_file`: ``<Dockerfile>.dockerignore`` beside the Dockerfile
  wins over ``<context>/.dockerignore``.
- :func:`sources_for`: which selected context files one COPY/ADD reads.
"""

from __future__ import annotations

import os
import posixpath
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from anybuild.dockerfile.instructions import Add, Copy
from anybuild.errors import ContextError

__all__ = [
    "DockerIgnore",
    "IgnoreMode",
    "IgnorePattern",
    "find_ignore_file",
    "glob_regex",
    "read_ignore_patterns",
    "select_context_files",
    "sources_for",
]

_BOM = "\ufeff"
_SHOULD_ESCAPE = frozenset(".+()|{}$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^git@")


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on a slash-separated path."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_ignore_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalised as Docker does."""
    return [pattern for _, pattern in _numbered_patterns(text)]


def _numbered_patterns(text: str) -> list[tuple[int, str]]:
    patterns: list[tuple[int, str]] = []
    for index, line in enumerate(text.split("\n")):
        if index == 0:
            line = line.removeprefix(_BOM)
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append((index + 1, "!" + pattern if invert else pattern))
    return patterns


def _class_end(pattern: str, start: int) -> int:
    """Index just past the ``]`` closing the class at *start*; ValueError if malformed."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    ranges = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges > 0:
            return i + 1
        i = _class_char(pattern, i)
        if i < len(pattern) and pattern[i] == "-":
            i = _class_char(pattern, i + 1)
        ranges += 1


def _class_char(pattern: str, i: int) -> int:
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError("syntax error in pattern")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError("syntax error in pattern")
    return i + 1


def _class_regex(body: str) -> str:
    """A Go character class body as a Python class (no nested-set warnings)."""
    out = ["["]
    i = 0
    if body.startswith("^"):
        out.append("^")
        i = 1
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            out.append(re.escape(body[i + 1]))
            i += 2
            continue
        out.append(ch if ch == "-" else re.escape(ch))
        i += 1
    out.append("]")
    return "".join(out)


def check_glob(pattern: str) -> None:
    """Raise ValueError if Go's filepath.Match would reject *pattern*."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("syntax error in pattern")
            i += 2
        elif ch == "[":
            i = _class_end(pattern, i)
        else:
            i += 1


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Go ``filepath.Match`` as a regex: ``*``/``?`` stay within one path segment."""
    check_glob(pattern)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif ch == "[":
            end = _class_end(pattern, i)
            out.append(_class_regex(pattern[i + 1 : end - 1]))
            i = end
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class IgnorePattern:
    """One compiled pattern: how it matches (exact, prefix, suffix or regex)."""

    text: str
    exclusion: bool
    kind: str
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, raw: str) -> IgnorePattern:
        text = go_clean(raw.strip())
        exclusion = text.startswith("!")
        if exclusion:
            if text == "!":
                raise ValueError('illegal exclusion pattern: "!"')
            text = text[1:]
        check_glob(text)
        regex_parts: list[str] = []
        kind = "exact"
        i = 0
        n = len(text)
        while i < n:
            ch = text[i]
            if ch == "*":
                if i + 1 < n and text[i + 1] == "*":
                    first = i == 0
                    i += 2
                    if i < n and text[i] == "/":
                        i += 1
                    if i >= n:
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            regex_parts.append(".*")
                            kind = "regex"
                    else:
                        regex_parts.append("(?:.*/)?")
                        kind = "regex"
                    if first:
                        kind = "suffix"
                    continue
                regex_parts.append("[^/]*")
                kind = "regex"
            elif ch == "?":
                regex_parts.append("[^/]")
                kind = "regex"
            elif ch in _SHOULD_ESCAPE:
                regex_parts.append("\\" + ch)
            elif ch == "\\":
                if i + 1 < n:
                    regex_parts.append(_go_escape(text[i + 1]))
                    kind = "regex"
                    i += 1
                else:
                    regex_parts.append("\\\\")
            elif ch in "[]":
                regex_parts.append(ch)
                kind = "regex"
            else:
                regex_parts.append(ch)
            i += 1
        regex = _compile_go_regex("^" + "".join(regex_parts) + r"\Z") if kind == "regex" else None
        return cls(text=text, exclusion=exclusion, kind=kind, regex=regex)

    def match(self, path: str) -> bool:
        match self.kind:
            case "exact":
                return path == self.text
            case "prefix":
                return path.startswith(self.text[:-2])
            case "suffix":
                suffix = self.text[2:]
                return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def _go_escape(ch: str) -> str:
    """``\\x`` in Docker's generated Go regexp, as a Python regex piece."""
    if ch == "z":
        return r"\Z"
    if ch.isalnum() and ch not in "dDwWsSbBAnrtfv":
        raise ValueError(f"invalid escape sequence \\{ch}")
    return re.escape(ch) if not ch.isalnum() else "\\" + ch


def _compile_go_regex(text: str) -> re.Pattern[str]:
    """Compile a regex Docker generated for Go; nested-set warnings are Python-only noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return re.compile(text, re.DOTALL)
        except re.error as exc:
            raise ValueError(f"syntax error in pattern: {exc}") from None


class IgnoreMode(StrEnum):
    """Which client walks the context: the rules changed with fsutil in 2022 (Docker 23)."""

    CURRENT = "current"  # Docker >= 23 / buildx: wildcard exceptions re-include inside excluded dirs
    LEGACY = "legacy"  # Docker <= 20.10 clients: only exceptions naming the directory as a literal prefix


class DockerIgnore:
    """Docker's pattern matcher over slash-separated paths relative to the context."""

    def __init__(self, patterns: Iterable[str], *, source: str = ".dockerignore",
                 mode: IgnoreMode = IgnoreMode.CURRENT, lines: Sequence[int] = ()) -> None:
        self.mode = mode
        compiled: list[IgnorePattern] = []
        for index, raw in enumerate(patterns):
            if not raw.strip():
                continue
            try:
                compiled.append(IgnorePattern.compile(raw))
            except ValueError as exc:
                where = f"{source}:{lines[index]}" if index < len(lines) else source
                raise ContextError(
                    f"{where}: invalid pattern {raw!r}: {exc}",
                    hint="fix the pattern (Go filepath.Match syntax: * ? [a-z] \\x and **)",
                ) from None
        self.patterns = tuple(compiled)
        self.has_exclusions = any(p.exclusion for p in compiled)
        self.only_prefix_exceptions = not any(
            p.exclusion and any(c in p.text for c in "*[]?^\\") for p in compiled
        )

    @classmethod
    def from_file(cls, path: Path | None, *, mode: IgnoreMode = IgnoreMode.CURRENT) -> DockerIgnore:
        if path is None or not path.is_file():
            return cls([], mode=mode)
        from anybuild.dockerfile.parser import MAX_FILE_SIZE, read_bounded

        try:
            data = read_bounded(path)
        except OSError as exc:
            raise ContextError(f"cannot read {path}: {exc.strerror or exc}",
                               hint="make the ignore file readable, or remove it") from exc
        if data is None:
            raise ContextError(f"{path.name} exceeds maximum allowed size of {MAX_FILE_SIZE} bytes",
                               hint="keep the ignore file to patterns; exclude whole directories instead of "
                                    "listing files")
        numbered = _numbered_patterns(data.decode("utf-8", "surrogateescape"))
        return cls([p for _, p in numbered], source=str(path), mode=mode, lines=[n for n, _ in numbered])

    def excluded(self, path: str) -> bool:
        """Whether *path* (or a parent directory of it) is excluded."""
        if not self.patterns:
            return False
        matched = False
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent not in ("", ".") else []
        legacy = self.mode is IgnoreMode.LEGACY
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parents:
                if legacy:  # only the parent with as many components as the pattern
                    depth = pattern.text.count("/") + 1
                    hit = depth <= len(parents) and pattern.match("/".join(parents[:depth]))
                else:
                    hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_reinclude_under(self, directory: str) -> bool:
        """Whether walking into an excluded *directory* could find re-included files."""
        if not self.has_exclusions:
            return False
        if not self.only_prefix_exceptions and self.mode is IgnoreMode.CURRENT:
            return True
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def find_ignore_file(context: Path, dockerfile: Path | None = None) -> Path | None:
    """``<Dockerfile>.dockerignore`` beside the Dockerfile, else ``<context>/.dockerignore``."""
    if dockerfile is not None:
        specific = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if specific.is_file():
            return specific
    default = context / ".dockerignore"
    return default if default.is_file() else None


def select_context_files(root: Path, ignore: DockerIgnore) -> list[str]:
    """Relative paths of the files and symlinks the builder receives, sorted."""
    selected: list[str] = []

    def walk(directory: Path, rel: str) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise ContextError(f"cannot read {directory}: {exc.strerror}",
                               hint="check the permissions of the build context") from exc
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if ignore.excluded(path):
                if is_dir and ignore.may_reinclude_under(path):
                    walk(Path(entry.path), path)
                continue
            if is_dir:
                walk(Path(entry.path), path)
            else:
                selected.append(path)

    walk(root, "")
    return selected


def _clean_source(src: str) -> str:
    return go_clean("/" + src).lstrip("/")


def sources_for(instr: Copy | Add, files: Sequence[str]) -> tuple[str, ...]:
    """The context *files* that *instr* (substituted) reads; none for --from, URLs, heredocs."""
    if isinstance(instr, Copy) and instr.from_:
        return ()
    regexes: list[re.Pattern[str] | str] = []
    for source in instr.sources:
        if source.heredoc is not None or _URL.match(source.path):
            continue
        cleaned = _clean_source(source.path)
        if any(c in cleaned for c in "*?["):
            try:
                regexes.append(glob_regex(cleaned))
            except ValueError:
                regexes.append(cleaned)
        else:
            regexes.append(cleaned)
    excludes = DockerIgnore(instr.excludes, source="--exclude") if instr.excludes else None
    chosen: list[str] = []
    for path in files:
        parts = path.split("/")
        for wanted in regexes:
            depth = _source_depth(wanted, parts)
            if depth is None:
                continue
            # --exclude patterns apply to paths relative to the source that matched
            relative = "/".join(parts[depth:]) or parts[-1]
            if excludes is None or not excludes.excluded(relative):
                chosen.append(path)
                break
    return tuple(chosen)


def _source_depth(source: re.Pattern[str] | str, parts: list[str]) -> int | None:
    """How many leading segments of the path the source names, or None if it does not."""
    if isinstance(source, str):
        if not source:
            return 0
        wanted = source.split("/")
        return len(wanted) if parts[: len(wanted)] == wanted else None
    for i in range(len(parts)):
        if source.match("/".join(parts[: i + 1])):
            return i + 1
    return None
