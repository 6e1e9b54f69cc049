import base64
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from anybuild.errors import ConfigError, RegistryAuthError
from anybuild.registry.credentials import CredentialResolver, run_helper


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _home(tmp_path: Path, config: dict[str, object]) -> Path:
    (tmp_path / ".docker").mkdir(exist_ok=True)
    (tmp_path / ".docker/config.json").write_text(json.dumps(config))
    return tmp_path


class Helpers:
    """Records helper calls; answers from a table of (program -> (code, stdout, stderr))."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, argv: Sequence[str], stdin: str) -> tuple[int, str, str]:
        self.calls.append((list(argv), stdin))
        return self.answers[argv[0]]


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("ghcr.io", "ghcr.io"),
        ("https://ghcr.io", "ghcr.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("https://index.docker.io/v1/", "registry-1.docker.io"),
        ("docker.io", "docker.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
    ],
    ids=["plain", "scheme", "hub-legacy", "hub-api-host", "hub", "port"],
)
def test_credentials_auths_base64_matched_by_host(tmp_path: Path, key: str, host: str) -> None:
    home = _home(tmp_path, {"auths": {key: {"auth": _b64("alice:s3cret:with:colons")}}})
    creds = CredentialResolver(env={}, home=home).resolve(host)
    assert creds is not None
    assert (creds.username, creds.password) == ("alice", "s3cret:with:colons")


def test_credentials_auths_username_password_and_identitytoken(tmp_path: Path) -> None:
    home = _home(tmp_path, {"auths": {"a.test": {"username": "u", "password": "p4ss"},
                                      "b.test": {"identitytoken": "idtok-123"}}})
    resolver = CredentialResolver(env={}, home=home)
    assert resolver.resolve("a.test").password == "p4ss"  # type: ignore[union-attr]
    assert resolver.resolve("b.test").identity_token == "idtok-123"  # type: ignore[union-attr]
    assert resolver.resolve("c.test") is None


def test_credentials_docker_config_env_overrides_home(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"auths": {"x.test": {"auth": _b64("ci:tok3n")}}}))
    resolver = CredentialResolver(env={"DOCKER_CONFIG": str(other)}, home=tmp_path / "nohome")
    assert resolver.resolve("x.test").password == "tok3n"  # type: ignore[union-attr]


def test_credentials_cred_helper_preferred_over_auths(tmp_path: Path) -> None:
    home = _home(tmp_path, {"credHelpers": {"ghcr.io": "pass"}, "auths": {"ghcr.io": {"auth": _b64("a:b1234")}}})
    helpers = Helpers({"docker-credential-pass": (0, json.dumps({"Username": "h", "Secret": "from-helper"}), "")})
    creds = CredentialResolver(env={}, home=home, runner=helpers).resolve("ghcr.io")
    assert creds is not None
    assert (creds.username, creds.password, creds.source) == ("h", "from-helper", "docker-credential-pass")
    assert helpers.calls == [(["docker-credential-pass", "get"], "ghcr.io")]


def test_credentials_creds_store_for_docker_hub_uses_index_url(tmp_path: Path) -> None:
    home = _home(tmp_path, {"credsStore": "desktop"})
    helpers = Helpers({"docker-credential-desktop": (0, json.dumps({"Username": "<token>", "Secret": "idt"}), "")})
    creds = CredentialResolver(env={}, home=home, runner=helpers).resolve("docker.io")
    assert creds is not None and creds.identity_token == "idt"
    assert helpers.calls[0][1] == "https://index.docker.io/v1/"


def test_credentials_helper_not_found_falls_through(tmp_path: Path) -> None:
    home = _home(tmp_path, {"credsStore": "desktop", "auths": {"x.test": {"auth": _b64("u:fallback")}}})
    helpers = Helpers({"docker-credential-desktop": (1, "credentials not found in native keychain\n", "")})
    assert CredentialResolver(env={}, home=home, runner=helpers).resolve("x.test").password == "fallback"  # type: ignore[union-attr]


def test_credentials_helper_failure_raises_clear_error(tmp_path: Path) -> None:
    home = _home(tmp_path, {"credHelpers": {"x.test": "broken"}})
    helpers = Helpers({"docker-credential-broken": (2, "", "gpg: decryption failed\n")})
    with pytest.raises(RegistryAuthError, match=r"docker-credential-broken failed for x\.test") as info:
        CredentialResolver(env={}, home=home, runner=helpers).resolve("x.test")
    assert "docker login x.test" in info.value.hint


def test_credentials_helper_garbage_output_raises(tmp_path: Path) -> None:
    home = _home(tmp_path, {"credHelpers": {"x.test": "odd"}})
    helpers = Helpers({"docker-credential-odd": (0, "not json", "")})
    with pytest.raises(RegistryAuthError, match="unexpected answer"):
        CredentialResolver(env={}, home=home, runner=helpers).resolve("x.test")


def test_run_helper_missing_program_reports_127() -> None:
    code, _, err = run_helper(["docker-credential-does-not-exist-anybuild", "get"], "x")
    assert code == 127 and "not found" in err


def test_credentials_env_json_first(tmp_path: Path) -> None:
    home = _home(tmp_path, {"auths": {"ghcr.io": {"auth": _b64("a:fromfile")}}})
    env = {"ANYBUILD_REGISTRY_AUTH": json.dumps({"ghcr.io": {"username": "bot", "password": "fromenv"}})}
    assert CredentialResolver(env=env, home=home).resolve("ghcr.io").password == "fromenv"  # type: ignore[union-attr]


def test_credentials_env_single_host_only_for_that_host(tmp_path: Path) -> None:
    env = {"ANYBUILD_REGISTRY_HOST": "reg.test", "ANYBUILD_REGISTRY_USERNAME": "ci",
           "ANYBUILD_REGISTRY_PASSWORD": "pw-1234"}
    resolver = CredentialResolver(env=env, home=tmp_path)
    assert resolver.resolve("reg.test").username == "ci"  # type: ignore[union-attr]
    assert resolver.resolve("other.test") is None


def test_credentials_github_token_only_for_ghcr(tmp_path: Path) -> None:
    env = {"GITHUB_TOKEN": "ghs_abcdefghijklmnopqrstuvwxyz", "GITHUB_ACTOR": "octo"}
    resolver = CredentialResolver(env=env, home=tmp_path)
    creds = resolver.resolve("ghcr.io")
    assert creds is not None and creds.username == "octo"
    assert resolver.resolve("docker.io") is None
    assert "ghs_" not in repr(creds)


@pytest.mark.parametrize(
    ("env", "config", "problem"),
    [
        ({"ANYBUILD_REGISTRY_AUTH": "{nope"}, None, "not JSON"),
        ({"ANYBUILD_REGISTRY_AUTH": "[1]"}, None, "JSON object"),
        ({}, "{broken", "cannot read Docker config"),
        ({}, json.dumps({"auths": {"x.test": {"auth": "%%%"}}}), "not base64"),
    ],
    ids=["env-json", "env-array", "config-json", "auth-b64"],
)
def test_credentials_bad_input_raises_config_error(
    tmp_path: Path, env: dict[str, str], config: str | None, problem: str
) -> None:
    if config is not None:
        (tmp_path / ".docker").mkdir()
        (tmp_path / ".docker/config.json").write_text(config)
    with pytest.raises(ConfigError, match=problem):
        CredentialResolver(env=env, home=tmp_path).resolve("x.test")
