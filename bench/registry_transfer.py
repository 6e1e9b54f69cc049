"""Push and pull a ~500 MB multi-layer image on loopback with anybuild and with skopeo.

Starts its own `docker-registry` on 127.0.0.1 (plain HTTP, storage in a temp dir),
makes an image of N gzip layers of random data in an OCI layout, then times, in
the same run, against a fresh registry each round (so neither tool can mount earlier pushes):

    anybuild push  oci:LAYOUT → REGISTRY/bench/anybuild     skopeo copy oci:LAYOUT → docker://REGISTRY/bench/skopeo
    anybuild pull  REGISTRY/bench/anybuild → oci:OUT        skopeo copy docker://REGISTRY/bench/skopeo → oci:OUT2

and prints MB/s for each and the ratio anybuild / skopeo (target: >= 0.9).

    .venv/bin/python bench/registry_transfer.py [--size-mb 500] [--layers 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from anybuild.oci import (
    ContainerConfig,
    Digest,
    History,
    ImageConfig,
    LayoutStore,
    Manifest,
    MediaType,
    Platform,
)
from anybuild.registry import Reference, RegistryClient


def make_image(root: Path, size_mb: int, layers: int) -> LayoutStore:
    store = LayoutStore.create(root)
    per_layer = size_mb * 1024 * 1024 // layers
    descriptors, diff_ids = [], []
    for i in range(layers):
        data = os.urandom(per_layer)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"data/layer-{i}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar_bytes = raw.getvalue()
        diff_ids.append(Digest.of_bytes(tar_bytes))
        # level 1: random data does not compress anyway; this keeps the setup fast
        descriptors.append(store.write_bytes(gzip.compress(tar_bytes, compresslevel=1, mtime=0),
                                             MediaType.OCI_LAYER_GZIP))
    config = ImageConfig(platform=Platform.parse("linux/amd64"), diff_ids=tuple(diff_ids),
                         config=ContainerConfig(cmd=("/bin/sh",)),
                         history=tuple(History(created_by=f"layer {i}") for i in range(layers)))
    config_descriptor = store.write_bytes(config.to_json(), MediaType.OCI_CONFIG)
    manifest = Manifest(config=config_descriptor, layers=tuple(descriptors))
    store.put_manifest(store.write_bytes(manifest.to_json(), MediaType.OCI_MANIFEST), "bench")
    return store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
              "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
              "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(8)}}
    (root / "config.yml").write_text(json.dumps(config))
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("docker-registry did not start")


def timed(label: str, fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    print(f"  {label:<34} {elapsed:7.2f} s")
    return elapsed


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="best of N per tool and direction")
    args = parser.parse_args()
    if shutil.which("skopeo") is None or shutil.which("docker-registry") is None:
        raise SystemExit("needs skopeo and docker-registry (Debian packages skopeo, docker-registry)")
    work = Path(tempfile.mkdtemp(prefix="anybuild-bench-"))
    proc = None
    try:
        print(f"making a {args.size_mb} MB image of {args.layers} layers in {work}")
        store = make_image(work / "layout", args.size_mb, args.layers)
        total = sum(p.stat().st_size for p in (work / "layout/blobs/sha256").iterdir())
        best: dict[str, float] = {}
        for round_number in range(args.rounds):
            # a fresh registry (new port, empty storage) each round, so neither tool can mount
            # blobs it pushed in an earlier round (skopeo remembers them in its blob-info cache)
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=15)
                shutil.rmtree(work / "registry", ignore_errors=True)
            proc, host = start_registry(work / "registry")
            print(f"round {round_number + 1} against {host} ({total / 1e6:.0f} MB)")
            ours = Reference.parse(f"{host}/bench/anybuild:1")
            theirs = f"{host}/bench/skopeo:1"
            out, out2 = work / f"out{round_number}", work / f"out2-{round_number}"

            def push_ours(ours: Reference = ours) -> None:
                with RegistryClient() as client:
                    client.push_image(store, store.resolve("bench"), ours, workers=4)

            def pull_ours(ours: Reference = ours, out: Path = out) -> None:
                with RegistryClient() as client:
                    client.pull_image(ours, LayoutStore.create(out), platform=Platform.parse("linux/amd64"))

            results = {
                "anybuild push": timed("anybuild push", push_ours),
                "skopeo push": timed("skopeo copy oci: → docker://", lambda t=theirs: skopeo(
                    "--dest-tls-verify=false", f"oci:{work / 'layout'}:bench", f"docker://{t}")),
                "anybuild pull": timed("anybuild pull", pull_ours),
                "skopeo pull": timed("skopeo copy docker:// → oci:", lambda t=theirs, o=out2: skopeo(
                    "--src-tls-verify=false", f"docker://{t}", f"oci:{o}:bench")),
            }
            for key, value in results.items():
                best[key] = min(best.get(key, value), value)
            for directory in (out, out2):
                shutil.rmtree(directory, ignore_errors=True)
        print(f"\nbest of {args.rounds}, {total / 1e6:.0f} MB:")
        for direction in ("push", "pull"):
            ours_rate = total / best[f"anybuild {direction}"] / 1e6
            theirs_rate = total / best[f"skopeo {direction}"] / 1e6
            print(f"  {direction}: anybuild {ours_rate:7.1f} MB/s   skopeo {theirs_rate:7.1f} MB/s   "
                  f"ratio {ours_rate / theirs_rate:.2f}x")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
