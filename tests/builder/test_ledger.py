"""The ledger of a build: what a build killed outright left is found and undone by the next, once.

A real process plays the build: it opens a ledger, mounts a tmpfs in its scratch directory, starts a
process group (recorded, as the sandbox init records it) and a process living in the scratch directory
(unrecorded, as a command a killed chroot sandbox left), and is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anybuild.builder.ledger import LEDGER_SUFFIX, Ledger, process_start, recover_abandoned
from anybuild.process import SubprocessRunner
from tests.harness.procs import mounts_under

PLAYER = r"""
import os, subprocess, sys, time
from pathlib import Path
from anybuild.builder.ledger import Ledger, process_start
from anybuild.builder.overlay import LibcMounter

ledger = Ledger.open(Path(sys.argv[1]))
(ledger.work / "secrets").mkdir()
LibcMounter().mount("tmpfs", ledger.work / "secrets", "tmpfs", "mode=0700,size=1m")
(ledger.work / "secrets" / "token").write_text("s3cret")
group = subprocess.Popen(["sh", "-c", "sleep 4711 & sleep 4711"], start_new_session=True)
time.sleep(0.2)
ledger.record("group", pid=group.pid, start=process_start(group.pid))
(ledger.work / "rootfs").mkdir()
subprocess.Popen(["sleep", "4712"], cwd=ledger.work / "rootfs", start_new_session=True)
print(ledger.work, flush=True)
time.sleep(600)
"""


def _ours(marks: tuple[str, ...] = ("4711", "4712")) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and cmdline[:1] == [b"sleep"] and cmdline[1:2] and cmdline[1].decode() in marks:
            found.append(int(entry.name))
    return found


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_killed_build_is_undone_by_the_next_and_said_once(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    player = subprocess.Popen([sys.executable, "-c", PLAYER, str(tmp)], stdout=subprocess.PIPE, text=True)
    try:
        assert player.stdout is not None
        work = Path(player.stdout.readline().strip())
        assert mounts_under(work) and len(_ours()) == 3
        live = Ledger.open(tmp)  # a build running beside it: left alone
        player.send_signal(signal.SIGKILL)
        player.wait()
        assert mounts_under(work) and len(_ours()) == 3  # what a SIGKILL leaves

        done = recover_abandoned(tmp, runner=SubprocessRunner())

        assert [(d.work, d.processes, d.mounts, d.removed) for d in done] == [(work, 4, 1, True)]  # sh and 3 sleeps
        assert "cleaned up after a build that was killed (pid" in done[0].describe()
        assert _ours() == [] and mounts_under(tmp) == [] and not work.exists()
        assert sorted(p.name for p in tmp.iterdir()) == sorted([live.work.name, live.path.name])
        assert recover_abandoned(tmp, runner=SubprocessRunner()) == []  # said once: nothing left to say
        live.close()
        live.work.rmdir()
    finally:
        if player.poll() is None:
            player.kill()
        player.wait()
        if player.stdout is not None:
            player.stdout.close()
        for pid in _ours():
            os.kill(pid, signal.SIGKILL)


def test_recorded_group_reused_pid_not_killed(tmp_path: Path) -> None:
    """A group whose leader started before the recorded start is another process: the pid was reused."""
    bystander = subprocess.Popen(["sleep", "4713"], start_new_session=True)
    try:
        tmp = tmp_path / "tmp"
        ledger = Ledger.open(tmp)
        start = process_start(bystander.pid)
        assert start is not None
        ledger.record("group", pid=bystander.pid, start=start + 10_000)  # "started" long after the bystander
        os.close(ledger._fd)  # the build is gone, its lock with it
        time.sleep(0.1)

        done = recover_abandoned(tmp, runner=SubprocessRunner())

        assert [d.processes for d in done] == [0]
        assert bystander.poll() is None
        assert not list(tmp.glob(f"*{LEDGER_SUFFIX}"))
    finally:
        bystander.kill()
        bystander.wait()


def test_ledger_of_a_relative_data_directory_records_absolute_paths(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ledger = Ledger.open(Path("data/tmp"))  # ANYBUILD_DATA_DIR=data: mountinfo's points are absolute
    try:
        assert ledger.work.is_absolute() and ledger.path.is_absolute()
        assert json.loads(ledger.path.read_text().splitlines()[0])["work"] == str(tmp_path / "data/tmp" /
                                                                                  ledger.work.name)
    finally:
        ledger.work.rmdir()  # as a build ends: its directory, then its ledger
        ledger.close()
    assert not ledger.path.exists()
