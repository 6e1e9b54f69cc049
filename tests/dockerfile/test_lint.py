"""Lint rules (as data), the backend preflight, and `anybuild lint`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anybuild.cli.main import main
from anybuild.config import BackendName
from anybuild.dockerfile.dockerignore import DockerIgnore
from anybuild.dockerfile.lint import ContextFacts, lint_dockerfile
from anybuild.dockerfile.lint_rules import BACKEND_LIMITS, RULES, Feature, RuleId, Severity
from anybuild.dockerfile.parser import parse_dockerfile

IGNORED = ContextFacts(ignore=DockerIgnore(["node_modules"]), ignore_file=".dockerignore")


def _rules(text: str, facts: ContextFacts = IGNORED) -> list[str]:
    return [f.rule.value for f in lint_dockerfile(parse_dockerfile(text, file="Dockerfile"), context=facts).findings
            if f.rule is not RuleId.BACKEND_UNSUPPORTED]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM debian:12\nRUN apt-get update && apt-get install curl\n", ["apt-get-install-without-y"]),
        ("FROM debian:12\nRUN apt-get install -y curl\n", []),
        ("FROM debian:12\nRUN apt-get -qqy install curl\n", []),
        ("FROM debian:12\nRUN DEBIAN_FRONTEND=noninteractive apt-get install --yes curl\n", []),
        ("FROM debian:12\nRUN apt install -o APT::Get::Assume-Yes=true curl\n", []),
        ("FROM debian:12\nRUN <<EOF\napt-get update\napt-get install git\nEOF\n", ["apt-get-install-without-y"]),
        ("FROM debian:12\nRUN apt-get -y upgrade\n", ["apt-get-upgrade"]),
        ("FROM debian:12\nRUN apt-get dist-upgrade -y\n", ["apt-get-upgrade"]),
        ("FROM node:20\nRUN npm ci || (rm -rf node_modules && npm install)\n", ["npm-install-fallback"]),
        ("FROM node:20\nRUN npm ci\n", []),
        ("FROM node\n", ["base-image-unpinned"]),
        ("FROM node:latest\n", ["base-image-latest"]),
        ("FROM registry:5000/node\n", ["base-image-unpinned"]),
        ("FROM registry:5000/node:20\n", []),
        ("FROM node@sha256:" + "a" * 64 + "\n", []),
        ("FROM scratch\n", []),
        ("FROM node:20 AS a\nFROM a\n", []),
        ("ARG BASE=node\nFROM $BASE\n", ["base-image-unpinned"]),
        ("FROM busybox:1\nADD https://example.com/a.tgz /a\n", ["add-url-without-checksum"]),
        ("FROM busybox:1\nADD --checksum=sha256:" + "b" * 64 + " https://example.com/a.tgz /a\n", []),
        ("FROM busybox:1\nADD https://github.com/moby/buildkit.git#v0.13 /src\n", []),
        ("FROM busybox:1\nARG NPM_TOKEN\nENV DB_PASSWORD=x API_KEY=y\n",
         ["secret-in-arg-or-env", "secret-in-arg-or-env", "secret-in-arg-or-env"]),
        ("FROM busybox:1\nARG GPG_KEY_PATH\nENV PUBLIC_KEY_FILE=/k TOKENIZER=x\n", []),
        ("FROM busybox:1\nRUN cd /src && make\n", ["cd-in-run"]),
        ("FROM busybox:1\nWORKDIR /src\nRUN make\n", []),
        ("FROM busybox:1\nMAINTAINER me\n", ["maintainer-deprecated"]),
    ],
    ids=["apt-no-y", "apt-y", "apt-qqy", "apt-yes", "apt-assume-yes", "apt-heredoc", "apt-upgrade",
         "apt-dist-upgrade", "npm-fallback", "npm-ci", "unpinned", "latest", "port-not-tag", "port-tag",
         "digest", "scratch", "stage", "arg-base", "add-url", "add-checksum", "add-git", "secrets",
         "not-secrets", "cd", "workdir", "maintainer"],
)
def test_lint_rule_fires_exactly(text: str, expected: list[str]) -> None:
    assert _rules(text) == expected


def test_lint_node_context_rules_depend_on_dockerignore() -> None:
    text = "FROM node:20\nCOPY . .\nRUN npm ci\n"
    no_ignore = ContextFacts(top_level=frozenset({"package.json", "node_modules"}))
    assert _rules(text, no_ignore) == ["copy-context-without-dockerignore", "node-modules-in-context"]
    not_present = ContextFacts(top_level=frozenset({"package.json"}), ignore=DockerIgnore(["*.md"]),
                               ignore_file=".dockerignore")
    assert _rules(text, not_present) == ["node-modules-not-ignored"]
    assert _rules(text, IGNORED) == []
    assert _rules("FROM busybox:1\nCOPY . .\n", ContextFacts()) == ["copy-context-without-dockerignore"]


def test_lint_finding_has_location_text_hint_docs() -> None:
    report = lint_dockerfile(parse_dockerfile("FROM debian:12\nRUN apt-get update && \\\n  apt-get install git\n",
                                              file="Df"), context=IGNORED)
    (finding,) = report.findings
    assert (finding.line, finding.column, finding.text) == (3, 3, "  apt-get install git")
    assert finding.severity is Severity.ERROR
    assert finding.hint and finding.docs
    assert report.errors == (finding,)
    assert report.to_dict()["findings"][0]["file"] == "Df"


def test_lint_rules_table_is_complete_data() -> None:
    assert set(RULES) == set(RuleId)
    for rule in RULES.values():
        assert rule.message and rule.hint and rule.docs.startswith("lint/")


@pytest.mark.parametrize(
    ("text", "features", "kaniko"),
    [
        ("FROM a:1\nRUN echo\n", [], True),
        ("FROM a:1\nRUN <<EOF\nx\nEOF\n", [Feature.HEREDOC], False),
        ("FROM a:1\nCOPY <<EOF /x\nx\nEOF\n", [Feature.HEREDOC], False),
        ("FROM a:1\nRUN --mount=type=cache,target=/c make\n", [Feature.RUN_MOUNT], False),
        ("FROM a:1\nCOPY --link --parents --exclude=x a /b\n",
         [Feature.COPY_LINK, Feature.COPY_PARENTS, Feature.COPY_EXCLUDE], False),
        ("FROM a:1\nCOPY --link a /b\n", [Feature.COPY_LINK], True),
    ],
    ids=["plain", "run-heredoc", "copy-heredoc", "mount", "copy-flags", "link-only"],
)
def test_lint_preflight_lists_features_and_backends(text: str, features: list[Feature], kaniko: bool) -> None:
    report = lint_dockerfile(parse_dockerfile(text), context=IGNORED)
    assert list(report.features) == features
    support = {b.backend: b for b in report.backends}
    assert support[BackendName.KUBERNETES].supported is kaniko
    assert support[BackendName.GITHUB].supported
    if not kaniko:
        assert "Kaniko" in support[BackendName.KUBERNETES].reasons[0]


def test_backend_limits_name_known_backends() -> None:
    assert {lim.backend for lim in BACKEND_LIMITS} <= set(BackendName)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_lint_command_json_and_exit_code_on_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM debian:12\nRUN apt-get install curl\n")
    (tmp_path / ".dockerignore").write_text(".git\n")
    code, out, _ = _run(["lint", str(tmp_path), "--json"], capsys)
    assert code == 1
    data = json.loads(out)
    assert [f["rule"] for f in data["findings"]] == ["apt-get-install-without-y"]
    assert data["summary"] == {"error": 1, "warning": 0, "info": 0}


def test_lint_command_warnings_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = tmp_path / "api.Dockerfile"
    dockerfile.write_text("FROM node\nCOPY . .\n")
    code, out, _ = _run(["lint", str(dockerfile)], capsys)
    assert code == 0
    assert "base-image-unpinned" in out
    assert "copy-context-without-dockerignore" in out
    assert "kubernetes: can build" in out


def test_lint_command_parse_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM a\nCOPY x\n")
    code, _, err = _run(["lint", str(tmp_path / "Dockerfile")], capsys)
    assert code == 2
    assert "Dockerfile:2:1" in err
    assert "hint:" in err


def test_lint_command_missing_file_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["lint", str(tmp_path / "nope")], capsys)
    assert code == 2
    assert "no Dockerfile" in err
