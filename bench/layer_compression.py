"""write_layer of a W2-like directory (half random, half zeros): zlib vs ISA-L, inline vs threaded.

    .venv/bin/python bench/layer_compression.py [--mb 300] [--repeat 1]

Prints seconds (best of --repeat) and compressed bytes per configuration, then the time
to inflate the layer back (how base layers are read when unpacked) with zlib and ISA-L.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from anybuild.builder.inroot import RootDir
from anybuild.builder.layer import GzipCodec, write_layer
from anybuild.builder.snapshot import Changeset

MIB = 1 << 20


def make_tree(root: Path, megabytes: int) -> Changeset:
    """Like W2: one file of random bytes and one of zeros, *megabytes* in all."""
    (root / "data").mkdir(parents=True)
    half = megabytes // 2
    with (root / "data" / "random.bin").open("wb") as out:
        for _ in range(half):
            out.write(os.urandom(MIB))
    with (root / "data" / "zeros.bin").open("wb") as out:
        for _ in range(megabytes - half):
            out.write(bytes(MIB))
    return Changeset(added=("data", "data/random.bin", "data/zeros.bin"))


def measure(root: Path, changes: Changeset, codec: GzipCodec, *, threaded: bool, repeat: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(repeat):
        with open(os.devnull, "wb") as out, RootDir.open(root) as opened:
            started = time.perf_counter()
            blob = write_layer(changes, opened, out, gzip=codec, threaded=threaded)
            best = min(best, time.perf_counter() - started)
            size = blob.size
    return best, size


def measure_inflate(layer: Path, *, isal: bool, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        with layer.open("rb") as raw:
            started = time.perf_counter()
            if isal:
                from isal import igzip

                reader: io.BufferedIOBase = igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
            else:
                reader = gzip.GzipFile(fileobj=raw, mode="rb")
            with reader:
                while reader.read(1 << 20):
                    pass
            best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=300, help="directory size in MiB (default 300)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the best is shown")
    args = parser.parse_args()
    configs: list[tuple[GzipCodec, bool]] = [(GzipCodec.stdlib(6), False), (GzipCodec.stdlib(6), True)]
    isal = GzipCodec.isal()
    if isal is None:
        print("isal is not installed: only zlib measured", file=sys.stderr)
    else:
        for level in (1, 2, 3):
            configs += [(GzipCodec.isal(level) or isal, False), (GzipCodec.isal(level) or isal, True)]
    work = Path(tempfile.mkdtemp(prefix="bench-layer-"))
    try:
        changes = make_tree(work / "root", args.mb)
        print(f"write_layer of {args.mb} MiB (half random, half zeros), best of {args.repeat}")
        print(f"{'codec':<8}{'level':>6}{'threaded':>10}{'seconds':>10}{'bytes':>14}{'MiB/s':>8}")
        for codec, threaded in configs:
            seconds, size = measure(work / "root", changes, codec, threaded=threaded, repeat=args.repeat)
            print(f"{codec.name:<8}{codec.level:>6}{threaded!s:>10}{seconds:>10.2f}{size:>14,}"
                  f"{args.mb / seconds:>8.0f}")
        layer = work / "layer.tar.gz"
        with layer.open("wb") as out, RootDir.open(work / "root") as opened:
            write_layer(changes, opened, out, gzip=GzipCodec.stdlib(6))
        readers = [False] + ([True] if isal is not None else [])
        print("inflate (unpacking a base layer): " + ", ".join(
            f"{'isal' if fast else 'zlib'} {measure_inflate(layer, isal=fast, repeat=args.repeat):.2f} s"
            for fast in readers))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
