"""The diagnosis engine: stream a log once, match the rules, rank what fired.

Speed comes from never looking at most lines: the log is scanned in blocks of
many lines, and only lines holding one of a few :data:`ANCHORS` (found with
``bytes.find``, which runs at memory speed), and the :data:`CONTEXT_LINES` lines
around each, are split out and tried against the rules. Error messages come in
clusters: the line that names the cause ("Supports d_type: false", "cannot
clone: Invalid argument") often carries no anchor word, but an anchored line
("Error: ...") is next to it. A line's keywords are found once and select the
matchers whose regex runs. Every primary matcher's examples hold an anchor
(checked by the tests). Memory is one block plus a few quoted lines per rule,
whatever the size of the log.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from anybuild.diagnose.model import (
    DOCS_DIR,
    Category,
    Diagnosis,
    Evidence,
    Phase,
    Role,
    Rule,
    RuleContext,
    Variant,
)

__all__ = ["ANCHORS", "OWN_LINE", "Report", "Scanner", "analyze_lines", "analyze_stream"]

# Each anchor is one pass of ``bytes.find`` over every block, the scan's main cost: longer
# anchors are cheaper (the search skips further), and a phrase whose lines sit next to an
# "err"/"fail" line (curl's "Could not resolve", wget's "bad address", BuildKit's "| >>>"
# snippet) needs no anchor of its own: it is read as that line's context.
ANCHORS: tuple[str, ...] = (
    "err", "fail", "level=fatal", "denied", "unauthorized", "many", "docker daemon", "overlay",
    "kaniko should only", "no space left", "killed", "returned a non-zero", "newuidmap", "push",
    "credentials", "buildx", "no servers", "not permitted", "no such file", "not found", "invalid",
    "directory not empty", "illegal option", "last few gcs",
)
_ANCHOR_BYTES = tuple(a.encode() for a in ANCHORS)
CONTEXT_LINES = 2  # lines before and after an anchored line that are read too
BLOCK_LINES = 8192
BLOCK_BYTES = 1 << 19
MAX_LINE_BYTES = 8 << 20  # a longer "line" (no newline at all) is scanned in pieces
MAX_QUOTE = 400
KEEP_EVIDENCE = 3  # first and last lines kept per rule
PUSH_WINDOW = 300  # lines after a push marker that count as the push phase
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# anybuild's own lines (planning, fallback, the built-in builder's sandbox and snapshotter
# choice), as its sinks print them, optionally behind the progress output's "[image] ".
# They repeat other tools' errors as reasons ("not using docker: ... failed to mount
# overlay: invalid argument") and are never evidence of this build's failure.
OWN_LINE = re.compile(r"^(?:\[[^\]\s]{1,80}\]\s+)?(?:anybuild|sandbox|snapshotter):\s")
_PUSH_MARKER = re.compile(
    r"the push refers to repository|\bpush(?:ing)?\b|failed to push|checking push permission"
    r"|blobs/uploads|initiating layer upload|trying to reuse blob|writing blob|at destination",
)


@dataclass(slots=True)
class _Hits:
    first: list[tuple[int, str]] = field(default_factory=list)
    last: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=KEEP_EVIDENCE))
    support: list[tuple[int, str]] = field(default_factory=list)
    count: int = 0
    first_line: int = 0
    last_line: int = 0
    fields: dict[str, str] = field(default_factory=dict)


_STEP = re.compile(
    r"^(?:#\d+ )?(?:=> )?(?:ERROR )?(?:> )?\[(?P<bk>[^\]]*\d+/\d+)\] (?P<bk_cmd>[A-Z]+ .*?):?$"
    r"|^Step (?P<classic>\d+/\d+) : (?P<classic_cmd>.*)$"
    r"|^STEP (?P<buildah>\d+/\d+): (?P<buildah_cmd>.*)$"
    r"|^(?P<file>[^\s:]+):(?P<line>\d+): (?P<anybuild_cmd>[A-Z]+ .*?) failed with exit code",
)
_EXIT = re.compile(r"(?:exit code|exit status|non-zero code|exited with code)[:\s]+(?P<code>\d{1,3})\b", re.I)
_ERRORISH = re.compile(r"\b(?:error|err!?|fatal|failed|failure|denied|cannot|can't|unable|not found|killed)\b", re.I)
_TOOLS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"##\[error\]|buildx (?:call )?failed with|::error::"), "a GitHub Actions step"),
    (re.compile(r"kaniko|error building image: error building stage", re.I), "Kaniko"),
    (re.compile(r"^STEP \d+/\d+:|buildah|podman", re.I), "buildah/podman"),
    (re.compile(r"^#\d+ |failed to solve|^ ?=> ", re.I), "BuildKit (docker buildx)"),
    (re.compile(r"^Step \d+/\d+ :|returned a non-zero code"), "docker build (classic builder)"),
    (re.compile(r"^npm (?:ERR!|error)"), "npm"),
    (re.compile(r"dockerd|Error response from daemon|docker daemon", re.I), "Docker"),
)
# a literal that each of _TOOLS needs (lower case): the patterns run only on lines holding one
_TOOL_HINTS = ("##[error]", "failed with", "::error::", "kaniko", "error building image", "step ", "buildah",
               "podman", "#", "failed to solve", "=> ", "returned a non-zero", "npm ", "dockerd", "from daemon",
               "docker daemon")


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The ranked diagnoses, plus the last error-looking lines for when none fired."""

    diagnoses: tuple[Diagnosis, ...]
    tail: tuple[Evidence, ...]
    lines: int


def _trie_pattern(words: Sequence[str]) -> str:
    """A regex for a set of literal words, shaped as a trie: at each position sre tries one
    branch per distinct next character instead of every word, and prefers the longest word."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


def _keyword_index(rules: Sequence[Rule]) -> tuple[re.Pattern[str], dict[str, frozenset[str]]]:
    """One regex for every matcher keyword, and for each keyword those it contains.

    At one position the regex reports the longest keyword, so a keyword found also stands
    for every shorter keyword inside it; the search restarts one character after each find,
    so keywords that overlap are all found.
    """
    keywords = sorted({k for rule in rules for m in rule.matchers for k in m.keywords})
    pattern = re.compile(_trie_pattern(keywords))
    implied = {k: frozenset(j for j in keywords if j in k) for k in keywords}
    return pattern, implied


class Scanner:
    """Feed it blocks of whole lines, then call :meth:`finish`."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = tuple(rules)
        self._keywords, self._implied = _keyword_index(self._rules)
        # every matcher in catalogue order, and for each keyword the matchers it selects
        self._matchers = tuple((rule, m) for rule in self._rules for m in rule.matchers)
        by_keyword: dict[str, list[int]] = {}
        for index, (_, matcher) in enumerate(self._matchers):
            for keyword in matcher.keywords:
                by_keyword.setdefault(keyword, []).append(index)
        self._by_keyword = {k: tuple(v) for k, v in by_keyword.items()}
        self._after = 0  # lines of the next block still inside an anchored line's context
        self._before: deque[tuple[int, bytes]] = deque(maxlen=CONTEXT_LINES)  # last lines not read
        self._hits: dict[str, _Hits] = {}
        self._lines = 0
        self._last_push = -PUSH_WINDOW - 1
        self._tail: deque[tuple[int, str]] = deque(maxlen=8)
        self._step = ""  # the last build step seen
        self._exit = ""  # the last exit status a line reported
        self._last_error: tuple[int, str] | None = None
        self._tool = ""

    @property
    def lines(self) -> int:
        return self._lines

    def feed_block(self, block: bytes, size: int | None = None, begin: int = 0) -> None:
        """Scan ``block[begin:size]``: whole lines of UTF-8, each ending with a newline (the last may not).

        Bytes outside it (the end of a line that began in the last block, a partial line the
        caller keeps for the next one) are ignored: passing the read buffer spares copying it.
        """
        end = len(block) if size is None else size
        if end <= begin:
            return
        low = block.lower()  # ASCII only: same length, same offsets
        anchored: set[int] = set()
        for anchor in _ANCHOR_BYTES:
            pos = low.find(anchor, begin, end)
            while pos >= 0:
                anchored.add(low.rfind(b"\n", begin, pos) + 1 or begin)
                line_end = low.find(b"\n", pos, end)
                if line_end < 0:
                    break
                pos = low.find(anchor, line_end, end)
        starts = self._with_context(block, begin, end, anchored)
        line_no = self._lines
        prev = begin
        for start in sorted(starts):
            line_no += block.count(b"\n", prev, start)
            prev = start
            line_end = block.find(b"\n", start, end)
            raw = block[start:end] if line_end < 0 else block[start:line_end]
            self._line(line_no + 1, raw.decode("utf-8", "replace"))
        ends_line = block[end - 1] == 0x0A
        total = block.count(b"\n", begin, end) + (0 if ends_line else 1)
        self._remember_tail(block, begin, end, starts, total)
        self._lines += total

    def _with_context(self, block: bytes, begin: int, end: int, anchored: set[int]) -> set[int]:
        """The anchored line starts, the lines around them, and context owed from the last block."""
        starts = set(anchored)
        pos = begin
        owed, self._after = self._after, 0
        while owed > 0:  # after-context of the last anchored lines of earlier blocks
            starts.add(pos)
            owed -= 1
            line_end = block.find(b"\n", pos, end)
            if line_end < 0 or line_end + 1 >= end:
                self._after = owed  # still owed to the next block
                break
            pos = line_end + 1
        for start in anchored:
            before = start
            for _ in range(CONTEXT_LINES):
                if before == begin:
                    break
                before = block.rfind(b"\n", begin, before - 1) + 1 or begin
                starts.add(before)
            after = start
            for step in range(CONTEXT_LINES):
                line_end = block.find(b"\n", after, end)
                if line_end < 0 or line_end + 1 >= end:
                    self._after = max(self._after, CONTEXT_LINES - step)
                    break
                after = line_end + 1
                starts.add(after)
        if anchored and self._before:
            # before-context of an anchored line among this block's first lines: the last
            # unread lines of the previous block, read now, in order, ahead of this block's
            owed = CONTEXT_LINES - block.count(b"\n", begin, min(anchored))
            for number, raw in self._before:
                if number > self._lines - owed:
                    self._line(number, raw.decode("utf-8", "replace"))
            self._before.clear()
        return starts

    def _remember_tail(self, block: bytes, begin: int, end: int, read: set[int], total: int) -> None:
        """Keep the log's last unread lines: the next block's first anchor may need them."""
        number = self._lines + total  # the number of the block's last line
        stop = end - 1 if block[end - 1] == 0x0A else end
        kept: list[tuple[int, bytes]] = []
        for _ in range(CONTEXT_LINES):
            if stop < begin:
                break
            start = block.rfind(b"\n", begin, stop) + 1 or begin
            if start not in read:
                kept.append((number, block[start:stop]))
            number -= 1
            stop = start - 1
        self._before.extend(reversed(kept))

    def _line(self, number: int, raw: str) -> None:
        text = _ANSI.sub("", raw).replace("\r", " ").strip()
        if not text or OWN_LINE.match(text):
            return
        low = text.lower()
        if _PUSH_MARKER.search(low):
            self._last_push = number
        phase = Phase.PUSH if number - self._last_push <= PUSH_WINDOW else Phase.PULL
        quoted = text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "…"
        self._context(number, text, low, quoted)
        fired: list[Rule] = []
        present: set[str] = set()
        search, pos = self._keywords.search, 0
        while (found_keyword := search(low, pos)) is not None:
            present |= self._implied[found_keyword.group()]
            pos = found_keyword.start() + 1
        candidates = sorted({i for keyword in present for i in self._by_keyword[keyword]}) if present else ()
        matched: set[str] = set()  # a rule takes the first of its matchers that matches the line
        for index in candidates:
            rule, matcher = self._matchers[index]
            if rule.id in matched or (matcher.phase is not None and matcher.phase is not phase):
                continue
            found = matcher.regex.search(text)
            if found is None:
                continue
            matched.add(rule.id)
            hits = self._hits.setdefault(rule.id, _Hits())
            for key, value in found.groupdict().items():
                if value:
                    hits.fields[key] = value.strip()
            if matcher.primary:
                if "registry" not in hits.fields:
                    host = _registry_of(text)
                    if host:
                        hits.fields["registry"] = host
                fired.append(rule)
            elif len(hits.support) < KEEP_EVIDENCE:
                hits.support.append((number, quoted))
        suppressed = {s for rule in fired for s in rule.suppresses}
        for rule in fired:
            if rule.id in suppressed:
                continue
            hits = self._hits[rule.id]
            hits.count += 1
            hits.first_line = hits.first_line or number
            hits.last_line = number
            if len(hits.first) < KEEP_EVIDENCE:
                hits.first.append((number, quoted))
            else:
                hits.last.append((number, quoted))
        self._tail.append((number, quoted))

    def _context(self, number: int, text: str, low: str, quoted: str) -> None:
        """What the unrecognised answer needs: the step, the exit status, the error, the tool."""
        step = _STEP.match(text)
        if step is not None:
            where = step.group("bk") or step.group("classic") or step.group("buildah")
            command = (step.group("bk_cmd") or step.group("classic_cmd") or step.group("buildah_cmd")
                       or step.group("anybuild_cmd") or "")
            self._step = f"{command} (step {where})" if where else command
        found = _EXIT.search(text)
        if found is not None:
            self._exit = found.group("code")
        if _ERRORISH.search(text):
            self._last_error = (number, quoted)
        if not self._tool and any(hint in low for hint in _TOOL_HINTS):
            self._tool = next((name for pattern, name in _TOOLS if pattern.search(text)), "")

    def _unrecognised(self, exit_code: int | None) -> Diagnosis:
        """The answer when no rule matched: the failing step, exit status, last error line, tool."""
        code = str(exit_code) if exit_code is not None else self._exit
        step = f" in `{self._step}`" if self._step else ""
        status = f" with exit status {code}" if code else ""
        tool = self._tool or "the build tool"
        evidence = [Evidence(line=self._last_error[0], text=self._last_error[1])] if self._last_error else []
        if not evidence and self._tail:
            evidence = [Evidence(line=self._tail[-1][0], text=self._tail[-1][1])]
        if exit_code is not None:
            evidence.append(Evidence(line=None, text=f"the build exited with status {exit_code}"))
        last = ": the last error line is quoted below" if evidence else ""
        return Diagnosis(
            rule_id="unrecognised",
            title="Cause not recognised",
            role=Role.ROOT_CAUSE,
            category=Category.UNKNOWN,
            cause=f"Cause not recognised: {tool} failed{step}{status}{last}.",
            remedy="Run `anybuild doctor` to check this environment (daemon, storage, user namespaces, "
            "registries), and read the log just above the quoted line for the failing command's own "
            "message.",
            docs=f"{DOCS_DIR}/unrecognised.md",
            other_backend_helps=None,
            retryable=False,
            score=0,
            evidence=tuple(evidence),
            matches=0,
        )

    def finish(
        self, facts: Mapping[str, object] | None = None, exit_code: int | None = None
    ) -> Report:
        """Rank what fired: the root cause first, symptoms and red herrings after."""
        facts = facts or {}
        fired_rules = [r for r in self._rules if self._fired(r, exit_code)]
        fired_ids = frozenset(r.id for r in fired_rules)
        latest = max((self._hits[r.id].last_line for r in fired_rules if r.id in self._hits), default=0)
        drafts = [self._draft(r, facts, fired_ids, exit_code, latest) for r in fired_rules]
        ranked: list[Diagnosis] = []
        herrings: list[Diagnosis] = []
        for diag, rule in drafts:
            last = self._hits[rule.id].last_line if rule.id in self._hits else 0
            final_line = max(
                (
                    d.evidence[-1].line or 0
                    for d, other in drafts
                    if not other.transient and other.id not in rule.explains
                ),
                default=0,
            )
            if rule.transient and 0 < last < final_line:
                reason = (
                    f"line {last} was retried or passed, and the build went on to fail later, "
                    f"at line {final_line}"
                )
                herrings.append(_with(diag, role=Role.RED_HERRING, reason=reason))
            else:
                ranked.append(diag)
        ranked.sort(key=lambda d: (-d.score, d.first_line or 0))
        result: list[Diagnosis] = []
        if ranked:
            root_rule = next(r for r in self._rules if r.id == ranked[0].rule_id)
            result.append(_with(ranked[0], role=Role.ROOT_CAUSE, reason=""))
            for diag in ranked[1:]:
                if diag.rule_id in root_rule.explains:
                    reason = f"a consequence of the root cause: {ranked[0].title.lower()}"
                    result.append(_with(diag, role=Role.SYMPTOM, reason=reason))
                else:
                    result.append(_with(diag, role=Role.ALSO_SEEN, reason=""))
        result.extend(herrings)
        if not result:
            result.append(self._unrecognised(exit_code))
        tail = tuple(Evidence(line=n, text=t) for n, t in self._tail)
        return Report(diagnoses=tuple(result), tail=tail, lines=self._lines)

    def _fired(self, rule: Rule, exit_code: int | None) -> bool:
        hits = self._hits.get(rule.id)
        return (hits is not None and hits.count > 0) or (
            exit_code is not None and exit_code in rule.exit_codes
        )

    def _draft(
        self,
        rule: Rule,
        facts: Mapping[str, object],
        fired: frozenset[str],
        exit_code: int | None,
        latest: int,
    ) -> tuple[Diagnosis, Rule]:
        hits = self._hits.get(rule.id) or _Hits()
        fields = {**rule.defaults, **hits.fields}
        ctx = RuleContext(facts=facts, fields=fields, fired=fired)
        if rule.enrich is not None:
            fields.update(rule.enrich(ctx))
            ctx = RuleContext(facts=facts, fields=fields, fired=fired)
        variant: Variant | None = next((v for v in rule.variants if v.when(ctx)), None)
        cause = variant.cause if variant else rule.cause
        remedy = variant.remedy if variant else rule.remedy
        helps = rule.other_backend_helps
        if variant is not None and variant.other_backend_helps is not None:
            helps = variant.other_backend_helps
        facts_used = variant.facts_used if variant else ()
        quoted = sorted({*hits.first, *hits.last, *hits.support})
        evidence = [Evidence(line=n, text=t) for n, t in quoted]
        if exit_code is not None and exit_code in rule.exit_codes:
            evidence.append(Evidence(line=None, text=f"the build exited with status {exit_code}"))
        score = rule.rank + (10 if facts_used else 0) + (3 if hits.last_line == latest else 0)
        diag = Diagnosis(
            rule_id=rule.id,
            title=(variant.title if variant and variant.title else rule.title),
            role=Role.ALSO_SEEN,
            category=rule.category,
            cause=_render(cause, fields),
            remedy=_render(remedy, fields),
            docs=rule.docs,
            other_backend_helps=helps,
            retryable=rule.retryable,
            score=score,
            evidence=tuple(evidence),
            matches=hits.count,
            variant=variant.name if variant else "",
            facts_used=facts_used,
        )
        return diag, rule


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def _render(template: str, fields: Mapping[str, str]) -> str:
    return template.format_map(_Fields(fields))


def _with(diag: Diagnosis, *, role: Role, reason: str) -> Diagnosis:
    from dataclasses import replace

    return replace(diag, role=role, reason=reason)


_URL_HOST = re.compile(r"https?://([\w.-]+(?::\d+)?)/")
_REF_HOST = re.compile(
    r"(?<![\w/.:-])((?:[a-z0-9-]+\.)+[a-z]{2,}(?::\d+)?|\d+\.\d+\.\d+\.\d+:\d+|localhost:\d+)/[a-z0-9]"
)
_AUTH_HOSTS = {"auth.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}


_NAMED_HOST = re.compile(
    r"(?:from host|container registry|registry) (\d+\.\d+\.\d+\.\d+:\d+|(?:[\w-]+\.)+[a-z]{2,}(?::\d+)?)\b"
)


def _registry_of(text: str) -> str:
    """The registry host a line talks about: from a URL, else from an image reference."""
    found = _URL_HOST.search(text) or _NAMED_HOST.search(text) or _REF_HOST.search(text)
    if found is None:
        return ""
    host = found.group(1).lower()
    return _AUTH_HOSTS.get(host, host)




def analyze_lines(
    lines: Iterable[str],
    rules: Sequence[Rule],
    facts: Mapping[str, object] | None = None,
    exit_code: int | None = None,
    block_lines: int = BLOCK_LINES,
) -> Report:
    """Diagnose an iterable of lines (with or without their newlines), streaming."""
    scanner = Scanner(rules)
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= block_lines:
            scanner.feed_block(_join(batch).encode("utf-8", "surrogateescape"))
            batch.clear()
    if batch:
        scanner.feed_block(_join(batch).encode("utf-8", "surrogateescape"))
    return scanner.finish(facts, exit_code)


def analyze_stream(
    stream: BinaryIO,
    rules: Sequence[Rule],
    facts: Mapping[str, object] | None = None,
    exit_code: int | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> Report:
    """Diagnose a binary stream (a file, stdin) block by block, decoding leniently."""
    scanner = Scanner(rules)
    carry = b""
    while chunk := stream.read(block_bytes):
        cut = chunk.rfind(b"\n")
        if cut < 0:  # no line ends in this chunk
            carry += chunk
            if len(carry) >= MAX_LINE_BYTES:  # a pathological endless line: scan it in pieces
                scanner.feed_block(carry)
                carry = b""
            continue
        if carry:  # the line begun in the last chunk, completed by this one's first line
            first = chunk.find(b"\n")
            scanner.feed_block(carry + chunk[: first + 1])
            scanner.feed_block(chunk, cut + 1, begin=first + 1)
        else:
            scanner.feed_block(chunk, cut + 1)  # no copy: the partial last line is ignored
        carry = chunk[cut + 1 :]
    if carry:
        scanner.feed_block(carry)
    return scanner.finish(facts, exit_code)


def _join(batch: list[str]) -> str:
    text = "".join(batch)
    if text.count("\n") == len(batch) and text.endswith("\n"):
        return text
    return "".join(s.rstrip("\r\n") + "\n" for s in batch)
