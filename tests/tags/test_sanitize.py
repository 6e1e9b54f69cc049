"""Tag sanitising: metadata-action's replacement, plus the leading-character and length rules."""

from __future__ import annotations

import pytest

from anybuild.tags.sanitize import MAX_TAG_LENGTH, sanitize_image_name, sanitize_tag


@pytest.mark.parametrize(
    ("text", "expected", "changed"),
    [
        ("v1.2.3", "v1.2.3", False),
        ("my/feature#1245", "my-feature-1245", True),
        ("a  b", "a-b", True),
        ("Upper_Case.ok-1", "Upper_Case.ok-1", False),
        ("-leading", "leading", True),
        (".hidden", "hidden", True),
        ("/x", "x", True),
        ("é", "", True),
        ("x" * 130, "x" * MAX_TAG_LENGTH, True),
    ],
    ids=["valid", "slash-hash", "spaces", "mixed", "dash", "dot", "slash-first", "non-ascii", "long"],
)
def test_sanitize_tag_result_and_notes(text: str, expected: str, changed: bool) -> None:
    tag, notes = sanitize_tag(text)
    assert tag == expected
    assert bool(notes) is changed


def test_sanitize_image_name_lowercases() -> None:
    assert sanitize_image_name("ghcr.io/MyUSER/MyApp") == "ghcr.io/myuser/myapp"
