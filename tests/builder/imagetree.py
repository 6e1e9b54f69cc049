"""Reading a built image back as a file tree and a config, for comparisons in tests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from anybuild.builder.inroot import RootDir
from anybuild.builder.owners import Ownership
from anybuild.builder.rootfs import UnpackOptions, unpack_layer
from anybuild.oci.archive import read_docker_archive
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Manifest

CONFIG_KEYS = ("User", "Env", "Entrypoint", "Cmd", "WorkingDir", "Labels", "ExposedPorts", "Volumes",
               "StopSignal", "Healthcheck", "OnBuild", "Shell")


def file_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (type, mode, uid, gid, size, sha256 or link target[, hard-link peers]) under *root*.

    A regular file with several names gets the sorted tuple of all its names as a seventh field,
    so a lost hard link (two copies instead of one inode) is a difference.
    """
    out: dict[str, tuple[Any, ...]] = {}
    peers: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            info = full.lstat()
            rel = str(full.relative_to(root))
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("symlink", mode, info.st_uid, info.st_gid, 0, os.readlink(full))
            elif stat.S_ISREG(info.st_mode):
                out[rel] = ("file", mode, info.st_uid, info.st_gid, info.st_size,
                            hashlib.sha256(full.read_bytes()).hexdigest()[:16])
                if info.st_nlink > 1:
                    peers.setdefault((info.st_dev, info.st_ino), []).append(rel)
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", mode, info.st_uid, info.st_gid, 0, "")
            else:
                out[rel] = ("special", mode, info.st_uid, info.st_gid, 0, str(info.st_rdev))
    for names in peers.values():
        for name in names:
            out[name] = (*out[name], tuple(sorted(names)))
    return out


def archive_image(archive: Path, store_dir: Path) -> tuple[LayoutStore, Manifest, dict[str, Any]]:
    store = LayoutStore.create(store_dir)
    [image] = read_docker_archive(archive, store)
    manifest = Manifest.from_json(store.read_blob(image.descriptor))
    config = json.loads(store.read_blob(manifest.config))
    return store, manifest, config


def unpack_to(store: LayoutStore, manifest: Manifest, rootfs: Path) -> None:
    rootfs.mkdir(parents=True, exist_ok=True)
    with RootDir.open(rootfs) as root:
        for layer in manifest.layers:
            with store.open_blob(layer.digest) as stream:
                unpack_layer(stream, root, UnpackOptions(ownership=Ownership.real_root(), mknod=True))


def runtime_config(config: dict[str, Any]) -> dict[str, Any]:
    inner = config.get("config") or {}
    return {key: inner.get(key) or None for key in CONFIG_KEYS}


def tree_diff(a: dict[str, tuple[Any, ...]], b: dict[str, tuple[Any, ...]]) -> list[str]:
    lines = []
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            lines.append(f"{path}: anybuild={a.get(path)} docker={b.get(path)}")
    return lines
