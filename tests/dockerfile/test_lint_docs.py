"""The pages under docs/lint/ that lint findings point to: present, linked, and showing real before/after cases.

A finding's ``docs`` slug (``lint/node-modules``) names the page ``docs/<slug>.md``, as errors.py
describes for every docs slug.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anybuild.dockerfile.dockerignore import DockerIgnore
from anybuild.dockerfile.lint import ContextFacts, lint_dockerfile
from anybuild.dockerfile.lint_rules import RULES, Rule, RuleId
from anybuild.dockerfile.parser import parse_dockerfile

DOCS = Path(__file__).resolve().parents[2] / "docs"
LINT_DOCS = DOCS / "lint"
INDEX = LINT_DOCS / "README.md"

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_SNIPPET = re.compile(
    r"^(?P<indent> *)(?P<kind>Before|After):\n\n(?P=indent)```dockerfile\n(?P<body>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
_PLACEHOLDER_DIGEST = re.compile(r"sha256:<[^>]*>")

SLUGS = sorted({rule.docs for rule in RULES.values()})
PAGES = sorted(p for p in LINT_DOCS.glob("*.md") if p != INDEX) if LINT_DOCS.is_dir() else []

# "Before" runs in a context that has node_modules and no ignore file; "After" in one whose .dockerignore
# excludes node_modules at every depth, as the pages recommend.
_BAD_CONTEXT = ContextFacts(top_level=frozenset({"package.json", "node_modules", "src"}))
_GOOD_CONTEXT = ContextFacts(
    top_level=frozenset({"package.json", "node_modules", "src", ".dockerignore"}),
    ignore=DockerIgnore([".git", "**/node_modules"]),
    ignore_file=".dockerignore",
)


def _page(slug: str) -> Path:
    return DOCS / f"{slug}.md"


def _links(page: Path) -> list[str]:
    """Relative link targets in *page*, without #fragments (web links are not checked)."""
    targets = (m.group(1) for m in _LINK.finditer(page.read_text(encoding="utf-8")))
    return [t.split("#", 1)[0] for t in targets if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]


def _rules_of(slug: str) -> list[Rule]:
    return [rule for rule in RULES.values() if rule.docs == slug]


def _snippets(slug: str, kind: str) -> list[str]:
    text = _page(slug).read_text(encoding="utf-8")
    return [
        "".join(line.removeprefix(m["indent"]) for line in m["body"].splitlines(keepends=True))
        for m in _SNIPPET.finditer(text)
        if m["kind"] == kind
    ]


def _found_rules(snippet: str, context: ContextFacts) -> set[RuleId]:
    text = _PLACEHOLDER_DIGEST.sub("sha256:" + "0" * 64, snippet)
    if not text.upper().startswith("FROM"):
        text = "FROM scratch\n" + text
    report = lint_dockerfile(parse_dockerfile(text, file="Dockerfile"), context=context)
    return {finding.rule for finding in report.findings}


@pytest.mark.parametrize("rule", RULES.values(), ids=lambda rule: rule.id.value)
def test_lint_docs_rule_slug_has_page(rule: Rule) -> None:
    page = _page(rule.docs)
    assert page.is_file(), f"rule {rule.id} points to {page.relative_to(DOCS.parent)}, which does not exist"


@pytest.mark.parametrize("rule", RULES.values(), ids=lambda rule: rule.id.value)
def test_lint_docs_page_names_its_rule(rule: Rule) -> None:
    assert f"`{rule.id.value}`" in _page(rule.docs).read_text(encoding="utf-8")


def test_lint_docs_index_links_every_page() -> None:
    linked = {(INDEX.parent / target).resolve() for target in _links(INDEX)}
    missing = [p.name for p in PAGES if p.resolve() not in linked]
    assert PAGES, "no pages under docs/lint"
    assert not missing, f"docs/lint/README.md does not link {missing}"


def test_lint_docs_index_lists_every_rule() -> None:
    text = INDEX.read_text(encoding="utf-8")
    assert [r.id.value for r in RULES.values() if f"`{r.id.value}`" not in text] == []


def test_lint_docs_every_page_is_a_rule_target() -> None:
    targets = {_page(slug).resolve() for slug in SLUGS}
    assert [p.name for p in PAGES if p.resolve() not in targets] == []


@pytest.mark.parametrize("page", [INDEX, *PAGES], ids=lambda p: p.name)
def test_lint_docs_relative_links_resolve(page: Path) -> None:
    broken = [t for t in _links(page) if t and not (page.parent / t).exists()]
    assert broken == []


@pytest.mark.parametrize("slug", SLUGS)
def test_lint_docs_before_snippet_triggers_the_rule(slug: str) -> None:
    befores = _snippets(slug, "Before")
    assert befores, f"docs/{slug}.md has no 'Before:' dockerfile snippet"
    own = {rule.id for rule in _rules_of(slug)}
    for snippet in befores:
        assert _found_rules(snippet, _BAD_CONTEXT) & own, snippet


@pytest.mark.parametrize("slug", SLUGS)
def test_lint_docs_after_snippet_is_clean(slug: str) -> None:
    afters = _snippets(slug, "After")
    assert afters, f"docs/{slug}.md has no 'After:' dockerfile snippet"
    own = {rule.id for rule in _rules_of(slug)}
    for snippet in afters:
        assert not _found_rules(snippet, _GOOD_CONTEXT) & own, snippet
