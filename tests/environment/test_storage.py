"""Filesystem types under data dirs (mountinfo) and real overlay trial mounts."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import FactKey, Facts
from anybuild.environment.storage import (
    buildah_storage_dir,
    docker_data_root,
    mount_for,
    parse_mountinfo,
    probe_data_dir,
    probe_storage,
)
from tests.environment.trees import OVERLAY_ROOT_MOUNTINFO, context, tree

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay trial mounts need root here")


@pytest.mark.parametrize(
    ("path", "fstype"),
    [("/var/lib/docker/overlay2", "ext4"), ("/var/lib/dockerx", "overlay"), ("/home/u", "overlay")],
    ids=["under-mount", "prefix-not-dir", "root"],
)
def test_storage_mount_for_longest_prefix_wins(path: str, fstype: str) -> None:
    entry = mount_for(Path(path), parse_mountinfo(OVERLAY_ROOT_MOUNTINFO))
    assert entry is not None
    assert entry.fstype == fstype


def test_storage_mountinfo_escapes_decoded() -> None:
    entries = parse_mountinfo("40 1 0:5 / /mnt/my\\040disk rw - tmpfs tmpfs rw\n")
    assert entries[0].mount_point == "/mnt/my disk"


def test_storage_prepared_tree_overlay_root_quoted_as_evidence(tmp_path: Path) -> None:
    tree(tmp_path, {"/proc/self/mountinfo": OVERLAY_ROOT_MOUNTINFO})
    facts = Facts.of(
        probe_data_dir(
            context(tmp_path),
            Path("/home/dev/.local/share/anybuild"),
            "default",
            FactKey.ANYBUILD_FSTYPE,
            FactKey.ANYBUILD_OVERLAY,
        )
    )
    assert facts.value(FactKey.ANYBUILD_FSTYPE) == "overlay"
    assert "- overlay overlay rw,lowerdir=/l" in facts.evidence(FactKey.ANYBUILD_FSTYPE)
    assert facts.value(FactKey.ANYBUILD_OVERLAY) is None


def test_storage_docker_data_root_from_daemon_json(tmp_path: Path) -> None:
    tree(tmp_path, {"/etc/docker/daemon.json": '{"data-root": "/data/docker"}'})
    assert docker_data_root(context(tmp_path), None) == (
        Path("/data/docker"),
        f"{tmp_path}/etc/docker/daemon.json: data-root",
    )
    assert docker_data_root(context(tmp_path), "/srv/d")[0] == Path("/srv/d")


def test_storage_buildah_graphroot_from_storage_conf(tmp_path: Path) -> None:
    tree(tmp_path, {"/etc/containers/storage.conf": '[storage]\ndriver = "overlay"\ngraphroot = "/big/storage"\n'})
    assert buildah_storage_dir(context(tmp_path), 0)[0] == Path("/big/storage")
    empty = tmp_path / "empty"
    assert buildah_storage_dir(context(empty), 1000)[0] == empty / "home/.local/share/containers/storage"


@needs_root
def test_storage_real_trial_on_ext4_and_tmpfs_succeeds(tmp_path: Path) -> None:
    ctx = ProbeContext(env={**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")})
    facts = Facts.of(probe_storage(ctx, 0))
    fstype = facts.value(FactKey.ANYBUILD_FSTYPE)
    if fstype in ("overlay", "aufs"):
        pytest.skip(f"{tmp_path} is on {fstype} here")
    assert facts.value(FactKey.ANYBUILD_OVERLAY) is True, facts.evidence(FactKey.ANYBUILD_OVERLAY)
    assert facts.value(FactKey.TMPFS_OVERLAY) is True, facts.evidence(FactKey.TMPFS_OVERLAY)
    assert list(tmp_path.iterdir()) == []  # the trial directory was removed
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


@needs_root
def test_storage_trial_overlay_is_volatile_so_its_unmount_syncs_nothing(tmp_path: Path) -> None:
    """Unmounting an overlay syncs its upper filesystem unless it is volatile: a trial on the root
    filesystem just after a big build waited 0.3 s for that build's files to be written out."""
    import subprocess
    import sys

    from anybuild.environment.storage import _TRIAL

    base = tmp_path / "trial"
    base.mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _TRIAL, "dir",
                           str(base)], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "overlay mounted and written", done.stdout + done.stderr
    assert (base / "work" / "work" / "incompat" / "volatile").is_dir()  # the kernel's mark of a volatile mount


@needs_root
def test_storage_real_trial_on_nested_overlay_fails_invalid_argument(nested_overlay: Path) -> None:
    ctx = replace(ProbeContext(), env={**os.environ, "ANYBUILD_DATA_DIR": str(nested_overlay / "anybuild")})
    facts = Facts.of(probe_storage(ctx, 0))
    assert facts.value(FactKey.ANYBUILD_FSTYPE) == "overlay"
    assert facts.value(FactKey.ANYBUILD_OVERLAY) is False
    assert "Invalid argument" in facts.evidence(FactKey.ANYBUILD_OVERLAY)
    assert not [p for p in nested_overlay.iterdir() if p.name.startswith(".anybuild-overlay-probe")]


def test_storage_for_a_build_tries_only_buildahs_overlay_and_only_with_buildah(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "ANYBUILD_DATA_DIR": str(tmp_path / "data")}
    ctx = replace(context(tmp_path, env), thorough=False)
    facts = Facts.of(probe_storage(ctx, 0))
    assert facts.value(FactKey.ANYBUILD_OVERLAY) is None
    assert "the built-in builder tries overlay itself" in facts.evidence(FactKey.ANYBUILD_OVERLAY)
    assert facts.value(FactKey.TMPFS_OVERLAY) is None
    assert facts.evidence(FactKey.BUILDAH_OVERLAY) == "not tried: neither buildah nor podman is on PATH"
    (bin_dir / "buildah").write_text("#!/bin/sh\n")
    (bin_dir / "buildah").chmod(0o755)
    facts = Facts.of(probe_storage(ctx, 0))
    assert facts.evidence(FactKey.BUILDAH_OVERLAY) == "not tried (trials disabled)"  # asked, as doctor would
