"""A build of anybuild.toml's images on GitHub: preflight, plan, dispatch, follow, collect.

:func:`build_on_github` is what ``anybuild build --backend github`` (or a plan whose
first candidate is github) calls. Its effects come in through :class:`GithubSeams`
(the runner for git and gh, the HTTP transport, sleep and clock) and
:class:`~.remote.RemoteSeams`'s callbacks (progress, failure logs, diagnosis).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from anybuild.backends.base import LogSink
from anybuild.backends.github.client import GithubClient, Retry
from anybuild.backends.github.preflight import (
    dispatch_ref,
    git_changes,
    included_changes,
    refuse_dirty,
    remote_mismatch_error,
)
from anybuild.backends.github.remote import DispatchPlan, RemoteSeams, run_on_github
from anybuild.backends.github.target import GithubTarget, resolve_target
from anybuild.backends.github.token import resolve_token
from anybuild.config import Config, ImageSpec
from anybuild.errors import UsageError
from anybuild.gitstate import GitState
from anybuild.process import Runner
from anybuild.redaction import Redactor
from anybuild.result import RunResult

__all__ = ["GithubRequest", "GithubSeams", "build_on_github", "open_client"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GithubRequest:
    """What the command line asks of a GitHub build."""

    images: tuple[ImageSpec, ...]
    args: tuple[str, ...]  # `anybuild build` arguments for the runner, e.g. ("--push", "--build-arg", "A=1")
    push: bool = False
    allow_dirty: bool = False
    fail_fast: bool = False
    reproducible: bool = False
    source_date_epoch: int | None = None
    reason: str = ""
    skipped: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GithubSeams:
    runner: Runner
    env: Mapping[str, str]
    redactor: Redactor
    sink_for: Callable[[str], LogSink]
    notify: Callable[[str], None]
    show_failure: Callable[[str, str, Sequence[str]], None]
    diagnose: Callable[[Sequence[str]], Sequence[Any]]
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    which: Callable[[str], str | None] = shutil.which
    request_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex[:16])


def open_client(target: GithubTarget, seams: GithubSeams) -> GithubClient:
    """A client for *target* with the token from the environment or gh; refused clearly without one."""
    token = resolve_token(target.host, env=seams.env, runner=seams.runner, gh=seams.which("gh"))
    if token is None:
        raise UsageError(
            f"no GitHub token for {target.host}",
            hint="export GH_TOKEN=<a token with actions: write and contents: read on "
            f"{target.repository}>, or run `gh auth login`" + ("" if target.host == "github.com" else
                                                                f" --hostname {target.host}"),
            docs="backends/github")
    seams.redactor.add(token.value)
    return GithubClient(api_url=target.api_url, token=token.value, owner=target.owner, repo=target.name,
                        redactor=seams.redactor, transport=seams.transport, sleep=seams.sleep, clock=seams.clock,
                        notify=seams.notify, retry=Retry())


def _expected(config: Config, images: Sequence[ImageSpec], git: GitState, request: GithubRequest,
              now: float) -> dict[str, tuple[str, ...]]:
    from anybuild.tags.image import compute_image_metadata

    expected: dict[str, tuple[str, ...]] = {}
    for spec in images:
        metadata = compute_image_metadata(config, spec, git, datetime.fromtimestamp(now, tz=UTC),
                                          reproducible=request.reproducible,
                                          source_date_epoch=request.source_date_epoch)
        if request.push and not metadata.references:
            raise UsageError(
                f"{spec.name}: the tag rules produce no tag for this commit, so there is nothing to push to",
                hint=f"run `anybuild tags {spec.name}` to see why, or add a rule such as type=sha")
        expected[spec.name] = metadata.references
    return expected


def build_on_github(config: Config, git: GitState, request: GithubRequest, seams: GithubSeams) -> RunResult:
    """Build *request*'s images of *config* in one workflow run of its GitHub repository."""
    settings = config.backend.github
    ref = dispatch_ref(git)
    top, changes = git_changes(config.root, seams.runner)
    dirty = included_changes(changes, top=top, config=config, images=request.images, workflow=settings.workflow)
    if dirty and not request.allow_dirty:
        raise refuse_dirty(dirty)
    for change in dirty:
        seams.notify(f"--allow-dirty: left out of the build, not committed: {change}")
    target = resolve_target(settings, repository_url=git.repository_url, env=seams.env)
    expected = _expected(config, request.images, git, request, seams.clock())
    with open_client(target, seams) as client:
        remote = client.commit_sha(ref.api_ref)
        if remote != git.sha:
            raise remote_mismatch_error(ref, git.sha, remote, target.repository)
        plan = DispatchPlan(
            repository=target.repository, web_url=target.web_url, workflow=settings.workflow, ref=ref,
            sha=git.sha, request_id=seams.request_id(), images=tuple(s.name for s in request.images),
            args=request.args, expected=expected, reason=request.reason, skipped=request.skipped,
            left_out=tuple(str(c) for c in dirty), fail_fast=request.fail_fast,
        )
        remote_seams = RemoteSeams(client=client, sink_for=seams.sink_for, notify=seams.notify,
                                   show_failure=seams.show_failure, diagnose=seams.diagnose,
                                   poll_interval=settings.poll_interval, sleep=seams.sleep, clock=seams.clock)
        return run_on_github(plan, remote_seams)
