"""Stop means stop: real `anybuild build` processes interrupted by real signals, and what they leave.

Each case starts the command in a session of its own, waits until it is in the phase under test (a RUN
in one of the sandboxes, a push, a pull of the base image), and sends the signal: SIGINT to its process
group and to its pid only, SIGTERM, or SIGKILL followed by another build or by `anybuild cache prune`
(which must find what the killed build left and undo it, and say so once). Afterwards, whatever the
case: the exit code (130, 143), no mount under the data directory (/proc/self/mountinfo), no process of
the build alive, no temporary directory (the data directory's tmp/ and TMPDIR are empty), no file
holding the secret anywhere under either, nothing at --output, and no tag in the registry.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from anybuild.builder.sandbox import SandboxKind, probe_sandbox_facts, sandbox_ladder
from anybuild.errors import AnybuildError
from tests.harness.procs import mounts_under, unavailable, unmount_under
from tests.registry.faultproxy import Fault, FaultProxy, fault_proxy

SECRET = "tok3n-never-on-disk-5c1f"
SIGNALS = {
    "sigint-group": signal.SIGINT,
    "sigint-pid": signal.SIGINT,
    "sigterm": signal.SIGTERM,
    "sigkill-then-build": signal.SIGKILL,
    "sigkill-then-prune": signal.SIGKILL,
}


def _sandbox_or_skip(kind: str) -> str:
    facts = probe_sandbox_facts()
    try:
        sandbox_ladder(facts, kind)
    except AnybuildError as exc:  # the ladder says why this machine cannot have it
        unavailable(f"the {kind} sandbox cannot work here: {exc}")
    return kind


@dataclass
class Build:
    """One `anybuild` process, its output collected as it comes."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    pump: threading.Thread | None = None

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], cwd: Path) -> Build:
        proc = subprocess.Popen([sys.executable, "-m", "anybuild", *argv], env=env, cwd=cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        build = cls(proc)
        build.pump = threading.Thread(target=build._pump, daemon=True)
        build.pump.start()
        return build

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self.changed:
                    self.lines.append(line.rstrip("\n"))
                    self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, f"never {what}:\n" + "\n".join(self.lines[-40:])
                self.changed.wait(min(left, 0.2))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, seconds: float = 90) -> int:
        try:
            code = self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("did not stop:\n" + "\n".join(self.lines[-40:])) from None
        if self.pump is not None:
            self.pump.join(timeout=30)  # its last lines (a leftover holding the pipe would hold it)
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class World:
    root: Path
    data: Path
    tmp: Path
    out: Path
    env: dict[str, str]
    registry: object
    mark: str  # the RUN's `sleep` says it is this test's (tests run side by side)
    proxy: FaultProxy | None = None

    def argv(self, context: Path, *extra: str) -> list[str]:
        host = self.registry.host  # type: ignore[attr-defined]
        insecure = ["--insecure-registry", self.proxy.host] if self.proxy else []
        return ["build", str(context), "--registry-mirror", host, "--insecure-registry", host, *insecure,
                "--progress", "plain", *extra]

    def context(self, name: str, dockerfile: str) -> Path:
        path = self.root / name
        path.mkdir()
        (path / "Dockerfile").write_text(dockerfile)
        (path / "payload").write_bytes(os.urandom(3_000_000))  # a layer big enough for a push to take time
        return path


@pytest.fixture
def world(tmp_path: Path, base_images: object, registry: object) -> Iterator[World]:
    data, tmp = tmp_path / "data", tmp_path / "tmpdir"
    tmp.mkdir()
    (tmp_path / "secret").write_text(SECRET + "\n")
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(data), "TMPDIR": str(tmp), "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("ANYBUILD_USERNS", None)
    mark = str(random.randrange(20_000, 60_000))
    yield World(root=tmp_path, data=data, tmp=tmp, out=tmp_path / "out", env=env, registry=registry, mark=mark)
    for pid in _leftovers(data, mark):  # never leave a stray process or mount behind, whatever happened
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for runtime_state in data.glob("tmp/build-*/run-*/state"):
        for container in runtime_state.iterdir():
            subprocess.run(["runc", "--root", str(runtime_state), "delete", "--force", container.name],
                           capture_output=True, check=False)
    unmount_under(data)


def _leftovers(data: Path, mark: str) -> list[int]:
    """Processes of a build under *data*: the RUN's marked sleep, or anything naming or living in *data*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            root, cwd = os.readlink(entry / "root"), os.readlink(entry / "cwd")
        except OSError:
            continue
        if cmdline.split(b"\0")[:2] == [b"sleep", mark.encode()] or str(data).encode() in cmdline \
                or root.startswith(str(data)) or cwd.startswith(str(data)):
            found.append(int(entry.name))
    return found


def _describe(pid: int) -> str:
    proc = Path(f"/proc/{pid}")
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return f"{pid} state {fields[0]} ppid {fields[1]} pgrp {fields[2]}: {cmdline[:200]}"
    except OSError as exc:
        return f"{pid}: {exc}"


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    found = []
    for top, _dirs, files in os.walk(root):
        for name in files:
            path = Path(top) / name
            try:
                if path.is_file() and not path.is_symlink() and secret in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def _tag_exists(registry: object, repository: str, tag: str) -> bool:
    response = httpx.get(f"{registry.url}/v2/{repository}/manifests/{tag}",  # type: ignore[attr-defined]
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
    return response.status_code == 200


def _nothing_left(world: World, *, repository: str) -> None:
    deadline = time.monotonic() + 10
    while _leftovers(world.data, world.mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _leftovers(world.data, world.mark) == [], "processes of the build still alive: " + "; ".join(
        _describe(pid) for pid in _leftovers(world.data, world.mark))
    assert mounts_under(world.data) == []
    scratch = world.data / "tmp"
    assert not scratch.exists() or sorted(p.name for p in scratch.iterdir()) == []
    assert sorted(p.name for p in world.tmp.iterdir()) == []
    assert _files_holding(world.data, SECRET.encode()) == [] and _files_holding(world.tmp, SECRET.encode()) == []
    assert not world.out.exists() and not [p for p in world.root.iterdir() if p.name.startswith(".out.")]
    assert not _tag_exists(world.registry, repository, "v1")


def _send(build: Build, case: str) -> None:
    signum = SIGNALS[case]
    if case == "sigint-group":
        os.killpg(build.proc.pid, signum)
    else:
        os.kill(build.proc.pid, signum)


def _after(build: Build, case: str, world: World, context: Path) -> None:
    code = build.finish()
    if SIGNALS[case] != signal.SIGKILL:
        assert code == 128 + SIGNALS[case], build.text[-3000:]
        assert "Traceback" not in build.text
        assert f"interrupted by {signal.Signals(SIGNALS[case]).name}" in build.text, build.text[-3000:]
        return
    assert code == -signal.SIGKILL
    if case == "sigkill-then-build":
        (context / "Dockerfile").write_text("FROM busybox:1.36\n")
        again = Build.start(world.argv(context), world.env, world.root)
    else:
        again = Build.start(["cache", "prune"], world.env, world.root)
    assert again.finish() == 0, again.text[-3000:]
    assert sum("cleaned up after a build that was killed" in line for line in again.lines) == 1, again.text
    once_more = Build.start(["cache", "prune"], world.env, world.root)
    assert once_more.finish() == 0 and not once_more.said("cleaned up after"), once_more.text  # said once


def _run(mark: str) -> str:
    return ("FROM busybox:1.36\nCOPY payload /payload\n"
            f"RUN --mount=type=secret,id=token cat /run/secrets/token > /dev/null && echo started-{mark} "
            f"&& sleep {mark} & sleep {mark}\nRUN echo never\n")


@pytest.mark.root
@pytest.mark.parametrize("case", SIGNALS, ids=SIGNALS)
@pytest.mark.parametrize("kind", [k.value for k in SandboxKind])
def test_interrupted_during_a_run_leaves_nothing_and_pushes_nothing(kind: str, case: str, world: World) -> None:
    _sandbox_or_skip(kind)
    context = world.context("ctx", _run(world.mark))
    repository = f"interrupted/{kind}-{case}"
    tag = f"{world.registry.host}/{repository}:v1"  # type: ignore[attr-defined]
    build = Build.start(world.argv(context, "--sandbox", kind, "--secret", f"id=token,src={world.root / 'secret'}",
                                   "--output", f"oci:{world.out}", "-t", tag, "--push"), world.env, world.root)
    build.wait_for(lambda: build.said(f"started-{world.mark}") and bool(_leftovers(world.data, world.mark)),
                   "ran the RUN")
    _send(build, case)
    _after(build, case, world, context)
    assert not build.said("never") and not build.said("pushed ")
    _nothing_left(world, repository=repository)


@pytest.mark.root
def test_second_ctrl_c_says_it_is_still_cleaning_and_leaves_nothing(world: World) -> None:
    kind = _sandbox_or_skip("runc")  # the slowest to stop: its container is deleted with `runc delete`
    context = world.context("ctx", _run(world.mark))
    build = Build.start(world.argv(context, "--sandbox", kind, "--secret", f"id=token,src={world.root / 'secret'}",
                                   "--output", f"oci:{world.out}"), world.env, world.root)
    build.wait_for(lambda: build.said(f"started-{world.mark}"), "ran the RUN")
    os.killpg(build.proc.pid, signal.SIGINT)
    build.wait_for(lambda: build.said("SIGINT: stopping"), "said it stops", seconds=10)
    os.killpg(build.proc.pid, signal.SIGINT)
    assert build.finish() == 130, build.text[-3000:]
    assert build.said("still cleaning up"), build.text[-3000:]
    _nothing_left(world, repository="interrupted/twice")


@pytest.mark.root
@pytest.mark.parametrize("case", ["sigint-pid", "sigterm", "sigkill-then-build"])
def test_interrupted_in_the_builders_own_user_namespace(case: str, world: World) -> None:
    world.env["ANYBUILD_USERNS"] = "identity"  # the worker process, as in an unprivileged pod
    context = world.context("ctx", _run(world.mark))
    build = Build.start(world.argv(context, "--secret", f"id=token,src={world.root / 'secret'}",
                                   "--output", f"oci:{world.out}"), world.env, world.root)
    build.wait_for(lambda: build.said(f"started-{world.mark}"), "ran the RUN")
    assert build.said("anybuild: builder: in a identity-mapped user namespace"), build.text[-2000:]
    _send(build, case)
    _after(build, case, world, context)
    _nothing_left(world, repository="interrupted/userns")


def _slow(method: str, path: str) -> list[Fault]:
    return [Fault(method=method, path=path, action="slow", rate=100_000, times=100)]


@pytest.mark.root
@pytest.mark.parametrize("case", SIGNALS, ids=SIGNALS)
def test_interrupted_during_a_push_tags_nothing(case: str, world: World) -> None:
    context = world.context("ctx", "FROM busybox:1.36\nCOPY payload /payload\n")
    repository = f"interrupted/push-{case}"
    with fault_proxy(world.registry.host, _slow("PUT", "/blobs/uploads/")) as proxy:  # type: ignore[attr-defined]
        world.proxy = proxy
        build = Build.start(world.argv(context, "-t", f"{proxy.host}/{repository}:v1", "--push",
                                       "--secret", f"id=token,src={world.root / 'secret'}"), world.env, world.root)
        build.wait_for(lambda: any(s.method == "POST" and "/blobs/uploads/" in s.path for s in proxy.seen),
                       "started an upload")
        time.sleep(0.5)  # the layer is on its way, slowly
        _send(build, case)
        _after(build, case, world, context)
    assert not [s for s in proxy.seen if s.method == "PUT" and "/manifests/" in s.path]
    _nothing_left(world, repository=repository)


@pytest.mark.root
@pytest.mark.parametrize("case", SIGNALS, ids=SIGNALS)
def test_interrupted_during_a_pull_leaves_nothing(case: str, world: World) -> None:
    with fault_proxy(world.registry.host, _slow("GET", "/blobs/sha256:")) as proxy:  # type: ignore[attr-defined]
        world.proxy = proxy
        context = world.context("ctx", f"FROM {proxy.host}/library/busybox:1.36\nRUN true\n")
        build = Build.start(world.argv(context, "--output", f"oci:{world.out}"), world.env, world.root)
        build.wait_for(lambda: any("/manifests/" in s.path for s in proxy.seen), "started the pull")
        time.sleep(0.5)  # its layers are on their way, slowly
        _send(build, case)
        _after(build, case, world, context)
    store = world.data / "store" / "blobs" / "sha256"
    assert not store.exists() or not [p for p in store.iterdir() if p.name.startswith(".")]  # no partial blob
    _nothing_left(world, repository="interrupted/pull")


@pytest.mark.root
@pytest.mark.parametrize("case", ["sigint-group", "sigterm"])
@pytest.mark.parametrize("kind", ["oci", "docker-archive"])
def test_pull_command_interrupted_writes_nothing(kind: str, case: str, world: World) -> None:
    with fault_proxy(world.registry.host, _slow("GET", "/blobs/sha256:")) as proxy:  # type: ignore[attr-defined]
        pull = Build.start(["pull", f"{proxy.host}/library/busybox:1.36", "-o", f"{kind}:{world.out}",
                            "--insecure-registry", proxy.host, "--platform", "linux/amd64"], world.env, world.root)
        pull.wait_for(lambda: any("/manifests/" in s.path for s in proxy.seen), "started the pull")
        time.sleep(0.5)
        _send(pull, case)
        assert pull.finish() == 128 + SIGNALS[case], pull.text[-2000:]
    assert "Traceback" not in pull.text and "error: interrupted by " in pull.text
    assert not world.out.exists() and not [p for p in world.root.iterdir() if p.name.startswith(".out.")]
    assert sorted(p.name for p in world.tmp.iterdir()) == []
