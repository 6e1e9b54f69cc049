"""Prepared root trees for the probes: write /proc, /etc, markers under a temp dir."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from anybuild.environment.context import ProbeContext
from anybuild.process import SubprocessRunner

EXT4_MOUNTINFO = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
OVERLAY_ROOT_MOUNTINFO = (
    "600 500 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n"
    "601 600 0:53 / /proc rw,nosuid - proc proc rw\n"
    "602 600 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n"
    "603 600 254:1 /var/lib/docker /var/lib/docker rw - ext4 /dev/sdb rw\n"
)
STATUS = "Name:\tpython\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapEff:\t{capeff}\nSeccomp:\t{seccomp}\n"


def tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, content in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def context(
    root: Path, env: Mapping[str, str] | None = None, *, hostname: str = "laptop", cwd: Path | None = None
) -> ProbeContext:
    return ProbeContext(
        root=root,
        env=dict(env or {"PATH": "/nonexistent", "HOME": str(root / "home")}),
        runner=SubprocessRunner(),
        hostname=hostname,
        cwd=cwd or root,
        trials=False,
    )
