"""anybuild.toml parsing: defaults, path resolution, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.config import BackendName, find_config, load_config, parse_config
from anybuild.errors import ConfigError


def _repo(tmp_path: Path, *contexts: str) -> Path:
    for name in contexts:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def test_parse_config_defaults_repository_from_project(tmp_path: Path) -> None:
    root = _repo(tmp_path, "api")
    cfg = parse_config(
        {"project": {"registry": "ghcr.io", "namespace": "Acme"}, "images": {"api": {}}},
        file=None,
        root=root,
    )
    (spec,) = cfg.images
    assert spec.repository == "ghcr.io/acme/api"
    assert spec.context == root / "api"
    assert spec.dockerfile == root / "api" / "Dockerfile"
    assert cfg.build.backends[0] is BackendName.BUILTIN


def test_parse_config_image_inherits_build_platforms_and_tag_rules(tmp_path: Path) -> None:
    root = _repo(tmp_path, "web")
    cfg = parse_config(
        {
            "build": {"platforms": ["linux/arm64/v8"], "backends": ["docker", "buildah"]},
            "tags": {"rules": ["type=sha"]},
            "images": {"web": {"repository": "registry.local:5000/web"}},
        },
        file=None,
        root=root,
    )
    assert cfg.images[0].platforms == ("linux/arm64/v8",)
    assert cfg.images[0].tags == ("type=sha",)
    assert cfg.build.backends == (BackendName.DOCKER, BackendName.BUILDAH)


def test_parse_config_dockerfile_relative_to_context(tmp_path: Path) -> None:
    root = _repo(tmp_path, "svc")
    (root / "svc" / "docker").mkdir()
    (root / "svc" / "docker" / "Dockerfile.prod").write_text("FROM scratch\n")
    cfg = parse_config(
        {"images": {"svc": {"repository": "x/svc", "dockerfile": "docker/Dockerfile.prod"}}},
        file=None,
        root=root,
    )
    assert cfg.images[0].dockerfile == root / "svc" / "docker" / "Dockerfile.prod"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"build": {"jobs": 0}}, "build.jobs"),
        ({"build": {"jobs": True}}, "build.jobs"),
        ({"build": {"platforms": ["amd64"]}}, "build.platforms"),
        ({"build": {"backends": []}}, "build.backends"),
        ({"build": {"backends": ["docker", "docker"]}}, "build.backends"),
        ({"registries": {"ghcr.io": {"insecure": "yes"}}}, "registries.ghcr.io.insecure"),
        ({"images": {"api": {"repository": "ghcr.io/a/api:latest"}}}, "images.api.repository"),
        ({"images": {"Api": {"repository": "x/api"}}}, "images.Api"),
        ({"images": {"api": {"repository": "x/api", "dockerfile": "nope"}}}, "images.api.dockerfile"),
        ({"images": {"api": {}}}, "images.api.repository"),
        ({"images": {"api": {"repository": "x/api", "args": {"A": [1]}}}}, "images.api.args.A"),
        ({"project": "moltbook"}, "project"),
        ({"imagez": {}}, "imagez"),
    ],
    ids=[
        "jobs-zero", "jobs-bool", "platform-no-os", "no-backends", "backend-twice", "insecure-string",
        "repository-with-tag", "image-name-upper", "dockerfile-missing", "no-repository",
        "arg-not-string", "project-not-table", "unknown-top-key",
    ],
)
def test_parse_config_invalid_names_key(tmp_path: Path, data: dict[str, object], key: str) -> None:
    root = _repo(tmp_path, "api", "Api")
    with pytest.raises(ConfigError) as info:
        parse_config(data, file=tmp_path / "anybuild.toml", root=root)
    assert info.value.key == key
    assert info.value.hint
    assert str(tmp_path / "anybuild.toml") in info.value.message


def test_find_config_walks_up(tmp_path: Path) -> None:
    (tmp_path / "anybuild.toml").write_text("")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) == tmp_path / "anybuild.toml"


def test_load_config_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "anybuild.toml")
    assert "does not exist" in info.value.message


def test_load_config_toml_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "anybuild.toml"
    path.write_text('[project]\nname = "x"\nregistry = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 3


def test_config_image_unknown_name_suggests(tmp_path: Path) -> None:
    root = _repo(tmp_path, "api")
    cfg = parse_config({"images": {"api": {"repository": "x/api"}}}, file=None, root=root)
    with pytest.raises(ConfigError) as info:
        cfg.image("apu")
    assert "did you mean 'api'" in info.value.hint
