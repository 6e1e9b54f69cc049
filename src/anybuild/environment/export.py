"""Facts in the shape other parts read: the diagnosis rules' fact mapping."""

from __future__ import annotations

from typing import Any

from anybuild.environment.facts import FactKey, Facts

__all__ = ["diagnosis_facts"]


def diagnosis_facts(facts: Facts) -> dict[str, Any]:
    """The keys ``anybuild.diagnose`` reads (see anybuild/diagnose/facts.py); absent facts are left out."""
    pairs: dict[str, Any] = {
        "docker.storage_driver": facts.text(FactKey.DOCKER_STORAGE_DRIVER),
        "docker.data_root": facts.text(FactKey.DOCKER_ROOT_DIR) or facts.text(FactKey.DOCKER_DATA_ROOT),
        "docker.data_root_fs": facts.text(FactKey.DOCKER_ROOT_FSTYPE),
        "build.storage_fs": facts.text(FactKey.BUILDAH_FSTYPE) or facts.text(FactKey.ANYBUILD_FSTYPE),
        "kernel.max_user_namespaces": facts.number(FactKey.MAX_USER_NAMESPACES),
    }
    return {key: value for key, value in pairs.items() if value is not None}
