"""Semantic versions (node-semver strict) and PEP 440 versions (normalised)."""

from __future__ import annotations

import pytest

from anybuild.tags.version import parse_pep440, parse_semver


@pytest.mark.parametrize(
    ("text", "version", "pre"),
    [
        ("v1.2.3", "1.2.3", False),
        ("1.2.3", "1.2.3", False),
        ("v2.0.8-beta.67", "2.0.8-beta.67", True),
        ("v9.5.7-alpha.2+fork.3.1.8", "9.5.7-alpha.2", True),
        ("1.0.0+build.1", "1.0.0", False),
        ("v0.0.0", "0.0.0", False),
    ],
    ids=["v", "plain", "beta", "build-pre", "build", "zero"],
)
def test_parse_semver_valid_gives_version(text: str, version: str, pre: bool) -> None:
    parsed = parse_semver(text)
    assert parsed is not None
    assert parsed.version == version
    assert parsed.is_prerelease is pre
    assert parsed.raw == text


@pytest.mark.parametrize(
    "text", ["1.2", "v01.2.3", "1.2.3-", "1.2.3-01", "=1.2.3", "release1", "p1-v1.0.0", "1.2.3.4", ""],
    ids=["two-parts", "leading-zero", "empty-pre", "pre-leading-zero", "equals", "word", "prefixed",
         "four-parts", "empty"],
)
def test_parse_semver_invalid_is_none(text: str) -> None:
    assert parse_semver(text) is None


@pytest.mark.parametrize(
    ("text", "normal", "pre", "fields"),
    [
        ("1.2.3", "1.2.3", False, ("1", "2", "3")),
        ("v1.2.3", "1.2.3", False, ("1", "2", "3")),
        ("1.2", "1.2", False, ("1", "2", "0")),
        ("1.1beta2", "1.1b2", True, ("1", "1", "0")),
        ("1.0dev4", "1.0.dev4", True, ("1", "0", "0")),
        ("1.2post1", "1.2.post1", True, ("1", "2", "0")),
        ("1.2.3rc2", "1.2.3rc2", True, ("1", "2", "3")),
        ("1.2.3-1", "1.2.3.post1", True, ("1", "2", "3")),
        ("1!2.0", "1!2.0", False, ("2", "0", "0")),
        ("1.0+Ubuntu-1", "1.0+ubuntu.1", False, ("1", "0", "0")),
        ("1.0.0-Alpha.1", "1.0.0a1", True, ("1", "0", "0")),
    ],
    ids=["plain", "v", "two", "beta", "dev", "post", "rc", "implicit-post", "epoch", "local", "alpha"],
)
def test_parse_pep440_normalises(text: str, normal: str, pre: bool, fields: tuple[str, str, str]) -> None:
    parsed = parse_pep440(text)
    assert parsed is not None
    assert parsed.version == normal
    assert parsed.is_prerelease is pre
    got = parsed.fields()
    assert (got["major"], got["minor"], got["patch"]) == fields


@pytest.mark.parametrize("text", ["sometag", "release1", "1.2.3-beta.67.x", "v", "1..2"],
                         ids=["word", "release", "semver-pre", "v", "double-dot"])
def test_parse_pep440_invalid_is_none(text: str) -> None:
    assert parse_pep440(text) is None
