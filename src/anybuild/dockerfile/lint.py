"""Lint a Dockerfile for what breaks our users' builds, and say which backends can build it.

Pure: the caller gathers :class:`ContextFacts` (which names exist at the
context root, the .dockerignore) and passes them in. Rules are data in
:mod:`.lint_rules`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anybuild.config import DEFAULT_BACKENDS, BackendName
from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.dockerignore import DockerIgnore, go_clean
from anybuild.dockerfile.instructions import (
    Add,
    Arg,
    Copy,
    Env,
    Healthcheck,
    Instruction,
    Maintainer,
    MountType,
    Onbuild,
    Run,
)
from anybuild.dockerfile.lint_rules import BACKEND_LIMITS, RULES, Feature, RuleId, Severity
from anybuild.dockerfile.parser import Dockerfile
from anybuild.dockerfile.stages import build_stage_graph

__all__ = ["BackendSupport", "ContextFacts", "Finding", "LintReport", "lint_dockerfile", "used_features"]

_SECRET_WORDS = frozenset({
    "apikey", "auth", "credential", "credentials", "key", "password", "passwd", "pword", "secret", "token",
    "pat", "privatekey",
})
_NOT_SECRET = frozenset({"public", "file", "path", "id", "name", "url", "user", "username", "type"})
_SPLIT_COMMANDS = re.compile(r"&&|\|\||[;|\n]")
_NPM_FALLBACK = re.compile(r"npm\s+ci\b[^\n]*?\|\|[^\n]*?npm\s+(?:install|i)\b")
_URL = re.compile(r"^https?://", re.IGNORECASE)
_GIT = re.compile(r"^(?:git@|[a-z]+://[^#]*\.git(?:#|$)|https?://github\.com/[^/]+/[^/#]+(?:#|$))")
_NODE_TOOLS = re.compile(r"\b(?:npm|yarn|pnpm|npx)\s")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextFacts:
    """What lint needs to know about the build context (gathered by the caller)."""

    top_level: frozenset[str] = frozenset()  # names at the context root
    ignore: DockerIgnore = field(default_factory=lambda: DockerIgnore([]))
    ignore_file: str | None = None  # the .dockerignore in use, None if there is none


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    rule: RuleId
    severity: Severity
    message: str
    hint: str
    docs: str
    line: int
    column: int
    text: str

    def to_dict(self, file: str | None) -> dict[str, Any]:
        return {
            "rule": self.rule.value, "severity": self.severity.value, "message": self.message,
            "hint": self.hint, "docs": self.docs, "file": file, "line": self.line, "column": self.column,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSupport:
    backend: BackendName
    supported: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LintReport:
    file: str | None
    findings: tuple[Finding, ...]
    features: tuple[Feature, ...]
    backends: tuple[BackendSupport, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    def to_dict(self) -> dict[str, Any]:
        counts = {s.value: sum(f.severity is s for f in self.findings) for s in Severity}
        return {
            "file": self.file,
            "findings": [f.to_dict(self.file) for f in self.findings],
            "features": [f.value for f in self.features],
            "backends": [
                {"backend": b.backend.value, "supported": b.supported, "reasons": list(b.reasons)}
                for b in self.backends
            ],
            "summary": counts,
        }


class _Collector:
    def __init__(self, df: Dockerfile) -> None:
        self.df = df
        self.findings: list[Finding] = []

    def add(self, rule_id: RuleId, instr: Instruction, needle: str = "", **values: str) -> None:
        rule = RULES[rule_id]
        line, column = self._locate(instr, needle)
        self.findings.append(Finding(
            rule=rule.id, severity=rule.severity, message=rule.message.format(**values),
            hint=rule.hint.format(**values), docs=rule.docs, line=line, column=column,
            text=self.df.line_text(line),
        ))

    def _locate(self, instr: Instruction, needle: str) -> tuple[int, int]:
        if needle:
            for line in range(instr.start_line, instr.end_line + 1):
                found = self.df.line_text(line).find(needle)
                if found >= 0:
                    return line, found + 1
        return instr.start_line, 1


def _commands(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for part in _SPLIT_COMMANDS.split(text):
        part = part.strip(" \t()")
        if not part:
            continue
        try:
            words = shlex.split(part, comments=False, posix=True)
        except ValueError:
            words = part.split()
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value prefixes
        if words and words[0] in ("sudo", "exec"):
            words = words[1:]
        if words:
            out.append(words)
    return out


def _run_text(instr: Run) -> str:
    parts = [" ".join(instr.command.args)]
    parts += [doc.content for doc in instr.heredocs]
    return "\n".join(parts)


def _says_yes(words: list[str]) -> bool:
    for word in words:
        if word in ("--yes", "--assume-yes", "--force-yes") or "Assume-Yes" in word:
            return True
        if word.startswith("-") and not word.startswith("--") and "y" in word[1:]:
            return True
    return False


def _check_run(c: _Collector, instr: Run) -> None:
    text = _run_text(instr)
    if _NPM_FALLBACK.search(text):
        c.add(RuleId.NPM_INSTALL_FALLBACK, instr, "npm ci")
    for words in _commands(text):
        tool = words[0].rsplit("/", 1)[-1]
        if tool in ("apt-get", "apt", "aptitude"):
            sub = next((w for w in words[1:] if not w.startswith("-")), "")
            command = f"{tool} {sub}".strip()
            if sub == "install" and not _says_yes(words):
                c.add(RuleId.APT_INSTALL_NO_YES, instr, command, command=command)
            elif sub in ("upgrade", "dist-upgrade", "full-upgrade"):
                c.add(RuleId.APT_UPGRADE, instr, command, command=command)
        elif tool == "cd" and len(words) > 1:
            c.add(RuleId.CD_IN_RUN, instr, "cd ", directory=words[1])


def _secret_like(name: str) -> bool:
    words = [w for w in re.split(r"[_\-.]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()) if w]
    if any(w in _NOT_SECRET for w in words[-1:]):
        return False
    return any(w in _SECRET_WORDS for w in words)


def _copies_whole_context(instr: Copy | Add) -> bool:
    if isinstance(instr, Copy) and instr.from_:
        return False
    return any(s.heredoc is None and go_clean("/" + s.path) == "/" for s in instr.sources)


def used_features(instructions: Iterable[Instruction]) -> tuple[Feature, ...]:
    """The features from :class:`Feature` that *instructions* use, in a stable order."""
    found: set[Feature] = set()
    for instr in instructions:
        if isinstance(instr, Onbuild):
            continue
        if isinstance(instr, Run):
            if instr.heredocs:
                found.add(Feature.HEREDOC)
            if instr.mounts:
                found.add(Feature.RUN_MOUNT)
            if any(m.type is MountType.SSH for m in instr.mounts):
                found.add(Feature.RUN_MOUNT_SSH)
            if instr.network is not None:
                found.add(Feature.RUN_NETWORK)
            if instr.security == "insecure":
                found.add(Feature.RUN_SECURITY_INSECURE)
        elif isinstance(instr, Copy | Add):
            if any(s.heredoc is not None for s in instr.sources):
                found.add(Feature.HEREDOC)
            if instr.link:
                found.add(Feature.COPY_LINK)
            if instr.excludes:
                found.add(Feature.COPY_EXCLUDE)
            if isinstance(instr, Copy) and instr.parents:
                found.add(Feature.COPY_PARENTS)
            if isinstance(instr, Add):
                if instr.checksum is not None:
                    found.add(Feature.ADD_CHECKSUM)
                if any(_GIT.match(s.path) for s in instr.sources):
                    found.add(Feature.ADD_GIT)
        elif isinstance(instr, Healthcheck) and instr.start_interval is not None:
            found.add(Feature.HEALTHCHECK_START_INTERVAL)
    return tuple(f for f in Feature if f in found)


def _backends(features: tuple[Feature, ...]) -> tuple[BackendSupport, ...]:
    out: list[BackendSupport] = []
    for backend in DEFAULT_BACKENDS:
        reasons = tuple(f"{lim.feature}: {lim.note}" for lim in BACKEND_LIMITS
                        if lim.backend is backend and lim.feature in features)
        out.append(BackendSupport(backend=backend, supported=not reasons, reasons=reasons))
    return tuple(out)


def lint_dockerfile(
    df: Dockerfile, *, context: ContextFacts | None = None, build_args: Mapping[str, str] | None = None,
) -> LintReport:
    """Run every rule over *df*; raises DockerfileError only if it does not parse."""
    facts = context or ContextFacts()
    instructions = parse_instructions(df)
    graph = build_stage_graph(instructions, build_args=build_args or {}, escape=df.escape, file=df.file)
    c = _Collector(df)
    node_context = "package.json" in facts.top_level
    whole_copy: Copy | Add | None = None
    for instr in instructions:
        match instr:
            case Run():
                _check_run(c, instr)
                node_context = node_context or bool(_NODE_TOOLS.search(_run_text(instr)))
            case Copy() | Add():
                if whole_copy is None and _copies_whole_context(instr):
                    whole_copy = instr
                if isinstance(instr, Add):
                    for src in instr.sources:
                        if _URL.match(src.path) and not _GIT.match(src.path) and instr.checksum is None:
                            c.add(RuleId.ADD_URL_NO_CHECKSUM, instr, src.path, url=src.path)
            case Arg():
                for d in instr.args:
                    if _secret_like(d.name):
                        c.add(RuleId.SECRET_IN_ARG_ENV, instr, d.name, keyword="ARG", name=d.name,
                              id=d.name.lower())
            case Env():
                for pair in instr.pairs:
                    if _secret_like(pair.key):
                        c.add(RuleId.SECRET_IN_ARG_ENV, instr, pair.key, keyword="ENV", name=pair.key,
                              id=pair.key.lower())
            case Maintainer():
                c.add(RuleId.MAINTAINER, instr, "MAINTAINER")
    for stage in graph.stages:
        if stage.parent is not None or stage.is_scratch or not stage.image or "$" in stage.image:
            continue
        ref = stage.image
        if "@" in ref:
            continue
        last = ref.rsplit("/", 1)[-1]
        if ":" not in last:
            c.add(RuleId.BASE_UNPINNED, stage.base, stage.base.image, image=ref)
        elif last.rsplit(":", 1)[1] == "latest":
            c.add(RuleId.BASE_LATEST, stage.base, stage.base.image, image=ref)
    if whole_copy is not None and facts.ignore_file is None:
        c.add(RuleId.COPY_ALL_NO_DOCKERIGNORE, whole_copy, instruction=whole_copy.keyword.value)
    if node_context and not facts.ignore.excluded("node_modules"):
        if "node_modules" in facts.top_level and whole_copy is not None:
            c.add(RuleId.NODE_MODULES_IN_CONTEXT, whole_copy, instruction=whole_copy.keyword.value)
        else:
            c.add(RuleId.NODE_MODULES_NOT_IGNORED, instructions[0],
                  ignore_file=facts.ignore_file or ".dockerignore")
    features = used_features(instructions)
    backends = _backends(features)
    for feature in features:
        unsupported = [b.backend.value for b in backends
                       if any(r.startswith(f"{feature}:") for r in b.reasons)]
        if unsupported:
            first = next(i for i in instructions if feature in used_features([i]))
            c.add(RuleId.BACKEND_UNSUPPORTED, first, feature=feature.value, backends=", ".join(unsupported))
    findings = sorted(c.findings, key=lambda f: (f.line, f.column, f.rule.value))
    return LintReport(file=df.file, findings=tuple(findings), features=features, backends=backends)
