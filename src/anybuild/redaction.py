"""Keep secrets out of anything anybuild prints, logs or writes.

Two layers: known secret *values* (tokens, passwords read from the environment
or credential stores) are replaced wherever they appear, and *patterns* catch
secrets anybuild never saw (``Authorization`` headers, ``user:pass@`` in URLs,
token-like query parameters, GitHub tokens, JWTs).
"""

from __future__ import annotations

import base64
import codecs
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "Redactor", "credential_forms", "printed_forms", "redact", "redact_url", "secrets_from_env"]

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


_SHORTEST = 4  # shorter values would mask ordinary words
_SHORTEST_LINE = 6  # a line of a multi-line secret is masked on its own from this length


def printed_forms(value: str | bytes) -> frozenset[str]:
    """The forms a secret value (a ``--secret`` file's bytes, a variable) takes in a printed line.

    A RUN prints the bytes; a log line is those bytes decoded as UTF-8 (invalid bytes replaced) and
    cut at each newline. So the value is learned decoded the same way, without a byte-order mark,
    without its trailing (and leading) white space and line ends (a file nearly always ends with a
    newline, CRLF on Windows), and, for a multi-line value, line by line. A file in UTF-16 (it has
    the byte-order mark) is also learned as its text, which is what a program that reads it prints.
    """
    texts = [value.decode("utf-8", "replace") if isinstance(value, bytes) else value]
    if isinstance(value, bytes) and value[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        texts.append(value.decode("utf-16", "replace"))
    forms: set[str] = set()
    for text in texts:
        text = text.removeprefix("\ufeff")
        forms.update((text, text.strip()))
        lines = [line.strip() for line in text.splitlines()]
        if sum(1 for line in lines if line) > 1:
            forms.update(line for line in lines if len(line) >= _SHORTEST_LINE)
    return frozenset(form for form in forms if len(form.strip()) >= _SHORTEST)


def credential_forms(username: str, *secrets: str) -> frozenset[str]:
    """A registry password or token as it may travel: itself, URL-encoded (in a query or a form),
    and base64 of ``user:secret`` (Basic auth, config.json's ``auth``), padded or not, standard or
    URL-safe."""
    forms: set[str] = set()
    for secret in (s for s in secrets if s):
        forms.update((secret, quote(secret, safe=""), quote_plus(secret)))
        for raw in (f"{username}:{secret}".encode(), secret.encode()):
            for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
                forms.update((encoded, encoded.rstrip("=")))
    return frozenset(form for form in forms if len(form) >= _SHORTEST)


def secrets_from_env(env: Mapping[str, str]) -> frozenset[str]:
    """Values of environment variables that hold secrets by their name."""
    return frozenset(v for k, v in env.items() if v and len(v) >= 4 and _SECRET_ENV.search(k))


class Redactor:
    """A set of known secret values plus the patterns; grows as secrets are learned."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = {s for s in secrets if s}

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if s)

    def learn(self, value: str | bytes) -> None:
        """A secret value in every form a printed line may hold it (see :func:`printed_forms`)."""
        self._secrets.update(printed_forms(value))

    def learn_credentials(self, username: str, *secrets: str) -> None:
        """A registry credential and its encoded forms (see :func:`credential_forms`)."""
        self._secrets.update(credential_forms(username, *secrets))

    def __call__(self, text: str) -> str:
        return redact(text, self._secrets)
