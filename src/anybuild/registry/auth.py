"""Registry authentication: challenges, scopes, Basic and Bearer tokens, as an ``httpx.Auth``.

The flow is sans-IO, in httpx's style: :meth:`RegistryAuth.auth_flow` is a
generator that yields requests (the registry request, token requests) and
receives their responses, so it is tested by driving the generator by hand.

Per registry host it remembers the challenge (Basic or Bearer, realm, service),
and caches tokens with the scopes they were issued for and their expiry. Scopes
are declared up front by the client (``require``): when a push needs
``pull,push`` where the cached token only grants ``pull``, a new token is fetched
before the request is sent (the scope upgrade). A 401 on a request that carried a
token drops that token and fetches a fresh one, once.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from anybuild.errors import RegistryAuthError
from anybuild.redaction import Redactor, redact_url
from anybuild.registry.credentials import Credentials

__all__ = ["Challenge", "RegistryAuth", "Scope", "merge_scopes", "parse_challenges"]

CLIENT_ID = "anybuild"
_EXPIRY_MARGIN = 10.0
_DEFAULT_TTL = 60.0
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``Bearer realm="…",service="…",scope="…"``."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges of a ``WWW-Authenticate`` header; scheme names lower-cased."""
    challenges: list[Challenge] = []
    rest = header.strip()
    while rest:
        scheme_match = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if scheme_match is None:
            break
        scheme, rest = scheme_match.group(1).lower(), rest[scheme_match.end():]
        params: dict[str, str] = {}
        while (match := _PARAM.match(rest)) is not None and match.group(0):
            quoted, bare = match.group(2), match.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
            params[match.group(1).lower()] = value
            rest = rest[match.end():]
            if not match.group(0).rstrip().endswith(","):
                break
        challenges.append(Challenge(scheme=scheme, params=params))
        rest = rest.lstrip(", ")
    return challenges


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """``repository:NAME:ACTIONS`` (or ``registry:catalog:*``)."""

    resource_type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def repository(cls, name: str, *actions: str) -> Scope:
        return cls(resource_type="repository", name=name, actions=frozenset(actions))

    @classmethod
    def parse(cls, text: str) -> Scope:
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        return cls(resource_type=kind, name=name, actions=frozenset(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.name}:{','.join(sorted(self.actions))}"

    def covers(self, other: Scope) -> bool:
        return (self.resource_type, self.name) == (other.resource_type, other.name) and (
            "*" in self.actions or other.actions <= self.actions
        )


def merge_scopes(scopes: Iterable[Scope]) -> frozenset[Scope]:
    """One scope per resource, with the union of its actions."""
    merged: dict[tuple[str, str], set[str]] = {}
    for scope in scopes:
        merged.setdefault((scope.resource_type, scope.name), set()).update(scope.actions)
    return frozenset(Scope(resource_type=k[0], name=k[1], actions=frozenset(v)) for k, v in merged.items())


@dataclass(slots=True, kw_only=True)
class _Token:
    value: str
    scopes: frozenset[Scope]
    expires_at: float

    def covers(self, needed: Iterable[Scope]) -> bool:
        return all(any(have.covers(want) for have in self.scopes) for want in needed)


@dataclass(slots=True, kw_only=True)
class _HostState:
    challenge: Challenge | None = None
    scopes: set[Scope] = field(default_factory=set)
    tokens: list[_Token] = field(default_factory=list)
    credentials: Credentials | None = None
    credentials_loaded: bool = False


class RegistryAuth(httpx.Auth):
    """Basic and Bearer-token auth for every registry host one client talks to."""

    requires_response_body = False  # only token responses are read (in the flow), never blobs

    def __init__(
        self,
        credentials: Callable[[str], Credentials | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        redactor: Redactor | None = None,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._redactor = redactor or Redactor()
        self._lock = threading.Lock()
        self._hosts: dict[str, _HostState] = {}
        self.token_requests = 0

    def _state(self, host: str) -> _HostState:
        with self._lock:
            return self._hosts.setdefault(host, _HostState())

    def require(self, host: str, *scopes: Scope) -> None:
        """Declare scopes the next requests to *host* need (e.g. pull,push before a push)."""
        state = self._state(host)
        with self._lock:
            state.scopes = set(merge_scopes([*state.scopes, *scopes]))

    def _creds(self, host: str, state: _HostState) -> Credentials | None:
        if not state.credentials_loaded:
            found = self._credentials(host)
            with self._lock:
                state.credentials, state.credentials_loaded = found, True
            if found is not None:
                self._redactor.learn_credentials(found.username, *found.secrets)
        return state.credentials

    def _cached(self, state: _HostState, needed: frozenset[Scope]) -> _Token | None:
        now = self._clock()
        with self._lock:
            state.tokens = [t for t in state.tokens if t.expires_at - _EXPIRY_MARGIN > now]
            return next((t for t in reversed(state.tokens) if t.covers(needed)), None)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        host = request.url.netloc.decode()
        state = self._state(host)
        with self._lock:
            needed = frozenset(state.scopes)
        token: _Token | None = None
        challenge = state.challenge
        if challenge is not None and challenge.scheme == "basic":
            self._set_basic(request, host, state)
        elif challenge is not None and challenge.scheme == "bearer":
            token = self._cached(state, needed)
            if token is None:
                token = yield from self._fetch_token(host, state, challenge, needed)
            request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
        usable = [c for c in challenges if c.scheme in ("basic", "bearer")]
        if not usable:
            return
        fresh = usable[0]
        with self._lock:
            state.challenge = fresh
            if token is not None and token in state.tokens:
                state.tokens.remove(token)
        if "scope" in fresh.params:
            extra = [Scope.parse(s) for s in fresh.params["scope"].split()]
            needed = merge_scopes([*needed, *extra])
            self.require(host, *extra)
        if not _replayable(request):
            return  # the caller retries the whole request, and the challenge is now known
        if fresh.scheme == "basic":
            if challenge is not None and challenge.scheme == "basic":
                return  # the credentials we sent were refused; the client reports it
            if not self._set_basic(request, host, state):
                return
        else:
            token = yield from self._fetch_token(host, state, fresh, needed)
            request.headers["Authorization"] = f"Bearer {token.value}"
        yield request

    def _set_basic(self, request: httpx.Request, host: str, state: _HostState) -> bool:
        creds = self._creds(host, state)
        if creds is None or not creds.password:
            return False
        raw = f"{creds.username}:{creds.password}".encode()
        encoded = base64.b64encode(raw).decode()
        self._redactor.add(encoded)
        request.headers["Authorization"] = f"Basic {encoded}"
        return True

    def _fetch_token(
        self, host: str, state: _HostState, challenge: Challenge, needed: frozenset[Scope]
    ) -> Generator[httpx.Request, httpx.Response, _Token]:
        realm = challenge.realm
        if not realm.startswith(("https://", "http://")):
            raise RegistryAuthError(f"registry {host} sent a Bearer challenge without a usable realm",
                                    hint="the registry is misconfigured; report it to its operator")
        creds = self._creds(host, state)
        service = challenge.params.get("service", "")
        scope_texts = sorted(str(s) for s in needed)
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": CLIENT_ID, "service": service, "scope": " ".join(scope_texts)}
            token_request = httpx.Request("POST", realm, data=form)
        else:
            query: list[tuple[str, str]] = [("service", service)] if service else []
            query += [("scope", s) for s in scope_texts]
            query += [("client_id", CLIENT_ID)]
            if creds is not None:
                query.append(("account", creds.username))
            url = realm + ("&" if "?" in realm else "?") + urlencode(query)
            token_request = httpx.Request("GET", url)
            if creds is not None and creds.password:
                raw = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
                self._redactor.add(raw)
                token_request.headers["Authorization"] = f"Basic {raw}"
        self.token_requests += 1
        response = yield token_request
        response.read()
        token = self._token_from(response, host, needed, realm)
        with self._lock:
            state.tokens.append(token)
        return token

    def _token_from(self, response: httpx.Response, host: str, needed: frozenset[Scope], realm: str) -> _Token:
        where = redact_url(realm)
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"the token service of {host} refused the credentials ({response.status_code}) at {where}",
                status=response.status_code, url=where,
                hint=f"check the credentials for {host} (`docker login {host}`, or the environment "
                "variables in `anybuild --help`); for a push, check that they may write the repository",
                docs="registry-auth",
            )
        try:
            body: Any = response.json()
            value = str(body.get("token") or body.get("access_token") or "")
            ttl = float(body.get("expires_in") or _DEFAULT_TTL)
        except (ValueError, AttributeError, TypeError):
            body, value, ttl = None, "", 0.0
        if response.status_code != 200 or not value:
            raise RegistryAuthError(
                f"the token service of {host} answered {response.status_code} without a token at {where}",
                status=response.status_code, url=where, retryable=response.status_code >= 500,
                hint="retry later; if it persists the registry's token service is broken",
            )
        self._redactor.add(value)
        if isinstance(body, dict) and body.get("refresh_token"):
            self._redactor.add(str(body["refresh_token"]))
        return _Token(value=value, scopes=needed, expires_at=self._clock() + max(ttl, _DEFAULT_TTL))


def _replayable(request: httpx.Request) -> bool:
    """A request can be sent again unless its body was a one-shot stream."""
    return isinstance(request.stream, httpx.ByteStream)
