"""The rules as data: every matcher matches its own examples, through the engine's anchors."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.diagnose import ANCHORS, RULES, Category, diagnose_log, rule_by_id

REPO = Path(__file__).resolve().parents[2]
MATCHERS = [(rule, i, m) for rule in RULES for i, m in enumerate(rule.matchers)]
EXAMPLES = [(rule, m, ex) for rule, _, m in MATCHERS for ex in m.examples]


def test_catalog_ids_unique_and_lowercase_slugs() -> None:
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert all(i == i.lower() and " " not in i for i in ids)


@pytest.mark.parametrize(("rule", "matcher", "example"), EXAMPLES,
                         ids=[f"{r.id}-{n}" for n, (r, _, _) in enumerate(EXAMPLES)])
def test_catalog_example_matches_its_matcher_and_primary_holds_an_anchor(rule, matcher, example) -> None:
    """A line that fires a rule holds an anchor; supporting lines are read as an anchor's context."""
    low = example.lower()
    if matcher.primary:
        assert any(a in low for a in ANCHORS), "the engine would never look at this line"
    assert any(k in low for k in matcher.keywords), "the matcher's keywords would skip it"
    assert matcher.regex.search(example)


@pytest.mark.parametrize(("rule", "matcher", "example"),
                         [e for e in EXAMPLES if e[1].primary and e[1].phase is None],
                         ids=lambda v: getattr(v, "id", None) or "")
def test_catalog_example_alone_fires_its_rule(rule, matcher, example) -> None:
    fired = [d.rule_id for d in diagnose_log([example])]
    assert rule.id in fired


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_catalog_rule_has_docs_page(rule) -> None:
    page = REPO / rule.docs
    assert page.is_file(), f"missing {rule.docs}"
    text = page.read_text()
    for heading in ("## What you saw", "## Why it happens", "## What to do", "## How anybuild avoids it"):
        assert heading in text, f"{rule.docs} lacks {heading!r}"


@pytest.mark.parametrize("rule", [r for r in RULES if r.category is Category.DOCKERFILE], ids=lambda r: r.id)
def test_catalog_dockerfile_mistakes_never_blame_the_environment(rule) -> None:
    assert rule.other_backend_helps is False
    assert all(v.other_backend_helps in (None, False) for v in rule.variants)


def test_catalog_rule_by_id_unknown_raises() -> None:
    assert rule_by_id("nested-overlay").id == "nested-overlay"
    with pytest.raises(KeyError):
        rule_by_id("no-such-rule")
