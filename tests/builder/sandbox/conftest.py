from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "echo", "id", "mkdir", "touch", "rm", "hostname", "ip", "pwd", "env",
           "sleep", "mount", "stat", "wc", "test", "true", "false", "grep", "ps")


def busybox_rootfs(path: Path) -> Path:
    if not BUSYBOX.exists():
        pytest.skip("busybox-static (/bin/busybox) is not installed")
    (path / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, path / "bin/busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    (path / "etc").mkdir()
    (path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (path / "etc/group").write_text("root:x:0:\nuser:x:1000:\n")
    for name in ("proc", "dev", "sys", "tmp", "root"):
        (path / name).mkdir()
    os.chmod(path / "tmp", 0o1777)
    return path


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return busybox_rootfs(tmp_path / "rootfs")


@pytest.fixture
def scratch_rootfs(tmp_path: Path) -> Path:
    """A rootfs with busybox only: no /proc, /dev, /etc (like FROM scratch + COPY busybox)."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static (/bin/busybox) is not installed")
    root = tmp_path / "scratch"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    (root / "bin/sh").symlink_to("busybox")
    return root


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path
