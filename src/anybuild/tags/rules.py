"""Tag rules and the flavor, in docker/metadata-action's syntax, parsed into values.

A rule is one CSV line of ``key=value`` attributes (``type=semver,pattern={{version}}``);
a field without ``=`` is the ``value`` (``type=raw,foo`` or just ``foo``). The flavor is a
list of lines of ``latest=auto|true|false``, ``prefix=...[,onlatest=true]`` and
``suffix=...[,onlatest=true]``. Defaults follow metadata-action: priorities per type,
``prefix=pr-`` for ``event=pr``, ``prefix=sha-`` and ``format=short`` for ``type=sha``,
``pattern=nightly`` for ``type=schedule``, ``group=0`` for ``type=match``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from anybuild.errors import ConfigError

__all__ = [
    "DEFAULT_RULES",
    "Flavor",
    "LatestMode",
    "RefEvent",
    "RuleType",
    "ShaFormat",
    "TagRule",
    "parse_flavor",
    "parse_rule",
    "parse_rules",
]


class RuleType(StrEnum):
    SCHEDULE = "schedule"
    SEMVER = "semver"
    PEP440 = "pep440"
    MATCH = "match"
    EDGE = "edge"
    REF = "ref"
    RAW = "raw"
    SHA = "sha"


class RefEvent(StrEnum):
    BRANCH = "branch"
    TAG = "tag"
    PR = "pr"


class ShaFormat(StrEnum):
    SHORT = "short"
    LONG = "long"


class LatestMode(StrEnum):
    AUTO = "auto"
    TRUE = "true"
    FALSE = "false"


DEFAULT_PRIORITY: Mapping[RuleType, int] = {
    RuleType.SCHEDULE: 1000,
    RuleType.SEMVER: 900,
    RuleType.PEP440: 900,
    RuleType.MATCH: 800,
    RuleType.EDGE: 700,
    RuleType.REF: 600,
    RuleType.RAW: 200,
    RuleType.SHA: 100,
}

#: The rules metadata-action uses when none are given.
DEFAULT_RULES: tuple[str, ...] = (
    "type=schedule",
    "type=ref,event=branch",
    "type=ref,event=tag",
    "type=ref,event=pr",
)

_DOCS = "tags"


@dataclass(frozen=True, slots=True, kw_only=True)
class TagRule:
    """One parsed rule. ``prefix``/``suffix`` are None when not written (the flavor's apply)."""

    text: str
    type: RuleType
    priority: int
    enable: str = "true"
    prefix: str | None = None
    suffix: str | None = None
    value: str = ""
    pattern: str = ""
    group: int = 0
    event: RefEvent | None = None
    branch: str = ""
    format: ShaFormat = ShaFormat.SHORT
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Flavor:
    latest: LatestMode = LatestMode.AUTO
    prefix: str = ""
    prefix_on_latest: bool = False
    suffix: str = ""
    suffix_on_latest: bool = False


def _fields(line: str) -> list[str]:
    rows = [row for row in csv.reader([line], skipinitialspace=True) if row]
    return rows[0] if rows else []


def _fail(text: str, problem: str, hint: str) -> ConfigError:
    return ConfigError(f"tag rule {text!r}: {problem}", key="tags", value=text, hint=hint, docs=_DOCS)


def parse_rule(text: str) -> TagRule:
    """Parse one rule line; a mistake is a ConfigError naming the rule and the fix."""
    attrs: dict[str, str] = {}
    kind: RuleType | None = None
    for item in _fields(text):
        key, sep, value = item.partition("=")
        if not sep:
            attrs["value"] = item.strip()
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "type":
            if value not in RuleType.__members__.values():
                raise _fail(text, f"unknown type {value!r}",
                            f"use one of: {', '.join(t.value for t in RuleType)}")
            kind = RuleType(value)
        else:
            attrs[key] = value
    kind = kind or RuleType.RAW
    known = {"enable", "priority", "prefix", "suffix", "value", "pattern", "group", "event",
             "branch", "format"}
    pattern, value, branch = "", attrs.get("value", ""), ""
    group = 0
    event: RefEvent | None = None
    fmt = ShaFormat.SHORT
    match kind:
        case RuleType.SCHEDULE:
            pattern = attrs.get("pattern", "nightly")
        case RuleType.SEMVER | RuleType.PEP440 | RuleType.MATCH:
            if "pattern" not in attrs:
                example = "\\d+\\.\\d+" if kind is RuleType.MATCH else "{{version}}"
                raise _fail(text, "missing pattern attribute", f"add pattern=, e.g. {text},pattern={example}")
            pattern = attrs["pattern"]
            if kind is RuleType.MATCH:
                group_text = attrs.get("group", "0")
                if not group_text.isdigit():
                    raise _fail(text, f"invalid match group {group_text!r}", "write group=N with N a number")
                group = int(group_text)
        case RuleType.EDGE:
            branch = attrs.get("branch", "")
        case RuleType.REF:
            event_text = attrs.get("event")
            if event_text is None:
                raise _fail(text, "missing event attribute", "add event=branch, event=tag or event=pr")
            if event_text not in RefEvent.__members__.values():
                raise _fail(text, f"invalid event {event_text!r}", "use event=branch, event=tag or event=pr")
            event = RefEvent(event_text)
            if event is RefEvent.PR:
                attrs.setdefault("prefix", "pr-")
        case RuleType.RAW:
            if "value" not in attrs:
                raise _fail(text, "missing value attribute", "write type=raw,value=TAG")
        case RuleType.SHA:
            attrs.setdefault("prefix", "sha-")
            fmt_text = attrs.get("format", "short")
            if fmt_text not in ShaFormat.__members__.values():
                raise _fail(text, f"invalid format {fmt_text!r}", "use format=short or format=long")
            fmt = ShaFormat(fmt_text)
    priority_text = attrs.get("priority", str(DEFAULT_PRIORITY[kind]))
    try:
        priority = int(priority_text)
    except ValueError:
        raise _fail(text, f"priority {priority_text!r} is not a whole number",
                    "write priority=N, e.g. priority=1000") from None
    return TagRule(
        text=text,
        type=kind,
        priority=priority,
        enable=attrs.get("enable", "true"),
        prefix=attrs.get("prefix"),
        suffix=attrs.get("suffix"),
        value=value,
        pattern=pattern,
        group=group,
        event=event,
        branch=branch,
        format=fmt,
        extra={k: v for k, v in attrs.items() if k not in known},
    )


def parse_rules(lines: Iterable[str]) -> tuple[TagRule, ...]:
    """Parse every rule (blank lines skipped; metadata-action's defaults when none),
    sorted by priority, highest first; equal priorities keep their written order."""
    texts = [line for line in lines if line.strip()] or list(DEFAULT_RULES)
    rules = [parse_rule(line) for line in texts]
    return tuple(sorted(rules, key=lambda rule: -rule.priority))


def parse_flavor(lines: Iterable[str]) -> Flavor:
    """Parse flavor lines; ``onlatest=`` applies to the prefix or suffix on the same line."""
    latest = LatestMode.AUTO
    prefix, suffix = "", ""
    prefix_on_latest = suffix_on_latest = False
    for line in lines:
        target = ""
        for item in _fields(line):
            key, sep, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep:
                raise ConfigError(
                    f"flavor {line!r}: {item!r} is not key=value", key="tags.flavor", value=line,
                    hint="write latest=auto|true|false, prefix=TEXT or suffix=TEXT", docs=_DOCS,
                )
            match key:
                case "latest":
                    if value not in LatestMode.__members__.values():
                        raise ConfigError(
                            f"flavor {line!r}: latest must be auto, true or false", key="tags.flavor",
                            value=line, hint="write latest=auto (the default), latest=true or latest=false",
                            docs=_DOCS,
                        )
                    latest = LatestMode(value)
                case "prefix":
                    prefix, target = value, "prefix"
                case "suffix":
                    suffix, target = value, "suffix"
                case "onlatest":
                    if value not in ("true", "false"):
                        raise ConfigError(
                            f"flavor {line!r}: onlatest must be true or false", key="tags.flavor",
                            value=line, hint="write prefix=TEXT,onlatest=true", docs=_DOCS,
                        )
                    if target == "prefix":
                        prefix_on_latest = value == "true"
                    elif target == "suffix":
                        suffix_on_latest = value == "true"
                case _:
                    raise ConfigError(
                        f"flavor {line!r}: unknown entry {key!r}", key="tags.flavor", value=line,
                        hint="the flavor knows latest=, prefix=, suffix= and onlatest=", docs=_DOCS,
                    )
    return Flavor(latest=latest, prefix=prefix, prefix_on_latest=prefix_on_latest,
                  suffix=suffix, suffix_on_latest=suffix_on_latest)
