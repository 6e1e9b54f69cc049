"""The values of diagnosis: rules (data), the evidence they find, and diagnoses.

A :class:`Rule` is data: an id (also its docs page), line matchers, a cause and
a remedy written as templates over what the matchers captured, optional
fact-dependent :class:`Variant` s, and the two answers a build needs:
``other_backend_helps`` (would building elsewhere avoid it?) and ``retryable``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Category",
    "Diagnosis",
    "Evidence",
    "Matcher",
    "Phase",
    "Role",
    "Rule",
    "RuleContext",
    "Variant",
]

DOCS_DIR = "docs/troubleshooting"


class Category(StrEnum):
    """What kind of thing went wrong; decides who has to act."""

    ENVIRONMENT = "environment"  # the machine or the daemon: another backend may help
    RESOURCE = "resource"  # memory, disk
    REGISTRY = "registry"  # credentials, limits, certificates
    NETWORK = "network"
    DOCKERFILE = "dockerfile"  # the user's Dockerfile or context: fix the source
    TOOL = "tool"  # the build tool itself failed (a bug, or a CI wrapper's service)
    UNKNOWN = "unknown"  # no rule recognised the cause


class Role(StrEnum):
    """The place of a diagnosis in the ranked answer."""

    ROOT_CAUSE = "root-cause"
    SYMPTOM = "symptom"  # a consequence of the root cause
    ALSO_SEEN = "also-seen"  # an independent problem found too
    RED_HERRING = "red-herring"  # looked like a cause, was not; ``reason`` says why


class Phase(StrEnum):
    """Which registry conversation a line belongs to."""

    PULL = "pull"
    PUSH = "push"


@dataclass(frozen=True, slots=True, kw_only=True)
class Matcher:
    """One regular expression over one log line, with the lines it is known to match.

    ``keywords`` are lower-case substrings; the regex runs only on lines holding one.
    ``primary=False`` marks supporting evidence that cannot fire the rule alone.
    ``phase`` restricts the matcher to lines of a pull or a push.
    """

    pattern: str
    keywords: tuple[str, ...]
    examples: tuple[str, ...]
    primary: bool = True
    phase: Phase | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern, re.IGNORECASE))


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleContext:
    """What a variant's condition and a rule's enricher may look at."""

    facts: Mapping[str, object]
    fields: Mapping[str, str]
    fired: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """A more precise cause and remedy, chosen when ``when`` holds (first wins)."""

    name: str
    when: Callable[[RuleContext], bool]
    cause: str
    remedy: str
    other_backend_helps: bool | None = None
    facts_used: tuple[str, ...] = ()
    title: str = ""  # a more precise title than the rule's, when set


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A known failure: how to spot it in a log and what to tell the user."""

    id: str
    title: str
    category: Category
    rank: int  # 0..100: how specific, hence how likely the root cause when several fire
    matchers: tuple[Matcher, ...]
    cause: str  # one sentence; ``{field}`` placeholders from named groups or ``enrich``
    remedy: str
    other_backend_helps: bool
    retryable: bool = False
    transient: bool = False  # a red herring when the build went on past it
    explains: tuple[str, ...] = ()  # rule ids that are symptoms of this one
    suppresses: tuple[str, ...] = ()  # rule ids not to fire on a line this one matched
    exit_codes: tuple[int, ...] = ()  # a build exit status that is evidence on its own
    variants: tuple[Variant, ...] = ()
    defaults: Mapping[str, str] = field(default_factory=dict)
    enrich: Callable[[RuleContext], Mapping[str, str]] | None = None

    @property
    def docs(self) -> str:
        return f"{DOCS_DIR}/{self.id}.md"


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """A quoted log line; ``line`` is 1-based (None for evidence outside the log)."""

    line: int | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "text": self.text}


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    """One finding, ranked: the root cause first, red herrings last."""

    rule_id: str
    title: str
    role: Role
    category: Category
    cause: str
    remedy: str
    docs: str
    other_backend_helps: bool | None  # None: not known (the cause was not recognised)
    retryable: bool
    score: int
    evidence: tuple[Evidence, ...]
    matches: int  # how many lines matched in all (evidence quotes a few)
    reason: str = ""  # why a symptom / red herring is not the root cause
    variant: str = ""
    facts_used: tuple[str, ...] = ()

    @property
    def first_line(self) -> int | None:
        return self.evidence[0].line if self.evidence else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "title": self.title,
            "role": str(self.role),
            "category": str(self.category),
            "cause": self.cause,
            "remedy": self.remedy,
            "docs": self.docs,
            "other_backend_helps": self.other_backend_helps,
            "retryable": self.retryable,
            "score": self.score,
            "evidence": [e.to_dict() for e in self.evidence],
            "matches": self.matches,
            "reason": self.reason or None,
            "variant": self.variant or None,
            "facts_used": list(self.facts_used),
        }
