"""Shell-word processing as BuildKit's Dockerfile front end does it.

:class:`ShellLex` splits a string into words and substitutes ``$VAR`` /
``${VAR...}`` references, following the rules of BuildKit's ``shell.Lex``:
single and double quotes, the escape token (``\\`` or a backtick), the
modifiers ``-  :-  +  :+  ?  :?  #  ##  %  %%  /  //`` and the "raw" modes the
parser uses to find heredoc words. Errors are :class:`LexError` (a plain
message); callers attach the Dockerfile location.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "GO_SPACE",
    "LexError",
    "ShellLex",
    "WordResult",
    "is_go_space",
]

# Go's unicode.IsSpace: the characters it treats as white space.
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_SPACE_RUN = re.compile(f"[{re.escape(GO_SPACE)}]+")
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


def is_go_space(ch: str) -> bool:
    return ch in GO_SPACE


class LexError(Exception):
    """A word could not be processed (unterminated quote, bad substitution)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WordResult:
    """What processing one word produced."""

    result: str
    words: tuple[str, ...]
    matched: frozenset[str] = frozenset()
    unmatched: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Words:
    buf: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)

    def add_raw(self, text: str) -> None:
        self.buf.append(text)

    def add_string(self, text: str) -> None:
        parts = _SPACE_RUN.split(text)
        self.buf.append(parts[0])
        for part in parts[1:]:
            self._flush()
            self.buf.append(part)

    def _flush(self) -> None:
        word = "".join(self.buf)
        if word:
            self.words.append(word)
        self.buf.clear()

    def finish(self) -> list[str]:
        self._flush()
        return self.words


@dataclass(frozen=True, slots=True)
class ShellLex:
    """A word processor configured like BuildKit's ``shell.Lex``."""

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_unset: bool = False
    skip_quotes: bool = False

    def process(self, word: str, env: Mapping[str, str]) -> WordResult:
        """Substitute variables in *word*; also return it split into words."""
        run = _Run(self, word, env)
        try:
            result, words = run.stop_on(None, self.raw_escapes)
        except LexError as exc:
            raise LexError(f"failed to process {_go_quote_simple(word)}: {exc}") from None
        return WordResult(
            result=result,
            words=tuple(words),
            matched=frozenset(run.matched),
            unmatched=frozenset(run.unmatched),
        )

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return list(self.process(word, env).words)


def _go_quote_simple(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Run:
    __slots__ = ("env", "esc", "i", "lex", "matched", "n", "plain", "raw_escapes", "s", "unmatched")

    def __init__(self, lex: ShellLex, text: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.s = text
        self.n = len(text)
        self.i = 0
        self.env = env
        self.esc = lex.escape
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        specials = "$" + self.esc + ("" if lex.skip_quotes else "'\"")
        self.plain = re.compile(f"[^{re.escape(specials)}]+")

    # -- the main loop -------------------------------------------------------

    def stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        s, esc = self.s, self.esc
        result: list[str] = []
        words = _Words()
        quotes = not self.lex.skip_quotes
        while self.i < self.n:
            ch = s[self.i]
            if stop is not None and ch == stop:
                self.i += 1
                return "".join(result), words.finish()
            if ch == "$":
                tmp = self._dollar()
                result.append(tmp)
                words.add_string(tmp)
                continue
            if quotes and ch == "'":
                tmp = self._single_quote()
                result.append(tmp)
                words.add_raw(tmp)
                continue
            if quotes and ch == '"':
                tmp = self._double_quote()
                result.append(tmp)
                words.add_raw(tmp)
                continue
            if ch == esc:
                self.i += 1
                if self.raw_escapes:
                    words.add_raw(ch)
                    result.append(ch)
                if self.i >= self.n:
                    break
                ch = s[self.i]
                self.i += 1
                words.add_raw(ch)
                result.append(ch)
                continue
            m = self.plain.match(s, self.i)
            assert m is not None
            chunk = m.group()
            if stop is not None and stop in chunk:
                chunk = chunk[: chunk.index(stop)]
            self.i += len(chunk)
            words.add_string(chunk)
            result.append(chunk)
        if stop is not None:
            raise LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def _single_quote(self) -> str:
        self.i += 1
        end = self.s.find("'", self.i)
        if end < 0:
            self.i = self.n
            raise LexError("unexpected end of statement while looking for matching single-quote")
        body = self.s[self.i : end]
        self.i = end + 1
        return f"'{body}'" if self.lex.raw_quotes else body

    def _double_quote(self) -> str:
        s, esc = self.s, self.esc
        self.i += 1
        out: list[str] = ['"'] if self.lex.raw_quotes else []
        while True:
            if self.i >= self.n:
                raise LexError("unexpected end of statement while looking for matching double-quote")
            ch = s[self.i]
            if ch == '"':
                self.i += 1
                if self.lex.raw_quotes:
                    out.append('"')
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self.i += 1
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                if self.i >= self.n:
                    continue
                if s[self.i] in ('"', "$", esc):
                    ch = s[self.i]
                    self.i += 1
            out.append(ch)

    # -- substitution --------------------------------------------------------

    def _peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def _next(self) -> str:
        if self.i >= self.n:
            return ""
        ch = self.s[self.i]
        self.i += 1
        return ch

    def _get(self, name: str) -> tuple[str, bool]:
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
            return "", False
        self.matched.add(name)
        return value, True

    def _name(self) -> str:
        s, start = self.s, self.i
        if start >= self.n:
            return ""
        first = s[start]
        if first.isdecimal():
            while self.i < self.n and s[self.i].isdecimal():
                self.i += 1
            return s[start : self.i]
        if first in _SPECIAL_PARAMS:
            self.i += 1
            return first
        while self.i < self.n and (s[self.i].isalpha() or s[self.i].isdecimal() or s[self.i] == "_"):
            self.i += 1
        return s[start : self.i]

    def _dollar(self) -> str:
        self.i += 1
        skip_unset = self.lex.skip_unset
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, found = self._get(name)
            if not found and skip_unset:
                return "$" + name
            return value
        self.i += 1
        peek = self._peek()
        if not peek:
            raise LexError("syntax error: missing '}'")
        if peek in "{}:":
            raise LexError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if not ch:
            raise LexError("syntax error: missing '}'")
        chs = ch
        if ch == "}":
            value, found = self._get(name)
            if not found and skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._replace(name)
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self._next()
            chs += ch
        elif ch not in "+-?#%":
            raise LexError(f"unsupported modifier ({chs}) in substitution")
        raw = ch in ("#", "%")
        if null_is_unset and raw:
            raise LexError(f"unsupported modifier ({chs}) in substitution")
        word = self._sub_word("}", raw, "syntax error: missing '}'")
        value, found = self._get(name)
        if skip_unset and not found:
            return "${" + name + chs + word + "}"
        empty = not found or (null_is_unset and value == "")
        match ch:
            case "-":
                return word if empty else value
            case "+":
                return "" if empty else word
            case "?":
                if not found:
                    raise LexError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise LexError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            case "#" | "%":
                greedy = word.startswith(ch)
                if greedy:
                    word = word[1:]
                if ch == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
        raise LexError(f"unsupported modifier ({chs}) in substitution")

    def _sub_word(self, stop: str, raw: bool, eof_message: str) -> str:
        try:
            word, _ = self.stop_on(stop, raw)
        except LexError:
            if self.i >= self.n:
                raise LexError(eof_message) from None
            raise
        return word

    def _replace(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self.i += 1
        pattern = self._sub_word("/", True, "syntax error: missing '/' in ${}")
        replacement = self._sub_word("}", True, "syntax error: missing '}'")
        value, found = self._get(name)
        if self.lex.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return _replace_all(regex, value, replacement)
        m = regex.search(value)
        if m is None:
            return value
        return value[: m.start()] + replacement + value[m.end() :]


_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (``*``, ``?``, ``\\`` escapes) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            if i < n and pattern[i] in "}/":
                continue
            tok = pattern[i] if i < n else ""
            i += 1
            if tok not in ("*", "?", "\\") or not tok:
                raise LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{tok}'")
            out.append("\\" + tok)
        elif tok in _REGEX_SPECIAL:
            out.append("\\" + tok)
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    pieces: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\" and i != n - 1:
            pieces.append(pattern[i : i + 2])
            i += 2
        else:
            pieces.append(pattern[i])
            i += 1
    return "".join(reversed(pieces))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


_TEMPLATE = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")


def _expand_template(template: str, match: re.Match[str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2) or ""
        return match.group(0) if name.isdecimal() and int(name) == 0 else ""

    return _TEMPLATE.sub(one, template) if "$" in template else template


def _replace_all(regex: re.Pattern[str], value: str, replacement: str) -> str:
    """Go's Regexp.ReplaceAllString: no empty match right after a match."""
    out: list[str] = []
    last_end = 0
    pos = 0
    expand: Callable[[re.Match[str]], str] = lambda m: _expand_template(replacement, m)  # noqa: E731
    while pos <= len(value):
        m = regex.search(value, pos)
        if m is None:
            break
        out.append(value[last_end : m.start()])
        if m.end() > last_end or m.start() == 0:
            out.append(expand(m))
        last_end = m.end()
        if pos + 1 > m.end():
            pos += 1
        else:
            pos = m.end()
    out.append(value[last_end:])
    return "".join(out)
