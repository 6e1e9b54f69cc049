"""The nested-overlay failure is real: dockerd's overlay2 cannot run inside an overlay mount."""

from __future__ import annotations

from pathlib import Path

from tests.harness.dockerd import running_dockerd
from tests.harness.procs import mounts_under

# What this kernel (6.x) and dockerd 20.10 print, as seen in devpods:
#   level=error msg="failed to mount overlay: invalid argument" storage-driver=overlay2
#   failed to start daemon: error initializing graphdriver: driver not supported
_OVERLAY_ERRORS = ("failed to mount overlay: invalid argument", "driver not supported")


def test_nested_overlay_is_an_overlay_mount(nested_overlay: Path) -> None:
    assert mounts_under(nested_overlay) == [nested_overlay]
    fstypes = [
        line.split(" - ")[1].split()[0]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(nested_overlay)
    ]
    assert fstypes == ["overlay"]


def test_overlay_dockerd_fails_with_overlay_error(overlay_dockerd_failure: str) -> None:
    assert any(error in overlay_dockerd_failure for error in _OVERLAY_ERRORS), overlay_dockerd_failure
    assert "failed to start daemon" in overlay_dockerd_failure


def test_dockerd_on_nested_overlay_falls_back_to_vfs(nested_overlay: Path) -> None:
    with running_dockerd(nested_overlay / "fallback", mirror_host=None) as daemon:
        assert daemon.storage_driver == "vfs"
        assert "failed to mount overlay" in (nested_overlay / "fallback" / "dockerd-overlay2.log").read_text()
        assert daemon.docker("info", "--format", "{{.Driver}}").stdout.strip() == "vfs"
    assert mounts_under(nested_overlay) == [nested_overlay]
