"""Reading git state from real temporary repositories, and CI variables naming the event."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from anybuild.gitstate import (
    GitState,
    apply_ci_environment,
    choose_tag,
    read_git_state,
    repository_url_from_remote,
)
from anybuild.process import SubprocessRunner
from anybuild.tags import compute_metadata

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

DATE = "2021-02-03T04:05:06+00:00"
DATE_VALUE = datetime(2021, 2, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither this machine's nor the user's git configuration may change what git reports."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str, date: str = DATE) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "moltbook"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README").write_text("hello\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "first")
    yield root


def read(root: Path, env: dict[str, str] | None = None) -> GitState:
    return read_git_state(root, SubprocessRunner(), env or {})


def test_read_git_state_branch_gives_branch_push(repo: Path) -> None:
    state = read(repo)
    assert state.event == "push"
    assert state.ref == "refs/heads/main"
    assert state.branch == "main"
    assert state.sha == git(repo, "rev-parse", "HEAD")
    assert state.commit_time == DATE_VALUE
    assert state.tags == ()
    assert not state.dirty
    assert state.repository_name == "moltbook"
    assert state.source == "git"
    assert any("branch main without a tag" in n for n in state.notes)


def test_read_git_state_subdirectory_reads_the_same_checkout(repo: Path) -> None:
    (repo / "api").mkdir()
    assert read(repo / "api").sha == read(repo).sha


def test_read_git_state_tag_at_head_gives_tag_push(repo: Path) -> None:
    git(repo, "tag", "-a", "v1.2.3", "-m", "release")
    state = read(repo)
    assert state.ref == "refs/tags/v1.2.3"
    assert state.tags == ("v1.2.3",)
    assert state.branch == "main"
    assert any("tagged v1.2.3" in n for n in state.notes)


def test_read_git_state_several_tags_picks_highest_version(repo: Path) -> None:
    for name in ("v1.2.3", "v1.10.0-rc.1", "v1.10.0", "nightly"):
        git(repo, "tag", name)
    state = read(repo)
    assert state.ref == "refs/tags/v1.10.0"
    assert set(state.tags) == {"v1.2.3", "v1.10.0-rc.1", "v1.10.0", "nightly"}


def test_read_git_state_tag_on_older_commit_is_ignored(repo: Path) -> None:
    git(repo, "tag", "v0.1.0")
    (repo / "README").write_text("two\n")
    git(repo, "commit", "-qam", "second", date="2021-02-04T00:00:00+00:00")
    state = read(repo)
    assert state.ref == "refs/heads/main"
    assert state.commit_time == datetime(2021, 2, 4, tzinfo=UTC)


def test_read_git_state_detached_without_tag_has_no_ref(repo: Path) -> None:
    (repo / "README").write_text("two\n")
    git(repo, "commit", "-qam", "second")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    state = read(repo)
    assert state.ref == ""
    assert state.branch is None
    assert any("detached" in n for n in state.notes)
    metadata = compute_metadata(["type=ref,event=branch", "type=sha"], [], state, "r/app", DATE_VALUE)
    assert metadata.tags == (f"sha-{state.sha[:7]}",)


def test_read_git_state_detached_on_tag_gives_tag_push(repo: Path) -> None:
    git(repo, "tag", "v2.0.0")
    git(repo, "checkout", "-q", "--detach", "v2.0.0")
    assert read(repo).ref == "refs/tags/v2.0.0"


@pytest.mark.parametrize("change", ["modified", "untracked", "staged"])
def test_read_git_state_changes_make_tree_dirty(repo: Path, change: str) -> None:
    match change:
        case "modified":
            (repo / "README").write_text("changed\n")
        case "untracked":
            (repo / "new.txt").write_text("x\n")
        case _:
            (repo / "staged.txt").write_text("x\n")
            git(repo, "add", "staged.txt")
    state = read(repo)
    assert state.dirty
    assert any("uncommitted changes" in n for n in state.notes)


def test_read_git_state_default_branch_from_origin_head(repo: Path) -> None:
    git(repo, "update-ref", "refs/remotes/origin/trunk", "HEAD")
    git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")
    assert read(repo).default_branch == "trunk"


def test_read_git_state_default_branch_from_config(repo: Path) -> None:
    git(repo, "config", "init.defaultBranch", "develop")
    assert read(repo).default_branch == "develop"


def test_read_git_state_default_branch_unknown_is_none(repo: Path) -> None:
    assert read(repo).default_branch is None


def test_read_git_state_remote_gives_repository_url_without_credentials(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://dana:ghp_secret@github.com/acme/moltbook-app.git")
    state = read(repo)
    assert state.repository_url == "https://github.com/acme/moltbook-app"
    assert state.repository_name == "moltbook-app"
    assert "ghp_secret" not in str(state.to_dict())


def test_read_git_state_not_a_repository_explains(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    state = read(plain)
    assert state.sha == ""
    assert state.ref == ""
    assert "not a git work tree" in state.notes[0]
    metadata = compute_metadata(["type=sha", "type=raw,dev"], [], state, "r/app", DATE_VALUE)
    assert metadata.tags == ("dev",)


def test_read_git_state_no_commit_yet(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    state = read(empty)
    assert state.sha == ""
    assert state.branch == "main"
    assert state.ref == ""
    assert any("no commit yet" in n for n in state.notes)


def test_read_git_state_github_env_overrides_git(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    state = read(repo, {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
                        "GITHUB_REF": "refs/pull/7/merge", "GITHUB_SHA": sha, "GITHUB_BASE_REF": "main",
                        "GITHUB_REPOSITORY": "acme/moltbook"})
    assert state.source == "github-actions"
    assert state.pull_request == "7"
    assert state.commit_time == DATE_VALUE  # same commit as the checkout
    metadata = compute_metadata([], [], state, "r/app", DATE_VALUE)
    assert metadata.tags == ("pr-7",)


def test_read_git_state_tagged_repo_gives_semver_tags_end_to_end(repo: Path) -> None:
    git(repo, "tag", "v1.2.3")
    git(repo, "remote", "add", "origin", "git@github.com:acme/moltbook.git")
    state = read(repo)
    metadata = compute_metadata(
        ["type=ref,event=branch", "type=semver,pattern={{version}}", "type=semver,pattern={{major}}.{{minor}}",
         "type=sha"], ["latest=auto"], state, "ghcr.io/acme/moltbook-api", datetime(2030, 1, 1, tzinfo=UTC),
        reproducible=True,
    )
    short = state.sha[:7]
    assert metadata.references == (
        "ghcr.io/acme/moltbook-api:1.2.3", "ghcr.io/acme/moltbook-api:1.2",
        f"ghcr.io/acme/moltbook-api:sha-{short}", "ghcr.io/acme/moltbook-api:latest",
    )
    assert metadata.labels["org.opencontainers.image.created"] == "2021-02-03T04:05:06.000Z"
    assert metadata.labels["org.opencontainers.image.source"] == "https://github.com/acme/moltbook"
    assert metadata.labels["org.opencontainers.image.title"] == "moltbook"
    assert metadata.labels["org.opencontainers.image.revision"] == state.sha


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:acme/moltbook.git", "https://github.com/acme/moltbook"),
        ("github.com:acme/moltbook", "https://github.com/acme/moltbook"),
        ("https://github.com/acme/moltbook.git", "https://github.com/acme/moltbook"),
        ("https://user:token@gitlab.example.com/g/sub/p.git", "https://gitlab.example.com/g/sub/p"),
        ("ssh://git@git.example.com:2222/acme/x.git", "https://git.example.com/acme/x"),
        ("git://example.org/acme/x", "https://example.org/acme/x"),
        ("http://127.0.0.1:3000/acme/x.git", "http://127.0.0.1:3000/acme/x"),
        ("https://git.example.com:8443/acme/x", "https://git.example.com:8443/acme/x"),
        ("/srv/git/x.git", ""),
        ("../x", ""),
        ("file:///srv/git/x.git", ""),
        ("", ""),
    ],
    ids=["scp", "scp-no-user", "https", "creds", "ssh-port", "git", "http-port", "https-port", "path",
         "relative", "file", "empty"],
)
def test_repository_url_from_remote(remote: str, url: str) -> None:
    assert repository_url_from_remote(remote) == url


@pytest.mark.parametrize(
    ("tags", "chosen"),
    [
        ((), None),
        (("x",), "x"),
        (("v1.2.3", "v1.10.0"), "v1.10.0"),
        (("v2.0.0-rc.1", "v2.0.0"), "v2.0.0"),
        (("nightly", "v0.1.0"), "v0.1.0"),
        (("1.0", "1.0rc1"), "1.0"),
        (("alpha", "beta"), "beta"),
    ],
    ids=["none", "one", "numeric", "release-over-rc", "semver-over-word", "pep440", "words"],
)
def test_choose_tag(tags: tuple[str, ...], chosen: str | None) -> None:
    assert choose_tag(tags)[0] == chosen


GIT = GitState(event="push", ref="refs/heads/main", sha="a" * 40, commit_time=DATE_VALUE,
               default_branch="main", repository_url="https://example.com/a/b", repository_name="b")


@pytest.mark.parametrize(
    ("env", "event", "ref", "base_ref"),
    [
        ({}, "push", "refs/heads/main", ""),
        ({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/tags/v1.2.3"},
         "push", "refs/tags/v1.2.3", ""),
        ({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF": "refs/pull/15/merge", "GITHUB_BASE_REF": "main",
          "GITHUB_HEAD_REF": "feature"}, "pull_request", "refs/pull/15/merge", "main"),
        ({"GITHUB_EVENT_NAME": "schedule", "GITHUB_REF": "refs/heads/main"}, "schedule", "refs/heads/main", ""),
        ({"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_REF": "refs/heads/dev"},
         "workflow_dispatch", "refs/heads/dev", ""),
        ({"GITLAB_CI": "true", "CI_COMMIT_SHA": "b" * 40, "CI_MERGE_REQUEST_IID": "42",
          "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_COMMIT_REF_NAME": "feature"},
         "pull_request", "refs/pull/42/merge", "main"),
        ({"GITLAB_CI": "true", "CI_COMMIT_SHA": "b" * 40, "CI_COMMIT_TAG": "v3.0.0", "CI_COMMIT_REF_NAME": "v3.0.0"},
         "push", "refs/tags/v3.0.0", ""),
        ({"GITLAB_CI": "true", "CI_COMMIT_SHA": "b" * 40, "CI_COMMIT_BRANCH": "dev", "CI_PIPELINE_SOURCE": "push"},
         "push", "refs/heads/dev", ""),
        ({"GITLAB_CI": "true", "CI_COMMIT_SHA": "b" * 40, "CI_COMMIT_BRANCH": "main",
          "CI_PIPELINE_SOURCE": "schedule"}, "schedule", "refs/heads/main", ""),
        ({"GITLAB_CI": "true", "CI_COMMIT_SHA": "b" * 40, "CI_COMMIT_REF_NAME": "main", "CI_PIPELINE_SOURCE": "web"},
         "workflow_dispatch", "refs/heads/main", ""),
    ],
    ids=["none", "gh-tag", "gh-pr", "gh-schedule", "gh-dispatch", "gl-mr", "gl-tag", "gl-branch", "gl-schedule",
         "gl-web"],
)
def test_apply_ci_environment_names_event(env: dict[str, str], event: str, ref: str, base_ref: str) -> None:
    state = apply_ci_environment(GIT, env)
    assert (state.event, state.ref, state.base_ref) == (event, ref, base_ref)


def test_apply_ci_environment_other_commit_drops_commit_time() -> None:
    state = apply_ci_environment(GIT, {"GITHUB_EVENT_NAME": "push", "GITHUB_SHA": "c" * 40,
                                       "GITHUB_REF": "refs/heads/main"})
    assert state.sha == "c" * 40
    assert state.commit_time is None


def test_apply_ci_environment_github_repository_url() -> None:
    state = apply_ci_environment(GIT, {"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "octocat/Hello-World",
                                       "GITHUB_SERVER_URL": "https://github.com"})
    assert state.repository_url == "https://github.com/octocat/Hello-World"
    assert state.repository_name == "Hello-World"


def test_apply_ci_environment_gitlab_default_branch_and_project() -> None:
    state = apply_ci_environment(GIT, {"GITLAB_CI": "true", "CI_COMMIT_SHA": "a" * 40, "CI_COMMIT_BRANCH": "x",
                                       "CI_DEFAULT_BRANCH": "trunk", "CI_PROJECT_URL": "https://gl.example/g/p",
                                       "CI_PROJECT_NAME": "p"})
    assert (state.default_branch, state.repository_url, state.repository_name) == (
        "trunk", "https://gl.example/g/p", "p")
    assert state.commit_time == DATE_VALUE


def test_apply_ci_environment_pull_request_target_explains_missing_number() -> None:
    state = apply_ci_environment(GIT, {"GITHUB_EVENT_NAME": "pull_request_target", "GITHUB_REF": "refs/heads/main"})
    assert any("pull_request_target" in n for n in state.notes)


def test_read_git_state_missing_git_degrades_to_raw_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # the real runner finds no git
    state = read_git_state(tmp_path, SubprocessRunner(), {})
    assert state.sha == ""
    assert "git cannot run" in state.notes[0]
    metadata = compute_metadata(["type=sha", "type=raw,dev"], [], state, "r/app", DATE_VALUE)
    assert metadata.tags == ("dev",)
