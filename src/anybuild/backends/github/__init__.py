"""The GitHub Actions backend: a workflow anybuild writes, dispatched and watched from the terminal.

- :mod:`.workflow` renders ``.github/workflows/anybuild.yml`` (``anybuild github init``),
  :mod:`.lint` checks it (``anybuild lint --workflow``), :mod:`.pins` holds the
  commits its actions are pinned to;
- :mod:`.client` is the thin REST client (errors, rate limits, ETags, redirects
  without the token), :mod:`.token` and :mod:`.target` say with which token and
  against which repository;
- :mod:`.preflight` refuses a dispatch that would not build what is here,
  :mod:`.remote` dispatches, follows and collects, :mod:`.project` ties them to a
  build of anybuild.toml's images; :mod:`.probe` answers ``doctor --online``.

A workflow run builds the images of anybuild.toml by name, all in one run, so the
backend builds projects (``anybuild build NAME... --backend github``), not a directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, Verdict
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import BackendError
from anybuild.process import Runner, SubprocessRunner

__all__ = ["GithubBackend", "github_verdict"]


def github_verdict(facts: Facts) -> Verdict:
    """Whether a workflow can be dispatched from here: a token, a GitHub repository, not already in Actions."""
    evidence = tuple(e for e in (facts.evidence(FactKey.GITHUB_TOKEN), facts.evidence(FactKey.GITHUB_REPOSITORY))
                     if e)
    if facts.text(FactKey.CI) == "github-actions":
        return Verdict(ok=False, reason="already inside a GitHub Actions job: it builds here, it does not "
                       "dispatch another run", evidence=(facts.evidence(FactKey.CI),),
                       fix="build with a local backend in the job")
    if not facts.flag(FactKey.GITHUB_TOKEN):
        return Verdict(ok=False, reason="no GitHub token", evidence=evidence,
                       fix="export GH_TOKEN (a token with actions: write and contents: read), or run `gh auth login`")
    repository = facts.text(FactKey.GITHUB_REPOSITORY)
    if not repository:
        return Verdict(ok=False, reason="no GitHub repository to dispatch in", evidence=evidence,
                       fix='set [backend.github] repository = "OWNER/NAME" in anybuild.toml, or clone from GitHub')
    return Verdict(ok=True, reason=f"builds on GitHub's runners: a workflow_dispatch in {repository}",
                   evidence=evidence)


@dataclass(frozen=True, slots=True, kw_only=True)
class GithubBackend:
    """The backend as the planner sees it; a build goes through :func:`.project.build_on_github`."""

    runner: Runner = field(default_factory=SubprocessRunner)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    name: BackendName = BackendName.GITHUB

    @classmethod
    def from_facts(cls, facts: Facts, *, runner: Runner, env: Mapping[str, str]) -> GithubBackend:
        del facts
        return cls(runner=runner, env=env)

    def available(self, facts: Facts) -> Verdict:
        return github_verdict(facts)

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        """One directory cannot be built: the workflow builds images of anybuild.toml, by name."""
        del sink
        raise BackendError(
            f"the github backend builds the images of anybuild.toml in one workflow run, not the directory "
            f"{request.context}",
            backend="github", environmental=True,
            hint="name the images: anybuild build NAME... --backend github (or --all)", docs="backends/github")
