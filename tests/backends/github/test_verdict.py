"""When the planner chooses the github backend, and what it says."""

from __future__ import annotations

import pytest

from anybuild.backends.catalog import availability_checks
from anybuild.backends.github import github_verdict
from anybuild.config import DEFAULT_BACKENDS
from anybuild.environment.facts import Fact, FactKey, Facts
from anybuild.planner import plan_build


def facts(**values: object) -> Facts:
    return Facts(tuple(Fact(key=str(k), value=v, evidence=f"{k} given") for k, v in values.items()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "ok", "words"),
    [({FactKey.GITHUB_TOKEN: True, FactKey.GITHUB_REPOSITORY: "acme/moltbook"}, True, "acme/moltbook"),
     ({FactKey.GITHUB_TOKEN: False, FactKey.GITHUB_REPOSITORY: "acme/moltbook"}, False, "gh auth login"),
     ({FactKey.GITHUB_TOKEN: True, FactKey.GITHUB_REPOSITORY: None}, False, "[backend.github] repository"),
     ({FactKey.GITHUB_TOKEN: True, FactKey.GITHUB_REPOSITORY: "a/b", FactKey.CI: "github-actions"}, False,
      "already inside a GitHub Actions job")],
    ids=["token-and-repo", "no-token", "no-repo", "inside-actions"],
)
def test_github_verdict(given: dict[str, object], ok: bool, words: str) -> None:
    verdict = github_verdict(facts(**{str(k): v for k, v in given.items()}))
    assert verdict.ok is ok
    assert words in verdict.reason + verdict.fix


def test_planner_chooses_github_when_nothing_local_builds_and_says_why() -> None:
    # a non-root user without user namespaces, proot, docker or buildah: no local backend works
    here = facts(**{FactKey.UID: 1000, FactKey.USERNS_WORKS: False, FactKey.DOCKER_REACHABLE: False,
                    FactKey.GITHUB_TOKEN: True, FactKey.GITHUB_REPOSITORY: "acme/moltbook"})
    plan = plan_build(here, order=DEFAULT_BACKENDS, checks=availability_checks())
    assert plan.first is not None and str(plan.first.backend) == "github"
    assert plan.first.reason.startswith("no local backend can build here, so: builds on GitHub's runners")
    assert not plan.can_build_locally


def test_planner_prefers_a_local_backend_over_github() -> None:
    here = facts(**{FactKey.UID: 0, FactKey.CAP_SYS_ADMIN: True, FactKey.GITHUB_TOKEN: True,
                    FactKey.GITHUB_REPOSITORY: "acme/moltbook"})
    plan = plan_build(here, order=DEFAULT_BACKENDS, checks=availability_checks())
    assert plan.first is not None and str(plan.first.backend) == "builtin"
    github = next(c for c in plan.candidates if str(c.backend) == "github")
    assert not github.reason.startswith("no local backend")
