"""Which repository on which GitHub: ``[backend.github]``, else the git remote and the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from anybuild.config import GithubSettings
from anybuild.errors import ConfigError

__all__ = ["GithubTarget", "resolve_target"]

_WEB = re.compile(r"^(?P<scheme>https?)://(?P<host>[^/]+)/(?P<owner>[^/]+)/(?P<name>[^/]+?)/?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class GithubTarget:
    api_url: str  # "https://api.github.com" or "https://HOST/api/v3"
    host: str  # the web host: "github.com"
    owner: str
    name: str
    source: str  # where the repository came from

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def web_url(self) -> str:
        scheme = "http" if self.api_url.startswith("http://") else "https"
        return f"{scheme}://{self.host}/{self.repository}"


def _api_for(host: str) -> str:
    return "https://api.github.com" if host == "github.com" else f"https://{host}/api/v3"


def _host_of_api(api_url: str) -> str:
    netloc = api_url.split("://", 1)[-1].split("/", 1)[0]
    return "github.com" if netloc == "api.github.com" else netloc


def resolve_target(settings: GithubSettings, *, repository_url: str, env: Mapping[str, str]) -> GithubTarget:
    """The repository to dispatch in; *repository_url* is the web URL of the git remote ("" if none)."""
    api_url = (settings.api_url or env.get("GITHUB_API_URL", "")).rstrip("/")
    if settings.repository:
        owner, name = settings.repository.split("/", 1)
        host = _host_of_api(api_url) if api_url else "github.com"
        return GithubTarget(api_url=api_url or _api_for(host), host=host, owner=owner, name=name,
                            source="[backend.github] repository")
    match = _WEB.match(repository_url)
    if match is not None:
        host = match["host"]
        if api_url and _host_of_api(api_url) != host:
            raise ConfigError(
                f"the git remote is on {host} but the GitHub API is {api_url}",
                key="backend.github.api-url", value=api_url,
                hint='set [backend.github] repository = "OWNER/NAME" for the repository on that API, '
                "or api-url for the remote's server")
        if host != "github.com" and not api_url:
            raise ConfigError(
                f"the git remote is on {host}, not github.com: which API serves it is not known",
                key="backend.github.api-url",
                hint=f'set [backend.github] api-url = "https://{host}/api/v3" (GitHub Enterprise Server)')
        return GithubTarget(api_url=api_url or _api_for(host), host=host, owner=match["owner"],
                            name=match["name"], source=f"git remote {repository_url}")
    if env.get("GITHUB_REPOSITORY", "").count("/") == 1:
        owner, name = env["GITHUB_REPOSITORY"].split("/")
        host = _host_of_api(api_url) if api_url else "github.com"
        return GithubTarget(api_url=api_url or _api_for(host), host=host, owner=owner, name=name,
                            source="GITHUB_REPOSITORY")
    raise ConfigError(
        "no GitHub repository to build in: the checkout has no GitHub remote",
        key="backend.github.repository",
        hint='set [backend.github] repository = "OWNER/NAME" in anybuild.toml, or add the remote: '
        "git remote add origin https://github.com/OWNER/NAME.git")
