"""[backend.kubernetes] of anybuild.toml: validated once, into KubernetesSettings; mistakes named."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.backends.kubernetes.settings import KubernetesSettings, UploadMode
from anybuild.config import parse_config
from anybuild.errors import ConfigError


def test_backend_kubernetes_table_becomes_settings(tmp_path: Path) -> None:
    config = parse_config({"backend": {"kubernetes": {
        "namespace": "builds", "context": "prod", "jobs": 8, "upload": "registry",
        "node_selector": {"pool": "builds"}, "tolerations": [{"key": "builds", "operator": "Exists"}],
        "resources": {"limits": {"memory": "8Gi"}}, "ttl_seconds": 0, "registry_secret": "ghcr-credentials",
    }}}, file=tmp_path / "anybuild.toml", root=tmp_path)
    settings = KubernetesSettings.from_config(config.backend.kubernetes)
    assert settings.namespace == "builds" and settings.context == "prod" and settings.jobs == 8
    assert settings.upload is UploadMode.REGISTRY and settings.ttl_seconds == 0
    assert settings.tolerations == ({"key": "builds", "operator": "Exists"},)
    assert settings.with_overrides(namespace="other").namespace == "other"
    assert config.to_dict()["backend"]["kubernetes"]["namespace"] == "builds"


@pytest.mark.parametrize(("table", "key", "words"), [
    ({"namespce": "x"}, "backend.kubernetes.namespce", "did you mean 'namespace'"),
    ({"upload": "ftp"}, "backend.kubernetes.upload", "must be one of auto, exec, registry"),
    ({"jobs": 0}, "backend.kubernetes.jobs", "at least 1"),
    ({"tolerations": "all"}, "backend.kubernetes.tolerations", "array of tables"),
    ({"resources": {"limits": "8Gi"}}, "backend.kubernetes.resources.limits", "table of strings"),
])
def test_backend_kubernetes_mistakes_name_the_key(tmp_path: Path, table: dict[str, object], key: str,
                                                  words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"backend": {"kubernetes": table}}, file=tmp_path / "anybuild.toml", root=tmp_path)
    assert caught.value.key == key
    assert words in caught.value.message + caught.value.hint


def test_unknown_backend_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"backend": {"kubernets": {}}}, file=None, root=tmp_path)
    assert caught.value.key == "backend.kubernets"
    assert "kubernetes" in caught.value.hint
