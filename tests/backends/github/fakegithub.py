"""An in-repo fake of GitHub's REST API for one repository, served over real HTTP on 127.0.0.1.

Every JSON answer is validated, before it is sent, against GitHub's own published
models (``githubkit-schemas``, generated from github/rest-api-description, API version
2022-11-28) with extra keys forbidden, so the fake cannot drift into an API GitHub does
not have: a mismatch is answered with a 500 and kept in ``schema_errors``, which the
fixture asserts empty.

A second server stands for the host GitHub redirects log and artifact downloads to
(signed URLs); like blob storage, it rejects any request that carries an
``Authorization`` header.

A dispatched run moves one step each time the client reads it (``GET .../runs/{id}``):
queued, then each image's job through its steps, then completed — unless ``hold`` keeps
it running (until a cancel).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from githubkit_schemas.v2022_11_28 import models
from pydantic import BaseModel, ValidationError

STEPS = ("Set up job", "Check out the dispatched commit", "Name the default branch for the tag rules",
         "Set up Python 3.12", "Install anybuild==0.1.0", "Build {image}", "Publish the result of {image}",
         "Complete job")
BUILD_STEP = 5  # index of "Build {image}" in STEPS
EPOCH = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
DOCS = "https://docs.github.com/rest"


@dataclass
class Fault:
    """A canned answer for the next *times* requests matching method and path."""

    method: str
    path: str  # a regular expression on the path
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1


@dataclass
class JobPlan:
    image: str
    conclusion: str = "success"  # or "failure"
    log: str = ""  # the job's log (lines get timestamps); a default is made from the steps
    result: dict[str, Any] | None = None  # the anybuild.result/v1 document uploaded as the artifact


@dataclass
class Run:
    id: int
    number: int
    title: str
    ref: str
    sha: str
    inputs: dict[str, str]
    created: datetime
    reads: int = 0
    cancelled: bool = False
    listed_after: int = 0  # number of GET .../runs listings before it shows up


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGithub:
    """GitHub's REST API for ``owner/repo`` (see the module docstring)."""

    def __init__(self, *, token: str, owner: str = "acme", repo: str = "moltbook", default_branch: str = "main",
                 workflow: str = "anybuild.yml") -> None:
        self.token = token
        self.owner, self.repo = owner, repo
        self.default_branch = default_branch
        self.workflow = workflow
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.workflow_on_default_branch = True
        self.workflow_dispatchable = True  # False: the default branch's copy has no workflow_dispatch
        # "details" (200 with the run), "no-content" (204), "old-ghes" (422 on return_run_details)
        self.dispatch_mode = "details"
        self.run_listed_after = 0
        self.hold = False  # keep the run in progress until cancelled
        self.plans: dict[str, JobPlan] = {}
        self.faults: list[Fault] = []
        self.runs: dict[int, Run] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path (with query), headers
        self.blob_requests: list[tuple[str, dict[str, str]]] = []
        self.blob_auth_rejected = 0
        self.schema_errors: list[str] = []
        self.dispatches: list[dict[str, Any]] = []
        self.cancels: list[int] = []
        self.not_modified = 0
        self.scopes: str | None = "repo, workflow"
        self.actions_enabled: bool | None = True  # None: the token may not read the setting
        self._lock = threading.Lock()
        self._listings = 0
        self.api_url = ""
        self.blob_url = ""

    # -- servers -----------------------------------------------------------------------------------

    @contextmanager
    def serving(self) -> Iterator[FakeGithub]:
        api = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._api))
        blobs = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._blobs))
        self.api_url = f"http://127.0.0.1:{api.server_address[1]}"
        self.blob_url = f"http://127.0.0.1:{blobs.server_address[1]}"
        threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                   for s in (api, blobs)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            for server in (api, blobs):
                server.shutdown()
                server.server_close()
            for thread in threads:
                thread.join(5)

    @property
    def host(self) -> str:
        return self.api_url.split("://", 1)[1]

    @property
    def web(self) -> str:
        return f"{self.api_url}/{self.owner}/{self.repo}"

    def paths(self, method: str = "GET") -> list[str]:
        return [p for m, p, _ in self.requests if m == method]

    # -- the model of GitHub's JSON ------------------------------------------------------------------

    def _user(self) -> dict[str, Any]:
        base = f"{self.api_url}/users/{self.owner}"
        return {
            "login": self.owner, "id": 1, "node_id": "MDQ6VXNlcjE=", "avatar_url": f"{self.api_url}/avatars/1",
            "gravatar_id": "", "url": base, "html_url": f"{self.api_url}/{self.owner}",
            "followers_url": f"{base}/followers", "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}", "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions", "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos", "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events", "type": "Organization", "site_admin": False,
        }

    def _repo_urls(self) -> dict[str, str]:
        base = f"{self.api_url}/repos/{self.owner}/{self.repo}"
        names = ("archive_url", "assignees_url", "blobs_url", "branches_url", "collaborators_url", "comments_url",
                 "commits_url", "compare_url", "contents_url", "contributors_url", "deployments_url",
                 "downloads_url", "events_url", "forks_url", "git_commits_url", "git_refs_url", "git_tags_url",
                 "issue_comment_url", "issue_events_url", "issues_url", "keys_url", "labels_url", "languages_url",
                 "merges_url", "milestones_url", "notifications_url", "pulls_url", "releases_url",
                 "stargazers_url", "statuses_url", "subscribers_url", "subscription_url", "tags_url", "teams_url",
                 "trees_url", "hooks_url")
        return {name: f"{base}/{name.removesuffix('_url')}" for name in names}

    def _minimal_repo(self) -> dict[str, Any]:
        return {"id": 42, "node_id": "R_kgDOAAAAKg", "name": self.repo, "full_name": f"{self.owner}/{self.repo}",
                "owner": self._user(), "private": True, "html_url": self.web, "description": None, "fork": False,
                "url": f"{self.api_url}/repos/{self.owner}/{self.repo}", **self._repo_urls()}

    def _full_repo(self) -> dict[str, Any]:
        return {
            **self._minimal_repo(), "git_url": f"git://{self.host}/{self.owner}/{self.repo}.git",
            "ssh_url": f"git@{self.host}:{self.owner}/{self.repo}.git", "clone_url": f"{self.web}.git",
            "mirror_url": None, "svn_url": self.web, "homepage": None, "language": "JavaScript", "forks_count": 0,
            "stargazers_count": 0, "watchers_count": 0, "size": 120, "default_branch": self.default_branch,
            "open_issues_count": 0, "has_issues": True, "has_projects": False, "has_wiki": False,
            "has_pages": False, "has_discussions": False, "archived": False, "disabled": False,
            "pushed_at": _iso(EPOCH), "created_at": _iso(EPOCH - timedelta(days=90)), "updated_at": _iso(EPOCH),
            "subscribers_count": 1, "network_count": 0, "license": None, "forks": 0, "open_issues": 0,
            "watchers": 0, "permissions": {"admin": False, "maintain": False, "push": True, "triage": True,
                                           "pull": True},
        }

    def _commit(self, sha: str) -> dict[str, Any]:
        person = {"name": "Dana", "email": "dana@example.com", "date": _iso(EPOCH)}
        base = f"{self.api_url}/repos/{self.owner}/{self.repo}"
        return {
            "url": f"{base}/commits/{sha}", "sha": sha, "node_id": "C_kwDOAAAAKg",
            "html_url": f"{self.web}/commit/{sha}",
            "comments_url": f"{base}/commits/{sha}/comments",
            "commit": {"url": f"{base}/git/commits/{sha}", "author": person, "committer": person,
                       "message": "build", "comment_count": 0,
                       "tree": {"sha": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                                "url": f"{base}/git/trees/4b825dc642cb6eb9a060e54bf8d69288fbee4904"}},
            "author": None, "committer": None, "parents": [],
        }

    def _run_json(self, run: Run) -> dict[str, Any]:
        status, conclusion = self._run_state(run)
        base = f"{self.api_url}/repos/{self.owner}/{self.repo}/actions/runs/{run.id}"
        return {
            "id": run.id, "name": "anybuild", "node_id": f"WFR_{run.id}", "check_suite_id": run.id + 5000,
            "check_suite_node_id": f"CS_{run.id}", "head_branch": run.ref, "head_sha": run.sha,
            "path": f".github/workflows/{self.workflow}", "run_number": run.number, "run_attempt": 1,
            "referenced_workflows": [], "event": "workflow_dispatch", "status": status, "conclusion": conclusion,
            "workflow_id": 7, "url": base, "html_url": f"{self.web}/actions/runs/{run.id}", "pull_requests": [],
            "created_at": _iso(run.created),
            "updated_at": _iso(run.created + timedelta(seconds=60 if status == "completed" else 0)),
            "actor": self._user(), "triggering_actor": self._user(), "run_started_at": _iso(run.created),
            "jobs_url": f"{base}/jobs", "logs_url": f"{base}/logs",
            "check_suite_url": f"{self.api_url}/repos/{self.owner}/{self.repo}/check-suites/{run.id + 5000}",
            "artifacts_url": f"{base}/artifacts", "cancel_url": f"{base}/cancel", "rerun_url": f"{base}/rerun",
            "previous_attempt_url": None,
            "workflow_url": f"{self.api_url}/repos/{self.owner}/{self.repo}/actions/workflows/7",
            "head_commit": {"id": run.sha, "tree_id": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                            "message": "build", "timestamp": _iso(EPOCH),
                            "author": {"name": "Dana", "email": "dana@example.com"},
                            "committer": {"name": "Dana", "email": "dana@example.com"}},
            "repository": self._minimal_repo(), "head_repository": self._minimal_repo(),
            "head_repository_id": 42, "display_title": run.title,
        }

    # the run's timeline: read 0 queued without jobs, read 1 jobs queued, then one step a read
    def _progress(self, run: Run) -> int:
        return run.reads - 2  # index of the step in progress (len(STEPS) or more: done)

    def _job_state(self, run: Run, plan: JobPlan) -> tuple[str, str | None, int]:
        """status, conclusion and the number of steps completed."""
        step = self._progress(run)
        if run.cancelled:
            return "completed", "cancelled", max(0, min(step, len(STEPS)))
        if step < 0:
            return "queued", None, 0
        if self.hold:
            return "in_progress", None, min(step, BUILD_STEP)
        if plan.conclusion == "failure" and step > BUILD_STEP:
            return "completed", "failure", BUILD_STEP + 1
        if step >= len(STEPS):
            return "completed", plan.conclusion, len(STEPS)
        return "in_progress", None, step

    def _run_state(self, run: Run) -> tuple[str, str | None]:
        if run.cancelled:
            return "completed", "cancelled"
        if run.reads == 0:
            return "queued", None
        states = [self._job_state(run, self.plans[i]) for i in self._images(run)]
        if all(s[0] == "completed" for s in states):
            return "completed", "failure" if any(s[1] != "success" for s in states) else "success"
        return "in_progress", None

    def _images(self, run: Run) -> list[str]:
        return [i for i in json.loads(run.inputs["images"]) if i in self.plans]

    def _job_json(self, run: Run, index: int, image: str) -> dict[str, Any]:
        plan = self.plans[image]
        status, conclusion, done = self._job_state(run, plan)
        job_id = run.id * 10 + index
        steps = []
        for number, name in enumerate(STEPS, 1):
            step_name = name.format(image=image)
            if number <= done:
                failed = plan.conclusion == "failure" and number == BUILD_STEP + 1
                state = ("completed", "failure" if failed else ("cancelled" if run.cancelled else "success"))
                if run.cancelled and number <= done:
                    state = ("completed", "success")
            elif number == done + 1 and status == "in_progress":
                state = ("in_progress", None)
            else:
                state = ("completed", "skipped") if status == "completed" else ("queued", None)
            steps.append({"name": step_name, "status": state[0], "conclusion": state[1], "number": number,
                          "started_at": _iso(run.created + timedelta(seconds=number)) if state[0] != "queued"
                          else None,
                          "completed_at": _iso(run.created + timedelta(seconds=number + 1))
                          if state[0] == "completed" else None})
        base = f"{self.api_url}/repos/{self.owner}/{self.repo}/actions"
        return {
            "id": job_id, "run_id": run.id, "run_url": f"{base}/runs/{run.id}", "run_attempt": 1,
            "node_id": f"CR_{job_id}", "head_sha": run.sha, "url": f"{base}/jobs/{job_id}",
            "html_url": f"{self.web}/actions/runs/{run.id}/job/{job_id}", "status": status,
            "conclusion": conclusion, "created_at": _iso(run.created),
            "started_at": _iso(run.created + timedelta(seconds=1)),
            "completed_at": _iso(run.created + timedelta(seconds=30)) if status == "completed" else None,
            "name": image, "steps": steps if status != "queued" else [],
            "check_run_url": f"{self.api_url}/repos/{self.owner}/{self.repo}/check-runs/{job_id}",
            "labels": ["ubuntu-24.04"], "runner_id": 3 if status != "queued" else None,
            "runner_name": "GitHub Actions 3" if status != "queued" else None,
            "runner_group_id": 2 if status != "queued" else None,
            "runner_group_name": "GitHub Actions" if status != "queued" else None,
            "workflow_name": "anybuild", "head_branch": run.ref,
        }

    def _artifacts(self, run: Run) -> list[dict[str, Any]]:
        if self._run_state(run)[0] != "completed":
            return []
        found = []
        for index, image in enumerate(self._images(run)):
            plan = self.plans[image]
            if plan.result is None or run.cancelled:
                continue
            artifact_id = run.id * 100 + index
            found.append({
                "id": artifact_id, "node_id": f"MDg6QXJ0aWZhY3Q{artifact_id}", "name": f"anybuild-result-{image}",
                "size_in_bytes": len(self._zip(plan.result)),
                "url": f"{self.api_url}/repos/{self.owner}/{self.repo}/actions/artifacts/{artifact_id}",
                "archive_download_url": f"{self.api_url}/repos/{self.owner}/{self.repo}/actions/artifacts/"
                                        f"{artifact_id}/zip",
                "expired": False, "created_at": _iso(run.created), "expires_at": _iso(run.created + timedelta(7)),
                "updated_at": _iso(run.created), "digest": "sha256:" + hashlib.sha256(
                    self._zip(plan.result)).hexdigest(),
                "workflow_run": {"id": run.id, "repository_id": 42, "head_repository_id": 42, "head_branch": run.ref,
                                 "head_sha": run.sha},
            })
        return found

    @staticmethod
    def _zip(document: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            info = zipfile.ZipInfo("anybuild-result.json", date_time=(2026, 12, 7, 10, 0, 0))
            archive.writestr(info, json.dumps(document, indent=2))
        return buffer.getvalue()

    def job_log(self, run: Run, image: str) -> str:
        plan = self.plans[image]
        lines = plan.log.splitlines() or [f"##[group]Run {name.format(image=image)}" for name in STEPS]
        return "".join(f"{_iso(run.created + timedelta(seconds=i // 3))[:-1]}.{i:07d}Z {line}\n"
                       for i, line in enumerate(lines))

    # -- the API -------------------------------------------------------------------------------------

    def _api(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        with self._lock:
            self.requests.append((method, target, headers))
            path, _, query = target.partition("?")
            params = {k: v[0] for k, v in parse_qs(query).items()}
            if headers.get("authorization") != f"Bearer {self.token}":
                return self._error(401, "Bad credentials")
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and re.search(fault.path, path):
                    fault.times -= 1
                    return _Answer(fault.status, _validated(models.BasicError, fault.body, self) if fault.body
                                   else None, dict(fault.headers))
            repo = f"/repos/{self.owner}/{self.repo}"
            if not path.startswith(repo):
                return self._error(404, "Not Found")
            return self._route(method, path.removeprefix(repo), params, headers, body)

    def _route(self, method: str, path: str, params: dict[str, str], headers: dict[str, str],
               body: bytes) -> _Answer:
        workflow = f"/actions/workflows/{self.workflow}"
        match method, path:
            case "GET", "":
                scopes = {"x-oauth-scopes": self.scopes} if self.scopes is not None else {}
                return self._ok(models.FullRepository, self._full_repo(), headers, extra=scopes)
            case "GET", p if p == workflow:
                if not self.workflow_on_default_branch:
                    return self._error(404, "Not Found")
                return self._ok(models.Workflow, {
                    "id": 7, "node_id": "W_kwDOAAAABw", "name": "anybuild",
                    "path": f".github/workflows/{self.workflow}",
                    "state": "active", "created_at": _iso(EPOCH), "updated_at": _iso(EPOCH),
                    "url": f"{self.api_url}/repos/{self.owner}/{self.repo}{workflow}",
                    "html_url": f"{self.web}/blob/{self.default_branch}/.github/workflows/{self.workflow}",
                    "badge_url": f"{self.web}/workflows/anybuild/badge.svg"}, headers)
            case "GET", p if p == f"/contents/.github/workflows/{self.workflow}":
                if not self.workflow_on_default_branch or params.get("ref") != self.default_branch:
                    return self._error(404, "Not Found")
                return self._ok(models.ContentFile, self._content_file(), headers)
            case "GET", "/actions/permissions":
                if self.actions_enabled is None:
                    return self._error(403, "Resource not accessible by personal access token",
                                       {"x-accepted-github-permissions": "administration=read"})
                return self._ok(models.ActionsRepositoryPermissions,
                                {"enabled": self.actions_enabled, "allowed_actions": "all",
                                 "selected_actions_url": f"{self.api_url}/repos/{self.owner}/{self.repo}"
                                                         "/actions/permissions/selected-actions",
                                 "sha_pinning_required": False}, headers)
            case "GET", p if p.startswith("/commits/"):
                ref = p.removeprefix("/commits/")
                sha = (self.branches.get(ref.removeprefix("heads/")) if ref.startswith("heads/")
                       else self.tags.get(ref.removeprefix("tags/")) if ref.startswith("tags/") else None)
                if sha is None:
                    return self._error(422, f"No commit found for SHA: {ref}")
                return self._ok(models.Commit, self._commit(sha), headers)
            case "POST", p if p == f"{workflow}/dispatches":
                return self._dispatch(json.loads(body or b"{}"))
            case "GET", p if p == f"{workflow}/runs":
                return self._list_runs(params, headers)
            case "GET", p if (m := re.fullmatch(r"/actions/runs/(\d+)", p)):
                run = self.runs[int(m[1])]
                answer = self._ok(models.WorkflowRun, self._run_json(run), headers)
                run.reads += 1  # the next read sees the run one step further
                return answer
            case "GET", p if (m := re.fullmatch(r"/actions/runs/(\d+)/jobs", p)):
                run = self.runs[int(m[1])]
                jobs = [self._job_json(run, i, image) for i, image in enumerate(self._images(run))] \
                    if run.reads > 1 else []
                return self._ok(models.ReposOwnerRepoActionsRunsRunIdJobsGetResponse200,
                                {"total_count": len(jobs), "jobs": jobs}, headers)
            case "GET", p if (m := re.fullmatch(r"/actions/runs/(\d+)/artifacts", p)):
                artifacts = self._artifacts(self.runs[int(m[1])])
                return self._ok(models.ReposOwnerRepoActionsRunsRunIdArtifactsGetResponse200,
                                {"total_count": len(artifacts), "artifacts": artifacts}, headers)
            case "POST", p if (m := re.fullmatch(r"/actions/runs/(\d+)/cancel", p)):
                run = self.runs[int(m[1])]
                self.cancels.append(run.id)
                if self._run_state(run)[0] == "completed":
                    return self._error(409, "Cannot cancel a workflow run that is completed.")
                run.cancelled = True
                return _Answer(202, _validated(models.EmptyObject, {}, self))
            case "GET", p if (m := re.fullmatch(r"/actions/jobs/(\d+)/logs", p)):
                job_id = int(m[1])
                return _Answer(302, None, {"location": f"{self.blob_url}/logs/{job_id}.txt?sv=2021&sig=s3cr3tsig"})
            case "GET", p if (m := re.fullmatch(r"/actions/artifacts/(\d+)/zip", p)):
                return _Answer(302, None, {"location": f"{self.blob_url}/artifacts/{m[1]}.zip?sv=2021&sig=s3cr3tsig"})
        return self._error(404, "Not Found")

    def _content_file(self) -> dict[str, Any]:
        path = f".github/workflows/{self.workflow}"
        base = f"{self.api_url}/repos/{self.owner}/{self.repo}"
        sha = "0" * 40
        return {"type": "file", "encoding": "base64", "size": 10, "name": self.workflow, "path": path,
                "content": "bmFtZTogYW55YnVpbGQK", "sha": sha, "url": f"{base}/contents/{path}",
                "git_url": f"{base}/git/blobs/{sha}", "html_url": f"{self.web}/blob/{self.default_branch}/{path}",
                "download_url": f"{self.blob_url}/raw/{path}",
                "_links": {"git": f"{base}/git/blobs/{sha}", "html": f"{self.web}/blob/main/{path}",
                           "self": f"{base}/contents/{path}"}}

    def _dispatch(self, body: dict[str, Any]) -> _Answer:
        validated = _validated(models.ReposOwnerRepoActionsWorkflowsWorkflowIdDispatchesPostBody, body, self)
        if validated is None:
            return self._error(422, "Invalid request.")
        if not self.workflow_on_default_branch:
            return self._error(404, "Not Found")
        if not self.workflow_dispatchable:
            return self._error(422, "Workflow does not have 'workflow_dispatch' trigger")
        if self.dispatch_mode == "old-ghes" and "return_run_details" in body:
            return _Answer(422, _validated(models.ValidationError, {
                "message": "Invalid request.\n\n\"return_run_details\" is not a permitted key.",
                "documentation_url": DOCS}, self))
        inputs = body.get("inputs") or {}
        if set(inputs) - {"request-id", "images", "args"}:
            unexpected = sorted(set(inputs) - {"request-id", "images", "args"})
            return self._error(422, f"Unexpected inputs provided: {unexpected}")
        ref = body["ref"]
        sha = self.branches.get(ref) or self.tags.get(ref)
        if sha is None:
            return self._error(422, f"No ref found for: {ref}")
        self.dispatches.append(body)
        run_id = 9000 + len(self.runs) + 1
        run = Run(id=run_id, number=len(self.runs) + 1, title=f"anybuild {inputs.get('request-id', 'manual')}",
                  ref=ref, sha=sha, inputs={k: str(v) for k, v in inputs.items()}, created=EPOCH,
                  listed_after=self.run_listed_after)
        self.runs[run_id] = run
        if self.dispatch_mode == "details" and body.get("return_run_details"):
            return _Answer(200, _validated(models.WorkflowDispatchResponse, {
                "workflow_run_id": run_id,
                "run_url": f"{self.api_url}/repos/{self.owner}/{self.repo}/actions/runs/{run_id}",
                "html_url": f"{self.web}/actions/runs/{run_id}"}, self))
        return _Answer(204, None)

    def _list_runs(self, params: dict[str, str], headers: dict[str, str]) -> _Answer:
        self._listings += 1
        runs = [self._run_json(r) for r in self.runs.values()
                if self._listings > r.listed_after and (not params.get("branch") or r.ref == params["branch"])]
        return self._ok(models.ReposOwnerRepoActionsWorkflowsWorkflowIdRunsGetResponse200,
                        {"total_count": len(runs), "workflow_runs": runs}, headers)

    def _ok(self, model: type[BaseModel], data: dict[str, Any], headers: dict[str, str],
            extra: dict[str, str] | None = None) -> _Answer:
        body = _validated(model, data, self)
        if body is None:
            return _Answer(500, {"message": "the fake's answer does not match GitHub's schema"})
        etag = 'W/"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:40] + '"'
        if headers.get("if-none-match") == etag:
            self.not_modified += 1
            return _Answer(304, None, {"etag": etag, **(extra or {})}, counts=False)
        return _Answer(200, body, {"etag": etag, **(extra or {})})

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> _Answer:
        body = {"message": message, "documentation_url": DOCS, "status": str(status)}
        return _Answer(status, _validated(models.BasicError, body, self), headers or {})

    # -- the signed-URL host -------------------------------------------------------------------------

    def _blobs(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        with self._lock:
            self.blob_requests.append((target, headers))
            if "authorization" in headers:
                self.blob_auth_rejected += 1
                return _Answer(403, None, {"content-type": "application/xml"},
                               raw=b"<Error><Code>InvalidAuthenticationInfo</Code><Message>Authentication "
                                   b"information is not given in the correct format.</Message></Error>")
            path = urlsplit(target).path
            if (m := re.fullmatch(r"/logs/(\d+)\.txt", path)):
                run = self.runs[int(m[1]) // 10]
                image = self._images(run)[int(m[1]) % 10]
                return _Answer(200, None, {"content-type": "text/plain"}, raw=self.job_log(run, image).encode())
            if (m := re.fullmatch(r"/artifacts/(\d+)\.zip", path)):
                run = self.runs[int(m[1]) // 100]
                plan = self.plans[self._images(run)[int(m[1]) % 100]]
                assert plan.result is not None
                return _Answer(200, None, {"content-type": "application/zip"}, raw=self._zip(plan.result))
            return _Answer(404, None, raw=b"not found")


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    counts: bool = True


def _validated(model: type[BaseModel], data: Any, fake: FakeGithub) -> Any:
    """*data* if GitHub's model of it accepts it with no key GitHub does not have; else None (kept)."""
    try:
        instance = model.model_validate(data)
    except ValidationError as exc:
        fake.schema_errors.append(f"{model.__name__}: {exc}")
        return None
    unknown = _unknown_keys(instance, data, model.__name__)
    if unknown:
        fake.schema_errors.append(f"{model.__name__}: keys GitHub's schema does not have: {', '.join(unknown)}")
        return None
    return data


def _unknown_keys(instance: BaseModel, raw: Any, path: str) -> list[str]:
    """Keys of *raw* that the model it was read into does not declare (free-form objects excepted)."""
    if not isinstance(raw, dict) or type(instance).model_config.get("extra") == "allow":
        return []
    fields = {(info.alias or name): name for name, info in type(instance).model_fields.items()}
    found = [f"{path}.{key}" for key in raw if key not in fields]
    for key, name in fields.items():
        if key in raw:
            found += _walk(getattr(instance, name), raw[key], f"{path}.{key}")
    return found


def _walk(value: Any, raw: Any, path: str) -> list[str]:
    if isinstance(value, BaseModel):
        return _unknown_keys(value, raw, path)
    if isinstance(value, list) and isinstance(raw, list):
        return [k for i, (v, r) in enumerate(zip(value, raw, strict=False)) for k in _walk(v, r, f"{path}[{i}]")]
    return []


def _handler(serve: Callable[[str, str, dict[str, str], bytes], _Answer]) -> type[BaseHTTPRequestHandler]:
    remaining = [5000]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it
            del format, args

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = serve(self.command, self.path, headers, body)
            payload = answer.raw if answer.raw is not None else (
                json.dumps(answer.body).encode() if answer.body is not None else b"")
            self.send_response(answer.status)
            if answer.counts and answer.status != 304:
                remaining[0] -= 1
            base = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(remaining[0]),
                    "x-ratelimit-reset": "1796637600", "x-ratelimit-used": str(5000 - remaining[0]),
                    "x-ratelimit-resource": "core", "x-github-request-id": "F00D:1234:5678:9ABC:6750E5A0"}
            merged = {**base, **answer.headers}
            if answer.body is not None:
                merged.setdefault("content-type", "application/json; charset=utf-8")
            for key, value in merged.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
