"""Which token goes to which GitHub, and which repository is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from anybuild.backends.github.target import resolve_target
from anybuild.backends.github.token import resolve_token
from anybuild.config import GithubSettings
from anybuild.errors import ConfigError
from anybuild.process import Completed


class GhRunner:
    """Answers `gh auth token` as gh does: the token, or exit 1 when not logged in."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float | None = None, stdin: str | None = None, on_line: object = None) -> Completed:
        self.calls.append(tuple(argv))
        if self.token is None:
            return Completed(argv=tuple(argv), returncode=1, stderr="no oauth token found")
        return Completed(argv=tuple(argv), returncode=0, stdout=self.token + "\n")


@pytest.mark.parametrize(
    ("host", "env", "gh", "expected"),
    [("github.com", {"GH_TOKEN": "a", "GITHUB_TOKEN": "b"}, None, ("a", "GH_TOKEN")),
     ("github.com", {"GITHUB_TOKEN": "b"}, "g", ("b", "GITHUB_TOKEN")),
     ("github.com", {}, "g", ("g", "gh auth token --hostname github.com")),
     ("ghe.example.com", {"GH_TOKEN": "dotcom"}, None, None),  # a github.com token is not sent elsewhere
     ("ghe.example.com", {"GH_TOKEN": "t", "GH_HOST": "ghe.example.com"}, None, ("t", "GH_TOKEN")),
     ("ghe.example.com", {"GITHUB_ENTERPRISE_TOKEN": "e", "GH_TOKEN": "dotcom"}, None,
      ("e", "GITHUB_ENTERPRISE_TOKEN"))],
    ids=["gh-token-first", "github-token", "gh-cli", "ghes-not-dotcom-token", "ghes-gh-host", "ghes-enterprise"],
)
def test_resolve_token_sources(host: str, env: dict[str, str], gh: str | None,
                               expected: tuple[str, str] | None, tmp_path: Path) -> None:
    runner = GhRunner(gh)
    found = resolve_token(host, env={**env, "HOME": str(tmp_path)}, runner=runner,
                          gh="/usr/bin/gh" if gh else None)
    assert (found.value, found.source) == expected if found else expected is None
    if found:
        assert repr(found).endswith("value=***)")


def test_resolve_token_from_gh_hosts_file(tmp_path: Path) -> None:
    (tmp_path / "gh").mkdir()
    (tmp_path / "gh" / "hosts.yml").write_text("github.com:\n    oauth_token: gho_x1\n    user: dana\n")
    found = resolve_token("github.com", env={"GH_CONFIG_DIR": str(tmp_path / "gh")}, runner=GhRunner(None), gh=None)
    assert found is not None and found.value == "gho_x1"


@pytest.mark.parametrize(
    ("settings", "url", "env", "expected"),
    [(GithubSettings(), "https://github.com/acme/moltbook", {}, ("https://api.github.com", "acme/moltbook")),
     (GithubSettings(repository="acme/other"), "https://github.com/acme/moltbook", {},
      ("https://api.github.com", "acme/other")),
     (GithubSettings(api_url="https://ghe.example.com/api/v3"), "https://ghe.example.com/acme/moltbook", {},
      ("https://ghe.example.com/api/v3", "acme/moltbook")),
     (GithubSettings(), "", {"GITHUB_REPOSITORY": "acme/ci"}, ("https://api.github.com", "acme/ci"))],
    ids=["remote", "configured", "ghes", "env"],
)
def test_resolve_target(settings: GithubSettings, url: str, env: dict[str, str], expected: tuple[str, str]) -> None:
    target = resolve_target(settings, repository_url=url, env=env)
    assert (target.api_url, target.repository) == expected


def test_resolve_target_ghes_remote_without_api_url_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_target(GithubSettings(), repository_url="https://ghe.example.com/acme/moltbook", env={})
    assert 'api-url = "https://ghe.example.com/api/v3"' in caught.value.hint
