"""Dockerfile text -> a tree of :class:`Node` with line ranges, as BuildKit parses it.

The rules follow BuildKit's ``frontend/dockerfile/parser``: parser directives
(``syntax``, ``escape``, ``check``) at the top, line continuations with the
escape token, comment lines and empty lines inside continuations, JSON (exec)
versus shell forms, ``--flags``, heredocs (``<<EOF``, ``<<-EOF``, quoted
delimiters, several per instruction), and per-instruction argument splitting.
:meth:`Dockerfile.dump` prints the same S-expressions as BuildKit's
``Node.Dump()``, which is what the conformance test compares.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import MappingProxyType

from anybuild.dockerfile.arguments import node_from_line
from anybuild.dockerfile.heredoc import heredocs_from_line, parse_heredoc_word
from anybuild.dockerfile.lex import GO_SPACE
from anybuild.dockerfile.nodes import Dockerfile, Heredoc, Node, NodeError
from anybuild.errors import DockerfileError

__all__ = [
    "HEREDOC_KEYWORDS",
    "MAX_FILE_SIZE",
    "Dockerfile",
    "Heredoc",
    "Node",
    "parse_dockerfile",
    "parse_heredoc_word",
    "read_bounded",
    "read_dockerfile",
]

HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})
_VALID_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_GO_RE_SPACE = "[\t\n\f\r ]"
_DIRECTIVE = re.compile(
    rf"#{_GO_RE_SPACE}*([a-zA-Z][a-zA-Z0-9]*){_GO_RE_SPACE}*={_GO_RE_SPACE}*(.+?){_GO_RE_SPACE}*\Z"
)
_MAX_LINE = 64 * 1024 - 1  # BuildKit's bufio.Scanner token limit, per physical line
# BuildKit's own bound on the Dockerfile and .dockerignore it loads (frontend/dockerui: containerd's
# default gRPC message size): a file larger than that is refused before it is read.
MAX_FILE_SIZE = 16 * 1024 * 1024


def read_dockerfile(path: Path) -> Dockerfile:
    """Read and parse the Dockerfile at *path* (bytes that are not UTF-8 survive)."""
    try:
        data = read_bounded(path)
    except OSError as exc:
        raise DockerfileError(
            f"cannot read {path}: {exc.strerror or exc}",
            file=str(path),
            hint="check the path given with --file / dockerfile =",
        ) from exc
    if data is None:
        raise DockerfileError(
            f"{path.name} exceeds maximum allowed size of {MAX_FILE_SIZE} bytes", file=str(path),
            hint="a Dockerfile that large is generated: generate smaller ones, or move data into files that "
                 "COPY reads",
        )
    return parse_dockerfile(data.decode("utf-8", "surrogateescape"), file=str(path))


def read_bounded(path: Path, limit: int = MAX_FILE_SIZE) -> bytes | None:
    """The bytes of *path*, or None when it holds more than *limit* (never more is read)."""
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            return None
        data = handle.read(limit + 1)
    return None if len(data) > limit else data


class _Directives:
    __slots__ = ("continuation", "done", "escape", "seen", "values")

    def __init__(self) -> None:
        self.done = False
        self.seen: dict[str, str] = {}
        self.escape = "\\"
        self.continuation = _continuation_regex("\\")

    def check(self, line: str) -> str | None:
        """Process a possible directive; return an error message or None."""
        if self.done:
            return None
        m = _DIRECTIVE.match(line)
        if m is None:
            self.done = True
            return None
        key = m.group(1).lower()
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return None
        if key in self.seen:
            return f"only one {key} parser directive can be used"
        value = m.group(2)
        self.seen[key] = value
        if key == "escape":
            if value not in ("`", "\\"):
                return f"invalid escape token '{value}' does not match ` or \\"
            self.escape = value
            self.continuation = _continuation_regex(value)
        return None


def _continuation_regex(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|\A{e}[ \t]*\Z", re.DOTALL)


def parse_dockerfile(text: str, *, file: str | None = None) -> Dockerfile:
    """Parse Dockerfile *text*; raise :class:`DockerfileError` with a location."""
    parts = text.split("\n")
    has_final_newline = parts[-1] == ""
    if has_final_newline:
        parts.pop()
    total = len(parts)
    if parts:
        parts[0] = parts[0].removeprefix("\ufeff")
    plain = [p.rstrip("\r") for p in parts]
    d = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    comments: list[str] = []

    def fail(message: str, line: int, hint: str = "", column: int = 1) -> DockerfileError:
        return DockerfileError(
            message, file=file, line=line, column=column,
            text=plain[line - 1] if 0 < line <= total else None, hint=hint,
        )

    i = 0
    while i < total:
        stripped = plain[i].lstrip(GO_SPACE)
        if len(parts[i]) > _MAX_LINE:
            raise fail(f"dockerfile line greater than max allowed size of {_MAX_LINE}", i + 1)
        is_comment = stripped.startswith("#")
        if is_comment:
            comments.append(stripped[1:].strip(GO_SPACE))
        error = d.check(stripped)
        if error:
            raise fail(error, i + 1, hint="put each parser directive once, at the very top")
        line = "" if is_comment else stripped
        i += 1
        start = i
        line, end_of_line = _trim_continuation(line, d)
        if end_of_line and not line:
            continue
        empty_continuation = False
        pieces = [line]  # joined once: adding each continuation to a string is quadratic in the lines
        while not end_of_line and i < total:
            raw = plain[i]
            error = d.check(raw)
            if error:
                raise fail(error, i + 1)
            i += 1
            lead = raw.lstrip(GO_SPACE)
            if lead.startswith("#"):
                continue
            if not lead:
                empty_continuation = True
                continue
            cont, end_of_line = _trim_continuation(raw, d)
            pieces.append(cont)
        line = "".join(pieces) if len(pieces) > 1 else line
        if empty_continuation:
            warnings.append(f"line {start}: empty continuation line found in: {line}")
        try:
            node = node_from_line(line, d.escape)
        except NodeError as exc:
            raise fail(exc.message, start, exc.hint) from None
        heredocs: list[Heredoc] = []
        if _can_contain_heredoc(node) and "<<" in line:
            try:
                found = heredocs_from_line(line)
            except NodeError as exc:
                raise fail(exc.message, start, exc.hint) from None
            for doc in found:
                terminated = False
                body: list[str] = []
                while i < total:
                    raw = parts[i]
                    candidate = plain[i]
                    i += 1
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(raw + "\n" if i < total or has_final_newline else raw)
                if not terminated:
                    raise fail(
                        f"unterminated heredoc {doc.name}", start,
                        hint=f"end the heredoc with a line holding only {doc.name}",
                    )
                heredocs.append(
                    Heredoc(name=doc.name, content="".join(body), expand=doc.expand,
                            chomp=doc.chomp, fd=doc.fd)
                )
        nodes.append(
            Node(
                keyword=node.keyword, written=node.written, args=node.args, flags=node.flags,
                json=node.json, sub=node.sub, heredocs=tuple(heredocs), original=line,
                start_line=start, end_line=i, comments=tuple(comments),
            )
        )
        comments = []
    if not nodes:
        raise fail(
            "file with no instructions", max(total, 1),
            hint="a Dockerfile needs at least a FROM instruction",
        )
    return Dockerfile(
        nodes=tuple(nodes), escape=d.escape, directives=MappingProxyType(dict(d.seen)),
        warnings=tuple(warnings), file=file, lines=tuple(plain),
    )


def _trim_continuation(line: str, d: _Directives) -> tuple[str, bool]:
    if not line or line[-1] not in (d.escape, " ", "\t"):
        return line, True
    m = d.continuation.search(line)
    if m is None:
        return line, True
    return line[: m.start()] + (m.group(1) or ""), False


def _can_contain_heredoc(node: Node) -> bool:
    target = node.sub if node.keyword == "onbuild" and node.sub is not None else node
    return target.keyword in HEREDOC_KEYWORDS and not target.json


