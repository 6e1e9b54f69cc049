"""The private dockerd is real: it pulls through the local mirror, builds and runs."""

from __future__ import annotations

from pathlib import Path

from tests.harness.bases import BaseImages
from tests.harness.dockerd import Dockerd, running_dockerd
from tests.harness.registry import Registry

DOCKERFILE = 'FROM busybox:1.36\nRUN echo "built by $(id -un)" > /built\nCMD ["cat", "/built"]\n'


def test_dockerd_build_from_mirror_then_run_prints(
    dockerd: Dockerd, base_images: BaseImages, registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    dockerd.docker("build", "--network", "host", "-t", "harness/hello:1", str(tmp_path))
    ran = dockerd.docker("run", "--rm", "--network", "none", "harness/hello:1")
    assert ran.stdout == "built by root\n"
    # BuildKit resolves the tag with HEAD, then GETs by digest: either way via the mirror.
    manifests = [r for r in registry.requests() if r.path.startswith("/v2/library/busybox/manifests/")]
    assert any(r.status == 200 for r in manifests)


def test_dockerd_state_lives_in_private_dirs(dockerd: Dockerd) -> None:
    info = dockerd.docker("info", "--format", "{{.DockerRootDir}} {{.Driver}}").stdout.split()
    assert info == [str(dockerd.data_root), dockerd.storage_driver]
    assert dockerd.host == f"unix://{dockerd.socket_path}"
    assert len(str(dockerd.socket_path)) < 100
    assert (dockerd.exec_root / "containerd" / "containerd.sock").is_socket()
    assert int(dockerd.pidfile.read_text()) == dockerd.proc.pid


def test_dockerd_second_daemon_coexists_then_cleans_up(dockerd: Dockerd, tmp_path: Path) -> None:
    with running_dockerd(tmp_path / "second", mirror_host=None) as second:
        assert second.socket_path != dockerd.socket_path
        roots = {d.docker("info", "--format", "{{.DockerRootDir}}").stdout for d in (dockerd, second)}
        assert len(roots) == 2
        assert (second.socket_path.parent / "key.json").is_file()
        short = second.socket_path.parent
    assert not short.exists()
    assert not (tmp_path / "second" / "data").exists()
    assert dockerd.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
