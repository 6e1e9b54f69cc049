"""The diagnosis of failures produced right now by real tools (the harness's dockerd, buildah).

The fixture corpus under logs/ was captured the same way by bench/diagnose_corpus.py; these
tests check that the engine still reads what today's tools print.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from anybuild.diagnose import Fact, Role, diagnose_log

pytestmark = pytest.mark.slow


def _context(tmp_path: Path, dockerfile: str) -> Path:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "present.txt").write_text("x\n")
    return tmp_path


def _log(done: subprocess.CompletedProcess[str]) -> list[str]:
    return (done.stdout + done.stderr).splitlines()


def test_real_overlay_dockerd_failure_is_nested_overlay(overlay_dockerd_failure: str) -> None:
    diagnoses = diagnose_log(overlay_dockerd_failure.splitlines(), {Fact.DOCKER_DATA_ROOT_FS: "overlay"})
    root = diagnoses[0]
    assert (root.rule_id, root.role, root.variant) == ("nested-overlay", Role.ROOT_CAUSE, "confirmed-by-facts")
    assert root.other_backend_helps is True


def test_real_buildkit_run_exit_quotes_command_and_line(dockerd, base_images, tmp_path: Path) -> None:
    dockerfile = "FROM busybox:1.36\nRUN echo compiling && exit 7\n"
    context = _context(tmp_path, dockerfile)
    done = dockerd.docker("build", "--progress=plain", "--network", "host", str(context), check=False)
    assert done.returncode != 0
    facts = {Fact.DOCKERFILE_LINES: dockerfile.splitlines()}
    root = diagnose_log(_log(done), facts)[0]
    assert root.rule_id == "run-nonzero"
    assert "exited with code 7" in root.cause and "echo compiling && exit 7" in root.cause
    assert "line 2" in root.cause and root.other_backend_helps is False


def test_real_classic_builder_missing_copy_source(dockerd, base_images, tmp_path: Path) -> None:
    context = _context(tmp_path, "FROM busybox:1.36\nCOPY missing.txt /app/\n")
    env = {**os.environ, **dockerd.env, "DOCKER_BUILDKIT": "0"}
    done = subprocess.run(["/usr/bin/docker", "build", str(context)], env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode != 0
    root = diagnose_log(_log(done))[0]
    assert (root.rule_id, root.other_backend_helps) == ("copy-source-missing", False)
    assert "missing.txt" in root.cause


def test_real_buildah_unknown_instruction(buildah, base_images, tmp_path: Path) -> None:
    context = _context(tmp_path, "FROM busybox:1.36\nRUNN echo hi\n")
    done = buildah.run("bud", "--isolation", "chroot", str(context), check=False)
    assert done.returncode != 0
    root = diagnose_log(_log(done))[0]
    assert root.rule_id == "dockerfile-unknown-instruction"
    assert "`RUNN`" in root.cause
