"""Where registry credentials come from, in order of precedence.

1. ``ANYBUILD_REGISTRY_AUTH``: a JSON object shaped like the ``auths`` section of
   Docker's config.json, for CI secrets that cover several registries::

       ANYBUILD_REGISTRY_AUTH='{"ghcr.io": {"username": "bot", "password": "…"},
                                "registry.example.com": {"auth": "<base64 user:pass>"}}'

2. ``ANYBUILD_REGISTRY_HOST`` + ``ANYBUILD_REGISTRY_USERNAME`` + ``ANYBUILD_REGISTRY_PASSWORD``:
   one registry's credentials. The host is required, so a password is never sent
   to a registry it was not meant for.
3. Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else
   ``~/.docker/config.json``): ``credHelpers[host]``, then ``credsStore``, both run as
   ``docker-credential-<name> get``; then ``auths[host]`` (base64 ``auth``, or
   ``username``/``password``, or ``identitytoken``).
4. ``GITHUB_TOKEN`` (user ``GITHUB_ACTOR``, else ``x-access-token``) for ``ghcr.io`` only.

Nothing here reads globals: the environment, the home directory and the program
runner are passed in.
"""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anybuild.errors import ConfigError, RegistryAuthError
from anybuild.registry.reference import DOCKER_HUB, DOCKER_HUB_API

__all__ = ["CredentialResolver", "Credentials", "HelperRunner", "run_helper"]

_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", DOCKER_HUB, DOCKER_HUB_API)
_HUB_SERVER_URL = "https://index.docker.io/v1/"


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A username and a secret (a password, or an identity token for the OAuth2 refresh flow)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    source: str = ""

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.identity_token) if s)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, source={self.source!r}, secret=***)"


# (argv, stdin) -> (returncode, stdout, stderr)
HelperRunner = Callable[[Sequence[str], str], tuple[int, str, str]]


def run_helper(argv: Sequence[str], stdin: str) -> tuple[int, str, str]:
    """Run a credential helper for real."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found on PATH"
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]}: timed out after 60s"
    return done.returncode, done.stdout, done.stderr


def _host_key(key: str) -> str:
    """``https://ghcr.io/v1/`` → ``ghcr.io``; Docker Hub's aliases → ``docker.io``."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if key in _HUB_KEYS or host in _HUB_KEYS else host


def _decode_entry(entry: Any, where: str, source: str) -> Credentials | None:
    if not isinstance(entry, Mapping):
        return None
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{where}: 'auth' is not base64 of USER:PASSWORD",
                              hint="log in again with `docker login`, or fix the entry") from None
        username, _, password = decoded.partition(":")
    token = str(entry.get("identitytoken") or "")
    if not (password or token):
        return None
    return Credentials(username=username, password=password, identity_token=token, source=source)


class CredentialResolver:
    """Finds the credentials for a registry host; see the module docstring for the order."""

    def __init__(self, *, env: Mapping[str, str], home: Path, runner: HelperRunner = run_helper) -> None:
        self._env = env
        self._home = home
        self._runner = runner
        self._docker_config: dict[str, Any] | None = None

    @property
    def config_path(self) -> Path:
        base = self._env.get("DOCKER_CONFIG")
        return (Path(base) if base else self._home / ".docker") / "config.json"

    def _config(self) -> dict[str, Any]:
        if self._docker_config is None:
            path = self.config_path
            try:
                loaded = json.loads(path.read_text())
            except FileNotFoundError:
                loaded = {}
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"cannot read Docker config {path}: {exc}",
                                  hint="fix or remove the file, or set DOCKER_CONFIG to another directory",
                                  docs="registry-auth") from exc
            self._docker_config = loaded if isinstance(loaded, dict) else {}
        return self._docker_config

    def resolve(self, host: str) -> Credentials | None:
        """The credentials for *host* (a registry name such as ``ghcr.io`` or ``docker.io``), or None."""
        host = _host_key(host)
        for find in (self._from_env_json, self._from_env_single, self._from_helpers, self._from_auths,
                     self._from_github):
            found = find(host)
            if found is not None:
                return found
        return None

    def _from_env_json(self, host: str) -> Credentials | None:
        raw = self._env.get("ANYBUILD_REGISTRY_AUTH")
        if not raw:
            return None
        try:
            table = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError("ANYBUILD_REGISTRY_AUTH is not JSON",
                              hint='set it to {"HOST": {"username": "...", "password": "..."}}',
                              docs="registry-auth") from None
        if not isinstance(table, dict):
            raise ConfigError("ANYBUILD_REGISTRY_AUTH must be a JSON object keyed by registry host",
                              hint='set it to {"HOST": {"username": "...", "password": "..."}}')
        for key, entry in table.items():
            if _host_key(key) == host:
                return _decode_entry(entry, "ANYBUILD_REGISTRY_AUTH", "env ANYBUILD_REGISTRY_AUTH")
        return None

    def _from_env_single(self, host: str) -> Credentials | None:
        target = self._env.get("ANYBUILD_REGISTRY_HOST")
        password = self._env.get("ANYBUILD_REGISTRY_PASSWORD")
        if not target or not password or _host_key(target) != host:
            return None
        return Credentials(username=self._env.get("ANYBUILD_REGISTRY_USERNAME", ""), password=password,
                           source="env ANYBUILD_REGISTRY_USERNAME/PASSWORD")

    def _from_helpers(self, host: str) -> Credentials | None:
        config = self._config()
        helpers = config.get("credHelpers") or {}
        helper = next((v for k, v in helpers.items() if _host_key(k) == host), None) if isinstance(
            helpers, dict) else None
        helper = helper or config.get("credsStore")
        if not helper or not isinstance(helper, str):
            return None
        return self._run_helper(helper, host)

    def _run_helper(self, helper: str, host: str) -> Credentials | None:
        program = f"docker-credential-{helper}"
        server = _HUB_SERVER_URL if host == DOCKER_HUB else host
        code, out, err = self._runner([program, "get"], server)
        if code != 0:
            if "credentials not found" in (out + err).lower():
                return None
            raise RegistryAuthError(
                f"credential helper {program} failed for {host} (exit {code}): {err.strip() or out.strip()}",
                hint=f"check that {program} is installed and logged in, or run `docker login {host}`",
                docs="registry-auth",
            )
        try:
            answer = json.loads(out)
            username, secret = str(answer.get("Username", "")), str(answer["Secret"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise RegistryAuthError(f"credential helper {program} printed an unexpected answer for {host}",
                                    hint=f"run `echo {server} | {program} get` to see what it returns",
                                    docs="registry-auth") from None
        if username == "<token>":
            return Credentials(identity_token=secret, source=program)
        return Credentials(username=username, password=secret, source=program)

    def _from_auths(self, host: str) -> Credentials | None:
        auths = self._config().get("auths") or {}
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if _host_key(key) == host:
                return _decode_entry(entry, f"{self.config_path} auths[{key!r}]", str(self.config_path))
        return None

    def _from_github(self, host: str) -> Credentials | None:
        token = self._env.get("GITHUB_TOKEN")
        if host != "ghcr.io" or not token:
            return None
        return Credentials(username=self._env.get("GITHUB_ACTOR") or "x-access-token", password=token,
                           source="env GITHUB_TOKEN")
