"""`anybuild github init` and `anybuild lint --workflow` as a user runs them (a subprocess, real exit codes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MOLTBOOK = ROOT / "examples" / "moltbook"


def anybuild(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN")}
    return subprocess.run([sys.executable, "-m", "anybuild", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "moltbook"
    shutil.copytree(MOLTBOOK, repo)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    return repo


def test_init_writes_then_up_to_date_then_diff_without_force(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    target = repo / ".github" / "workflows" / "anybuild.yml"
    done = anybuild("github", "init", cwd=repo / "api")  # anybuild.toml found upwards, file at the git top
    assert done.returncode == 0, done.stderr
    assert f"wrote {target}" in done.stdout
    assert "git push" in done.stdout
    text = target.read_text()
    assert "working-directory: '.'" in text

    again = anybuild("github", "init", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert "is up to date" in again.stdout

    edited = text.replace("timeout-minutes: 60", "timeout-minutes: 15")
    target.write_text(edited)
    refused = anybuild("github", "init", cwd=repo)
    assert refused.returncode == 1
    assert "-    timeout-minutes: 15" in refused.stdout and "+    timeout-minutes: 60" in refused.stdout
    assert "nothing was changed" in refused.stderr
    assert "--force" in refused.stderr
    assert target.read_text() == edited  # nothing changed

    forced = anybuild("github", "init", "--force", "--json", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    data = json.loads(forced.stdout)
    assert data["written"] is True and data["changed"] is True and "timeout-minutes: 15" in data["diff"]
    assert target.read_text() == text


def test_init_in_subdirectory_runs_from_there_and_print_writes_nothing(tmp_path: Path) -> None:
    top = tmp_path / "mono"
    shutil.copytree(MOLTBOOK, top / "services" / "moltbook")
    subprocess.run(["git", "init", "-q", "-b", "main", str(top)], check=True)
    done = anybuild("github", "init", "--print", cwd=top / "services" / "moltbook")
    assert done.returncode == 0, done.stderr
    assert "working-directory: services/moltbook" in done.stdout
    assert not (top / ".github").exists()


def test_lint_workflow_finds_edits_that_break_dispatch(tmp_path: Path) -> None:
    repo = repository(tmp_path)
    assert anybuild("github", "init", cwd=repo).returncode == 0
    clean = anybuild("lint", "--workflow", "--json", cwd=repo)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["summary"] == {"error": 0, "warning": 0, "info": 0}

    target = repo / ".github" / "workflows" / "anybuild.yml"
    text = target.read_text()
    target.write_text(text.replace("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@v7")
                      .replace("name: ${{ matrix.image }}", "name: build ${{ matrix.image }}"))
    broken = anybuild("lint", "--workflow", cwd=repo)
    assert broken.returncode == 1
    assert "actions/checkout@v7 is not pinned to a commit" in broken.stdout
    assert "no job is named ${{ matrix.image }}" in broken.stdout

    missing = anybuild("lint", "--workflow", "nope.yml", cwd=repo)
    assert missing.returncode == 2
    assert "anybuild github init" in missing.stderr
