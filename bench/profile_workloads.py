"""Per-step times of anybuild on the bench workloads, optionally under py-spy (by hand, not in CI).

Starts a loopback registry serving the offline Debian base, builds W1, W4 (one source
changed), W5 (no change), W3 and W2 of bench/builders.py with ``anybuild --json build
--push`` and prints each build's wall time and its steps' times. ``--spy W4`` records
that build with py-spy (``pip install py-spy``) into ``bench-spy-W4.txt`` (raw
collapsed stacks). ``--devpod`` puts the data directory on an overlay mount.

    .venv/bin/python bench/profile_workloads.py [--workloads W1,W4,W5] [--spy W4] [--devpod]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.builders import change_one_source, make_context, w1_dockerfile, w2_dockerfile, w3_dockerfile  # noqa: E402
from tests.harness.bases import BaseImages, cache_dir  # noqa: E402
from tests.harness.overlay import mounted_overlay  # noqa: E402
from tests.harness.registry import running_registry  # noqa: E402

BINARY = ROOT / ".venv" / "bin" / "anybuild"


def build(ctx: Path, name: str, host: str, env: dict[str, str], spy: bool) -> None:
    command = [str(BINARY), "--json", "build", str(ctx), "-t", f"{host}/profile/{name.lower()}:x", "--push",
               "--insecure-registry", host, "--registry-mirror", host]
    if spy:
        command = [str(ROOT / ".venv" / "bin" / "py-spy"), "record", "-o", f"bench-spy-{name}.txt", "-f", "raw",
                   "--subprocesses", "-r", "200", "--", *command]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    print(f"== {name}: {time.monotonic() - started:.2f} s, exit {done.returncode}")
    try:
        image = json.loads(done.stdout)["images"][0]
    except (ValueError, KeyError, IndexError):
        print(done.stdout[-2000:], done.stderr[-2000:])
        return
    for step in image.get("steps", []):
        print(f"   {step['seconds']:7.2f} {'C' if step.get('cached') else ' '} {step['name'][:100]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W4,W5,W3,W2")
    parser.add_argument("--spy", default="", help="record this workload with py-spy")
    parser.add_argument("--devpod", action="store_true", help="data directory on an overlay mount")
    args = parser.parse_args()
    wanted = {w.strip().upper() for w in args.workloads.split(",")}
    work = Path(tempfile.mkdtemp(prefix="profile-", dir="/var/tmp"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)  # as installed
    try:
        with contextlib.ExitStack() as stack:
            registry = stack.enter_context(running_registry(work / "registry"))
            BaseImages(mirror_host=registry.host, work=work / "bases", cache=cache_dir()).debian()
            data = (stack.enter_context(mounted_overlay(work / "overlay")) if args.devpod else work) / "data"
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["ANYBUILD_DATA_DIR"] = str(data)
            build(make_context(work / "warm", "FROM debian:bookworm\nRUN true\n", 0), "warm", registry.host, env,
                  False)
            w1 = make_context(work / "w1", w1_dockerfile("p1", 30_000), 2_000)
            for name in ("W1", "W4", "W5"):
                if name == "W4" and "W4" in wanted:
                    change_one_source(w1)
                if name in wanted or (name == "W1" and wanted & {"W4", "W5"}):
                    build(w1, name, registry.host, env, args.spy == name)
            if "W3" in wanted:
                build(make_context(work / "w3", w3_dockerfile("p3"), 2_000), "W3", registry.host, env, args.spy == "W3")
            if "W2" in wanted:
                build(make_context(work / "w2", w2_dockerfile("p2", 150 << 20), 0), "W2", registry.host, env,
                      args.spy == "W2")
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
