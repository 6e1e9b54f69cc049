"""Temporary files a killed writer left beside an output go with the next write of it (anybuild.leftovers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from anybuild.leftovers import owner_tag, process_start, sweep_stale
from anybuild.oci.layout import atomic_write


def _killed_writer_tag() -> str:
    """The ``pid-start`` of a process that started a write and was killed with SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = process_start(proc.pid)
    assert start is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert process_start(proc.pid) is None
    return f"{proc.pid}-{start}"


def test_the_next_write_removes_what_a_killed_writer_left_and_keeps_a_live_ones(tmp_path: Path) -> None:
    dead = _killed_writer_tag()
    left = tmp_path / f".image.tar.{dead}.k3j2.tmp"
    left.write_bytes(b"half an archive")
    staged = tmp_path / f".out.{dead}.ab12.partial"
    (staged / "blobs").mkdir(parents=True)
    live = tmp_path / f".image.tar.{owner_tag()}.zz99.tmp"  # a writer still at it (this process)
    live.write_bytes(b"being written")
    other = tmp_path / ".image.tar.notes.tmp"  # not named by a writer: never touched
    other.write_bytes(b"someone else's")
    with atomic_write(tmp_path / "image.tar") as out:
        out.write(b"whole")
    assert (tmp_path / "image.tar").read_bytes() == b"whole"
    assert not left.exists() and live.exists() and other.exists()
    assert staged.exists()  # another output's staging: only its own writer's sweep removes it
    assert sweep_stale(tmp_path, ".out.", ".partial") == [staged] and not staged.exists()


def test_a_pid_reused_by_another_process_is_not_the_writer(tmp_path: Path) -> None:
    pid = os.getpid()
    start = process_start(pid)
    assert start is not None
    reused = tmp_path / f".out.{pid}-{start - 1}.x.partial"  # same pid, started earlier: another process
    reused.mkdir()
    assert sweep_stale(tmp_path, ".out.", ".partial") == [reused]


def test_a_kubernetes_build_removes_the_context_scratch_a_killed_one_left(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from anybuild.backends.kubernetes.upload import scratch_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    left = tmp_path / f"anybuild-kube-{_killed_writer_tag()}.q1w2"
    left.mkdir()
    (left / "context.tar").write_bytes(b"a context")
    with scratch_dir() as scratch:
        assert Path(scratch).parent == tmp_path and Path(scratch).name.startswith(f"anybuild-kube-{owner_tag()}.")
        assert not left.exists()
    assert sorted(tmp_path.iterdir()) == []
