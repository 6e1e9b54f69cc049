"""The auth flow driven by hand, sans-IO: no network, requests in, responses out."""

import base64
import json
from collections.abc import Generator

import httpx
import pytest

from anybuild.errors import RegistryAuthError
from anybuild.redaction import Redactor
from anybuild.registry.auth import RegistryAuth, Scope, merge_scopes, parse_challenges
from anybuild.registry.credentials import Credentials

HOST = "registry.test"
REALM = "https://auth.test/token"
BEARER = f'Bearer realm="{REALM}",service="registry.test",scope="repository:acme/api:pull"'
CREDS = Credentials(username="bob", password="hunter2-secret")

Flow = Generator[httpx.Request, httpx.Response, None]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _token(value: str, expires_in: int = 300) -> httpx.Response:
    return httpx.Response(200, json={"token": value, "expires_in": expires_in})


def _unauthorized(header: str = BEARER) -> httpx.Response:
    return httpx.Response(401, headers={"WWW-Authenticate": header})


def _auth(creds: Credentials | None = CREDS, clock: Clock | None = None) -> tuple[RegistryAuth, Redactor]:
    redactor = Redactor()
    return RegistryAuth(lambda host: creds, clock=clock or Clock(), redactor=redactor), redactor


def _get(path: str = "/v2/acme/api/manifests/1") -> httpx.Request:
    return httpx.Request("GET", f"https://{HOST}{path}")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (BEARER, [("bearer", {"realm": REALM, "service": "registry.test", "scope": "repository:acme/api:pull"})]),
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        ('Basic realm="a", Bearer realm="b",service=s', [("basic", {"realm": "a"}),
                                                          ("bearer", {"realm": "b", "service": "s"})]),
        ('Bearer realm="a\\"b"', [("bearer", {"realm": 'a"b'})]),
        ("Bearer", [("bearer", {})]),
        ("", []),
    ],
    ids=["bearer", "basic", "two", "escaped", "bare", "empty"],
)
def test_parse_challenges_table(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert [(c.scheme, c.params) for c in parse_challenges(header)] == expected


def test_scope_parse_and_merge_unions_actions() -> None:
    merged = merge_scopes([Scope.parse("repository:a/b:pull"), Scope.repository("a/b", "push"),
                           Scope.parse("repository:c:pull")])
    assert sorted(str(s) for s in merged) == ["repository:a/b:pull,push", "repository:c:pull"]
    assert Scope.parse("repository:host:5000/x:pull").name == "host:5000/x"


def test_auth_bearer_flow_fetches_token_with_basic_creds_and_retries() -> None:
    auth, redactor = _auth()
    flow: Flow = auth.auth_flow(_get())
    first = next(flow)
    assert "Authorization" not in first.headers
    token_request = flow.send(_unauthorized())
    assert str(token_request.url).startswith(REALM)
    assert token_request.url.params.get_list("scope") == ["repository:acme/api:pull"]
    assert token_request.url.params["service"] == "registry.test"
    assert base64.b64decode(token_request.headers["Authorization"].split()[1]) == b"bob:hunter2-secret"
    retried = flow.send(_token("tok-1"))
    assert retried.headers["Authorization"] == "Bearer tok-1"
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))
    assert redactor("token tok-1 and hunter2-secret") == "token *** and ***"


def test_auth_cached_token_reused_without_round_trip() -> None:
    auth, _ = _auth()
    auth.require(HOST, Scope.repository("acme/api", "pull"))
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    flow.send(_unauthorized())
    flow.send(_token("tok-1"))
    second: Flow = auth.auth_flow(_get("/v2/acme/api/blobs/x"))
    assert next(second).headers["Authorization"] == "Bearer tok-1"
    assert auth.token_requests == 1


def test_auth_scope_upgrade_fetches_push_token_before_request() -> None:
    auth, _ = _auth()
    auth.require(HOST, Scope.repository("acme/api", "pull"))
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    flow.send(_unauthorized())
    flow.send(_token("pull-token"))
    auth.require(HOST, Scope.repository("acme/api", "pull", "push"), Scope.repository("acme/base", "pull"))
    push: Flow = auth.auth_flow(httpx.Request("POST", f"https://{HOST}/v2/acme/api/blobs/uploads/"))
    token_request = next(push)
    assert sorted(token_request.url.params.get_list("scope")) == ["repository:acme/api:pull,push",
                                                                  "repository:acme/base:pull"]
    assert push.send(_token("push-token")).headers["Authorization"] == "Bearer push-token"


def test_auth_expired_token_refreshed_before_request() -> None:
    clock = Clock()
    auth, _ = _auth(clock=clock)
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    flow.send(_unauthorized())
    flow.send(_token("old", expires_in=60))
    clock.now += 55
    again: Flow = auth.auth_flow(_get())
    assert next(again).url.host == "auth.test"
    assert again.send(_token("new")).headers["Authorization"] == "Bearer new"


def test_auth_401_with_token_refreshes_once() -> None:
    auth, _ = _auth()
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    flow.send(_unauthorized())
    flow.send(_token("revoked"))
    again: Flow = auth.auth_flow(_get())
    assert next(again).headers["Authorization"] == "Bearer revoked"
    assert again.send(_unauthorized()).url.host == "auth.test"
    assert again.send(_token("fresh")).headers["Authorization"] == "Bearer fresh"


def test_auth_basic_challenge_sends_credentials_then_stops_on_refusal() -> None:
    auth, _ = _auth()
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    retried = flow.send(_unauthorized('Basic realm="r"'))
    assert retried.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:hunter2-secret").decode()
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))
    second: Flow = auth.auth_flow(_get())
    assert next(second).headers["Authorization"].startswith("Basic ")
    with pytest.raises(StopIteration):
        second.send(_unauthorized('Basic realm="r"'))


def test_auth_basic_without_credentials_returns_401() -> None:
    auth, _ = _auth(creds=None)
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    with pytest.raises(StopIteration):
        flow.send(_unauthorized('Basic realm="r"'))


def test_auth_anonymous_bearer_sends_no_authorization_to_token_service() -> None:
    auth, _ = _auth(creds=None)
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    token_request = flow.send(_unauthorized())
    assert "Authorization" not in token_request.headers


def test_auth_identity_token_uses_oauth2_refresh_grant() -> None:
    auth, _ = _auth(creds=Credentials(identity_token="refresh-abc-123"))
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    token_request = flow.send(_unauthorized())
    assert token_request.method == "POST"
    form = dict(pair.split("=", 1) for pair in token_request.content.decode().split("&"))
    assert form["grant_type"] == "refresh_token"
    assert form["refresh_token"] == "refresh-abc-123"
    retried = flow.send(httpx.Response(200, json={"access_token": "acc"}))
    assert retried.headers["Authorization"] == "Bearer acc"


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (httpx.Response(401, text="nope"), "refused the credentials"),
        (httpx.Response(200, json={"nothing": 1}), "without a token"),
        (httpx.Response(502, text="bad gateway"), "without a token"),
    ],
    ids=["refused", "no-token", "5xx"],
)
def test_auth_token_service_failure_raises_auth_error(response: httpx.Response, problem: str) -> None:
    auth, _ = _auth()
    flow: Flow = auth.auth_flow(_get())
    next(flow)
    flow.send(_unauthorized())
    with pytest.raises(RegistryAuthError, match=problem) as info:
        flow.send(response)
    assert "hunter2" not in json.dumps(info.value.to_dict())


def test_auth_streaming_body_not_replayed_on_401() -> None:
    auth, _ = _auth()
    request = httpx.Request("PUT", f"https://{HOST}/v2/a/blobs/uploads/u", content=iter([b"data"]))
    flow: Flow = auth.auth_flow(request)
    next(flow)
    with pytest.raises(StopIteration):
        flow.send(_unauthorized())
    # the challenge is remembered: the next attempt gets a token first
    again: Flow = auth.auth_flow(_get())
    assert next(again).url.host == "auth.test"
