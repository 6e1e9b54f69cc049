"""One logical line -> a :class:`Node`: the keyword, ``--flags`` and per-instruction argument splitting.

Each instruction splits its arguments as BuildKit's line parsers do: JSON
arrays (exec form) or one string (shell form), whitespace lists, ``NAME=VALUE``
pairs (ENV, LABEL; with the legacy ``NAME VALUE`` form), ARG words, the
HEALTHCHECK type, and ONBUILD's nested instruction. Unknown keywords parse
(their arguments are dropped) and are rejected when typed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from anybuild.dockerfile.lex import GO_SPACE
from anybuild.dockerfile.nodes import Node, NodeError
from anybuild.dockerfile.quote import go_quote

__all__ = ["node_from_line"]

_WS = re.compile(r"[\t\v\f\r ]+")


def node_from_line(line: str, escape: str) -> Node:
    cmdline = _WS.split(line.strip(GO_SPACE), maxsplit=1)
    written = cmdline[0]
    keyword = written.lower()
    rest, flags = ("", []) if len(cmdline) < 2 else _extract_flags(cmdline[1])
    rest = rest.strip(GO_SPACE)
    handler = _DISPATCH.get(keyword)
    if handler is None:
        return Node(keyword=keyword, written=written, args=("",), flags=tuple(flags))
    args, is_json, sub = handler(rest, escape)
    return Node(keyword=keyword, written=written, args=args, flags=tuple(flags), json=is_json, sub=sub)


_ASCII_SPACE = " \t\n\v\f\r"
_BYTE_SPACE = frozenset(b" \t\n\v\f\r\x85\xa0")


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Split leading ``--flag[=value]`` words off *line* (BuildKit's byte-wise rules)."""
    pos = len(line) - len(line.lstrip(_ASCII_SPACE))
    if not line.startswith("--", pos):
        return line[pos:], []
    return _extract_flags_bytes(line.encode("utf-8", "surrogateescape"))


def _extract_flags_bytes(data: bytes) -> tuple[str, list[str]]:
    words: list[str] = []
    word = bytearray()
    phase = 0  # 0: spaces, 1: word, 2: quote
    quote = 0
    blank_ok = False
    n = len(data)
    pos = 0

    def dec(b: bytes | bytearray) -> str:
        return bytes(b).decode("utf-8", "surrogateescape")

    while pos <= n:
        ch = data[pos] if pos < n else -1
        if phase == 0:
            if pos == n:
                break
            if ch in _BYTE_SPACE:
                pos += 1
                continue
            if ch != 0x2D or pos + 1 == n or data[pos + 1] != 0x2D:
                return dec(data[pos:]), words
            phase = 1
        if pos == n:
            if word != b"--" and (blank_ok or word):
                words.append(dec(word))
            break
        if phase == 1:
            if ch in _BYTE_SPACE:
                phase = 0
                if word == b"--":
                    return dec(data[pos:]), words
                if blank_ok or word:
                    words.append(dec(word))
                word = bytearray()
                blank_ok = False
                pos += 1
                continue
            if ch in (0x27, 0x22):
                quote = ch
                blank_ok = True
                phase = 2
                pos += 1
                continue
            if ch == 0x5C:
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = data[pos]
            word.append(ch)
            pos += 1
            continue
        if ch == quote:
            phase = 1
            pos += 1
            continue
        if ch == 0x5C:
            if pos + 1 == n:
                phase = 1
                pos += 1
                continue
            pos += 1
            ch = data[pos]
        word.append(ch)
        pos += 1
    return "", words


_Handler = Callable[[str, str], tuple[tuple[str, ...], bool, "Node | None"]]
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


class _NotJSON(Exception):
    pass


def _reject_constant(name: str) -> object:
    raise _NotJSON(name)


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotJSON(text)
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)


def _parse_json(rest: str) -> tuple[str, ...]:
    """Decode a JSON array of strings; _NotJSON if it is not JSON at all."""
    rest = rest.lstrip(GO_SPACE)
    if not rest.startswith("["):
        raise _NotJSON(rest)
    try:
        value, end = _DECODER.raw_decode(rest)
    except (ValueError, RecursionError) as exc:
        raise _NotJSON(rest) from exc
    if rest[end:].strip(" \t\r\n"):  # Go's json.Unmarshal: nothing but white space after it (moby/buildkit#5107)
        raise _NotJSON(rest)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NodeError(_NOT_STRINGS, hint='write the exec form as ["executable", "arg", ...]')
    return tuple(value)


def _maybe_json(rest: str, _escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
    if not rest:
        return (), False, None
    try:
        return _parse_json(rest), True, None
    except _NotJSON:
        return (rest,), False, None


def _maybe_json_to_list(rest: str, _escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
    try:
        return _parse_json(rest), True, None
    except _NotJSON:
        return _whitespace_list(rest, _escape)


def _whitespace_list(rest: str, _escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
    if not rest:
        return (), False, None
    return tuple(_WS.split(rest)), False, None


def _string(rest: str, _escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
    return ((rest,) if rest else ()), False, None


def _sub_command(rest: str, escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
    if not rest:
        return (), False, None
    return (), False, node_from_line(rest, escape)


def _health(rest: str, escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
    data = rest.encode("utf-8", "surrogateescape")
    sep = 0
    while sep < len(data) and data[sep] not in _BYTE_SPACE:
        sep += 1
    if sep == 0:
        return (), False, None
    nxt = sep
    while nxt < len(data) and data[nxt] in _BYTE_SPACE:
        nxt += 1
    kind = data[:sep].decode("utf-8", "surrogateescape")
    args, is_json, _ = _maybe_json(data[nxt:].decode("utf-8", "surrogateescape"), escape)
    return (kind, *args), is_json, None


_SPACE_CLASS = re.escape(GO_SPACE)


def _words_regex(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(
        rf"""(?:[^{_SPACE_CLASS}'"{e}]|{e}.|(?P<t1>{e}\Z)"""
        rf"""|"(?:[^"{e}]|{e}.|(?P<t2>{e}\Z))*(?:"|\Z)|'[^']*(?:'|\Z))+""",
        re.DOTALL,
    )


_WORDS = {"\\": _words_regex("\\"), "`": _words_regex("`")}


def _parse_words(rest: str, escape: str) -> list[str]:
    """Words of *rest* split on white space, quotes and escapes kept as written."""
    words: list[str] = []
    for m in _WORDS[escape].finditer(rest):
        word = m.group()
        if m.group("t1") is not None or m.group("t2") is not None:
            word = word[:-1]
        if word:
            words.append(word)
    return words


def _name_val(keyword: str) -> Callable[[str, str], tuple[tuple[str, ...], bool, Node | None]]:
    def parse(rest: str, escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
        words = _parse_words(rest, escape)
        if not words:
            return (), False, None
        if "=" not in words[0]:
            pieces = _WS.split(rest, maxsplit=1)
            if len(pieces) < 2:
                raise NodeError(
                    f"{keyword} must have two arguments",
                    hint=f"write {keyword} NAME=VALUE (or the legacy form {keyword} NAME VALUE)",
                )
            return (pieces[0], pieces[1], ""), False, None
        out: list[str] = []
        for word in words:
            if "=" not in word:
                raise NodeError(
                    f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value",
                    hint=f"write {keyword} NAME=VALUE; quote values that hold spaces",
                )
            key, _, value = word.partition("=")
            out += (key, value, "=")
        return tuple(out), False, None

    return parse


def _name_or_name_val(rest: str, escape: str) -> tuple[tuple[str, ...], bool, Node | None]:
    return tuple(_parse_words(rest, escape)), False, None


_DISPATCH: dict[str, _Handler] = {
    "add": _maybe_json_to_list,
    "arg": _name_or_name_val,
    "cmd": _maybe_json,
    "copy": _maybe_json_to_list,
    "entrypoint": _maybe_json,
    "env": _name_val("ENV"),
    "expose": _whitespace_list,
    "from": _whitespace_list,
    "healthcheck": _health,
    "label": _name_val("LABEL"),
    "maintainer": _string,
    "onbuild": _sub_command,
    "run": _maybe_json,
    "shell": _maybe_json,
    "stopsignal": _string,
    "user": _string,
    "volume": _maybe_json_to_list,
    "workdir": _string,
}


