"""Secrets never reach output: known values and secret-looking patterns are masked."""

from __future__ import annotations

import pytest

from anybuild.redaction import REDACTED, Redactor, printed_forms, redact, redact_url, secrets_from_env

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


SECRET_FILES = {
    "no-newline": b"hunter2-secret-value",
    "newline": b"hunter2-secret-value\n",
    "crlf": b"hunter2-secret-value\r\n",
    "spaces-and-tabs": b"  hunter2-secret-value \t\n\n",
    "bom": b"\xef\xbb\xbfhunter2-secret-value\n",
    "latin1": b"hunter2-secret-v\xe4lue\n",
}


@pytest.mark.parametrize("data", SECRET_FILES.values(), ids=SECRET_FILES.keys())
def test_redactor_learned_file_masks_the_value_as_printed(data: bytes) -> None:
    redactor = Redactor()
    redactor.learn(data)
    printed = data.decode("utf-8", "replace")  # as a log line decodes what `cat` printed
    value = printed.strip().removeprefix("\ufeff")
    for line in printed.splitlines():  # `cat`: the value with whatever the file has around it
        if line.strip():
            masked = redactor(f"out: {line}")
            assert value not in masked and REDACTED in masked
    assert redactor(f"out: {value}") == "out: ***"  # `$(cat ...)`: the value alone


def test_redactor_multi_line_secret_masked_line_by_line() -> None:
    key = b"-----BEGIN KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0B\r\nAQEFAASCBKcwggSjAgEAAoIB\r\n-----END KEY-----\r\n"
    redactor = Redactor()
    redactor.learn(key)
    for line in key.decode().splitlines():
        assert line not in redactor(f"#5 0.12 {line}\r")
    assert redactor("ok") == "ok"


def test_redactor_utf16_file_masked_as_text() -> None:
    redactor = Redactor()
    redactor.learn("s3cr3t-utf16".encode("utf-16"))
    assert redactor("read x s3cr3t-utf16 y") == "read x *** y"


def test_printed_forms_short_lines_of_a_multi_line_secret_not_learned() -> None:
    forms = printed_forms(b"{\n  \"key\": \"abcdefgh\",\n  x: 1\n}\n")
    assert '"key": "abcdefgh",' in forms
    assert not {"{", "}", "x: 1"} & forms


def test_redactor_credentials_masked_base64_and_url_encoded() -> None:
    import base64
    from urllib.parse import quote, quote_plus

    redactor = Redactor()
    redactor.learn_credentials("robot", "p@ss w/rd+1")
    basic = base64.b64encode(b"robot:p@ss w/rd+1").decode()
    for text in (basic, basic.rstrip("="), base64.urlsafe_b64encode(b"robot:p@ss w/rd+1").decode(),
                 quote("p@ss w/rd+1", safe=""), quote_plus("p@ss w/rd+1"), "p@ss w/rd+1"):
        assert text not in redactor(f"seen: {text} end"), text
    assert redactor("robot pushed") == "robot pushed"
