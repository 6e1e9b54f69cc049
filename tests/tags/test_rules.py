"""Parsing rules and the flavor: defaults per type, ordering, and errors that name the fix."""

from __future__ import annotations

import pytest

from anybuild.errors import ConfigError
from anybuild.tags.rules import (
    DEFAULT_RULES,
    LatestMode,
    RefEvent,
    RuleType,
    ShaFormat,
    parse_flavor,
    parse_rule,
    parse_rules,
)


@pytest.mark.parametrize(
    ("text", "kind", "priority", "prefix"),
    [
        ("type=schedule", RuleType.SCHEDULE, 1000, None),
        ("type=semver,pattern={{version}}", RuleType.SEMVER, 900, None),
        ("type=pep440,pattern={{version}}", RuleType.PEP440, 900, None),
        ("type=match,pattern=v(.*)", RuleType.MATCH, 800, None),
        ("type=edge", RuleType.EDGE, 700, None),
        ("type=ref,event=branch", RuleType.REF, 600, None),
        ("type=ref,event=pr", RuleType.REF, 600, "pr-"),
        ("type=raw,value=foo", RuleType.RAW, 200, None),
        ("type=sha", RuleType.SHA, 100, "sha-"),
        ("foo", RuleType.RAW, 200, None),
    ],
    ids=["schedule", "semver", "pep440", "match", "edge", "ref", "pr", "raw", "sha", "bare"],
)
def test_parse_rule_defaults_match_metadata_action(
    text: str, kind: RuleType, priority: int, prefix: str | None
) -> None:
    rule = parse_rule(text)
    assert rule.type is kind
    assert rule.priority == priority
    assert rule.prefix == prefix
    assert rule.enable == "true"


def test_parse_rule_schedule_default_pattern_is_nightly() -> None:
    assert parse_rule("type=schedule").pattern == "nightly"


def test_parse_rule_sha_defaults_short_format() -> None:
    assert parse_rule("type=sha").format is ShaFormat.SHORT
    assert parse_rule("type=sha,format=long").format is ShaFormat.LONG


def test_parse_rule_quoted_field_keeps_commas() -> None:
    rule = parse_rule('type=match,"pattern=v(\\d{1,2}),group=1"')
    assert rule.pattern == "v(\\d{1,2}),group=1"
    assert rule.group == 0


def test_parse_rule_spaces_and_case_are_trimmed() -> None:
    rule = parse_rule(" Type=ref , EVENT=branch , prefix = x- ")
    assert rule.type is RuleType.REF
    assert rule.event is RefEvent.BRANCH
    assert rule.prefix == "x-"


def test_parse_rule_explicit_empty_prefix_is_kept() -> None:
    assert parse_rule("type=ref,event=pr,prefix=").prefix == ""


def test_parse_rule_unknown_attribute_is_kept_as_extra() -> None:
    assert parse_rule("type=raw,value=x,colour=blue").extra == {"colour": "blue"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("type=nope", "unknown type"),
        ("type=semver", "missing pattern"),
        ("type=pep440,value=1.0", "missing pattern"),
        ("type=match", "missing pattern"),
        ("type=match,pattern=x,group=one", "invalid match group"),
        ("type=ref", "missing event"),
        ("type=ref,event=push", "invalid event"),
        ("type=raw", "missing value"),
        ("type=sha,format=medium", "invalid format"),
        ("type=raw,value=x,priority=high", "not a whole number"),
    ],
    ids=["type", "semver-pattern", "pep440-pattern", "match-pattern", "group", "event-missing",
         "event-bad", "raw-value", "sha-format", "priority"],
)
def test_parse_rule_mistake_is_config_error_with_hint(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rule(text)
    assert fragment in info.value.message
    assert text in info.value.message
    assert info.value.hint


def test_parse_rules_sorts_by_priority_keeping_written_order_on_ties() -> None:
    rules = parse_rules(["type=sha", "type=raw,b", "type=raw,a", "type=semver,pattern={{major}}",
                         "type=raw,c,priority=5000"])
    assert [r.text for r in rules] == ["type=raw,c,priority=5000", "type=semver,pattern={{major}}",
                                       "type=raw,b", "type=raw,a", "type=sha"]


def test_parse_rules_empty_gives_metadata_action_defaults() -> None:
    assert [r.text for r in parse_rules(["", "  "])] == list(DEFAULT_RULES)


def test_parse_flavor_defaults() -> None:
    flavor = parse_flavor([])
    assert flavor.latest is LatestMode.AUTO
    assert (flavor.prefix, flavor.suffix) == ("", "")
    assert not flavor.prefix_on_latest and not flavor.suffix_on_latest


def test_parse_flavor_onlatest_applies_to_entry_on_same_line() -> None:
    flavor = parse_flavor(["latest=false", "prefix=p-,onlatest=true", "suffix=-s"])
    assert flavor.latest is LatestMode.FALSE
    assert flavor.prefix == "p-" and flavor.prefix_on_latest
    assert flavor.suffix == "-s" and not flavor.suffix_on_latest


@pytest.mark.parametrize(
    "line", ["latest=maybe", "colour=blue", "prefix", "suffix=x,onlatest=yes"],
    ids=["latest", "unknown", "no-equals", "onlatest"],
)
def test_parse_flavor_mistake_is_config_error(line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_flavor([line])
    assert info.value.key == "tags.flavor"
    assert info.value.hint
