"""Two-platform build + push benchmark (issue 21): anybuild's built-in builder against buildah, same machine.

Workloads, each built for linux/amd64,linux/arm64 and pushed as one image index:
    frontend  examples/moltbook/frontend as it is (FROM busybox:1.36, COPY of the static site, USER)
    cross     a Go-style cross-compile: a `FROM --platform=$BUILDPLATFORM` stage does the work natively once
              per TARGETARCH (2,000 generated sources tarred and gzipped, the "compile"), the target stage
              copies the artifact and runs a RUN of its own platform (under QEMU for arm64)

A loopback `docker-registry` (started here) serves the offline bases under their Docker Hub names: busybox:1.36
is pushed as the harness's two-platform index (amd64 from busybox-static, arm64 from Debian's
busybox-static:arm64). buildah needs QEMU in the host's binfmt_misc: a handler for arm64 (flags PF, Debian's
-P wrapper) is registered for its turns only and removed after. anybuild runs with the host's handler absent
(its own route: a binfmt_misc of the build's own user namespace on Linux 6.7+), and, with --routes, through
the other routes too.

Every build is cold: a fresh ANYBUILD_DATA_DIR per anybuild build (bases pulled again from loopback, a few MB),
buildah without --layers and its manifest list removed first; each run puts a nonce in the Dockerfiles.
Timed: the build plus the push (anybuild: one `build --push`; buildah: `build --manifest` then
`manifest push --all`). anybuild is timed with its platforms one after the other (ANYBUILD_PLATFORM_JOBS=1)
and in parallel (=2), or as --jobs says.

    .venv/bin/python bench/multiplatform.py [--runs 3] [--routes userns,entrypoint,host] [--jobs 1,2]
        [--no-buildah] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.builder.multiplatform import host_binfmt  # noqa: E402
from tests.harness.bases import BaseImages, cache_dir, push_layout  # noqa: E402
from tests.harness.buildah import Buildah, running_buildah  # noqa: E402
from tests.harness.registry import Registry, running_registry  # noqa: E402

PLATFORMS = "linux/amd64,linux/arm64"
FRONTEND = ROOT / "examples" / "moltbook" / "frontend"
CROSS = """\
FROM --platform=$BUILDPLATFORM busybox:1.36 AS build
ARG TARGETOS TARGETARCH
RUN mkdir -p /src && cd /src && i=0 && while [ $i -lt 2000 ]; do \\
      echo "package main // {nonce} $i for $TARGETOS/$TARGETARCH" > file$i.go; i=$((i+1)); done \\
    && tar -cf - . | gzip -6 > /app-$TARGETARCH.tar.gz
FROM busybox:1.36
ARG TARGETARCH
COPY --from=build /app-$TARGETARCH.tar.gz /opt/app.tar.gz
RUN mkdir -p /opt/app && tar -xzf /opt/app.tar.gz -C /opt/app && ls /opt/app | wc -l > /opt/count && uname -m
"""


def _contexts(work: Path, nonce: str) -> dict[str, Path]:
    frontend = work / f"frontend-{nonce}"
    shutil.copytree(FRONTEND, frontend)
    dockerfile = frontend / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"LABEL bench.nonce={nonce}\n")
    cross = work / f"cross-{nonce}"
    cross.mkdir()
    (cross / "Dockerfile").write_text(CROSS.replace("{nonce}", nonce))
    return {"frontend": frontend, "cross": cross}


def _anybuild(context: Path, ref: str, registry: Registry, data: Path, route: str, jobs: str) -> float:
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(data), "ANYBUILD_EMULATION": route}
    if jobs:
        env["ANYBUILD_PLATFORM_JOBS"] = jobs
    argv = [str(ROOT / ".venv" / "bin" / "anybuild"), "build", "--backend", "builtin", "--progress", "plain",
            "--platform", PLATFORMS, "-t", ref, "--push", "--insecure-registry", registry.host,
            "--registry-mirror", registry.host, str(context)]
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=1800)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"anybuild failed ({route}):\n{done.stderr[-3000:]}")
    return seconds


def _buildah(buildah: Buildah, context: Path, ref: str, name: str) -> float:
    buildah.run("manifest", "rm", name, check=False)
    started = time.monotonic()
    buildah.run("build", "--platform", PLATFORMS, "--manifest", name, "--layers=false", "-f",
                str(context / "Dockerfile"), str(context), timeout=1800)
    buildah.run("manifest", "push", "--all", "--tls-verify=false", name, f"docker://{ref}", timeout=600)
    return time.monotonic() - started


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--routes", default="userns", help="anybuild's emulation routes to time (comma list)")
    parser.add_argument("--jobs", default="1,2", help="ANYBUILD_PLATFORM_JOBS values to time (comma list)")
    parser.add_argument("--no-buildah", action="store_true", help="time anybuild only")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    routes = [f"{r.strip()}@{j.strip()}" for r in options.routes.split(",") if r.strip()
              for j in (options.jobs.split(",") or [""])]
    others = [] if options.no_buildah else ["buildah"]
    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="anybuild-bench-multi-") as tmp:
        work = Path(tmp)
        with running_registry(work / "registry") as registry, \
                running_buildah(work / "buildah", mirror_host=registry.host) as buildah:
            bases = BaseImages(mirror_host=registry.host, work=work / "bases", cache=cache_dir())
            bases.busybox_multi()
            push_layout(work / "bases" / "busybox-multi-layout", "1.36-multi",
                        f"{registry.host}/library/busybox:1.36", all_platforms=True)  # the index as busybox:1.36
            for run in range(options.runs):
                nonce = secrets.token_hex(4)
                contexts = _contexts(work, nonce)
                for workload, context in contexts.items():
                    order = [*others, *routes] if run % 2 else [*routes, *others]
                    for entry in order:
                        tool, _, jobs = entry.partition("@")
                        if tool == "entrypoint" and workload == "cross":
                            continue  # its RUN execs tar: the entry point emulates the first program only
                        ref = f"{registry.host}/bench/{workload}:{tool}{jobs}-{nonce}"
                        if tool == "buildah":
                            with host_binfmt(want=True):
                                seconds = _buildah(buildah, context, ref, f"localhost/bench-{workload}-{nonce}")
                            label = "buildah"
                        else:
                            with host_binfmt(want=tool == "host"):
                                seconds = _anybuild(context, ref, registry, work / f"data-{tool}{jobs}-{nonce}",
                                                    tool, jobs)
                            label = f"anybuild ({tool}, jobs={jobs or 'auto'})"
                        times.setdefault(workload, {}).setdefault(label, []).append(seconds)
                        print(f"run {run + 1} {workload:8} {label:30} {seconds:6.2f} s", file=sys.stderr)
    report = {w: {t: {"median": round(_median(v), 2), "runs": [round(x, 2) for x in v]} for t, v in tools.items()}
              for w, tools in times.items()}
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        for workload, tools in report.items():
            for tool, figures in tools.items():
                print(f"{workload:8} {tool:30} median {figures['median']:6.2f} s  runs {figures['runs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
