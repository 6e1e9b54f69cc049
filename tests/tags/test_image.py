"""compute_image_metadata: a configured image's rules, flavor, labels and error locations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from anybuild.config import Config, parse_config
from anybuild.errors import ConfigError
from anybuild.tags import compute_image_metadata
from tests.tags.cases import NOW, PUSH_DEV


def config(tmp_path: Path, data: dict[str, Any]) -> Config:
    for name in data.get("images", {}):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "Dockerfile").write_text("FROM scratch\n")
    return parse_config(data, file=tmp_path / "anybuild.toml", root=tmp_path)


def test_compute_image_metadata_uses_image_rules_and_labels(tmp_path: Path) -> None:
    cfg = config(tmp_path, {
        "project": {"name": "moltbook", "registry": "ghcr.io", "namespace": "acme"},
        "tags": {"rules": ["type=ref,event=branch"], "flavor": ["suffix=-x"]},
        "images": {"api": {}, "web": {"tags": ["type=raw,value=web"], "labels": {"a": "{{branch}}"}}},
    })
    api = compute_image_metadata(cfg, cfg.image("api"), PUSH_DEV, NOW)
    web = compute_image_metadata(cfg, cfg.image("web"), PUSH_DEV, NOW)
    assert api.references == ("ghcr.io/acme/api:dev-x",)
    assert web.references == ("ghcr.io/acme/web:web-x",)
    assert web.labels["a"] == "dev"
    assert api.labels["org.opencontainers.image.title"] == "Hello-World"  # the remote's name wins


def test_compute_image_metadata_without_remote_titles_with_project_name(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"project": {"name": "moltbook"}, "images": {"api": {"repository": "r/api"}}})
    metadata = compute_image_metadata(cfg, cfg.image("api"), replace(PUSH_DEV, repository_url=""), NOW)
    assert metadata.labels["org.opencontainers.image.title"] == "moltbook"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"tags": {"rules": ["type=bogus"]}, "images": {"api": {"repository": "r/api"}}}, "tags.rules"),
        ({"tags": {"flavor": ["latest=sometimes"]}, "images": {"api": {"repository": "r/api"}}}, "tags.flavor"),
        ({"images": {"api": {"repository": "r/api", "tags": ["type=ref"]}}}, "images.api.tags"),
    ],
    ids=["rules", "flavor", "image"],
)
def test_compute_image_metadata_error_names_file_and_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    cfg = config(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        compute_image_metadata(cfg, cfg.image("api"), PUSH_DEV, NOW)
    assert info.value.key == key
    assert info.value.file == tmp_path / "anybuild.toml"
    assert f"anybuild.toml: {key}: " in info.value.message
    assert info.value.hint
