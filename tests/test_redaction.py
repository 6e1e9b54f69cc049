"""Secrets never reach output: known values and secret-looking patterns are masked."""

from __future__ import annotations

import pytest

from anybuild.redaction import REDACTED, Redactor, redact, redact_url, secrets_from_env

CASES = {
    "basic-header": ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    "bearer-header": ("authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    "url-userinfo": ("https://user:hunter22@registry.local/v2/", "hunter22"),
    "query-token": ("GET /token?service=x&access_token=s3cr3t&x=1", "s3cr3t"),
    "json-password": ('{"username": "u", "password": "p@ssw0rd!"}', "p@ssw0rd!"),
    "json-auth": ('{"auths": {"ghcr.io": {"auth": "Zm9vOmJhcg=="}}}', "Zm9vOmJhcg=="),
    "github-token": (
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ),
    "jwt": ("got eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl here", "eyJhbGciOiJSUzI1NiJ9"),
}


@pytest.mark.parametrize(("text", "secret"), CASES.values(), ids=CASES.keys())
def test_redact_pattern_masks_secret(text: str, secret: str) -> None:
    result = redact(text)
    assert secret not in result
    assert REDACTED in result


def test_redact_known_secret_masked_anywhere() -> None:
    assert redact("the value is plainword42 here", ["plainword42"]) == "the value is *** here"


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "pushed ghcr.io/acme/api:v1.2.3@sha256:" + "a" * 64
    assert redact(text) == text
    assert redact_url("https://ghcr.io/v2/acme/api/blobs/uploads/") == "https://ghcr.io/v2/acme/api/blobs/uploads/"


def test_secrets_from_env_picks_secret_names_only() -> None:
    env = {"GITHUB_TOKEN": "tok-123456", "REGISTRY_PASSWORD": "pw-123456", "HOME": "/root", "PATH": "/bin"}
    assert secrets_from_env(env) == {"tok-123456", "pw-123456"}


def test_redactor_learns_secrets() -> None:
    redactor = Redactor()
    redactor.add("learned-secret")
    assert redactor("x learned-secret y") == "x *** y"
