"""Where the GitHub token comes from: the environment, then gh's stored credentials.

For github.com: ``GH_TOKEN``, then ``GITHUB_TOKEN`` (gh's own order). For another
host (GitHub Enterprise Server): ``GH_ENTERPRISE_TOKEN``, then
``GITHUB_ENTERPRISE_TOKEN``; ``GH_TOKEN``/``GITHUB_TOKEN`` only when ``GH_HOST`` or
``GITHUB_SERVER_URL`` names that host, so a github.com token is never sent to
another server. Then ``gh auth token --hostname HOST`` (which reads gh's keyring),
then the ``oauth_token`` of gh's ``hosts.yml``. The value is never printed: a
:class:`Token` shows its source only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from anybuild.errors import BackendError
from anybuild.process import Runner

__all__ = ["GITHUB_COM", "Token", "gh_hosts_file", "resolve_token"]

GITHUB_COM = "github.com"


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    source: str

    def __repr__(self) -> str:
        return f"Token(source={self.source!r}, value=***)"


def gh_hosts_file(env: Mapping[str, str]) -> Path:
    """gh's hosts.yml: ``$GH_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/gh``, else ``~/.config/gh``."""
    if env.get("GH_CONFIG_DIR"):
        return Path(env["GH_CONFIG_DIR"]) / "hosts.yml"
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path(env.get("HOME") or "/root") / ".config"
    return base / "gh" / "hosts.yml"


def _env_names(host: str, env: Mapping[str, str]) -> tuple[str, ...]:
    if host == GITHUB_COM:
        return ("GH_TOKEN", "GITHUB_TOKEN")
    server = env.get("GITHUB_SERVER_URL", "").split("://", 1)[-1].split("/", 1)[0]
    same = host in (env.get("GH_HOST", ""), server)
    return ("GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN", *(("GH_TOKEN", "GITHUB_TOKEN") if same else ()))


def resolve_token(host: str, *, env: Mapping[str, str], runner: Runner, gh: str | None) -> Token | None:
    """The token for *host*, or None when none is configured; *gh* is gh's path, if on PATH."""
    for name in _env_names(host, env):
        if env.get(name):
            return Token(env[name], name)
    if gh is not None:
        try:
            done = runner.run([gh, "auth", "token", "--hostname", host], env=env, timeout=10)
        except BackendError:
            done = None
        if done is not None and done.ok and done.stdout.strip():
            return Token(done.stdout.strip(), f"gh auth token --hostname {host}")
    hosts = gh_hosts_file(env)
    if not hosts.is_file():
        return None
    import yaml  # ~30 ms: only when gh's hosts file is there to read

    try:
        data = yaml.safe_load(hosts.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    entry = data.get(host) if isinstance(data, dict) else None
    value = entry.get("oauth_token") if isinstance(entry, dict) else None
    return Token(value, f"{hosts} ({host})") if isinstance(value, str) and value else None
