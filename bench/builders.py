"""Build + push benchmark: anybuild's built-in builder against BuildKit, the classic docker
builder and buildah (vfs and overlay), same bases, same registry, same run (issue 6).

Workloads (sizes at --scale 1; --scale 0.1 for a smoke run):
    W1  FROM debian:bookworm, RUN creating 30,000 small files, COPY of 2,000 source files
    W2  FROM debian:bookworm, RUN writing 300 MiB (150 MiB random, 150 MiB zeros)
    W3  multi-stage: a Debian stage tars+gzips 2,000 sources into an artifact, a busybox stage copies it
    W4  W1 again after changing one source file (the tool's cache is warm from W1)
    W5  W1 again with no change at all (after W4)

Every build is followed by a push to a loopback `docker-registry` (started here, also the
docker.io mirror serving the offline busybox:1.36 and debian:bookworm bases). Each (tool, run)
puts a unique nonce in its Dockerfiles, so W1/W2/W3 are cold builds for every tool in every
run while W4/W5 reuse that run's W1 (bases are pulled once per tool, untimed, by a warm-up).
Timed: the build command plus the push command (anybuild: one `build --push`).

Peak RSS: a sampler thread (every 0.2 s) sums VmRSS over the build command's process tree;
for BuildKit and the classic builder the tree also includes dockerd, its containerd and the
shims (the build runs in the daemon), so their figure includes the idle daemon.
Pushed bytes: from the registry's access log, each `PUT .../blobs/uploads/...?digest=D` answered
201 counts the size of blob D as stored by the registry (layers and configs actually uploaded;
manifests and cross-repository mounts are not counted).

    .venv/bin/python bench/builders.py [--runs 3] [--scale 1] [--only anybuild,buildkit]
        [--workloads W1,W4] [--devpod] [--json]

--devpod measures the devpod configuration instead: an overlay mount (like a devpod's
container filesystem) holding anybuild's ANYBUILD_DATA_DIR and, for buildah-vfs, its storage;
W1 and W4 only; target anybuild <= 0.5x buildah-vfs.

File creation can cost 30x more for a few minutes after many deletions: on ext4 without a
journal (this machine's root filesystem), allocating an inode skips, one lookup each, every
inode of its block group freed in the last 60-360 s (kernel: find_inode_bit -> recently_deleted),
so a test run or a previous bench just before slows every tool's RUN and COPY. The bench
therefore deletes nothing until it ends, times 500 file creations in its work directory before
each build (the "create" figure, µs per file, printed with every build and in the report),
before each tool's turn in a run waits up to --settle seconds (default 420) for that cost to
fall under 100 µs (a tool that deletes, like buildah after each step, slows the next one), and
starts each run with a different tool. Compare tools by medians, with their "create" figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402  (the harness signals a missing component with pytest.skip)
from tests.harness.bases import BaseImages, cache_dir  # noqa: E402
from tests.harness.buildah import Buildah, running_buildah  # noqa: E402
from tests.harness.dockerd import DOCKER_CLI, Dockerd, running_dockerd  # noqa: E402
from tests.harness.overlay import mounted_overlay  # noqa: E402
from tests.harness.registry import Registry, parse_access_log, running_registry  # noqa: E402

TOOLS = ("anybuild", "buildkit", "classic", "buildah-vfs", "buildah-overlay")
WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024
SKIPPED = pytest.skip.Exception
CMD_TIMEOUT = 3600.0

# ---------------------------------------------------------------- workloads


def w1_dockerfile(nonce: str, files: int) -> str:
    dirs = 100
    per_dir = max(1, files // dirs)
    return (
        "FROM debian:bookworm\n"
        f"RUN set -e; echo {nonce} > /nonce; mkdir /data; cd /data; d=0; "
        f"while [ $d -lt {dirs} ]; do mkdir d$d; f=0; "
        f'while [ $f -lt {per_dir} ]; do echo "file $d/$f {nonce}" > d$d/f$f.txt; f=$((f+1)); done; '
        "d=$((d+1)); done\n"
        "COPY src/ /app/src/\n"
        'CMD ["bash"]\n'
    )


def w2_dockerfile(nonce: str, half_bytes: int) -> str:
    return (
        "FROM debian:bookworm\n"
        f"RUN set -e; echo {nonce} > /nonce; head -c {half_bytes} /dev/urandom > /random.bin; "
        f"head -c {half_bytes} /dev/zero > /zeros.bin\n"
    )


def w3_dockerfile(nonce: str) -> str:
    return (
        "FROM debian:bookworm AS build\n"
        "COPY src/ /src/\n"
        f"RUN set -e; mkdir /out; echo {nonce} > /out/nonce; tar -C /src -cf - . | gzip -6 > /out/app.tar.gz; "
        "find /src -type f | sort | xargs cat | sha256sum > /out/app.sha256\n"
        "FROM busybox:1.36\n"
        "COPY --from=build /out/ /opt/app/\n"
        'CMD ["sh"]\n'
    )


def write_sources(src: Path, count: int) -> None:
    """`count` ~1 KiB Python-like source files in 20 packages."""
    for i in range(count):
        pkg = src / f"pkg{i % 20:02d}"
        pkg.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def f{i}_{j}(x: int) -> int:\n    return x * {j} + {i}\n\n" for j in range(22))
        (pkg / f"mod{i:04d}.py").write_text(f'"""module {i}"""\n\n{body}')


def make_context(path: Path, dockerfile: str, sources: int) -> Path:
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text(dockerfile)
    if sources:
        write_sources(path / "src", sources)
    return path


def change_one_source(ctx: Path) -> None:
    target = ctx / "src" / "pkg00" / "mod0000.py"
    target.write_text(target.read_text() + "\n# changed for W4\n")


# ---------------------------------------------------------------- measuring


def _proc_table() -> tuple[dict[int, list[int]], dict[int, int]]:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    return children, rss


def _pids_mentioning(marker: bytes) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                if marker in handle.read():
                    found.append(int(entry.name))
    return found


class RssSampler:
    """Peak of the summed RSS of the process trees under `roots` (plus processes whose
    command line mentions `marker`: containerd shims re-parented away from dockerd)."""

    def __init__(self, roots: Callable[[], set[int]], marker: str | None, interval: float = 0.2) -> None:
        self._roots, self._marker, self._interval = roots, marker, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        children, rss = _proc_table()
        stack = list(self._roots())
        if self._marker:
            stack += _pids_mentioning(self._marker.encode())
        seen: set[int] = set()
        total = 0
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += rss.get(pid, 0)
            stack.extend(children.get(pid, ()))
        self.peak = max(self.peak, total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(slots=True, kw_only=True)
class Measurement:
    ok: bool
    wall_s: float
    peak_rss_bytes: int
    pushed_bytes: int
    uploads: int
    resent_bytes: int  # part of pushed_bytes the registry already stored before this build
    load1: float
    error: str = ""
    create_us: float = 0.0  # file creation cost in the work directory just before the build


def creation_cost(where: Path, files: int = 500) -> float:
    """Microseconds per empty file created in a fresh directory under *where* (kept until the bench ends)."""
    where.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix="create-", dir=where))
    started = time.perf_counter()
    for index in range(files):
        os.close(os.open(probe / f"f{index}", os.O_CREAT | os.O_WRONLY, 0o644))
    return (time.perf_counter() - started) / files * 1e6


def settle(where: Path, limit_s: float, threshold_us: float = 100.0) -> float:
    """Wait (up to *limit_s*) until creating a file under *where* costs under *threshold_us*; the last cost."""
    deadline = time.monotonic() + limit_s
    while (cost := creation_cost(where)) > threshold_us and time.monotonic() < deadline:
        print(f"file creation costs {cost:.0f} µs here (recent deletions?); waiting for it to fall under "
              f"{threshold_us:.0f} µs, {deadline - time.monotonic():.0f} s left (--settle 0 skips)",
              file=sys.stderr, flush=True)
        time.sleep(min(20.0, max(0.0, deadline - time.monotonic())))
    return cost


def _blob_root(registry: Registry) -> Path:
    return registry.root / "data" / "docker" / "registry" / "v2" / "blobs"


def stored_blobs(registry: Registry) -> set[str]:
    """Hex digests of the blobs the registry stores now."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for prefix in os.scandir(_blob_root(registry) / "sha256"):
            found.update(entry.name for entry in os.scandir(prefix.path))
    return found


def pushed_since(registry: Registry, offset: int, before: set[str]) -> tuple[int, int, int]:
    """(bytes, count, bytes already stored in `before`) of blobs whose upload completed
    (PUT ...?digest= answered 201) in the access log after `offset`."""
    with registry.log_path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    total = count = resent = 0
    blobs = _blob_root(registry)
    for request in parse_access_log(text):
        if request.method != "PUT" or "/blobs/uploads/" not in request.path or request.status != 201:
            continue
        for digest in parse_qs(urlsplit(request.path).query).get("digest", []):
            algorithm, _, hexdigest = digest.partition(":")
            with contextlib.suppress(OSError):
                size = (blobs / algorithm / hexdigest[:2] / hexdigest / "data").stat().st_size
                total += size
                count += 1
                resent += size if hexdigest in before else 0
    return total, count, resent


def run_timed(commands: Sequence[Sequence[str]], *, env: Mapping[str, str], log: Path,
              extra_roots: Sequence[int], marker: str | None, registry: Registry) -> Measurement:
    """Run `commands` one after the other (stop at the first failure), timed and sampled."""
    current: set[int] = set()
    sampler = RssSampler(lambda: current | set(extra_roots), marker)
    offset = registry.log_path.stat().st_size
    before = stored_blobs(registry)
    started = time.monotonic()
    rc = 0
    with sampler, log.open("ab") as out:
        for argv in commands:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            current.add(proc.pid)
            try:
                rc = proc.wait(timeout=CMD_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            except BaseException:  # interrupted: stop the build before the harness tears down
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
                raise
            current.discard(proc.pid)
            if rc != 0:
                break
    wall = time.monotonic() - started
    pushed, uploads, resent = pushed_since(registry, offset, before)
    error = ""
    if rc != 0:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                 if line.strip(" -\t") and not line.startswith("$ ")]
        error = f"exit {rc}: " + " | ".join(lines[-4:])[-600:]
    return Measurement(ok=rc == 0, wall_s=wall, peak_rss_bytes=sampler.peak, pushed_bytes=pushed,
                       uploads=uploads, resent_bytes=resent, load1=os.getloadavg()[0], error=error)


# ---------------------------------------------------------------- tools


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    name: str
    commands: Callable[[Path, str], list[list[str]]]  # (context, reference) -> argv list
    env: Mapping[str, str]
    extra_roots: tuple[int, ...] = ()
    marker: str | None = None

    @property
    def slug(self) -> str:
        """The name as a repository path component."""
        return self.name.replace("@", "-on-")


def anybuild_tool(name: str, registry: Registry, data_dir: Path) -> Tool:
    binary = str(ROOT / ".venv" / "bin" / "anybuild")

    def commands(ctx: Path, ref: str) -> list[list[str]]:
        return [[binary, "build", str(ctx), "-f", str(ctx / "Dockerfile"), "-t", ref, "--push",
                 "--insecure-registry", registry.host, "--registry-mirror", registry.host, "--progress", "plain"]]

    # An installed anybuild runs from compiled bytecode (pip compiles a wheel at install); an editable
    # checkout under PYTHONDONTWRITEBYTECODE=1 would compile every module on every run (~0.45 s here).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return Tool(name=name, commands=commands, env={**env, "ANYBUILD_DATA_DIR": str(data_dir)})


def docker_tool(name: str, daemon: Dockerd, *, buildkit: bool) -> Tool:
    def commands(ctx: Path, ref: str) -> list[list[str]]:
        # --network host: the harness's dockerd runs with --bridge=none (BuildKit needs a network
        # mode that exists); RUN in buildah (chroot isolation) and anybuild shares the host's too.
        build = [DOCKER_CLI, "build", "--network", "host", "-t", ref, "-f", str(ctx / "Dockerfile"), str(ctx)]
        return [build, [DOCKER_CLI, "push", ref]]

    return Tool(name=name, commands=commands, env={**daemon.env, "DOCKER_BUILDKIT": "1" if buildkit else "0"},
                extra_roots=(daemon.proc.pid,), marker=str(daemon.exec_root.parent))


def buildah_tool(name: str, buildah: Buildah) -> Tool:
    def commands(ctx: Path, ref: str) -> list[list[str]]:
        return [buildah.argv("bud", "--layers", "-t", ref, "-f", str(ctx / "Dockerfile"), str(ctx)),
                buildah.argv("push", "--tls-verify=false", ref, f"docker://{ref}")]

    return Tool(name=name, commands=commands, env=buildah.env)


# ---------------------------------------------------------------- the run


@dataclass(slots=True, kw_only=True)
class Bench:
    registry: Registry
    work: Path
    scale: float
    workloads: tuple[str, ...]
    results: dict[str, dict[str, list[Measurement]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, workload: str, tool: str, measurement: Measurement) -> None:
        self.results.setdefault(workload, {}).setdefault(tool, []).append(measurement)
        status = "ok" if measurement.ok else f"FAILED {measurement.error[:300]}"
        print(f"  {workload} {tool:<20} {measurement.wall_s:8.2f} s  rss {measurement.peak_rss_bytes / MiB:7.1f} MiB"
              f"  pushed {measurement.pushed_bytes / MiB:8.2f} MiB  load {measurement.load1:.2f}"
              f"  create {measurement.create_us:5.0f} µs  {status}",
              file=sys.stderr, flush=True)

    def measure(self, tool: Tool, ctx: Path, ref: str, label: str) -> Measurement:
        log = self.work / "logs" / f"{tool.slug}-{label}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cost = creation_cost(self.work / "probes")
        measured = run_timed(tool.commands(ctx, ref), env=tool.env, log=log, extra_roots=tool.extra_roots,
                             marker=tool.marker, registry=self.registry)
        return replace(measured, create_us=cost)

    def warm_up(self, tool: Tool) -> str | None:
        """Pull both bases into the tool (untimed) with a trivial build; the error text if it fails."""
        for base in ("debian:bookworm", "busybox:1.36"):
            ctx = make_context(self.work / "ctx" / f"{tool.slug}-warm-{base.split(':')[0]}",
                               f"FROM {base}\nRUN true\n", 0)
            done = self.measure(tool, ctx, f"{self.registry.host}/bench/warmup/{tool.slug}:{base.split(':')[0]}",
                                f"warmup-{base.split(':')[0]}")
            if not done.ok:
                return f"warm-up on {base}: {done.error}"
        return None

    def run_tool(self, tool: Tool, run: int) -> None:
        nonce = f"{tool.slug}-r{run}-{secrets.token_hex(4)}"
        files, sources = max(100, round(30_000 * self.scale)), max(20, round(2_000 * self.scale))
        repo = f"{self.registry.host}/bench/{tool.slug}"
        want = set(self.workloads)
        base = self.work / "ctx" / f"{tool.slug}-r{run}"
        if want & {"W1", "W4", "W5"}:
            ctx = make_context(base / "w1", w1_dockerfile(nonce, files), sources)
            sequence = ["W1", *(w for w in ("W4", "W5") if w in want)]  # W4/W5 need W1's cache
            for index, workload in enumerate(sequence):
                if workload == "W4":
                    change_one_source(ctx)
                got = self.measure(tool, ctx, f"{repo}/w1:r{run}-{workload.lower()}", f"r{run}-{workload}")
                if workload in want:
                    self.record(workload, tool.name, got)
                if not got.ok:
                    for later in sequence[index + 1:]:
                        self.record(later, tool.name, failure(f"not run: {workload} failed ({got.error[:200]})"))
                    break
        if "W2" in want:
            half = round(150 * MiB * self.scale)
            ctx = make_context(base / "w2", w2_dockerfile(nonce, half), 0)
            self.record("W2", tool.name, self.measure(tool, ctx, f"{repo}/w2:r{run}", f"r{run}-W2"))
        if "W3" in want:
            ctx = make_context(base / "w3", w3_dockerfile(nonce), sources)
            self.record("W3", tool.name, self.measure(tool, ctx, f"{repo}/w3:r{run}", f"r{run}-W3"))
        # the contexts stay until the bench ends: deleting them would slow the next tool's file creation

    def fail_all(self, tool: str, runs: int, error: str) -> None:
        for workload in self.workloads:
            for _ in range(runs):
                self.record(workload, tool, failure(error))


def failure(error: str) -> Measurement:
    return Measurement(ok=False, wall_s=0, peak_rss_bytes=0, pushed_bytes=0, uploads=0, resent_bytes=0,
                       load1=os.getloadavg()[0], error=error)


def display_name(name: str, devpod: bool) -> str:
    return f"{name}@overlay" if devpod else name


def tool_set(stack: contextlib.ExitStack, names: Sequence[str], registry: Registry, work: Path,
             devpod: Path | None, errors: dict[str, str]) -> list[Tool]:
    """The selected tools, each set up in `stack`; a tool that cannot start goes to `errors`."""
    tools: list[Tool] = []
    daemon: Dockerd | None = None
    for name in names:
        shown = display_name(name, devpod is not None)
        try:
            match name:
                case "anybuild":
                    tools.append(anybuild_tool(shown, registry, (devpod or work) / "anybuild-data"))
                case "buildkit" | "classic":
                    if daemon is None:
                        daemon = stack.enter_context(running_dockerd(work / "dockerd", mirror_host=registry.host))
                        print(f"dockerd storage driver: {daemon.storage_driver}", file=sys.stderr)
                    tools.append(docker_tool(shown, daemon, buildkit=name == "buildkit"))
                case "buildah-vfs" | "buildah-overlay":
                    driver = name.removeprefix("buildah-")
                    instance = stack.enter_context(
                        running_buildah((devpod or work) / name, mirror_host=registry.host, storage_driver=driver))
                    tools.append(buildah_tool(shown, instance))
                case _:
                    errors[shown] = f"unknown tool {name!r} (known: {', '.join(TOOLS)})"
        except (Exception, SKIPPED) as exc:
            errors[shown] = f"setup failed: {type(exc).__name__}: {exc}"
    return tools


# ---------------------------------------------------------------- report


def median_of(items: list[Measurement]) -> dict[str, object]:
    good = [m for m in items if m.ok]
    failed = [m for m in items if not m.ok]
    if failed:
        return {"ok": False, "error": failed[0].error, "runs": len(items), "failed_runs": len(failed)}
    return {
        "ok": True,
        "runs": len(good),
        "wall_s": statistics.median(m.wall_s for m in good),
        "peak_rss_mib": statistics.median(m.peak_rss_bytes for m in good) / MiB,
        "pushed_mib": statistics.median(m.pushed_bytes for m in good) / MiB,
        "uploads": statistics.median(m.uploads for m in good),
        "resent_mib": statistics.median(m.resent_bytes for m in good) / MiB,
        "all_wall_s": [round(m.wall_s, 2) for m in good],
        "create_us": [round(m.create_us) for m in good],
    }


def target_check(workload: str, rows: Mapping[str, dict[str, object]], devpod: bool) -> list[str]:
    """Lines flagging anybuild against issue 6's targets."""
    mine = next((r for t, r in rows.items() if t.startswith("anybuild")), None)
    if mine is None:
        return []
    if not mine["ok"]:
        return [f"  target: anybuild FAILED on {workload} -> FAIL"]
    wall = float(mine["wall_s"])  # type: ignore[arg-type]
    lines: list[str] = []

    def flag(label: str, value: float, limit: float, unit: str) -> None:
        verdict = "PASS" if value <= limit else "FAIL"
        lines.append(f"  target: {label} = {value:.2f}{unit} (<= {limit}{unit}) -> {verdict}")

    if devpod:
        other = rows.get("buildah-vfs@overlay")
        if other and other["ok"] and workload in ("W1", "W4"):
            flag("anybuild@overlay / buildah-vfs@overlay", wall / float(other["wall_s"]), 0.5, "x")  # type: ignore[arg-type]
        return lines
    fastest = [(t, float(r["wall_s"])) for t, r in rows.items()  # type: ignore[arg-type]
               if t in ("buildkit", "buildah-overlay") and r["ok"]]
    if workload in ("W1", "W2", "W3", "W4"):
        if fastest:
            tool, best = min(fastest, key=lambda item: item[1])
            flag(f"anybuild / fastest of BuildKit, buildah-overlay ({tool})", wall / best,
                 0.8 if workload == "W2" else 1.0, "x")
        else:
            lines.append("  target: no successful BuildKit or buildah-overlay figure to compare with")
    if workload == "W5":
        flag("anybuild W5 wall time", wall, 1.0, " s")
    if workload == "W2":
        flag("anybuild W2 peak RSS", float(mine["peak_rss_mib"]), 200.0, " MiB")  # type: ignore[arg-type]
    return lines


def report(bench: Bench, tools: Sequence[str], devpod: bool) -> tuple[str, dict[str, object]]:
    out: list[str] = []
    data: dict[str, object] = {}
    for workload in bench.workloads:
        rows = {tool: median_of(items) for tool, items in bench.results.get(workload, {}).items()}
        data[workload] = rows
        mine = next((r for t, r in rows.items() if t.startswith("anybuild")), None)
        out.append(f"\n{workload}  (median of runs; wall = build + push)")
        out.append(f"  {'tool':<20} {'wall s':>8} {'peak RSS MiB':>13} {'pushed MiB':>11} {'re-sent MiB':>12}"
                   f" {'uploads':>8} {'anybuild / tool':>16}")
        for tool in tools:
            row = rows.get(tool)
            if row is None:
                continue
            if not row["ok"]:
                out.append(f"  {tool:<20} FAILED ({row['failed_runs']}/{row['runs']} runs): {row['error']}")
                continue
            ratio = "-"
            if mine is not None and mine["ok"] and not tool.startswith("anybuild"):
                ratio = f"{float(mine['wall_s']) / float(row['wall_s']):.2f}x"  # type: ignore[arg-type]
            out.append(f"  {tool:<20} {row['wall_s']:>8.2f} {row['peak_rss_mib']:>13.1f} {row['pushed_mib']:>11.2f}"
                       f" {row['resent_mib']:>12.2f} {row['uploads']:>8.0f} {ratio:>16}"
                       f"   runs {row['all_wall_s']} s, create {row['create_us']} µs")
        out += target_check(workload, rows, devpod)
    return "\n".join(out), data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="workload size factor (0.1 for a smoke run)")
    parser.add_argument("--only", default="", help=f"comma-separated tools among {','.join(TOOLS)}")
    parser.add_argument("--workloads", default="", help="comma-separated among W1..W5")
    parser.add_argument("--devpod", action="store_true", help="devpod configuration (overlay)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--settle", type=float, default=420.0,
                        help="seconds to wait at most for file creation to be cheap before timing (0: do not wait)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (dockerd, buildah, overlay mounts)")
    tools = [t.strip() for t in args.only.split(",") if t.strip()] or list(TOOLS)
    workloads = tuple(w.strip().upper() for w in args.workloads.split(",") if w.strip()) or WORKLOADS
    if args.devpod:
        tools = [t for t in tools if t in ("anybuild", "buildah-vfs")] or ["anybuild", "buildah-vfs"]
        workloads = tuple(w for w in workloads if w in ("W1", "W4")) or ("W1", "W4")
    if bad := [w for w in workloads if w not in WORKLOADS]:
        parser.error(f"unknown workloads {bad} (known: {', '.join(WORKLOADS)})")
    if bad := [t for t in tools if t not in TOOLS]:
        parser.error(f"unknown tools {bad} (known: {', '.join(TOOLS)})")
    # Stop cleanly (registry, dockerd, buildah storage, overlay mount) on Ctrl-C or kill, also
    # when started in the background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    load_start = os.getloadavg()
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="bench-builders-", dir="/var/tmp"))
    print(f"work directory {work}; load average at start {load_start}", file=sys.stderr, flush=True)
    errors: dict[str, str] = {}
    try:
        with contextlib.ExitStack() as stack:
            registry = stack.enter_context(running_registry(work / "registry"))
            bases = BaseImages(mirror_host=registry.host, work=work / "bases", cache=cache_dir())
            bases.debian()
            devpod_dir = stack.enter_context(mounted_overlay(work / "overlay")) if args.devpod else None
            bench = Bench(registry=registry, work=work, scale=args.scale, workloads=workloads)
            runnable = tool_set(stack, tools, registry, work, devpod_dir, errors)
            for tool in runnable:
                if (problem := bench.warm_up(tool)) is not None:
                    errors[tool.name] = problem
            for shown, problem in errors.items():
                bench.fail_all(shown, args.runs, problem)
            order = [display_name(t, args.devpod) for t in tools]
            ready = [tool for tool in runnable if tool.name not in errors]
            for run in range(args.runs):
                # each run starts with the next tool, so no tool always follows the same one (buildah, for
                # one, deletes its working container's files after every step)
                for tool in ready[run % len(ready):] + ready[:run % len(ready)] if ready else []:
                    cost = settle(work / "probes", args.settle)  # --settle 0: one measurement, no wait
                    print(f"run {run + 1}/{args.runs}: {tool.name} (file creation {cost:.0f} µs)", file=sys.stderr,
                          flush=True)
                    bench.run_tool(tool, run)
            text, data = report(bench, order, args.devpod)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    load_end = os.getloadavg()
    header = (
        f"bench/builders.py  mode={'devpod (data dir / storage on an overlay mount)' if args.devpod else 'standard'}"
        f"  scale={args.scale}  runs={args.runs}  elapsed={time.time() - started:.0f} s\n"
        f"machine: {os.cpu_count()} CPUs, load average start {load_start[0]:.2f}/{load_start[1]:.2f}/"
        f"{load_start[2]:.2f}, end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f} (shared machine)\n"
        "peak RSS: /proc sampler (0.2 s) summing VmRSS over the build command's process tree; "
        "buildkit/classic include dockerd+containerd+shims.\n"
        "pushed: bytes of blobs uploaded (PUT ?digest= answered 201 in the registry access log), manifests excluded;\n"
        "re-sent: the part of it the registry already stored (e.g. a base layer uploaded again instead of mounted).\n"
        "create: µs per file created in the work directory just before each build (see the module doc: over ~100 µs,\n"
        "recent deletions slow every tool's file creation; read ratios within one run)."
    )
    if args.json:
        print(json.dumps({"mode": "devpod" if args.devpod else "standard", "scale": args.scale, "runs": args.runs,
                          "load_start": load_start, "load_end": load_end, "results": data,
                          "raw": {w: {t: [asdict(m) for m in ms] for t, ms in r.items()}
                                  for w, r in bench.results.items()}}, indent=2))
    else:
        print(header + "\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
