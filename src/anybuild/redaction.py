"""Keep secrets out of anything anybuild prints, logs or writes.

Two layers: known secret *values* (tokens, passwords read from the environment
or credential stores) are replaced wherever they appear, and *patterns* catch
secrets anybuild never saw (``Authorization`` headers, ``user:pass@`` in URLs,
token-like query parameters, GitHub tokens, JWTs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["REDACTED", "Redactor", "redact", "redact_url", "secrets_from_env"]

REDACTED = "***"

# Environment variables whose values are secrets by convention.
_SECRET_ENV = re.compile(
    r"(TOKEN|PASSWORD|PASSWD|SECRET|_PAT$|^PAT$|CREDENTIAL|API_KEY|AUTH)", re.IGNORECASE
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Basic xxx / Bearer xxx (headers, curl -H, log dumps)
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*\"?(?:basic|bearer|token)\s+)[^\s\"',]+"), r"\1" + REDACTED),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    # token-like query parameters and key=value pairs
    (
        re.compile(
            r"(?i)\b((?:access_token|refresh_token|token|password|passwd|secret|client_secret|"
            r"signature|sig|x-amz-signature|x-amz-credential)=)[^&\s\"']+"
        ),
        r"\1" + REDACTED,
    ),
    # "password": "..." / "token": "..." / "auth": "..." / identitytoken in JSON
    (
        re.compile(
            r"(?i)(\"(?:password|token|access_token|refresh_token|auth|identitytoken|secret)\"\s*:\s*\")"
            r"[^\"]+\""
        ),
        r"\1" + REDACTED + '"',
    ),
    # GitHub tokens (classic, fine-grained, app, oauth)
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b"), REDACTED),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), REDACTED),
)


def _apply_patterns(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return *text* with known *secrets* and secret-looking patterns masked."""
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _apply_patterns(text)


def redact_url(url: str) -> str:
    """Mask credentials in a URL (userinfo and token-like query parameters)."""
    return _apply_patterns(url)


def secrets_from_env(env: Mapping[str, str]) -> frozenset[str]:
    """Values of environment variables that hold secrets by their name."""
    return frozenset(v for k, v in env.items() if v and len(v) >= 4 and _SECRET_ENV.search(k))


class Redactor:
    """A set of known secret values plus the patterns; grows as secrets are learned."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = {s for s in secrets if s}

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        return redact(text, self._secrets)
