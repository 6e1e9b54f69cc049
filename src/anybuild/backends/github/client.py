"""A thin client of GitHub's REST API for the endpoints the github backend uses.

In the registry client's style: every httpx error and every error response
becomes a :class:`~anybuild.errors.GithubError` in one place (:meth:`GithubClient._error`),
every URL and message passes through the redactor (which knows the token), and
the transport, the sleep and the clock are injected.

- **Conditional requests**: a GET that asks for it sends the last ``ETag`` as
  ``If-None-Match``; a ``304`` (which costs no rate limit) returns the body seen before.
- **Rate limits**: ``retry-after`` is honoured first, then ``x-ratelimit-remaining:
  0`` with ``x-ratelimit-reset``, then a secondary limit without either header
  waits a minute, doubling; a wait longer than ``max_wait`` is an error that says until when.
- **5xx and transport errors** are retried with back-off.
- **Redirects are never followed with the token**: logs and artifacts answer with a
  redirect to another host (a signed URL), fetched by a second client that sends
  no ``Authorization``.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import certifi
import httpx

from anybuild.errors import GithubError
from anybuild.redaction import Redactor, redact_url

__all__ = ["API_VERSION", "Dispatched", "GithubClient", "Retry"]

API_VERSION = "2022-11-28"
USER_AGENT = "anybuild/0.1 (+https://github.com/anybuild)"
log = logging.getLogger("anybuild.github")
_MAX_DOWNLOAD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    attempts: int = 5  # for 5xx and transport errors
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_wait: float = 900.0  # the longest rate-limit wait accepted, in seconds
    secondary_wait: float = 60.0  # a secondary limit without retry-after: GitHub asks for at least a minute


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatched:
    """What a dispatch answered: the run's id when the server returned it (200), else None (204)."""

    run_id: int | None = None
    html_url: str | None = None


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class GithubClient:
    """The REST calls of the github backend, against ``api_url`` (github.com or a GHES ``/api/v3``)."""

    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        owner: str,
        repo: str,
        redactor: Redactor,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        retry: Retry = Retry(),
        notify: Callable[[str], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        redactor.add(token)
        self.redactor = redactor
        self.repo_path = f"/repos/{owner}/{repo}"
        self.repository = f"{owner}/{repo}"
        self._sleep = sleep
        self._clock = clock
        self._retry = retry
        self._notify = notify
        self._etags: dict[str, tuple[str, Any]] = {}
        common: dict[str, Any] = {"timeout": httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                                  "follow_redirects": False, "verify": _tls(), "transport": transport}
        self._api = httpx.Client(
            base_url=api_url.rstrip("/") + "/", auth=_Bearer(token),
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                     "User-Agent": USER_AGENT}, **common)
        # the client for signed download URLs on other hosts: no token, ever
        self._downloads = httpx.Client(headers={"User-Agent": USER_AGENT}, **common)

    def close(self) -> None:
        self._api.close()
        self._downloads.close()

    def __enter__(self) -> GithubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the translation boundary ----------------------------------------------------------------

    def redact(self, text: str) -> str:
        return self.redactor(redact_url(text))

    def _error(self, response: httpx.Response, what: str) -> GithubError:
        """The one place an error response becomes a GithubError."""
        status = response.status_code
        url = self.redact(str(response.request.url))
        detail = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, Mapping):
            detail = str(body.get("message") or "")
            errors = body.get("errors")
            if isinstance(errors, list):
                extra = "; ".join(str(e.get("message") or e.get("code") or e) if isinstance(e, Mapping) else str(e)
                                  for e in errors)
                detail = f"{detail} ({extra})" if extra else detail
        detail = self.redact(detail or response.reason_phrase)
        message = f"{what}: {response.request.method} {url} → {status} {detail}".rstrip()
        request_id = response.headers.get("x-github-request-id")
        needs = response.headers.get("x-accepted-github-permissions", "")
        match status:
            case 401:
                hint = ("the token was refused (expired, revoked or mistyped): set GH_TOKEN to a valid token, "
                        "or run `gh auth login`")
            case 403:
                hint = (f"the token may not do this in {self.repository}: it needs actions: write and "
                        "contents: read (classic tokens: the repo and workflow scopes)"
                        + (f"; GitHub says this call needs {needs}" if needs else ""))
            case 404:
                hint = (f"check that {self.repository} exists and that the token can see it (GitHub answers 404 "
                        "to a token that may not read a private repository)")
            case 409:
                hint = "the state changed meanwhile (for a cancel: the run had already finished)"
            case 422:
                hint = "GitHub refused the request's content; see its message above"
            case _:
                hint = "retry later; https://www.githubstatus.com tells whether GitHub has an incident"
        return GithubError(message, status=status, url=url, request_id=request_id,
                           retryable=status >= 500, hint=hint)

    def _transport_error(self, exc: httpx.HTTPError, what: str, url: str) -> GithubError:
        return GithubError(
            f"{what}: {type(exc).__name__} talking to {self.redact(url)}: {self.redact(str(exc))}",
            url=self.redact(url), retryable=True,
            hint="check the network and the API address ([backend.github] api-url); anybuild retried")

    # -- rate limits -------------------------------------------------------------------------------

    def _rate_limit_wait(self, response: httpx.Response, secondary_round: int) -> float | None:
        """Seconds to wait before retrying *response*, or None when it is not a rate limit."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after", "").strip()
        if retry_after:
            if retry_after.isdigit():
                return float(retry_after)
            seconds: float
            try:
                seconds = email.utils.parsedate_to_datetime(retry_after).timestamp() - self._clock()
            except (TypeError, ValueError):
                seconds = self._retry.secondary_wait
            return max(0.0, seconds)
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
            return max(0.0, float(headers["x-ratelimit-reset"]) - self._clock()) + 1.0
        try:
            message = str(response.json().get("message", "")).lower()
        except (ValueError, AttributeError):
            message = ""
        if response.status_code == 429 or "rate limit" in message:
            wait: float = self._retry.secondary_wait * 2 ** secondary_round
            return wait
        return None

    def _say(self, text: str) -> None:
        log.info("%s", text)
        if self._notify is not None:
            self._notify(self.redact(text))

    # -- requests ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200,),
                params: Mapping[str, str | int] | None = None, json: Any = None,
                conditional: bool = False) -> httpx.Response:
        """Send until an answer in *ok* (or a 304 with a cached body) comes; raise GithubError otherwise."""
        url = path.lstrip("/")
        key = str(self._api.build_request(method, url, params=params).url)
        failures = 0
        secondary = 0
        waited = 0.0
        while True:
            headers = {}
            if conditional and key in self._etags:
                headers["If-None-Match"] = self._etags[key][0]
            try:
                response = self._api.request(method, url, params=params, json=json, headers=headers)
            except httpx.HTTPError as exc:
                failures += 1
                error = self._transport_error(exc, what, key)
                if failures >= self._retry.attempts:
                    raise error from exc
                self._pause(error.message, self._backoff(failures), failures)
                continue
            if response.status_code in ok or (response.status_code == 304 and key in self._etags):
                if conditional and response.status_code == 200 and response.headers.get("etag"):
                    self._etags[key] = (response.headers["etag"], response.json())
                return response
            wait = self._rate_limit_wait(response, secondary)
            if wait is not None:
                secondary += 1
                if waited + wait > self._retry.max_wait:
                    until = datetime.fromtimestamp(self._clock() + wait, tz=UTC).strftime("%H:%M:%S UTC")
                    error = self._error(response, what)
                    error.message = f"{error.message} (rate limited until {until})"
                    error.hint = ("GitHub rate-limits this token: wait, or use another token; "
                                  "`anybuild doctor --online` shows the token's limits")
                    raise error
                waited += wait
                self._pause(f"GitHub rate limit ({response.status_code}) on {what}", wait, None)
                continue
            error = self._error(response, what)
            if error.retryable and failures + 1 < self._retry.attempts:
                failures += 1
                self._pause(error.message, self._backoff(failures), failures)
                continue
            raise error

    def _backoff(self, failures: int) -> float:
        delay: float = self._retry.base_delay * 2 ** (failures - 1)
        return min(delay, self._retry.max_delay)

    def _pause(self, why: str, seconds: float, attempt: int | None) -> None:
        tail = f" (attempt {attempt + 1} of {self._retry.attempts})" if attempt else ""
        self._say(f"{why}; retrying in {seconds:.0f}s{tail}")
        self._sleep(seconds)

    def json(self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200,),
             params: Mapping[str, str | int] | None = None, body: Any = None, conditional: bool = False) -> Any:
        response = self.request(method, path, what=what, ok=ok, params=params, json=body, conditional=conditional)
        if response.status_code == 304:
            key = str(self._api.build_request(method, path.lstrip("/"), params=params).url)
            return self._etags[key][1]
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise GithubError(f"{what}: GitHub answered {response.status_code} with a body that is not JSON",
                              status=response.status_code, url=self.redact(str(response.request.url)),
                              hint="retry; if it persists, check [backend.github] api-url") from exc

    def download(self, path: str, *, what: str) -> bytes:
        """GET *path*, which redirects to a signed URL on another host; fetch that without the token."""
        response = self.request("GET", path, what=what, ok=(200, 302, 307))
        if response.status_code == 200:  # some servers answer directly
            return response.content
        location = response.headers.get("location", "")
        if not location:
            raise GithubError(f"{what}: {response.status_code} without a Location header",
                              status=response.status_code, hint="retry later")
        where = self.redact(location)
        for attempt in range(1, self._retry.attempts + 1):
            try:
                with self._downloads.stream("GET", location) as answer:
                    if answer.status_code != 200:
                        answer.read()
                        if answer.status_code >= 500 and attempt < self._retry.attempts:
                            self._pause(f"{what}: {answer.status_code} from {where}", self._backoff(attempt), attempt)
                            continue
                        raise GithubError(f"{what}: GET {where} → {answer.status_code}",
                                          status=answer.status_code, url=where,
                                          hint="the signed link may have expired: run the command again")
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in answer.iter_bytes():
                        size += len(chunk)
                        if size > _MAX_DOWNLOAD:
                            raise GithubError(f"{what}: more than {_MAX_DOWNLOAD} bytes from {where}",
                                              url=where, hint="download it from the run's page instead")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                if attempt >= self._retry.attempts:
                    raise self._transport_error(exc, what, location) from exc
                self._pause(f"{what}: {type(exc).__name__} from {where}", self._backoff(attempt), attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- the endpoints -----------------------------------------------------------------------------

    def repository_info(self) -> tuple[dict[str, Any], Mapping[str, str]]:
        """GET /repos/{owner}/{repo}: the repository and the response headers (token scopes)."""
        response = self.request("GET", self.repo_path, what=f"reading {self.repository}")
        return response.json(), response.headers

    def workflow(self, file: str) -> dict[str, Any] | None:
        response = self.request("GET", f"{self.repo_path}/actions/workflows/{file}", ok=(200, 404),
                                what=f"reading workflow {file}")
        return response.json() if response.status_code == 200 else None

    def file_exists(self, path: str, ref: str) -> bool:
        response = self.request("GET", f"{self.repo_path}/contents/{path}", params={"ref": ref}, ok=(200, 404),
                                what=f"looking for {path} on {ref}")
        return response.status_code == 200

    def actions_permissions(self) -> dict[str, Any] | None:
        """Whether Actions is enabled; None when the token may not read it (it needs administration: read)."""
        response = self.request("GET", f"{self.repo_path}/actions/permissions", ok=(200, 403, 404),
                                what="reading the repository's Actions settings")
        return response.json() if response.status_code == 200 else None

    def commit_sha(self, ref: str) -> str | None:
        """The commit *ref* ("heads/main", "tags/v1") names on GitHub, or None when GitHub has no such ref."""
        response = self.request("GET", f"{self.repo_path}/commits/{ref}", ok=(200, 404, 422),
                                what=f"reading {ref} on GitHub")
        if response.status_code != 200:
            return None
        sha = response.json().get("sha")
        return str(sha) if sha else None

    def dispatch(self, file: str, ref: str, inputs: Mapping[str, str], *, return_run_details: bool) -> Dispatched:
        body: dict[str, Any] = {"ref": ref, "inputs": dict(inputs)}
        if return_run_details:
            body["return_run_details"] = True
        data = self.json("POST", f"{self.repo_path}/actions/workflows/{file}/dispatches", ok=(200, 204),
                         body=body, what=f"dispatching workflow {file} on {ref}")
        if isinstance(data, Mapping) and data.get("workflow_run_id"):
            return Dispatched(run_id=int(data["workflow_run_id"]), html_url=str(data.get("html_url") or ""))
        return Dispatched()

    def runs(self, file: str, *, branch: str, created_after: str) -> list[dict[str, Any]]:
        data = self.json("GET", f"{self.repo_path}/actions/workflows/{file}/runs",
                         params={"event": "workflow_dispatch", "branch": branch,
                                 "created": f">={created_after}", "per_page": 50},
                         what=f"listing the runs of {file}")
        runs = data.get("workflow_runs") if isinstance(data, Mapping) else None
        return [r for r in runs or [] if isinstance(r, dict)]

    def run(self, run_id: int) -> dict[str, Any]:
        data = self.json("GET", f"{self.repo_path}/actions/runs/{run_id}", what=f"reading run {run_id}",
                         conditional=True)
        return dict(data)

    def jobs(self, run_id: int) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self.json("GET", f"{self.repo_path}/actions/runs/{run_id}/jobs",
                             params={"filter": "latest", "per_page": 100, "page": page},
                             what=f"reading the jobs of run {run_id}", conditional=True)
            batch = [j for j in data.get("jobs") or [] if isinstance(j, dict)]
            jobs += batch
            if len(batch) < 100 or len(jobs) >= int(data.get("total_count") or 0):
                return jobs
            page += 1

    def job_log(self, job_id: int) -> str:
        data = self.download(f"{self.repo_path}/actions/jobs/{job_id}/logs",
                             what=f"downloading the log of job {job_id}")
        return data.decode("utf-8", errors="replace")

    def artifacts(self, run_id: int) -> list[dict[str, Any]]:
        data = self.json("GET", f"{self.repo_path}/actions/runs/{run_id}/artifacts", params={"per_page": 100},
                         what=f"listing the artifacts of run {run_id}")
        return [a for a in data.get("artifacts") or [] if isinstance(a, dict)]

    def artifact_zip(self, artifact_id: int) -> bytes:
        return self.download(f"{self.repo_path}/actions/artifacts/{artifact_id}/zip",
                             what=f"downloading artifact {artifact_id}")

    def cancel(self, run_id: int) -> bool:
        """Ask GitHub to cancel the run; False when it had already finished (409)."""
        response = self.request("POST", f"{self.repo_path}/actions/runs/{run_id}/cancel", ok=(202, 409),
                                what=f"cancelling run {run_id}")
        return response.status_code == 202
