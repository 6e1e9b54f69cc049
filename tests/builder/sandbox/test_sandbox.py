from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anybuild.builder.owners import IdRanges, Ownership
from anybuild.builder.sandbox import (
    Mount,
    MountKind,
    NetworkMode,
    RunOutcome,
    RunSpec,
    SandboxChoice,
    SandboxFacts,
    SandboxKind,
    SandboxUnavailable,
    choose_sandbox,
    make_sandbox,
    probe_sandbox_facts,
    sandbox_ladder,
    sandbox_of,
)
from anybuild.builder.sandbox.model import _allowed
from anybuild.builder.snapshot import diff, scan
from anybuild.errors import BackendError, EnvironmentUnsupported
from anybuild.process import SubprocessRunner
from tests.harness.procs import processes

FACTS = probe_sandbox_facts()
KINDS = [pytest.param(kind, id=kind.value) for kind in SandboxKind]
PATH = ("PATH=/bin",)


def sandbox_for(kind: SandboxKind, work: Path):
    if _allowed(kind, FACTS) is None:
        pytest.skip(f"sandbox {kind} cannot work here: {'; '.join(FACTS.to_evidence())}")
    return sandbox_of(kind, work=work, facts=FACTS, runner=SubprocessRunner())


def run(kind: SandboxKind, work: Path, rootfs: Path, script: str, **kw: object):
    lines: list[str] = []
    kw.setdefault("env", PATH)
    spec = RunSpec(rootfs=rootfs, argv=("/bin/sh", "-c", script), **kw)  # type: ignore[arg-type]
    outcome = sandbox_for(kind, work).run(spec, lines.append)
    return outcome, lines


def mounts_under(path: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(path) in line]


# -- choice: pure ---------------------------------------------------------------------------------


SINGLE = Ownership(uids=IdRanges(((0, 1),)), gids=IdRanges(((0, 1),)), chown=True, own=(0, 0))
NONE = Ownership(uids=IdRanges(((1000, 1),)), gids=IdRanges(((1000, 1),)), chown=False, own=(1000, 1000))


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (SandboxFacts(root=True, mount=True, chroot=True, runc="/usr/sbin/runc", proot="/p"),
         ["runc", "unshare", "chroot", "proot"]),
        (SandboxFacts(root=True, mount=True, chroot=True), ["unshare", "chroot"]),
        # in the build's own user namespace: its namespaces sandbox, not runc (a pod's /proc is masked)
        (SandboxFacts(root=True, mount=True, chroot=True, in_userns="single", runc="/r", proot="/p",
                      ownership=SINGLE), ["unshare", "proot"]),
        # a root pod under RuntimeDefault: no CAP_SYS_ADMIN, no namespaces
        (SandboxFacts(root=True, chroot=True, runc="/r", proot="/p"), ["proot"]),
        (SandboxFacts(root=False, runc="/r", proot="/p", ownership=NONE), ["proot"]),
    ],
    ids=["root-vm", "root-no-tools", "userns-single", "root-seccomp", "uid1000-seccomp"],
)
def test_sandbox_ladder_from_facts_strongest_first(facts: SandboxFacts, expected: list[str]) -> None:
    assert [c.kind.value for c in sandbox_ladder(facts)] == expected
    assert choose_sandbox(facts).kind.value == expected[0]


def test_choose_sandbox_nothing_possible_environment_unsupported() -> None:
    with pytest.raises(EnvironmentUnsupported, match="proot"):
        choose_sandbox(SandboxFacts(root=False, runc="/r", ownership=NONE))


def test_choose_sandbox_env_override_selected() -> None:
    facts = SandboxFacts(root=True, mount=True, runc="/r", proot="/p")
    choice = choose_sandbox(facts, env={"ANYBUILD_SANDBOX": "proot"})
    assert choice.kind is SandboxKind.PROOT
    assert "requested" in choice.reason
    assert len(sandbox_ladder(facts, env={"ANYBUILD_SANDBOX": "proot"})) == 1


@dataclass
class _Scripted:
    """A sandbox that cannot start, or runs: what the ladder sees."""

    kind: SandboxKind
    starts: bool
    runs: list[str]

    def run(self, spec: RunSpec, on_line: Any) -> RunOutcome:
        self.runs.append(self.kind.value)
        if not self.starts:
            raise SandboxUnavailable(f"{self.kind} refused", kind=self.kind)
        return RunOutcome(exit_code=0, tail=(), sandbox=self.kind, seconds=0.0)


def test_ladder_falls_back_when_a_sandbox_cannot_start_and_says_so() -> None:
    runs: list[str] = []
    notes: list[str] = []
    ladder = [SandboxChoice(kind=SandboxKind.RUNC, reason="r"), SandboxChoice(kind=SandboxKind.UNSHARE, reason="u")]
    made = {SandboxKind.RUNC: _Scripted(SandboxKind.RUNC, False, runs),
            SandboxKind.UNSHARE: _Scripted(SandboxKind.UNSHARE, True, runs)}
    sandbox = make_sandbox(ladder, work=Path("/nonexistent"), facts=SandboxFacts(root=True), on_note=notes.append)
    sandbox.make = made.__getitem__
    spec = RunSpec(rootfs=Path("/nonexistent"), argv=("true",))
    assert sandbox.run(spec, lambda _l: None).sandbox is SandboxKind.UNSHARE
    assert sandbox.run(spec, lambda _l: None).sandbox is SandboxKind.UNSHARE
    assert runs == ["runc", "unshare", "unshare"]  # runc is not tried again
    assert sandbox.ran is SandboxKind.UNSHARE
    assert len(notes) == 1 and "runc cannot start here (runc refused); using unshare" in notes[0]


def test_ladder_with_no_sandbox_that_starts_is_environmental() -> None:
    runs: list[str] = []
    ladder = [SandboxChoice(kind=SandboxKind.PROOT, reason="p")]
    sandbox = make_sandbox(ladder, work=Path("/nonexistent"), facts=SandboxFacts(root=True))
    sandbox.make = lambda kind: _Scripted(kind, False, runs)
    with pytest.raises(BackendError, match="proot refused") as caught:
        sandbox.run(RunSpec(rootfs=Path("/nonexistent"), argv=("true",)), lambda _l: None)
    assert caught.value.environmental  # another backend may build here
    assert sandbox.ran is None


@pytest.mark.parametrize("wanted", ["runc", "bogus"])
def test_choose_sandbox_override_impossible_backend_error(wanted: str) -> None:
    with pytest.raises(BackendError):
        choose_sandbox(SandboxFacts(root=False, proot="/p", ownership=NONE), override=wanted)


# -- real runs --------------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_run_output_exit_code_user_cwd_env(kind: SandboxKind, work: Path, rootfs: Path) -> None:
    outcome, lines = run(kind, work, rootfs, 'echo "$GREETING"; id -u; id -g; pwd; exit 7',
                         uid=1000, gid=1000, cwd="/tmp", env=(*PATH, "GREETING=hello world"))
    assert outcome.exit_code == 7
    assert outcome.sandbox is kind
    assert lines == ["hello world", "1000", "1000", "/tmp"]
    assert outcome.tail[-1] == "/tmp"


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_run_has_its_supplementary_groups(kind: SandboxKind, work: Path, rootfs: Path) -> None:
    """The primary gid first, then the user's /etc/group memberships, as runc gives them (proot too: it
    emulates only the uid and gid, the groups are set for real where the builder may)."""
    outcome, lines = run(kind, work, rootfs, "id -G", uid=1000, gid=1000, groups=(1000, 10, 20))
    assert (outcome.exit_code, lines) == (0, ["1000 10 20"])


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_run_missing_command_127(kind: SandboxKind, work: Path, rootfs: Path) -> None:
    spec = RunSpec(rootfs=rootfs, argv=("no-such-tool",), env=PATH)
    assert sandbox_for(kind, work).run(spec, lambda _l: None).exit_code == 127


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_run_proc_dev_resolv_visible(kind: SandboxKind, work: Path, rootfs: Path) -> None:
    outcome, lines = run(kind, work, rootfs,
                         "test -e /proc/self/status && echo proc; for n in null zero random urandom tty; do "
                         "test -c /dev/$n && echo $n; done; test -d /dev/shm && echo shm; "
                         "test -s /etc/resolv.conf && echo resolv; test -s /etc/hosts && echo hosts; "
                         "echo x > /dev/null && echo writable-null")
    assert outcome.exit_code == 0, lines
    expected = ["proc", "null", "zero", "random", "urandom", "tty", "shm", "writable-null"]
    assert [line for line in lines if line in expected] == expected
    if Path("/etc/resolv.conf").exists():
        assert "resolv" in lines
    if Path("/etc/hosts").exists():
        assert "hosts" in lines


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["busybox", "scratch"])
def test_sandbox_run_leaves_no_trace_in_snapshot(kind: SandboxKind, work: Path, rootfs: Path,
                                                 scratch_rootfs: Path, which: str) -> None:
    target = rootfs if which == "busybox" else scratch_rootfs
    secret = work.parent / "secret.txt"
    secret.write_text("s3cr3t-value\n")
    before = scan(target)
    time.sleep(0.01)
    outcome, lines = run(kind, work, target, "cat /run/secrets/token; true",
                         mounts=(Mount(kind=MountKind.BIND, target="/run/secrets/token", source=secret,
                                       readonly=True),
                                 Mount(kind=MountKind.TMPFS, target="/var/tmpfs")))
    assert outcome.exit_code == 0, lines
    assert "s3cr3t-value" in lines
    changes = diff(before, scan(target))
    # The runtime's own mount points stay where the image had none, as runc leaves them in Docker's
    # layer (BuildKit's stub cleaner keeps them: moby/buildkit#7039); the RUN's mounts leave nothing.
    runtime = set() if which == "busybox" else {"proc", "dev", "sys"}
    assert set(changes.added) == runtime and not changes.modified and not changes.deleted, changes
    for name in runtime:
        info = (target / name).lstat()
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o755 and not any((target / name).iterdir())
    assert mounts_under(target) == []
    assert sorted(p.name for p in work.iterdir()) == []


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_run_writes_land_in_rootfs(kind: SandboxKind, work: Path, rootfs: Path) -> None:
    before = scan(rootfs)
    outcome, _ = run(kind, work, rootfs, "mkdir -p /app && echo built > /app/out && rm /etc/group")
    assert outcome.exit_code == 0
    assert (rootfs / "app/out").read_text() == "built\n"
    changes = diff(before, scan(rootfs))
    assert "app/out" in changes.added
    assert changes.deleted == ("etc/group",)


@pytest.mark.root
@pytest.mark.parametrize("kind", [SandboxKind.RUNC, SandboxKind.UNSHARE])
def test_sandbox_network_none_only_loopback(kind: SandboxKind, work: Path, rootfs: Path) -> None:
    outcome, lines = run(kind, work, rootfs, "cat /proc/net/dev", network=NetworkMode.NONE)
    assert outcome.exit_code == 0
    interfaces = [line.split(":")[0].strip() for line in lines if ":" in line]
    assert interfaces == ["lo"]


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_interrupted_process_killed_mounts_and_stubs_removed(kind: SandboxKind, work: Path,
                                                                     scratch_rootfs: Path) -> None:
    sandbox = sandbox_for(kind, work)
    before = scan(scratch_rootfs)
    main = threading.get_ident()
    started = threading.Event()

    def on_line(text: str) -> None:
        if text == "started":
            started.set()

    def interrupt() -> None:
        started.wait(20)
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    spec = RunSpec(rootfs=scratch_rootfs, argv=("/bin/sh", "-c", "echo $$ > /pid; echo started; exec sleep 600"),
                   env=PATH)
    with pytest.raises(KeyboardInterrupt):
        sandbox.run(spec, on_line)
    assert mounts_under(scratch_rootfs) == []
    assert sorted(p.name for p in work.iterdir()) == []
    assert set(scan(scratch_rootfs).entries) == {*before.entries, "pid", "proc", "dev", "sys"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _sleepers(scratch_rootfs):
        time.sleep(0.1)
    assert _sleepers(scratch_rootfs) == []


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_run_ends_with_its_command_and_ends_what_it_left(kind: SandboxKind, work: Path, rootfs: Path) -> None:
    """As in a container whose pid 1 ends: the RUN lasts as long as its command (not as long as the
    daemon it started), its exit code is the command's, and the daemon does not outlive it."""
    marker = str(6000 + os.getpid() % 1000)
    outcome, lines = run(kind, work, rootfs, f"(sleep {marker} &); sleep 1; echo after; exit 3")
    assert (outcome.exit_code, lines) == (3, ["after"])
    assert 1 <= outcome.seconds < 30
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running("sleep", marker):
        time.sleep(0.1)
    assert _running("sleep", marker) == []


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_run_command_killed_by_a_signal_is_128_plus_it(kind: SandboxKind, work: Path,
                                                               rootfs: Path) -> None:
    """Killed from outside (as by the OOM killer), the RUN fails with 137 as under Docker, even after a child
    of it exited 0 (proot alone says 0 or 255, whichever tracee ended last)."""
    marker = str(7000 + os.getpid() % 1000)

    def kill_it() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (found := _running("sleep", marker)):
            time.sleep(0.05)
        for pid in found:
            os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill_it, daemon=True).start()
    outcome, lines = run(kind, work, rootfs, f"sh -c 'exit 0'; exec sleep {marker}")
    assert outcome.exit_code == 137
    assert not any("terminated with signal" in line for line in lines)


@pytest.mark.root
def test_proot_shows_no_variable_of_its_own_and_leaves_no_loader(work: Path, rootfs: Path, tmp_path: Path) -> None:
    """proot hands its environment to the command, and keeps its loader in $TMPDIR (prooted-PID-*) until
    it exits: a RUN's env is the image's alone, and a proot killed by Ctrl-C leaves no loader behind."""
    private = tmp_path / "proot-tmp"
    private.mkdir()
    env = (*PATH, f"TMPDIR={private}")
    outcome, lines = run(SandboxKind.PROOT, work, rootfs, "env | sort", env=env)
    assert outcome.exit_code == 0
    assert f"TMPDIR={private}" in lines
    assert {line.split("=", 1)[0] for line in lines} <= {"PATH", "TMPDIR", "PWD", "SHLVL", "HOME"}, lines
    assert list(private.iterdir()) == []

    main = threading.get_ident()
    started = threading.Event()
    threading.Thread(target=lambda: (started.wait(20), time.sleep(0.2), signal.pthread_kill(main, signal.SIGINT)),
                     daemon=True).start()
    spec = RunSpec(rootfs=rootfs, argv=("/bin/sh", "-c", "echo started; exec sleep 600"), env=env)
    with pytest.raises(KeyboardInterrupt):
        sandbox_for(SandboxKind.PROOT, work).run(spec, lambda text: started.set() if text == "started" else None)
    assert list(private.iterdir()) == []


def _running(*argv: str) -> list[int]:
    """Processes whose command line is *argv*."""
    wanted = [a.encode() for a in argv]
    return processes(lambda found: found == wanted)


def _sleepers(rootfs: Path) -> list[int]:
    """Processes still running `sleep 600` from this rootfs."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            root = os.readlink(proc / "root")
        except OSError:
            continue
        if b"600" in cmdline and (root == str(rootfs) or any(str(rootfs).encode() in c for c in cmdline)):
            found.append(int(proc.name))
    return found


def test_make_sandbox_loads_its_code_at_the_first_run_only(tmp_path: Path) -> None:
    """A rebuild whose RUN steps all come from the cache never imports a sandbox (start-up time)."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from anybuild.builder.sandbox import SandboxChoice, SandboxFacts, SandboxKind, make_sandbox\n"
        "ladder = [SandboxChoice(kind=k, reason='') for k in SandboxKind]\n"
        "made = make_sandbox(ladder, work=Path(sys.argv[1]), facts=SandboxFacts(root=True))\n"
        "assert made.kind is SandboxKind.RUNC, made\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('anybuild.builder.sandbox.'))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "anybuild.builder.sandbox.model" in loaded
    assert not loaded & {f"anybuild.builder.sandbox.{m}" for m in ("runc", "namespace", "proot", "init")}


@pytest.mark.root
def test_runc_sandbox_spawns_no_delete_after_a_normal_run(work: Path, rootfs: Path) -> None:
    """`runc run` removes the container it ran; a `runc delete` is only for a run stopped early."""
    if _allowed(SandboxKind.RUNC, FACTS) is None:
        pytest.skip(f"runc cannot work here: {'; '.join(FACTS.to_evidence())}")
    commands: list[list[str]] = []
    real = SubprocessRunner()

    class Recording:
        def run(self, argv: list[str], **kw: Any) -> Any:
            commands.append(list(argv))
            return real.run(argv, **kw)

    sandbox = sandbox_of(SandboxKind.RUNC, work=work, facts=FACTS, runner=Recording())  # type: ignore[arg-type]
    outcome = sandbox.run(RunSpec(rootfs=rootfs, argv=("/bin/sh", "-c", "echo ran"), env=PATH), lambda _l: None)

    assert outcome.exit_code == 0
    assert [c[3] for c in commands if c[0].endswith("runc")] == ["run"]  # runc --root STATE run ...
    assert sorted(p.name for p in work.iterdir()) == []
