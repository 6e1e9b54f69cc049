"""The state of a git checkout, and the CI event it stands for, as tag rules need them.

:func:`read_git_state` asks git (through an injected :class:`~anybuild.process.Runner`)
for the commit, its time, the branch, the tags at HEAD, whether the tree is dirty,
the default branch (``origin/HEAD``, else ``init.defaultBranch``) and the remote URL,
then :func:`apply_ci_environment` lets CI variables (GitHub Actions, GitLab CI) say
which event is being built, since a CI checkout is usually a detached HEAD.

Outside CI, git alone decides, the way a workflow would have been triggered: a
tag at HEAD is a push of that tag (``refs/tags/X``), otherwise a push of the
branch (``refs/heads/B``); a detached HEAD without a tag has no ref, so only
``type=sha`` and ``type=raw`` rules can name it. ``notes`` says why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from anybuild.errors import BackendError
from anybuild.process import Completed, Runner
from anybuild.tags.version import parse_pep440, parse_semver

__all__ = [
    "GitState",
    "apply_ci_environment",
    "choose_tag",
    "read_git_state",
    "repository_url_from_remote",
]

_GIT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GitState:
    """What the tag rules see: the event and ref being built, and facts about the commit."""

    event: str = "push"
    ref: str = ""
    sha: str = ""
    commit_time: datetime | None = None
    branch: str | None = None
    tags: tuple[str, ...] = ()
    dirty: bool = False
    default_branch: str | None = None
    base_ref: str = ""
    head_ref: str = ""
    repository_url: str = ""
    repository_name: str = ""
    source: str = "git"
    notes: tuple[str, ...] = ()

    @property
    def ref_branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def ref_tag(self) -> str | None:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None

    @property
    def pull_request(self) -> str | None:
        if not self.ref.startswith("refs/pull/"):
            return None
        return self.ref.removeprefix("refs/pull/").removesuffix("/merge")

    def to_dict(self) -> dict[str, object]:
        return {
            "event": self.event,
            "ref": self.ref,
            "sha": self.sha,
            "commit_time": self.commit_time.isoformat() if self.commit_time else None,
            "branch": self.branch,
            "tags": list(self.tags),
            "dirty": self.dirty,
            "default_branch": self.default_branch,
            "base_ref": self.base_ref,
            "head_ref": self.head_ref,
            "repository_url": self.repository_url,
            "repository_name": self.repository_name,
            "source": self.source,
            "notes": list(self.notes),
        }


def _git(runner: Runner, root: Path, *args: str) -> Completed:
    return runner.run(["git", *args], cwd=root, timeout=_GIT_TIMEOUT)


def _line(result: Completed) -> str:
    return result.stdout.strip() if result.ok else ""


def read_git_state(root: Path, runner: Runner, env: Mapping[str, str]) -> GitState:
    """Read the checkout at *root*, then let the CI variables in *env* name the event."""
    return apply_ci_environment(_read_checkout(root, runner), env)


def _read_checkout(root: Path, runner: Runner) -> GitState:
    try:
        top = _git(runner, root, "rev-parse", "--show-toplevel")
    except BackendError as exc:  # git itself cannot run: tags that need no git still work
        return GitState(
            repository_name=root.name,
            notes=(f"git cannot run ({exc.message}): no branch, tag or commit; "
                   "only type=raw rules can produce tags",),
        )
    if not top.ok:
        reason = (top.stderr.strip().splitlines() or ["git rev-parse failed"])[-1]
        return GitState(
            repository_name=root.name,
            notes=(f"{root} is not a git work tree ({reason}): no branch, tag or commit; "
                   "only type=raw rules can produce tags",),
        )
    toplevel = Path(top.stdout.strip())
    sha = _line(_git(runner, root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"))
    branch = _line(_git(runner, root, "symbolic-ref", "--quiet", "--short", "HEAD")) or None
    tags: tuple[str, ...] = ()
    commit_time: datetime | None = None
    if sha:
        tags = tuple(sorted(_line(_git(runner, root, "tag", "--points-at", "HEAD")).split()))
        stamp = _line(_git(runner, root, "show", "-s", "--format=%ct", "HEAD"))
        commit_time = datetime.fromtimestamp(int(stamp), tz=UTC) if stamp.isdigit() else None
    # --no-optional-locks: never rewrite the index under a build that is reading the tree
    dirty = bool(_line(_git(runner, root, "--no-optional-locks", "status", "--porcelain")))
    remote_url = _remote_url(runner, root)
    repository_url = repository_url_from_remote(remote_url)
    name = repository_url.rstrip("/").rsplit("/", 1)[-1] if repository_url else toplevel.name
    notes: list[str] = []
    ref = ""
    tag, why = choose_tag(tags)
    if not sha:
        notes.append(f"branch {branch or '?'} has no commit yet: nothing to name")
    elif tag is not None:
        ref = f"refs/tags/{tag}"
        notes.append(f"HEAD is tagged {tag}{why}: built as a push of that tag"
                     + (f" (a push of branch {branch} would be another build)" if branch else ""))
    elif branch is not None:
        ref = f"refs/heads/{branch}"
        notes.append(f"HEAD is branch {branch} without a tag: built as a push of that branch")
    else:
        notes.append("HEAD is detached and not tagged: no branch or tag to name, "
                     "only type=sha and type=raw rules can produce tags")
    if dirty:
        notes.append("the working tree has uncommitted changes: tags and the revision label "
                     f"name commit {sha[:7] or '?'}, not exactly what is built")
    return GitState(
        event="push",
        ref=ref,
        sha=sha,
        commit_time=commit_time,
        branch=branch,
        tags=tags,
        dirty=dirty,
        default_branch=_default_branch(runner, root),
        repository_url=repository_url,
        repository_name=name,
        source="git",
        notes=tuple(notes),
    )


def choose_tag(tags: Sequence[str]) -> tuple[str | None, str]:
    """The tag a push would have been for when HEAD has several: the highest version, else the
    last by name. Returns the tag and a note explaining the choice (empty for one tag)."""
    if not tags:
        return None, ""
    if len(tags) == 1:
        return tags[0], ""

    def key(tag: str) -> tuple[int, tuple[object, ...], str]:
        semver = parse_semver(tag)
        if semver is not None:
            # a release sorts above its own pre-releases
            return 2, (semver.major, semver.minor, semver.patch, not semver.prerelease), tag
        pep = parse_pep440(tag)
        if pep is not None:
            return 1, (pep.epoch, pep.release, not pep.is_prerelease), tag
        return 0, (), tag

    best = max(tags, key=key)
    return best, f" (of {', '.join(tags)}: the highest version)"


def _default_branch(runner: Runner, root: Path) -> str | None:
    remote_head = _line(_git(runner, root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"))
    if remote_head:
        return remote_head.removeprefix("origin/")
    return _line(_git(runner, root, "config", "--get", "init.defaultBranch")) or None


def _remote_url(runner: Runner, root: Path) -> str:
    remotes = _line(_git(runner, root, "remote")).split()
    if not remotes:
        return ""
    name = "origin" if "origin" in remotes else remotes[0]
    return _line(_git(runner, root, "remote", "get-url", name))


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?:[^@/]*@)?(?P<host>[^/:]+)(?::(?P<port>\d+))?/(?P<path>.*)$",
                  re.IGNORECASE)


def repository_url_from_remote(remote: str) -> str:
    """The web URL of a remote (``git@github.com:o/r.git`` → ``https://github.com/o/r``),
    without credentials; empty for local paths."""
    remote = remote.strip()
    if not remote:
        return ""
    host, path, scheme, port = "", "", "https", None
    if (m := _URL.match(remote)) is not None:
        if m.group("scheme").lower() == "file":
            return ""
        host, path, port = m.group("host"), m.group("path"), m.group("port")
        if m.group("scheme").lower() == "http":
            scheme = "http"
        elif m.group("scheme").lower() not in ("https",):
            port = None  # ssh:// and git:// ports say nothing about the web server
    elif (m := _SCP_LIKE.match(remote)) is not None and not remote.startswith(("/", ".")):
        host, path = m.group("host"), m.group("path")
    else:
        return ""
    path = path.strip("/").removesuffix(".git")
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}/{path}" if path else f"{scheme}://{netloc}"


def apply_ci_environment(state: GitState, env: Mapping[str, str]) -> GitState:
    """*state* with the event, ref and commit the CI variables in *env* describe, if any."""
    if env.get("GITHUB_ACTIONS") == "true" or env.get("GITHUB_EVENT_NAME"):
        return _github(state, env)
    if env.get("GITLAB_CI") == "true" or env.get("CI_COMMIT_SHA"):
        return _gitlab(state, env)
    return state


def _same_commit(state: GitState, sha: str) -> datetime | None:
    return state.commit_time if sha and sha == state.sha else None


def _github(state: GitState, env: Mapping[str, str]) -> GitState:
    event = env.get("GITHUB_EVENT_NAME") or "push"
    ref = env.get("GITHUB_REF") or state.ref
    sha = env.get("GITHUB_SHA") or state.sha
    notes = [f"GitHub Actions: event {event}, GITHUB_REF={ref or '(unset)'}"]
    if event == "pull_request_target" and not ref.startswith("refs/pull/"):
        notes.append("pull_request_target: GITHUB_REF names the base branch; the pull request "
                     "number is only in the event payload, so type=ref,event=pr produces nothing")
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    repository = env.get("GITHUB_REPOSITORY", "")
    return replace(
        state,
        event=event,
        ref=ref,
        sha=sha,
        commit_time=_same_commit(state, sha),
        base_ref=env.get("GITHUB_BASE_REF", ""),
        head_ref=env.get("GITHUB_HEAD_REF", ""),
        repository_url=f"{server}/{repository}" if repository else state.repository_url,
        repository_name=repository.rsplit("/", 1)[-1] if repository else state.repository_name,
        source="github-actions",
        notes=(*notes, *(n for n in state.notes if "working tree" in n)),
    )


def _gitlab(state: GitState, env: Mapping[str, str]) -> GitState:
    sha = env.get("CI_COMMIT_SHA") or state.sha
    event, base_ref, head_ref = "push", "", ""
    if iid := env.get("CI_MERGE_REQUEST_IID"):
        event, ref = "pull_request", f"refs/pull/{iid}/merge"
        base_ref = env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "")
        head_ref = env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "")
    elif tag := env.get("CI_COMMIT_TAG"):
        ref = f"refs/tags/{tag}"
    elif branch := env.get("CI_COMMIT_BRANCH") or env.get("CI_COMMIT_REF_NAME"):
        ref = f"refs/heads/{branch}"
    else:
        ref = state.ref
    match env.get("CI_PIPELINE_SOURCE", ""):
        case "schedule":
            event = "schedule"
        case "web" | "api" | "trigger" | "pipeline" if event == "push":
            event = "workflow_dispatch"
    return replace(
        state,
        event=event,
        ref=ref,
        sha=sha,
        commit_time=_same_commit(state, sha),
        base_ref=base_ref,
        head_ref=head_ref,
        default_branch=env.get("CI_DEFAULT_BRANCH") or state.default_branch,
        repository_url=env.get("CI_PROJECT_URL") or state.repository_url,
        repository_name=env.get("CI_PROJECT_NAME") or state.repository_name,
        source="gitlab-ci",
        notes=(f"GitLab CI: pipeline source {env.get('CI_PIPELINE_SOURCE', '?')}, built as "
               f"event {event} of {ref or '(no ref)'}", *(n for n in state.notes if "working tree" in n)),
    )
