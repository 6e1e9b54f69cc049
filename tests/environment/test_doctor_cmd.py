"""`anybuild doctor` and `anybuild plan` as a user runs them (a subprocess, real exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.dockerd import Dockerd


def _anybuild(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anybuild", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_doctor_no_daemon_json_reports_facts_backends_and_exit_status(tmp_path: Path) -> None:
    done = _anybuild("doctor", "--json", cwd=tmp_path, DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    data = json.loads(done.stdout)
    assert data["facts"]["docker.reachable"]["value"] is False
    assert f"no socket at {tmp_path}/none.sock" in data["facts"]["docker.reachable"]["evidence"]
    excluded = {e["backend"]: e for e in data["plan"]["exclusions"]}
    assert "docker" in excluded
    assert excluded["docker"]["fix"]
    assert done.returncode == (0 if data["can_build"] else 3)
    assert data["recommendation"].startswith("build with " if data["can_build"] else "nothing can build here")


def test_doctor_nothing_on_path_exit_3_unless_builtin_can(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = _anybuild("doctor", "--json", cwd=tmp_path, PATH=str(empty), DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    data = json.loads(done.stdout)
    candidates = [c["backend"] for c in data["plan"]["candidates"]]
    assert not {"docker", "buildah", "podman"} & set(candidates)
    assert done.returncode == (0 if "builtin" in candidates else 3)


def test_doctor_human_table_grouped_with_backends_and_recommendation(tmp_path: Path) -> None:
    done = _anybuild("doctor", cwd=tmp_path, DOCKER_HOST=f"unix://{tmp_path}/none.sock", COLUMNS="200")
    for heading in ("place", "privileges", "storage", "docker", "tools", "access", "backends", "recommendation:"):
        assert heading in done.stdout
    assert "✗ docker: no docker daemon answers" in done.stdout
    assert "fix: start dockerd" in done.stdout


def test_doctor_real_dockerd_planned_first(tmp_path: Path, dockerd: Dockerd) -> None:
    (tmp_path / "anybuild.toml").write_text('[build]\nbackends = ["docker", "buildah"]\n')
    done = _anybuild("plan", "--json", cwd=tmp_path, DOCKER_HOST=dockerd.host)
    data = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert data["order"] == ["docker", "buildah"]
    assert data["candidates"][0]["backend"] == "docker", data


def test_plan_backend_override_and_unknown_image(tmp_path: Path) -> None:
    (tmp_path / "anybuild.toml").write_text('[build]\nbackends = ["docker", "buildah"]\n')
    done = _anybuild("plan", "--json", "--backend", "buildah", cwd=tmp_path)
    data = json.loads(done.stdout)
    assert data["override"] == "buildah"
    assert {"backend": "docker", "reason": "--backend buildah was given", "evidence": [], "fix": ""} in data[
        "exclusions"
    ]
    missing = _anybuild("plan", "nope", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no image named 'nope'" in missing.stderr


@pytest.mark.parametrize("registry_entry", ['[registries."ghcr.io"]\ninsecure = false\n'], ids=["ghcr"])
def test_doctor_registry_credentials_presence_never_value(tmp_path: Path, registry_entry: str) -> None:
    (tmp_path / "anybuild.toml").write_text(registry_entry)
    docker_config = tmp_path / "dockercfg"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": "c2VjcmV0LXZhbHVlOng="}}}))
    done = _anybuild("doctor", "--json", cwd=tmp_path, DOCKER_CONFIG=str(docker_config))
    assert "c2VjcmV0LXZhbHVlOng=" not in done.stdout
    fact = json.loads(done.stdout)["facts"]["registry.ghcr.io.credentials"]
    assert fact["value"] is True
