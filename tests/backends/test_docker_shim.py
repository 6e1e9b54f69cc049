"""The docker shim for real: a temp PATH with the shim first and a recording "real" docker after it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from anybuild.cli.main import cli
from anybuild.cli.shim_cmd import MARKER, shim_script
from anybuild.errors import UsageError
from tests.backends.images import hello_project, manifest_digest
from tests.harness import procs
from tests.harness.bases import BaseImages
from tests.harness.dockerd import Dockerd
from tests.harness.registry import Registry


@pytest.fixture
def shim_path(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(shim dir, fake real docker dir, the fake's log)."""
    shim_dir, real_dir = tmp_path / "shim", tmp_path / "real"
    real_dir.mkdir()
    log = tmp_path / "real-docker.log"
    fake = real_dir / "docker"
    fake.write_text(f'#!/bin/sh\necho "real $*" >> {log}\necho "real docker ran"\n')
    fake.chmod(0o755)
    result = CliRunner().invoke(cli, ["docker-shim", "install", "--dir", str(shim_dir)], env={"PATH": "/usr/bin"})
    assert result.exit_code == 0, result.output
    assert MARKER in (shim_dir / "docker").read_text()
    return shim_dir, real_dir, log


def _docker(args: list[str], shim: tuple[Path, Path, Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shim_dir, real_dir, _ = shim
    full = {
        **os.environ,
        "PATH": f"{shim_dir}:{real_dir}:{os.path.dirname(sys.executable)}:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    full.update(env)
    return subprocess.run(
        ["docker", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_shim_other_commands_pass_through_to_real_docker(shim_path: tuple[Path, Path, Path], tmp_path: Path) -> None:
    done = _docker(["ps", "-a", "--format", "{{.ID}} x"], shim_path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "real docker ran\n"
    assert shim_path[2].read_text() == "real ps -a --format {{.ID}} x\n"


def test_shim_build_with_working_daemon_passes_through(
    shim_path: tuple[Path, Path, Path], tmp_path: Path, dockerd: Dockerd
) -> None:
    done = _docker(["build", "-t", "x:1", "."], shim_path, tmp_path, DOCKER_HOST=dockerd.host)
    assert done.returncode == 0, done.stderr
    assert shim_path[2].read_text() == "real build -t x:1 .\n"


@pytest.fixture
def buildah_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    procs.require_root("buildah")
    procs.require_binary("buildah", "buildah")
    work = tmp_path_factory.mktemp("shim-buildah")
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{work}/root"\nrunroot = "{work}/run"\n'
    )
    yield work
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(work / "storage.conf")}
    subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True, check=False, timeout=120)
    procs.unmount_under(work)
    procs.remove_tree(work)


@pytest.mark.slow
@pytest.mark.root
def test_shim_build_without_daemon_goes_to_anybuild_and_pushes(
    shim_path: tuple[Path, Path, Path],
    tmp_path: Path,
    buildah_storage: Path,
    registry: Registry,
    base_images: BaseImages,
) -> None:
    host = registry.host
    project = hello_project(tmp_path / "repo")
    (project / "anybuild.toml").write_text(
        f'[build]\nbackends = ["docker", "buildah"]\n\n[registries."docker.io"]\nmirrors = ["{host}"]\n\n'
        f'[registries."{host}"]\ninsecure = true\n'
    )
    done = _docker(
        ["build", "-t", f"{host}/test/shim:1", "--push", "."],
        shim_path,
        project,
        DOCKER_HOST=f"unix://{tmp_path}/no-daemon.sock",
        CONTAINERS_STORAGE_CONF=str(buildah_storage / "storage.conf"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    calls = shim_path[2].read_text() if shim_path[2].exists() else ""
    assert not [c for c in calls.splitlines() if c.startswith("real build ")]  # only the probes' --version
    assert "anybuild: not using docker: no docker daemon answers" in done.stderr
    assert "anybuild: built with buildah: sha256:" in done.stderr
    digest = manifest_digest(registry.url, "test/shim", "1")
    assert digest in done.stderr


def test_shim_uninstall_removes_only_the_shim(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["docker-shim", "install", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(cli, ["docker-shim", "uninstall", "--dir", str(tmp_path)]).exit_code == 0
    assert not (tmp_path / "docker").exists()
    (tmp_path / "docker").write_text("#!/bin/sh\necho a real docker\n")
    refused = runner.invoke(cli, ["docker-shim", "install", "--dir", str(tmp_path)])
    assert isinstance(refused.exception, UsageError)
    assert "is not the anybuild shim" in refused.exception.message
    kept = runner.invoke(cli, ["docker-shim", "uninstall", "--dir", str(tmp_path)])
    assert isinstance(kept.exception, UsageError)
    assert (tmp_path / "docker").read_text() == "#!/bin/sh\necho a real docker\n"


def test_shim_without_anybuild_behaves_as_plain_docker(shim_path: tuple[Path, Path, Path], tmp_path: Path) -> None:
    shim = shim_path[0] / "docker"
    shim.write_text(shim_script("/nonexistent/python"))
    done = _docker(["build", "-t", "x:1", "."], shim_path, tmp_path, DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    assert done.returncode == 0, done.stderr
    assert shim_path[2].read_text() == "real build -t x:1 .\n"
