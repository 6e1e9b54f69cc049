"""Build + push in unprivileged pods (tests/harness/pod.py): anybuild against buildah in the same pod.

For each pod variant, in one started pod (its data directory, and so anybuild's cache, persists
between the builds, as a devpod's would):

    moltbook   examples/moltbook (`build --all --push`), cold
    moltbook'  the same after changing one source file of the API (the common devpod rebuild)
    W1         FROM debian:bookworm, RUN creating --files small files, COPY of --sources files
    W4         W1 again after changing one source file

buildah runs in the same pod where it can run at all — as root: vfs storage and chroot isolation
(the pod has no CAP_SYS_ADMIN for overlay); as uid 1000 it needs user namespaces and a working
newuidmap, and says why not where those are missing. Times are the median over --runs of the
build command plus its push (anybuild: one `build --push`); each run starts from a fresh pod.

    .venv/bin/python bench/pods.py [--variants uid1000,root] [--runs 3] [--files 30000] [--sources 2000]
        [--only anybuild,buildah] [--json]

Runs by hand (root, the Debian packages of scripts/install-test-deps.sh); never a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.bases import BaseImages, cache_dir  # noqa: E402
from tests.harness.pod import POD_VARIANTS, SOURCE, Pod, running_pod  # noqa: E402
from tests.harness.registry import running_registry  # noqa: E402

MOLTBOOK = ROOT / "examples" / "moltbook"
WORKLOADS = ("moltbook", "moltbook'", "W1", "W4")


def _chown(path: Path, uid: int) -> None:
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(Path(top) / name, uid, uid)
    os.lchown(path, uid, uid)


def _w1(files: int, nonce: str) -> str:
    return (f"FROM debian:bookworm\nRUN echo {nonce} > /nonce && mkdir -p /opt/gen && cd /opt/gen && "
            f"for i in $(seq 1 {files}); do echo $i > f$i; done\nCOPY src/ /opt/app/\n")


def _sources(where: Path, count: int) -> None:
    (where / "src").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (where / "src" / f"m{i}.py").write_text(f"def f{i}(x: int) -> int:\n    return x + {i}\n")


def _timed(pod: Pod, argv: list[str], cwd: str, env: dict[str, str] | None = None) -> float | str:
    started = time.monotonic()
    done = pod.exec(argv, cwd=cwd, env=env, timeout=7200)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        return "failed: " + (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:160]
    return seconds


def _anybuild(registry: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "anybuild", "build", *args, "--push", "--progress", "plain",
            "--registry-mirror", registry, "--insecure-registry", registry]


def _buildah(context: str, tag: str) -> list[str]:
    storage = f"--root {SOURCE}/buildah/root --runroot {SOURCE}/buildah/run --storage-driver vfs"
    script = (f"buildah {storage} bud --isolation chroot --layers -t {tag} {context} && "
              f"buildah {storage} push --tls-verify=false {tag} docker://{tag}")
    return ["/bin/sh", "-c", script]


def run_variant(name: str, registry: str, args: argparse.Namespace) -> dict[str, dict[str, float | str]]:
    variant = next(v for v in POD_VARIANTS if v.name == name)
    results: dict[str, dict[str, float | str]] = {}
    with running_pod(variant) as pod:
        repo = pod.host_path(f"{SOURCE}/moltbook")
        shutil.copytree(MOLTBOOK, repo)
        conf = pod.host_path(f"{SOURCE}/registries.conf")
        conf.write_text(f'[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
                        f'[[registry.mirror]]\nlocation = "{registry}"\ninsecure = true\n'
                        f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
        w1 = pod.host_path(f"{SOURCE}/w1")
        w1.mkdir()
        _sources(w1, args.sources)
        (w1 / "Dockerfile").write_text(_w1(args.files, os.urandom(4).hex()))
        _chown(pod.host_path(SOURCE), variant.uid)
        buildah_env = {"CONTAINERS_REGISTRIES_CONF": f"{SOURCE}/registries.conf", "BUILDAH_ISOLATION": "chroot"}
        for tool in args.only:
            timings: dict[str, float | str] = {}
            for image in ("api", "frontend"):
                ref = f"{registry}/bench-{name}/{tool}-{image}:1"
                context = f"{SOURCE}/moltbook/{image}"
                argv = (_anybuild(registry, [context, "-t", ref, "--build-arg", "NODE_ENV=production"])
                        if tool == "anybuild" else _buildah(context, ref))
                first = _timed(pod, argv, context, buildah_env if tool == "buildah" else None)
                timings[f"moltbook {image}"] = first
            (repo / "api/src/server.js").write_text((repo / "api/src/server.js").read_text() + f"\n// {tool}\n")
            ref = f"{registry}/bench-{name}/{tool}-api:2"
            argv = (_anybuild(registry, [f"{SOURCE}/moltbook/api", "-t", ref,
                                              "--build-arg", "NODE_ENV=production"])
                    if tool == "anybuild" else _buildah(f"{SOURCE}/moltbook/api", ref))
            timings["moltbook'"] = _timed(pod, argv, f"{SOURCE}/moltbook/api",
                                          buildah_env if tool == "buildah" else None)
            for workload in ("W1", "W4"):
                if workload == "W4":
                    (w1 / "src/m0.py").write_text(f"def f0(x: int) -> int:\n    return x - 1  # {tool}\n")
                ref = f"{registry}/bench-{name}/{tool}-w1:{workload.lower()}"
                argv = (_anybuild(registry, [f"{SOURCE}/w1", "-t", ref]) if tool == "anybuild"
                        else _buildah(f"{SOURCE}/w1", ref))
                timings[workload] = _timed(pod, argv, f"{SOURCE}/w1", buildah_env if tool == "buildah" else None)
            results[tool] = timings
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="uid1000,root,root-seccomp,uid1000-seccomp")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--files", type=int, default=30000)
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--only", default="anybuild,buildah")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.only = args.only.split(",")
    if os.geteuid() != 0:
        print("bench/pods.py starts pods with runc: run it as root", file=sys.stderr)
        return 2
    table: dict[str, dict[str, dict[str, list[float | str]]]] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pods-")))
        registry = stack.enter_context(running_registry(work / "registry"))
        bases = BaseImages(mirror_host=registry.host, work=work / "bases", cache=cache_dir())
        bases.debian()
        bases.node()
        for name in args.variants.split(","):
            for _ in range(args.runs):
                for tool, timings in run_variant(name, registry.host, args).items():
                    for workload, value in timings.items():
                        table.setdefault(name, {}).setdefault(tool, {}).setdefault(workload, []).append(value)
    summary = {name: {tool: {w: _median(v) for w, v in rows.items()} for tool, rows in tools.items()}
               for name, tools in table.items()}
    if args.json:
        print(json.dumps({"runs": args.runs, "files": args.files, "sources": args.sources, "results": summary}))
        return 0
    for name, tools in summary.items():
        print(f"\npod {name} (median of {args.runs}; seconds, build + push)")
        workloads = sorted({w for rows in tools.values() for w in rows})
        print("  " + "workload".ljust(20) + "".join(t.ljust(40) for t in tools))
        for workload in workloads:
            cells = [str(tools[t].get(workload, "-")) for t in tools]
            print("  " + workload.ljust(20) + "".join(c[:38].ljust(40) for c in cells))
    return 0


def _median(values: list[float | str]) -> float | str:
    numbers = [v for v in values if isinstance(v, float)]
    if not numbers:
        return values[-1]
    return round(statistics.median(numbers), 2)


if __name__ == "__main__":
    sys.exit(main())
