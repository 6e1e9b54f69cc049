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
