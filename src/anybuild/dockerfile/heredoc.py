"""Heredocs: which words of an instruction open one (``<<EOF``, ``<<-'EOF'``, ``3<<EOF``), as BuildKit decides."""

from __future__ import annotations

import re

from anybuild.dockerfile.lex import LexError, ShellLex
from anybuild.dockerfile.nodes import Heredoc, NodeError
from anybuild.errors import DockerfileError

__all__ = ["heredocs_from_line", "parse_heredoc_word"]

_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]*)\Z")
_HEREDOC_OPERATOR = re.compile(r"\d*<<-?\Z")
_HEREDOC_LEX = ShellLex("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
_NAME_LEX = ShellLex("\\", skip_unset=True)
_NAME_LEX_RAW = ShellLex("\\", skip_unset=True, raw_quotes=True)


def parse_heredoc_word(word: str) -> Heredoc | None:
    """The heredoc that a word such as ``<<-'EOF'`` opens, or None."""
    try:
        return _parse_heredoc_word(word)
    except NodeError as exc:
        raise DockerfileError(exc.message, text=word, hint=exc.hint) from None


def _parse_heredoc_word(word: str) -> Heredoc | None:
    m = _HEREDOC.match(word)
    if m is None or not m.group(3):
        return None
    rest = m.group(3)
    try:
        words = _NAME_LEX.process_words(rest, {})
        if len(words) != 1:
            return None
        raw = _NAME_LEX_RAW.process_words(rest, {})
    except LexError as exc:
        raise NodeError(str(exc), hint="close the quotes around the heredoc delimiter") from None
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"') if raw else -1
    fd = int(m.group(1)) if m.group(1) else 0
    return Heredoc(name=name, expand=quotes == raw_quotes, chomp=m.group(2) == "-",
                   fd=fd if fd < 2**64 else 0)


def heredocs_from_line(line: str) -> list[Heredoc]:
    try:
        words = _HEREDOC_LEX.process_words(line, {})
    except LexError:
        return []
    docs: list[Heredoc] = []
    i = 0
    while i < len(words):
        word = words[i]
        if _HEREDOC_OPERATOR.match(word) and i + 1 < len(words):
            word = word + " " + words[i + 1]
            i += 1
        doc = _parse_heredoc_word(word)
        if doc is not None:
            docs.append(doc)
        i += 1
    return docs
