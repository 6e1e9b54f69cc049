"""`anybuild pull | push | copy | inspect` end to end against real registries."""

from __future__ import annotations

import base64
import json
import logging
import os
import tarfile
from pathlib import Path

import pytest

from anybuild.cli.main import main
from anybuild.errors import ExitCode
from anybuild.oci import LayoutStore
from tests.harness.registry import Registry

from ..oci.images import make_image


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and no ambient registry credentials, so tests see only what they set."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("DOCKER_CONFIG", "ANYBUILD_REGISTRY_AUTH", "ANYBUILD_REGISTRY_HOST", "GITHUB_TOKEN",
                 "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def _layout(tmp_path: Path, name: str) -> tuple[Path, str]:
    store = LayoutStore.create(tmp_path / name)
    descriptor = make_image(store, [{"x": os.urandom(20_000)}, {"y": os.urandom(20_000)}], tag="v1")
    return tmp_path / name, str(descriptor.digest)


def test_cli_push_pull_inspect_copy_roundtrip(registry: Registry, tmp_path: Path, home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    layout, digest = _layout(tmp_path, "src")
    ref = f"{registry.host}/cli/app:v1"
    code, out, err = run(["push", f"oci:{layout}:v1", ref, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["digest"] == digest

    code, out, err = run(["pull", ref, "--output", "oci:pulled", "--platform", "linux/amd64", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["served_by"] == registry.host
    assert LayoutStore.open(tmp_path / "pulled").resolve("v1").digest.hex == digest.split(":")[1]

    code, out, err = run(["pull", ref, "-o", "docker-archive:app.tar", "--platform", "linux/amd64"], capsys)
    assert code == 0, err
    assert "pulled" in out
    with tarfile.open(tmp_path / "app.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [f"{registry.host}/cli/app:v1"]

    code, out, err = run(["inspect", ref, "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["digest"] == digest and len(data["layers"]) == 2 and data["platform"] == "linux/amd64"

    code, out, err = run(["copy", ref, f"{registry.host}/cli/copied:v1", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["transfer"]["blobs"] == {"mounted": 3}

    code, out, err = run(["push", "docker-archive:app.tar", f"{registry.host}/cli/from-archive:1"], capsys)
    assert code == 0, err
    assert "pushed" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["pull", "Busybox:1", "-o", "oci:x"], ExitCode.USAGE, "must be lowercase"),
        (["pull", "busybox", "-o", "nowhere"], ExitCode.USAGE, "not a local destination"),
        (["push", "oci:missing", "127.0.0.1:1/a:1"], ExitCode.INTEGRITY, "not an OCI image layout"),
        (["pull", "busybox", "-o", "oci:x", "--platform", "a/b/c/d"], ExitCode.USAGE, "invalid platform"),
    ],
    ids=["uppercase", "bad-output", "no-layout", "bad-platform"],
)
def test_cli_bad_input_exit_code_and_message(argv: list[str], code: int, message: str, home: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    got, _out, err = run(argv, capsys)
    assert got == code
    assert message in err
    assert "hint:" in err


def test_cli_unreachable_registry_is_registry_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    got, out, _err = run(["inspect", "127.0.0.1:9/none/x:1", "--json"], capsys)
    assert got == ExitCode.REGISTRY
    assert json.loads(out)["error"]["kind"] == "registry"


def test_cli_no_secret_in_any_output(auth_registry: Registry, tmp_path: Path, home: Path,
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user, password = auth_registry.username or "", auth_registry.password or ""
    monkeypatch.setenv("ANYBUILD_REGISTRY_AUTH", json.dumps({auth_registry.host: {"username": user,
                                                                                   "password": password}}))
    layout, _ = _layout(tmp_path, "secret")
    ref = f"{auth_registry.host}/cli/secret:v1"
    outputs = []
    for argv in (
        ["--debug", "push", f"oci:{layout}:v1", ref, "-v"],
        ["--debug", "pull", ref, "-o", "oci:p", "--json"],
        ["inspect", ref, "-v"],
        ["copy", ref, f"{auth_registry.host}/cli/secret2:v1", "--json"],
        ["--debug", "pull", f"{auth_registry.host}/cli/absent:v1", "-o", "oci:q"],
    ):
        code, out, err = run(argv, capsys)
        outputs.append(out + err)
        assert code in (0, ExitCode.REGISTRY), err
    # and with wrong credentials, the error must not echo them either
    monkeypatch.setenv("ANYBUILD_REGISTRY_AUTH", json.dumps({auth_registry.host: {"username": user,
                                                                                   "password": "Wr0ngPassw0rd!"}}))
    code, out, err = run(["--debug", "inspect", ref], capsys)
    assert code == ExitCode.REGISTRY
    outputs.append(out + err)
    text = "\n".join(outputs) + caplog.text
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    for secret in (password, basic, "Wr0ngPassw0rd!"):
        assert secret not in text


def test_cli_failing_credential_helper_is_clear_auth_error(auth_registry: Registry, tmp_path: Path, home: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-broken"
    helper.write_text("#!/bin/sh\necho 'gpg: decryption failed: No secret key' >&2\nexit 1\n")
    helper.chmod(0o755)
    config = tmp_path / "dockercfg"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {auth_registry.host: "broken"}}))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    code, _out, err = run(["inspect", f"{auth_registry.host}/a/b:1"], capsys)
    assert code == ExitCode.REGISTRY
    assert f"docker-credential-broken failed for {auth_registry.host}" in err
    assert "gpg: decryption failed" in err
    assert "hint: check that docker-credential-broken is installed" in err


def test_cli_pull_through_mirror_says_which_served(registry: Registry, tmp_path: Path, home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    layout, digest = _layout(tmp_path, "mirror")
    code, _out, err = run(["push", f"oci:{layout}:v1", f"{registry.host}/library/mirrored-cli:v1"], capsys)
    assert code == 0, err
    code, out, err = run(["pull", "mirrored-cli:v1", "--registry-mirror", "127.0.0.1:9",
                          "--registry-mirror", f"http://{registry.host}", "-o", "oci:m"], capsys)
    assert code == 0, err
    assert f"from mirror {registry.host}" in out
    assert "mirror failed, tried the next source: 127.0.0.1:9" in err
    assert LayoutStore.open(tmp_path / "m").resolve("v1").digest.hex == digest.split(":")[1]


def test_cli_pull_uses_mirror_from_user_config(registry: Registry, tmp_path: Path, home: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    layout, _digest = _layout(tmp_path, "usercfg")
    code, _out, err = run(["push", f"oci:{layout}:v1", f"{registry.host}/library/from-user-config:v1"], capsys)
    assert code == 0, err
    config = home / ".config" / "anybuild"
    config.mkdir(parents=True)
    (config / "anybuild.toml").write_text(f'[registries."docker.io"]\nmirrors = ["{registry.host}"]\n')
    code, out, err = run(["pull", "from-user-config:v1", "-o", "oci:u", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["served_by"] == registry.host
