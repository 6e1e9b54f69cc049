"""`anybuild tags`: a real git repository with anybuild.toml, human and JSON output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from anybuild.cli.main import main
from tests.tags.test_gitstate import git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

CONFIG = """\
[project]
name = "moltbook"

[tags]
rules = ["type=ref,event=branch", "type=semver,pattern={{version}}", "type=semver,pattern={{major}}.{{minor}}",
         "type=sha"]
flavor = ["latest=auto"]

[images.api]
context = "api"
repository = "ghcr.io/acme/moltbook-api"
labels = { "org.opencontainers.image.description" = "The API" }

[images.frontend]
context = "frontend"
repository = "ghcr.io/acme/moltbook-frontend"
tags = ["type=raw,value={{branch}}"]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GITHUB_ACTIONS", "GITHUB_EVENT_NAME", "GITLAB_CI", "CI_COMMIT_SHA", "SOURCE_DATE_EPOCH",
                 "DOCKER_METADATA_SHORT_SHA_LENGTH"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "moltbook"
    for image in ("api", "frontend"):
        (root / image).mkdir(parents=True)
        (root / image / "Dockerfile").write_text("FROM scratch\n")
    (root / "anybuild.toml").write_text(CONFIG)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    monkeypatch.chdir(root)
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_tags_json_tag_push_gives_references_labels_and_reasons(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    git(project, "tag", "v1.2.3")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    code, out, err = run(["tags", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    sha = git(project, "rev-parse", "HEAD")
    assert data["git"]["ref"] == "refs/tags/v1.2.3"
    api, frontend = data["images"]
    assert api["references"] == ["ghcr.io/acme/moltbook-api:1.2.3", "ghcr.io/acme/moltbook-api:1.2",
                                 f"ghcr.io/acme/moltbook-api:sha-{sha[:7]}", "ghcr.io/acme/moltbook-api:latest"]
    assert api["labels"]["org.opencontainers.image.created"] == "1970-01-01T00:00:00.000Z"
    assert api["labels"]["org.opencontainers.image.description"] == "The API"
    assert api["labels"]["org.opencontainers.image.title"] == "moltbook"
    assert api["labels"]["org.opencontainers.image.version"] == "1.2.3"
    branch_rule = next(r for r in api["rules"] if r["rule"] == "type=ref,event=branch")
    assert branch_rule["outcome"] == "skipped"
    assert frontend["references"] == []  # {{branch}} is empty on a tag push
    assert frontend["rules"][0]["reason"].endswith("the tag is empty")


def test_tags_human_branch_push_lists_tags_and_why(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["tags", "api"], capsys)
    assert code == 0, err
    sha = git(project, "rev-parse", "HEAD")
    assert "ghcr.io/acme/moltbook-api:main" in out
    assert f"ghcr.io/acme/moltbook-api:sha-{sha[:7]}" in out
    assert "not a tag build" in out
    assert "latest: not added" in out
    assert "moltbook-frontend" not in out


def test_tags_reproducible_uses_commit_time(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["tags", "--json", "--reproducible", "api"], capsys)
    assert code == 0, err
    labels = json.loads(out)["images"][0]["labels"]
    assert labels["org.opencontainers.image.created"] == "2021-02-03T04:05:06.000Z"


def test_tags_unknown_image_is_config_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["tags", "nope"], capsys)
    assert code == 2
    assert "no image named 'nope'" in err


def test_tags_bad_source_date_epoch_is_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    code, _, err = run(["tags"], capsys)
    assert code == 2
    assert "SOURCE_DATE_EPOCH" in err


def test_tags_bad_rule_is_config_error_with_hint(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "anybuild.toml").write_text(CONFIG.replace('"type=sha"', '"type=sha,format=medium"'))
    code, _, err = run(["tags"], capsys)
    assert code == 2
    assert "tags.rules: tag rule" in err
    assert "invalid format 'medium'" in err
    assert "hint: use format=short or format=long" in err
