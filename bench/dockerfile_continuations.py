"""Parse time of Dockerfiles made of one instruction continued over N lines, N from 10k to 2M.

The parser must be linear in its input: joining each continuation onto the
instruction made it quadratic (40k lines 0.7 s, 320k lines 23 s; an 8 MB file did
not finish in two minutes). Each size is parsed for a RUN (shell form), an ENV of
N pairs and a COPY of N sources (a RUN of apt-get lines, 29 bytes each, stops at BuildKit's
16 MiB file limit), and typed into instructions; the figure printed is
the best of three. A size stops the series for its kind once a parse takes longer
than --give-up seconds (so the quadratic code can be measured too). Prints; asserts
nothing.

Run: .venv/bin/python bench/dockerfile_continuations.py [--sizes 10000,40000,...] [--give-up 60]
(``PYTHONPATH=OTHER/src`` measures another checkout.)
"""

from __future__ import annotations

import argparse
import time

from anybuild.dockerfile import parse_dockerfile, parse_instructions

try:
    from anybuild.dockerfile.parser import MAX_FILE_SIZE
except ImportError:  # a checkout from before the limit
    MAX_FILE_SIZE = 16 * 1024 * 1024

SIZES = (10_000, 40_000, 160_000, 320_000, 1_000_000, 2_000_000)
KINDS = {  # first line, continued line, last line; continued lines of 4-7 bytes keep 2M lines under 16 MiB
    "run": ("RUN echo \\\n", " a \\\n", " b\n"),
    "run-apt": ("RUN apt-get update && \\\n", "    apt-get install -y foo \\\n", "    true\n"),
    "env": ("ENV A=0 \\\n", " B=1 \\\n", " C=2\n"),
    "copy": ("COPY a \\\n", " b \\\n", " /dst/\n"),
}


def dockerfile(kind: str, lines: int) -> str:
    first, middle, last = KINDS[kind]
    return "FROM busybox\n" + first + middle * lines + last


def timed(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        parse_instructions(parse_dockerfile(text))
        best = min(best, time.perf_counter() - start)
        if best > 5:
            break  # one run of a slow size says enough
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--give-up", type=float, default=60.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'kind':6} {'lines':>9} {'MB':>6} {'seconds':>8} {'us/line':>8}")
    for kind in KINDS:
        for lines in sizes:
            text = dockerfile(kind, lines)
            if len(text) > MAX_FILE_SIZE:
                print(f"{kind:6} {lines:9d} {len(text) / 1e6:6.1f}  refused unread: over BuildKit's "
                      f"{MAX_FILE_SIZE >> 20} MiB")
                continue
            seconds = timed(text)
            print(f"{kind:6} {lines:9d} {len(text) / 1e6:6.1f} {seconds:8.3f} {seconds / lines * 1e6:8.2f}", flush=True)
            if seconds > args.give_up:
                print(f"{kind:6} stopped: {seconds:.0f} s > --give-up {args.give_up:g} s")
                break


if __name__ == "__main__":
    main()
