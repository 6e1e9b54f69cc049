"""`anybuild diagnose`: human and JSON output, stdin, facts, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from anybuild.cli.main import cli
from anybuild.cli.session import Session

LOGS = Path(__file__).parent / "logs"
INCIDENT = LOGS / "nested-overlay" / "devpod-incident-published.log"


def run(args: list[str], stdin: str | None = None, json_output: bool = False):
    session = Session(json=json_output)
    return CliRunner().invoke(cli, args, input=stdin, obj=session)


def test_cli_diagnose_incident_names_overlay_and_dismisses_429() -> None:
    result = run(["diagnose", str(INCIDENT)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("Root cause: The builder's storage sits on overlayfs")
    assert "line 7: #6 ERROR: mount source" in out
    assert "Fix: " in out and "Another backend would help: yes" in out
    assert "Dismissed:" in out and "Not a Docker Hub rate limit (HTTP 429): line 3 was retried" in out


def test_cli_diagnose_json_with_facts(tmp_path: Path) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"docker.data_root_fs": "overlay"}))
    result = run(["diagnose", str(INCIDENT), "--facts", str(facts), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["diagnosed"] is True
    root = data["diagnoses"][0]
    assert (root["rule"], root["variant"], root["other_backend_helps"]) == (
        "nested-overlay", "confirmed-by-facts", True)


def test_cli_diagnose_stdin_no_match_exits_1_with_tail() -> None:
    result = run(["diagnose", "-"], stdin="compiling\nerror: the frobnicator broke\nbye\n")
    assert result.exit_code == 1
    assert "No known cause matched in 3 lines of log." in result.output
    assert "line 2: error: the frobnicator broke" in result.output
    assert "Cause not recognised" in result.output


def test_cli_diagnose_dockerfile_mistake_says_no_other_backend() -> None:
    log = LOGS / "run-nonzero" / "docker-buildkit-run-exit3.log"
    result = run(["diagnose", str(log)])
    assert result.exit_code == 0
    assert "exited with code 3" in result.output
    assert "Another backend would help: no" in result.output


def test_cli_diagnose_bad_facts_is_usage_error(tmp_path: Path) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text("[1, 2]")
    result = run(["diagnose", str(INCIDENT), "--facts", str(facts)])
    assert result.exit_code != 0
    assert "not a JSON object" in str(result.exception) or "not a JSON object" in result.output


def test_cli_diagnose_exit_code_137_without_log_lines_is_oom(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("Step 3/5 : RUN npm run build\n ---> Running in 0a1b2c\n")
    result = run(["diagnose", str(log), "--exit-code", "137", "--json"])
    assert result.exit_code == 0, result.output
    root = json.loads(result.output)["diagnoses"][0]
    assert root["rule"] == "oom-killed"
    assert root["evidence"][-1] == {"line": None, "text": "the build exited with status 137"}
