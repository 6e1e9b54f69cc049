"""The GitHub client's one translation boundary, its waits and its downloads (in-process, injected transport)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from anybuild.backends.github.client import GithubClient, Retry
from anybuild.errors import GithubError
from anybuild.redaction import Redactor

TOKEN = "tok-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client(handler: Callable[[httpx.Request], httpx.Response], clock: Clock, **retry: float) -> GithubClient:
    return GithubClient(api_url="https://api.github.com", token=TOKEN, owner="acme", repo="moltbook",
                        redactor=Redactor(), transport=httpx.MockTransport(handler), sleep=clock.sleep,
                        clock=lambda: clock.now, retry=Retry(**retry))  # type: ignore[arg-type]


def test_client_waits_until_rate_limit_reset_then_succeeds() -> None:
    clock = Clock()
    answers = [httpx.Response(403, json={"message": "API rate limit exceeded"},
                              headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(clock.now) + 30)}),
               httpx.Response(200, json={"id": 1, "status": "queued"})]
    with client(lambda request: answers.pop(0), clock) as github:
        assert github.run(1)["status"] == "queued"
    assert clock.slept == [31.0]  # until the reset, and a second more


def test_client_rate_limit_longer_than_max_wait_says_until_when() -> None:
    clock = Clock()
    reset = int(clock.now) + 3600
    response = httpx.Response(429, json={"message": "API rate limit exceeded"},
                              headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    with client(lambda request: response, clock, max_wait=600) as github, pytest.raises(GithubError) as caught:
        github.run(1)
    assert "rate limited until" in caught.value.message
    assert clock.slept == []


def test_client_secondary_limit_without_headers_waits_a_minute_doubling() -> None:
    clock = Clock()
    answers = [httpx.Response(403, json={"message": "You have exceeded a secondary rate limit."})] * 2 + \
        [httpx.Response(200, json={"id": 1})]
    with client(lambda request: answers.pop(0), clock) as github:
        github.run(1)
    assert clock.slept == [60.0, 120.0]


def test_client_5xx_retried_with_backoff_then_error_names_request_id() -> None:
    clock = Clock()
    response = httpx.Response(502, json={"message": "Server Error"}, headers={"x-github-request-id": "AB:CD"})
    with client(lambda request: response, clock, attempts=3) as github, pytest.raises(GithubError) as caught:
        github.run(1)
    assert clock.slept == [1.0, 2.0]
    assert caught.value.status == 502 and caught.value.request_id == "AB:CD"
    assert caught.value.to_dict()["exit_code"] == 1


def test_client_etag_sent_and_304_returns_the_body_seen_before() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("if-none-match"))
        if request.headers.get("if-none-match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, json={"id": 1, "status": "in_progress"}, headers={"etag": '"v1"'})

    with client(handler, Clock()) as github:
        assert github.run(1) == github.run(1) == {"id": 1, "status": "in_progress"}
    assert seen == [None, '"v1"']


def test_client_download_follows_redirect_without_the_token_and_redacts_the_signed_url() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.host == "api.github.com":
            return httpx.Response(302, headers={"location": "https://results.example.net/log.txt?sig=SIGNED123&se=1"})
        if "authorization" in request.headers:
            return httpx.Response(403)
        return httpx.Response(200, text="line 1\n")

    with client(handler, Clock()) as github:
        assert github.job_log(7) == "line 1\n"
    assert requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in requests[1].headers

    def expired(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.github.com":
            return httpx.Response(302, headers={"location": "https://results.example.net/log.txt?sig=SIGNED123"})
        return httpx.Response(403, text="AuthenticationFailed")

    with client(expired, Clock()) as github, pytest.raises(GithubError) as caught:
        github.job_log(7)
    assert "SIGNED123" not in caught.value.message and "sig=***" in caught.value.message


@pytest.mark.parametrize(("status", "words"), [(401, "gh auth login"), (403, "actions: write"),
                                               (404, "exists and that the token can see it")],
                         ids=["401", "403", "404"])
def test_client_errors_have_a_hint_and_never_the_token(status: int, words: str) -> None:
    response = httpx.Response(status, json={"message": f"nope {TOKEN}"},
                              headers={"x-accepted-github-permissions": "actions=write"})
    with client(lambda request: response, Clock()) as github, pytest.raises(GithubError) as caught:
        github.run(1)
    assert words in caught.value.hint
    assert TOKEN not in caught.value.message + caught.value.hint
    if status == 403:
        assert "GitHub says this call needs actions=write" in caught.value.hint
