"""Temporary files beside a user's output, named after the process writing them.

``--output oci:DIR`` is staged in ``.DIR.<pid>-<start>.XXXX.partial``, an archive or a config
file is written to ``.NAME.<pid>-<start>.XXXX.tmp`` before the rename that publishes it, and the
kubernetes backend packs a context in ``$TMPDIR/anybuild-kube-<pid>-<start>.XXXX``. A process
killed outright (SIGKILL, the OOM killer) cannot remove them, and no ledger records them (they do
not live in the data directory): the next writer of the same kind removes the ones whose process is
gone — a pid with another start time is another process.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["owner_tag", "process_start", "sweep_stale"]

_PROC = Path("/proc")


def process_start(pid: int, proc: Path = _PROC) -> int | None:
    """The start time of *pid* in clock ticks since boot (field 22 of ``stat``), None if it is gone.

    With the pid it names one process for good: a pid reused later starts later.
    """
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


def owner_tag() -> str:
    """``<pid>-<start>`` of this process, for the name of a temporary file beside an output."""
    pid = os.getpid()
    return f"{pid}-{process_start(pid) or 0}"


def sweep_stale(parent: Path, prefix: str, suffix: str = "", *, proc: Path = _PROC) -> list[Path]:
    """Remove the entries of *parent* named ``PREFIX<pid>-<start>.*SUFFIX`` whose process is gone; return them."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
            continue
        pid, dash, start = entry.name[len(prefix):].split(".", 1)[0].partition("-")
        if not (dash and pid.isdigit() and start.isdigit()):
            continue  # not one of ours (an older name, or someone else's file)
        if process_start(int(pid), proc) == int(start):
            continue  # its writer is still at it
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
