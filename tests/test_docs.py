"""Every docs slug the code refers to has its page under docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLUG = re.compile(r'docs(?:: str)?\s*=\s*"([a-z0-9/_-]+)"')


def _slugs() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted((ROOT / "src" / "anybuild").rglob("*.py")):
        for slug in SLUG.findall(path.read_text(encoding="utf-8")):
            found.append((slug, str(path.relative_to(ROOT))))
    return found


def test_docs_slugs_found() -> None:
    assert len(_slugs()) >= 10  # the scan itself works


@pytest.mark.parametrize(("slug", "where"), sorted(set(_slugs())))
def test_docs_slug_has_page(slug: str, where: str) -> None:
    assert (ROOT / "docs" / f"{slug}.md").is_file(), f"{where} refers to docs/{slug}.md, which does not exist"


def _troubleshooting_rules() -> list[str]:
    from anybuild.diagnose import RULES

    return sorted(rule.id for rule in RULES)


@pytest.mark.parametrize("rule_id", _troubleshooting_rules())
def test_docs_troubleshooting_page_shows_a_line_its_rule_diagnoses(rule_id: str) -> None:
    """Each rule's page exists, and the log line under "What you saw" is diagnosed as that rule."""
    from anybuild.diagnose import diagnose_log

    page = ROOT / "docs" / "troubleshooting" / f"{rule_id}.md"
    text = page.read_text(encoding="utf-8")
    seen = text.split("## What you saw", 1)[1].split("```", 2)[1].strip().splitlines()
    assert rule_id in [d.rule_id for d in diagnose_log(seen)], f"{page.name}: its example does not fire {rule_id}"


def test_docs_troubleshooting_has_the_unrecognised_page() -> None:
    assert (ROOT / "docs" / "troubleshooting" / "unrecognised.md").is_file()
