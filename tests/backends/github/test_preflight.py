"""What a workflow run would not see: uncommitted changes a local build includes, and the ref to dispatch."""

from __future__ import annotations

import pytest

from anybuild.backends.github.preflight import dispatch_ref, git_changes, included_changes
from anybuild.config import load_config
from anybuild.errors import UsageError
from anybuild.gitstate import GitState
from anybuild.process import SubprocessRunner
from tests.backends.github.conftest import Checkout


def test_included_changes_follow_contexts_dockerignore_and_config(checkout: Checkout) -> None:
    repo = checkout.path
    (repo / "api" / "src" / "extra.js").write_text("x\n")  # in the context: included
    (repo / "api" / "README.md").write_text("x\n")  # .dockerignore: *.md
    (repo / "api" / "node_modules").mkdir()
    (repo / "api" / "node_modules" / "x.js").write_text("x\n")  # .dockerignore: node_modules
    (repo / "NOTES.md").write_text("x\n")  # outside every context
    config_text = (repo / "anybuild.toml").read_text()
    (repo / "anybuild.toml").write_text(config_text + "\n# edited\n")  # the config itself
    (repo / "frontend" / "Dockerfile").write_text("FROM scratch\n")  # a Dockerfile
    config = load_config(repo / "anybuild.toml")
    top, changes = git_changes(repo, SubprocessRunner())
    assert top == repo
    found = included_changes(changes, top=top, config=config, images=config.images, workflow="anybuild.yml")
    assert sorted(str(c) for c in found) == ["anybuild.toml (modified)", "api/src/extra.js (untracked)",
                                             "frontend/Dockerfile (modified)"]
    only_api = included_changes(changes, top=top, config=config, images=[config.image("api")],
                                workflow="anybuild.yml")
    assert "frontend/Dockerfile (modified)" not in [str(c) for c in only_api]


@pytest.mark.parametrize(
    ("state", "expected"),
    [(GitState(sha="a" * 40, ref="refs/heads/main", branch="main"), ("main", "heads/main", "branch")),
     (GitState(sha="a" * 40, ref="refs/tags/v1.2.3", branch="main"), ("v1.2.3", "tags/v1.2.3", "tag"))],
    ids=["branch", "tag"],
)
def test_dispatch_ref_is_the_ref_the_tag_rules_see(state: GitState, expected: tuple[str, str, str]) -> None:
    ref = dispatch_ref(state)
    assert (ref.name, ref.api_ref, ref.kind) == expected


def test_dispatch_ref_detached_head_refused() -> None:
    with pytest.raises(UsageError) as caught:
        dispatch_ref(GitState(sha="a" * 40))
    assert "detached" in caught.value.message and "git switch" in caught.value.hint
