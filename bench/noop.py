"""Whole-process benchmark of the commands users run in loops (issue 23), by hand, not in CI.

The no-op rebuild + push (nothing changed since the last build) of two workloads, anybuild
against BuildKit (``docker build`` + ``docker push`` against a warm dockerd) in the same run:

    W1        bench/builders.py's W1 (FROM debian, RUN creating 30,000 files, COPY of 2,000 sources)
    moltbook  examples/moltbook in a git repository tagged v1.2.3 (two images, four tags each):
              anybuild ``build --all --push --reproducible`` (without it the created label comes
              from the clock: a new image every time); BuildKit one ``docker build`` per image with the
              same four tags, then ``docker push --all-tags`` per repository

and anybuild's start-up commands alone: ``doctor`` (also with DOCKER_HOST on a socket that
accepts and never answers), ``--version``, ``--help``.

Method: a loopback Distribution registry (also the docker.io mirror serving the offline bases)
and the harness's dockerd; every build twice untimed (the cold build and first push, then a first
no-op, after which anybuild has its record of the inputs and BuildKit its warm state), then
``--runs`` rounds of alternating pairs (anybuild first in odd rounds, BuildKit first in even
ones). Each timing is one whole process tree from fork to exit: wall time and the CPU time of
the children (user + system, from ``wait4``). Medians are reported with the load average, since
other work on the machine inflates wall times; the CPU figure is steadier.

    .venv/bin/python bench/noop.py [--runs 7] [--scale 1] [--only W1,moltbook,startup] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.builders import make_context, w1_dockerfile  # noqa: E402
from tests.harness.bases import BaseImages, cache_dir  # noqa: E402
from tests.harness.dockerd import DOCKER_CLI, Dockerd, running_dockerd  # noqa: E402
from tests.harness.registry import Registry, running_registry  # noqa: E402

BINARY = ROOT / ".venv" / "bin" / "anybuild"
EXAMPLE = ROOT / "examples" / "moltbook"
MOLTBOOK_TAGS = ("1.2.3", "1.2", "latest")  # plus sha-<short>
TIMEOUT = 1800.0


@dataclass(slots=True)
class Timing:
    wall_s: float
    cpu_s: float
    load1: float


@dataclass(slots=True)
class Series:
    label: str
    timings: list[Timing] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        walls = [t.wall_s for t in self.timings]
        cpus = [t.cpu_s for t in self.timings]
        return {"label": self.label, "runs": len(walls), "wall_s": statistics.median(walls),
                "cpu_s": statistics.median(cpus), "all_wall_s": [round(w, 3) for w in walls],
                "load1": [round(t.load1, 2) for t in self.timings]}


class Failed(Exception):
    pass


def timed(commands: Sequence[Sequence[str]], *, env: dict[str, str], cwd: Path | None = None,
          check: bool = True) -> Timing:
    """Run *commands* one after the other; their summed wall time (the CPU time: :func:`measured`)."""
    wall = cpu = 0.0
    for argv in commands:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise Failed(f"timed out: {' '.join(argv)}") from None
        wall += time.perf_counter() - started
        if check and proc.returncode != 0:
            raise Failed(f"exit {proc.returncode}: {' '.join(argv)}\n{out.decode(errors='replace')[-3000:]}")
    return Timing(wall_s=wall, cpu_s=cpu, load1=os.getloadavg()[0])


def measured(commands: Sequence[Sequence[str]], *, env: dict[str, str], cwd: Path | None = None,
             check: bool = True) -> Timing:
    """:func:`timed`, with the CPU time of the reaped children (user + system, the whole process trees)."""
    before = os.times()
    timing = timed(commands, env=env, cwd=cwd, check=check)
    after = os.times()
    timing.cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return timing


# ---------------------------------------------------------------- workloads


@dataclass(slots=True)
class Workload:
    name: str
    cwd: Path
    anybuild: list[list[str]]
    buildkit: list[list[str]]


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-11-01T12:00:00Z", "GIT_COMMITTER_DATE": "2026-11-01T12:00:00Z",
           "GIT_AUTHOR_NAME": "dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def w1_workload(work: Path, registry: Registry, scale: float) -> Workload:
    ctx = make_context(work / "w1", w1_dockerfile("noop", max(100, round(30_000 * scale))),
                       max(20, round(2_000 * scale)))
    host = registry.host
    anybuild = [[str(BINARY), "build", str(ctx), "-t", f"{host}/noop/anybuild-w1:x", "--push",
                 "--insecure-registry", host, "--registry-mirror", host, "--progress", "plain"]]
    ref = f"{host}/noop/buildkit-w1:x"
    buildkit = [[DOCKER_CLI, "build", "--network", "host", "--progress", "plain", "-t", ref, str(ctx)],
                [DOCKER_CLI, "push", "-q", ref]]
    return Workload("W1", ctx, anybuild, buildkit)


def moltbook_workload(work: Path, registry: Registry) -> Workload:
    host = registry.host
    repo = Path(shutil.copytree(EXAMPLE, work / "moltbook"))
    config = repo / "anybuild.toml"
    text = config.read_text().replace("ghcr.io/acme/", f"{host}/noop-anybuild/")
    text += f'\n[registries."docker.io"]\nmirrors = ["{host}"]\n\n[registries."{host}"]\ninsecure = true\n'
    config.write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "moltbook")
    _git(repo, "tag", "v1.2.3")
    sha = _git(repo, "rev-parse", "--short=7", "HEAD")
    # --reproducible: the created label from the commit, not the clock (without it every build is a new image
    # with a new created label: tags move, nothing is a no-op; BuildKit here sets no labels at all)
    anybuild = [[str(BINARY), "build", "--all", "--push", "--progress", "plain", "--backend", "builtin",
                 "--reproducible"]]
    buildkit: list[list[str]] = []
    pushes: list[list[str]] = []
    for name in ("api", "frontend"):
        repository = f"{host}/noop-buildkit/moltbook-{name}"
        tags = [arg for tag in (*MOLTBOOK_TAGS, f"sha-{sha}") for arg in ("-t", f"{repository}:{tag}")]
        buildkit.append([DOCKER_CLI, "build", "--network", "host", "--progress", "plain",
                         "--build-arg", "NODE_ENV=production", *tags, str(repo / name)])
        pushes.append([DOCKER_CLI, "push", "-q", "--all-tags", repository])
    return Workload("moltbook", repo, anybuild, buildkit + pushes)


# ---------------------------------------------------------------- start-up commands


@contextlib.contextmanager
def hung_socket(directory: Path) -> Iterator[Path]:
    """A unix socket that accepts connections and never answers (a hung Docker daemon)."""
    path = directory / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


# ---------------------------------------------------------------- the run


def pairs(a: tuple[str, list[list[str]]], b: tuple[str, list[list[str]]], *, runs: int, env_a: dict[str, str],
          env_b: dict[str, str], cwd: Path) -> tuple[Series, Series]:
    first, second = Series(a[0]), Series(b[0])
    for run in range(runs):
        order = [(first, a[1], env_a), (second, b[1], env_b)]
        if run % 2:
            order.reverse()
        for series, commands, env in order:
            series.timings.append(measured(commands, env=env, cwd=cwd))
            print(f"  {series.label:<28} {series.timings[-1].wall_s:6.3f} s wall "
                  f"{series.timings[-1].cpu_s:6.3f} s cpu  load {series.timings[-1].load1:.2f}",
                  file=sys.stderr, flush=True)
    return first, second


def alone(label: str, commands: list[list[str]], *, runs: int, env: dict[str, str], check: bool = True) -> Series:
    series = Series(label)
    for _ in range(runs):
        series.timings.append(measured(commands, env=env, check=check))
    print(f"  {label:<28} median {statistics.median(t.wall_s for t in series.timings):6.3f} s", file=sys.stderr,
          flush=True)
    return series


def line(series: Series, other: Series | None = None) -> str:
    s = series.summary()
    ratio = ""
    if other is not None:
        o = other.summary()
        ratio = f"  {float(s['wall_s']) / float(o['wall_s']):.2f}x {other.label}"  # type: ignore[arg-type]
    return (f"  {series.label:<28} wall {s['wall_s']:7.3f} s  cpu {s['cpu_s']:6.3f} s{ratio}"
            f"   runs {s['all_wall_s']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="W1's size factor (0.1 for a smoke run)")
    parser.add_argument("--only", default="W1,moltbook,startup")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    if wanted & {"W1", "moltbook"} and os.geteuid() != 0:
        parser.error("needs root (dockerd)")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # As installed: compiled bytecode (an editable checkout under PYTHONDONTWRITEBYTECODE compiles every run).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DOCKER_HOST")}
    work = Path(tempfile.mkdtemp(prefix="bench-noop-", dir="/var/tmp"))
    env["ANYBUILD_DATA_DIR"] = str(work / "anybuild-data")
    print(f"work directory {work}; load average {os.getloadavg()}", file=sys.stderr, flush=True)
    results: list[tuple[Series, Series | None]] = []
    try:
        with contextlib.ExitStack() as stack:
            if wanted & {"W1", "moltbook"}:
                registry = stack.enter_context(running_registry(work / "registry"))
                bases = BaseImages(mirror_host=registry.host, work=work / "bases", cache=cache_dir())
                bases.debian()
                if "moltbook" in wanted:
                    bases.node()
                daemon: Dockerd = stack.enter_context(running_dockerd(work / "dockerd", mirror_host=registry.host))
                docker_env = {**env, **daemon.env, "DOCKER_BUILDKIT": "1"}
                workloads = []
                if "W1" in wanted:
                    workloads.append(w1_workload(work, registry, args.scale))
                if "moltbook" in wanted:
                    workloads.append(moltbook_workload(work, registry))
                for workload in workloads:
                    print(f"{workload.name}: first builds and pushes, then one no-op each (untimed)",
                          file=sys.stderr, flush=True)
                    for _ in range(2):  # the second: anybuild's record of the inputs (files 2 s old) is written
                        measured(workload.anybuild, env=env, cwd=workload.cwd)
                        measured(workload.buildkit, env=docker_env, cwd=workload.cwd)
                    print(f"{workload.name}: no-op rebuild + push, {args.runs} alternating pairs", file=sys.stderr,
                          flush=True)
                    mine, theirs = pairs((f"{workload.name} anybuild", workload.anybuild),
                                         (f"{workload.name} buildkit", workload.buildkit),
                                         runs=args.runs, env_a=env, env_b=docker_env, cwd=workload.cwd)
                    results.append((mine, theirs))
            if "startup" in wanted:
                print("start-up commands", file=sys.stderr, flush=True)
                for label, argv in (("--version", ["--version"]), ("--help", ["--help"]),
                                    ("doctor", ["doctor"])):
                    results.append((alone(label, [[str(BINARY), *argv]], runs=args.runs, env=env, check=False), None))
                with hung_socket(work) as sock:
                    hung = {**env, "DOCKER_HOST": f"unix://{sock}"}
                    results.append((alone("doctor (hung DOCKER_HOST)", [[str(BINARY), "doctor"]], runs=args.runs,
                                          env=hung, check=False), None))
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedians of {args.runs} runs (load average now {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)")
    for mine, theirs in results:
        print(line(mine, theirs))
        if theirs is not None:
            print(line(theirs))
    if args.json:
        print(json.dumps([[m.summary(), t.summary() if t else None] for m, t in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
