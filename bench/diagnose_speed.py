"""Benchmark: `anybuild diagnose` on a 50 MB log runs in under a second, in flat memory.

Writes logs of 5 MB and 50 MB (realistic BuildKit/npm noise, a 429 retried near the
start, the nested-overlay error at the end) into a temporary directory, diagnoses
each in a fresh Python process through the same stream path the CLI uses, and prints
the wall time, the CPU time and the peak RSS of each (import included). Memory is flat
when the 50 MB peak is within a few MB of the 5 MB one. Exit status 1 if the 50 MB run
takes 1 s or more of CPU time (wall time is printed too, but on a shared, loaded machine
it also counts time spent waiting for a core; the load average is printed), or if the
diagnosis is wrong.

    .venv/bin/python bench/diagnose_speed.py [--mb 50]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

NOISE = (
    "#{step} {t:.3f} npm http fetch GET 200 https://registry.npmjs.org/{pkg} {ms}ms (cache miss)",
    "#{step} {t:.3f} added {n} packages, and audited {m} packages in {s}s",
    "#{step} {t:.3f} npm WARN deprecated {pkg}@1.0.{n}: this package is no longer supported",
    "#{step} {t:.3f} src/components/{pkg}.tsx:{n}:{m} - compiled in {ms} ms",
    "#{step} {t:.3f} [{n}/{m}] Building CXX object src/{pkg}/CMakeFiles/{pkg}.dir/main.cc.o",
    "#{step} sha256:{sha} {n}.{m}MB / 42.1MB {s}.2s",
    "#{step} {t:.3f} Get:{n} http://deb.debian.org/debian bookworm/main amd64 lib{pkg} [{ms} kB]",
    "#{step} {t:.3f} warning: unused variable '{pkg}' [-Wunused-variable]",
    "#{step} {t:.3f} Setting up lib{pkg} (1.{n}.{m}-1) ...",
)
PKGS = ("react", "lodash", "left-pad", "zlib", "openssl", "webpack", "babel-core", "typescript")

PROBE = """
import json, resource, sys, time
from pathlib import Path
t0, c0 = time.perf_counter(), time.process_time()
from anybuild.diagnose import diagnose_stream
with Path(sys.argv[1]).open("rb") as f:
    report = diagnose_stream(f)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({
    "seconds": elapsed,
    "cpu_seconds": cpu,
    "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "lines": report.lines,
    "root": report.diagnoses[0].rule_id if report.diagnoses else None,
    "roles": [[d.rule_id, str(d.role)] for d in report.diagnoses],
}))
"""


def write_log(path: Path, size: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    written = 0
    with path.open("w", encoding="utf-8") as out:
        head = (
            "#1 [internal] load build definition from Dockerfile\n"
            "#3 [internal] load metadata for docker.io/library/node:20-bookworm-slim\n"
            "#3 0.512 failed to fetch manifest, retrying: unexpected status code "
            "https://registry-1.docker.io/v2/library/node/manifests/20: 429 Too Many Requests\n"
            "#3 DONE 2.1s\n"
        )
        out.write(head)
        written += len(head)
        while written < size:
            chunk = []
            for _ in range(1000):
                template = rng.choice(NOISE)
                chunk.append(
                    template.format(
                        step=rng.randint(4, 12),
                        t=rng.random() * 300,
                        pkg=rng.choice(PKGS),
                        n=rng.randint(1, 999),
                        m=rng.randint(1, 999),
                        s=rng.randint(1, 60),
                        ms=rng.randint(1, 9999),
                        sha=f"{rng.getrandbits(64):016x}",
                    )
                )
            text = "\n".join(chunk) + "\n"
            out.write(text)
            written += len(text)
        out.write(
            '#12 ERROR: mount source: "overlay", target: "/var/lib/docker/overlay2/x/merged", '
            'fstype: overlay, flags: 0, data: "lowerdir=/var/lib/docker/overlay2/l/A", '
            "err: invalid argument\n"
        )


def probe(path: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--limit", type=float, default=1.0, help="seconds allowed for the big log")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="anybuild-diag-speed-") as tmp:
        results = {}
        for mb in (5, args.mb):
            path = Path(tmp) / f"build-{mb}mb.log"
            write_log(path, mb * 1_000_000)
            results[mb] = probe(path)
            r = results[mb]
            print(
                f"{mb:>3} MB: {r['lines']:>9} lines  wall {r['seconds']:.3f} s  cpu {r['cpu_seconds']:.3f} s  "
                f"peak RSS {r['max_rss_mb']:.1f} MB  root cause: {r['root']}  roles: {r['roles']}"
            )
        small, big = results[5], results[args.mb]
        growth = float(big["max_rss_mb"]) - float(small["max_rss_mb"])  # type: ignore[arg-type]
        print(f"peak RSS growth from 5 MB to {args.mb} MB of log: {growth:+.1f} MB")
        ok = (
            float(big["cpu_seconds"]) < args.limit  # type: ignore[arg-type]
            and big["root"] == "nested-overlay"
            and growth < 10
        )
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
