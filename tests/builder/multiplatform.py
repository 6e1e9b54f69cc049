"""Multi-platform builds and their images, read back: the cases, the host binfmt_misc registration, the index."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anybuild.builder.emulation import _register_line, emulator_path
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Index, Manifest, parse_document
from anybuild.oci.platform import Platform
from tests.builder.imagetree import file_tree, unpack_to
from tests.harness import procs

BINFMT = Path("/proc/sys/fs/binfmt_misc")
HOST_ENTRY = "anybuild-test-qemu-aarch64"
LOCK = Path(tempfile.gettempdir()) / "anybuild-tests-host-binfmt.lock"
ARM64 = Platform.parse("linux/arm64")

# A RUN on each platform writing `uname -m`; a FROM --platform=$BUILDPLATFORM stage making an artifact per
# TARGETARCH; per-platform ARG use; COPY --from across platforms.
CASES: dict[str, str] = {
    "uname": """\
FROM busybox:1.36-multi
RUN uname -m > /arch
""",
    "cross": """\
FROM --platform=$BUILDPLATFORM busybox:1.36-multi AS build
ARG TARGETARCH
ARG TARGETOS
RUN echo "made on $(uname -m) for $TARGETOS/$TARGETARCH" > /artifact
FROM busybox:1.36-multi
COPY --from=build /artifact /usr/local/share/artifact
RUN uname -m > /arch
""",
    "args": """\
FROM busybox:1.36-multi
ARG TARGETPLATFORM
ARG BUILDPLATFORM
ARG TARGETARCH
ARG TARGETVARIANT
ENV ARCH=$TARGETARCH
RUN echo "$TARGETPLATFORM built on $BUILDPLATFORM variant=$TARGETVARIANT" > /platforms && uname -m > /arch
""",
    # programs the command starts: applets busybox's shell runs by exec of /proc/self/exe under their own
    # argv[0] (binfmt_misc's flag P), and a second shell
    "exec": """\
FROM busybox:1.36-multi
RUN uname -m > /arch && cat /arch | wc -l > /lines && sort /arch > /arch.sorted \\
    && sh -c 'od -An -tx1 -N4 /bin/sh' > /magic
""",
    "copy-across": """\
FROM busybox:1.36-multi AS native
RUN uname -m > /made-by
FROM --platform=linux/arm64 busybox:1.36-multi AS arm
RUN uname -m > /made-by
FROM busybox:1.36-multi
COPY --from=native /made-by /native
COPY --from=arm /made-by /arm
RUN uname -m > /arch
""",
}

UNAME = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


@dataclass(frozen=True)
class PlatformImage:
    platform: str
    config: dict[str, Any]
    tree: dict[str, tuple[Any, ...]]
    root: Path


def read_index(layout: Path, work: Path) -> tuple[Index, dict[str, PlatformImage]]:
    """The index of an OCI layout written by --output oci:DIR (or copied by skopeo), each image unpacked."""
    store = LayoutStore.open(layout)
    entries = store.index().manifests
    assert len(entries) == 1, entries
    index = parse_document(store.read_blob(entries[0]), media_type=entries[0].media_type)
    assert isinstance(index, Index), f"not an index: {entries[0].media_type}"
    images: dict[str, PlatformImage] = {}
    for child in index.manifests:
        assert child.platform is not None
        manifest = Manifest.from_json(store.read_blob(child), media_type=child.media_type)
        config = json.loads(store.read_blob(manifest.config))
        root = work / str(child.platform).replace("/", "-")
        unpack_to(store, manifest, root)
        images[str(child.platform)] = PlatformImage(platform=str(child.platform), config=config,
                                                    tree=file_tree(root), root=root)
    return index, images


def elf_machine(path: Path) -> int:
    """e_machine of a little-endian ELF file (183: aarch64, 62: x86_64)."""
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(header[18:20], "little")


@contextlib.contextmanager
def host_binfmt(*, want: bool) -> Iterator[None]:
    """The host's binfmt_misc with (*want*) or without a qemu-aarch64-static handler (flag F) for arm64, for
    the duration; the host's state is put back after: what this registered is removed, a mount it made
    unmounted, a handler it disabled enabled again."""
    procs.require_root("registering a binfmt_misc handler on the host")
    emulator = emulator_path(ARM64, os.environ)
    if emulator is None:
        procs.unavailable("qemu-aarch64-static not found: install Debian package qemu-user-static")
    # the host's binfmt_misc is one for every test process: xdist workers take turns
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with _host_binfmt(want=want, emulator=emulator):
                yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _host_binfmt(*, want: bool, emulator: Path) -> Iterator[None]:
    mounted = False
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
        mounted = True
    disabled: list[Path] = []
    registered = False
    try:
        for entry in BINFMT.iterdir():  # handlers of others for aarch64 (binfmt-support's qemu-aarch64)
            if entry.name in ("register", "status") or not entry.is_file():
                continue
            text = entry.read_text()
            if text.startswith("enabled") and "magic 7f454c460201010000000000000000000200b700" in text:
                entry.write_text("0")
                disabled.append(entry)
        if want:  # as Debian's qemu-user-static registers it (update-binfmts): the -P name, flags P and F
            wrapper = Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
            line = (_register_line(HOST_ENTRY, ARM64, wrapper) if wrapper.exists() else
                    _register_line(HOST_ENTRY, ARM64, emulator, flags="F"))
            (BINFMT / "register").write_text(line)
            registered = True
        yield
    finally:
        if registered:
            (BINFMT / HOST_ENTRY).write_text("-1")
        for entry in disabled:
            entry.write_text("1")
        if mounted:
            subprocess.run(["umount", str(BINFMT)], check=False)
