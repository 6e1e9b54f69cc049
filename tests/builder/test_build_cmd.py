"""`anybuild build` argument parsing, its background probes and the builtin backend's verdict."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from anybuild.backends.base import SecretSpec
from anybuild.backends.builtin import BuiltinBackend, builtin_verdict
from anybuild.cli import build_cmd
from anybuild.cli.build_cmd import parse_build_args, parse_mirrors, parse_secret
from anybuild.cli.main import main
from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import UsageError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("id=npm,src=/x/.npmrc", SecretSpec(id="npm", src=Path("/x/.npmrc"))),
     ("id=tok,env=TOKEN", SecretSpec(id="tok", env="TOKEN")),
     ("id=a,source=f", SecretSpec(id="a", src=Path("f"))),
     ("id=bare", SecretSpec(id="bare"))],
    ids=["src", "env", "source-alias", "id-only"],
)
def test_parse_secret_forms(value: str, expected: SecretSpec) -> None:
    assert parse_secret(value) == expected


@pytest.mark.parametrize("value", ["src=/x", "id", "id=a,broken"], ids=["no-id", "no-equals", "bad-pair"])
def test_parse_secret_malformed_usage_error(value: str) -> None:
    with pytest.raises(UsageError):
        parse_secret(value)


def test_parse_build_args_values_and_bare_names_from_env() -> None:
    # A bare NAME takes its value from the environment, and is left unset when absent (as docker does).
    assert parse_build_args(("A=1", "B=x=y", "C", "D"), {"C": "from-env"}) == {"A": "1", "B": "x=y", "C": "from-env"}


def test_parse_mirrors_bare_means_docker_hub() -> None:
    assert parse_mirrors(("http://127.0.0.1:5000", "ghcr.io=mirror:1")) == {
        "docker.io": ("127.0.0.1:5000",), "ghcr.io": ("mirror:1",)}


def test_build_command_missing_dockerfile_context_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--json", "--backend", "builtin", str(tmp_path)])
    assert exit_info.value.code == 2
    image = json.loads(capsys.readouterr().out)["images"][0]
    assert not image["ok"]
    assert "no Dockerfile" in image["error"]["message"]


def test_build_command_unknown_target_names_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "anybuild.toml").write_text('[images.api]\nrepository = "x/api"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "apu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "apu: no such directory or image" in err
    assert "images in" in err and "api" in err


def test_build_command_tag_flag_with_config_images_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "anybuild.toml").write_text('[images.api]\nrepository = "x/api"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--all", "-t", "x/api:1"])
    assert exit_info.value.code == 2
    assert "--tag applies to a one-directory build" in capsys.readouterr().err


def test_build_command_bad_tag_refused_before_building(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Dockerfile would fail if it were built: the reference must be refused first.
    (tmp_path / "Dockerfile").write_text("FROM scratch\nRUN exit 3\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--backend", "builtin", "-t", "registry.example/Team/API:1", "--push", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "must be lowercase" in err
    assert "RUN" not in err and "exit 3" not in err


def facts(**values: object) -> Facts:
    return Facts.from_values({str(k): v for k, v in values.items()})  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "ok", "word"),
    [({FactKey.UID: 0, FactKey.CAP_SYS_ADMIN: True, FactKey.TOOL_RUNC: "1.1.5"}, True, "runc"),
     ({FactKey.UID: 0, FactKey.CAP_SYS_ADMIN: True}, True, "unshare"),
     ({FactKey.UID: 1000, FactKey.BUILDER_NAMESPACE: "single"}, True, "single-mapped user namespace"),
     ({FactKey.UID: 0, FactKey.BUILDER_NAMESPACE: "identity"}, True, "identity-mapped user namespace"),
     ({FactKey.UID: 1000, FactKey.BUILDER_NAMESPACE: "none", FactKey.TOOL_PROOT: "5.3"}, True, "proot"),
     ({FactKey.UID: 1000, FactKey.BUILDER_NAMESPACE: "none"}, False, "proot")],
    ids=["root-runc", "root", "userns-single", "root-pod-identity", "proot-only", "nothing"],
)
def test_builtin_verdict_names_sandbox(given: dict[str, object], ok: bool, word: str) -> None:
    verdict = builtin_verdict(facts(**{str(k): v for k, v in given.items()}))
    assert verdict.ok is ok
    assert word in (verdict.reason + verdict.fix)


def test_builtin_verdict_from_doctors_trials_says_what_was_tried() -> None:
    tried = facts(**{str(FactKey.BUILDER_NAMESPACE): "single",
                     str(FactKey.BUILDER_SANDBOXES): ("unshare: ok", "proot: ok"),
                     str(FactKey.BUILDER_SANDBOX): "unshare",
                     str(FactKey.BUILDER_SNAPSHOTTER): "overlay (upper on tmpfs)",
                     str(FactKey.BUILDER_OWNERS): "owners 0 are real, the others are recorded",
                     str(FactKey.BUILDER_PERMISSION_CHECKS): False})
    verdict = builtin_verdict(tried)
    assert verdict.ok
    assert "RUN sandbox: unshare (tried)" in verdict.reason
    assert "USER permission checks: no" in verdict.reason
    failed = builtin_verdict(facts(**{str(FactKey.BUILDER_NAMESPACE): "none", str(FactKey.BUILDER_SANDBOX): None}))
    assert not failed.ok


def test_builtin_backend_constructible_without_arguments() -> None:
    backend = BuiltinBackend()
    assert backend.name == "builtin"
    assert backend.available(facts(**{str(FactKey.UID): 0, str(FactKey.CAP_SYS_ADMIN): True})).ok


def test_probe_in_background_gives_the_build_scoped_facts(tmp_path: Path) -> None:
    ctx = ProbeContext(env={**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path, thorough=False)
    facts = build_cmd._probe_in_background(ctx)()
    assert facts.value(FactKey.UID) == os.geteuid()
    assert facts.value(FactKey.ANYBUILD_OVERLAY) is None  # the builder makes its own trial
    assert "the built-in builder tries overlay itself" in facts.evidence(FactKey.ANYBUILD_OVERLAY)


def test_probe_in_background_runs_beside_the_caller_and_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()

    def probe(_ctx: ProbeContext, **_options: object) -> Facts:  # cache=: the probe cache (issue 23)
        started.set()
        release.wait(5)
        raise RuntimeError("probe bug")

    monkeypatch.setattr(build_cmd, "collect_facts", probe)
    join = build_cmd._probe_in_background(ProbeContext(trials=False))
    assert started.wait(5)  # it runs while the caller goes on (importing the builder, in a build)
    release.set()
    with pytest.raises(RuntimeError, match="probe bug"):
        join()
