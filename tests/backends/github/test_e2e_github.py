"""Opt-in end to end: dispatch on a real GitHub repository, follow the run, read the digests back.

Runs only with ``ANYBUILD_E2E_GITHUB_REPO=OWNER/NAME`` and a token (``GH_TOKEN`` or
``GITHUB_TOKEN``, actions: write and contents: read). The repository's default branch must
hold anybuild.toml (at its root, or in ``ANYBUILD_E2E_GITHUB_DIR``) and the workflow of
``anybuild github init``, with an anybuild the runner can install (``[backend.github]
anybuild``). The test clones it (the token is given to git through an askpass helper, never in
a URL), builds its images without pushing, and checks the result. GitHub cannot be reached
from where anybuild is developed, so this is skipped there, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from anybuild.result import load_result_schema

pytestmark = pytest.mark.e2e

REPO = os.environ.get("ANYBUILD_E2E_GITHUB_REPO", "")
TOKEN = os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN") or ""


@pytest.mark.skipif(not (REPO and TOKEN), reason="set ANYBUILD_E2E_GITHUB_REPO=OWNER/NAME and GH_TOKEN "
                    "to dispatch on a real GitHub repository")
def test_e2e_github_dispatch_follow_and_collect(tmp_path: Path) -> None:
    askpass = tmp_path / "askpass.sh"
    askpass.write_text('#!/bin/sh\ncase "$1" in Username*) echo x-access-token ;; *) echo "$GH_TOKEN" ;; esac\n')
    askpass.chmod(0o700)
    env = {**os.environ, "GH_TOKEN": TOKEN, "GIT_ASKPASS": str(askpass), "GIT_TERMINAL_PROMPT": "0"}
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", f"https://github.com/{REPO}.git", str(clone)], env=env, check=True,
                   timeout=300)
    workdir = clone / os.environ.get("ANYBUILD_E2E_GITHUB_DIR", ".")
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "anybuild", "build", "--all", "--backend", "github", "--progress", "plain",
         "--metadata-file", str(result_file)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=3600, check=False)
    assert TOKEN not in done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(result_file.read_text())
    jsonschema.validate(result, load_result_schema())
    assert TOKEN not in result_file.read_text()
    for image in result["images"]:
        assert image["ok"] and image["backend"] == "github"
        assert image["digest"].startswith("sha256:")
        assert "workflow run" in image["backend_reason"]
