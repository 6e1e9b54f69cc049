"""Facts exported in the diagnosis rules' vocabulary."""

from __future__ import annotations

from anybuild.environment.export import diagnosis_facts
from tests.backends.scenarios import daemon_on_nested_overlay, facts


def test_export_diagnosis_facts_nested_overlay_daemon() -> None:
    exported = diagnosis_facts(daemon_on_nested_overlay(max_user_namespaces=0, buildah_fstype="ext4"))
    assert exported == {
        "docker.data_root": "/var/lib/docker",
        "docker.data_root_fs": "overlay",
        "build.storage_fs": "ext4",
        "kernel.max_user_namespaces": 0,
    }


def test_export_diagnosis_facts_unknowns_left_out() -> None:
    assert diagnosis_facts(facts()) == {}
