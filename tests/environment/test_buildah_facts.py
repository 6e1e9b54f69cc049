"""buildah's storage facts on this machine: its graphroot from storage.conf, and the driver they lead to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anybuild.backends.buildah import StorageDriver, buildah_settings, buildah_verdict
from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import FactKey
from anybuild.environment.probe import collect_facts
from tests.harness.buildah import Buildah

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay trial mounts need root here")
BUDGET = 30.0  # these tests read the facts, not how fast they come (the 1.5 s default once ran out in CI)


@needs_root
def test_buildah_facts_harness_storage_on_ext4_overlay_chosen(buildah: Buildah) -> None:
    facts = collect_facts(ProbeContext(env=dict(buildah.env)), budget=BUDGET)
    assert facts.value(FactKey.BUILDAH_STORAGE_DIR) == str(buildah.root), facts.evidence("probe.storage")
    assert buildah.env["CONTAINERS_STORAGE_CONF"] in facts.evidence(FactKey.BUILDAH_STORAGE_DIR)
    if facts.value(FactKey.BUILDAH_FSTYPE) in ("overlay", "aufs"):
        pytest.skip(f"{buildah.root} is on overlay here")
    assert facts.value(FactKey.BUILDAH_OVERLAY) is True, facts.evidence(FactKey.BUILDAH_OVERLAY)
    assert buildah_settings(facts).driver is StorageDriver.OVERLAY
    verdict = buildah_verdict(facts)
    assert verdict.ok
    assert "with overlay storage" in verdict.reason


@needs_root
def test_buildah_facts_graphroot_on_nested_overlay_no_overlay_driver(nested_overlay: Path, tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{nested_overlay}/graph"\nrunroot = "{tmp_path}/run"\n'
    )
    facts = collect_facts(ProbeContext(env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}), budget=BUDGET)
    assert facts.value(FactKey.BUILDAH_FSTYPE) == "overlay"
    assert facts.value(FactKey.BUILDAH_OVERLAY) is False
    assert "Invalid argument" in facts.evidence(FactKey.BUILDAH_OVERLAY)
    settings = buildah_settings(facts)
    fuse_usable = facts.flag(FactKey.DEV_FUSE) and facts.text(FactKey.TOOL_FUSE_OVERLAYFS)
    assert settings.driver is (StorageDriver.FUSE_OVERLAYFS if fuse_usable else StorageDriver.VFS)
    assert not (nested_overlay / "graph").exists()  # the probe created nothing there
