"""The parse tree: :class:`Node` (one instruction, with line range), :class:`Heredoc`, :class:`Dockerfile`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from anybuild.dockerfile.lex import GO_SPACE
from anybuild.dockerfile.quote import go_quote

__all__ = ["Dockerfile", "Heredoc", "Node", "NodeError"]


class NodeError(Exception):
    """A logical line cannot be turned into a node; the parser adds the location."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True, kw_only=True)
class Heredoc:
    """One heredoc attached to an instruction; ``content`` is raw (not chomped)."""

    name: str
    content: str = ""
    expand: bool = True
    chomp: bool = False
    fd: int = 0

    def text(self) -> str:
        """The content with leading tabs removed when the heredoc is ``<<-``."""
        return re.sub(r"(?m)^\t+", "", self.content) if self.chomp else self.content


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One instruction: its keyword, flags, arguments and where it is."""

    keyword: str  # lower case, as BuildKit dispatches on it
    written: str = ""  # the keyword as written
    args: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    json: bool = False
    sub: Node | None = None  # ONBUILD's instruction
    heredocs: tuple[Heredoc, ...] = ()
    original: str = ""  # the logical line, continuations joined
    start_line: int = 0
    end_line: int = 0
    comments: tuple[str, ...] = ()

    def dump(self) -> str:
        text = self.keyword
        if self.flags:
            text += " [" + " ".join(go_quote(f) for f in self.flags) + "]"
        if self.sub is not None:
            text += " (" + self.sub.dump() + ")"
        for arg in self.args:
            text += " " + go_quote(arg)
        return text.strip(GO_SPACE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dockerfile:
    """A parsed Dockerfile: its instructions, escape token, directives and warnings."""

    nodes: tuple[Node, ...]
    escape: str = "\\"
    directives: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()
    file: str | None = None
    lines: tuple[str, ...] = ()

    def dump(self) -> str:
        """BuildKit's ``Node.Dump()`` of the root: one S-expression per line."""
        return "\n".join(f"({node.dump()})" for node in self.nodes)

    def line_text(self, line: int) -> str:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""
