"""The user's story end to end: examples/moltbook in a git repository tagged v1.2.3,
`anybuild build --all --push`, then every expected tag resolves in the registry to
the built digest, the labels are in the config, and docker runs what was pushed.

The repository is a copy of examples/moltbook whose anybuild.toml points at the
test registry (also the docker.io mirror serving the offline base images).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from anybuild.result import load_result_schema
from tests.backends.images import MANIFEST_TYPES, manifest_digest
from tests.harness.bases import BaseImages
from tests.harness.dockerd import Dockerd
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.root]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "moltbook"
EPOCH = "1764300000"


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-11-01T12:00:00Z", "GIT_COMMITTER_DATE": "2026-11-01T12:00:00Z",
           "GIT_AUTHOR_NAME": "dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _repository(tmp_path: Path, registry: Registry, *, break_frontend: bool = False, org: str = "acme") -> Path:
    repo = Path(shutil.copytree(EXAMPLE, tmp_path / "moltbook"))
    config = repo / "anybuild.toml"
    text = config.read_text().replace("ghcr.io/acme/", f"{registry.host}/{org}/")
    text += (f'\n[registries."docker.io"]\nmirrors = ["{registry.host}"]\n'
             f'\n[registries."{registry.host}"]\ninsecure = true\n')
    config.write_text(text)
    if break_frontend:
        dockerfile = repo / "frontend" / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text().replace("USER 10001:10001", "RUN false\nUSER 10001:10001"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "moltbook")
    _git(repo, "tag", "v1.2.3")
    _git(repo, "branch", "feature/login")
    return repo


def _anybuild(repo: Path, *args: str, data: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(data), "SOURCE_DATE_EPOCH": EPOCH, **extra}
    env.pop("GITHUB_ACTIONS", None)
    env.pop("GITHUB_REF", None)
    return subprocess.run([sys.executable, "-m", "anybuild", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=1200, check=False)


def _config_labels(registry: Registry, repository: str, digest: str) -> dict[str, str]:
    manifest = httpx.get(f"{registry.url}/v2/{repository}/manifests/{digest}",
                         headers={"Accept": MANIFEST_TYPES}, timeout=10).json()
    config = httpx.get(f"{registry.url}/v2/{repository}/blobs/{manifest['config']['digest']}", timeout=10).json()
    labels: dict[str, str] = config["config"].get("Labels") or {}
    return labels


def test_build_all_push_tags_labels_and_runs(
    tmp_path: Path, registry: Registry, base_images: BaseImages, dockerd: Dockerd
) -> None:
    base_images.node()
    repo = _repository(tmp_path, registry)
    sha = _git(repo, "rev-parse", "HEAD")
    done = _anybuild(repo, "build", "--all", "--push", "--json", "--progress", "plain", "--backend", "builtin",
                     "--metadata-file", "result.json", data=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    jsonschema.validate(result, load_result_schema())
    assert json.loads((repo / "result.json").read_text()) == result
    assert result["ok"] and result["jobs"] == 2
    images = {image["name"]: image for image in result["images"]}
    assert set(images) == {"api", "frontend"}
    # Both images were building at the same time (the timeline shows overlap).
    api, frontend = images["api"]["timing"], images["frontend"]["timing"]
    assert api["started"] < frontend["finished"] and frontend["started"] < api["finished"]
    for name in ("api", "frontend"):
        image = images[name]
        repository = f"acme/moltbook-{name}"
        expected = {f"{registry.host}/{repository}:{tag}" for tag in ("1.2.3", "1.2", "latest", f"sha-{sha[:7]}")}
        assert {ref.split("@")[0] for ref in image["references"]} == expected
        for reference in expected:
            tag = reference.rsplit(":", 1)[1]
            assert manifest_digest(registry.url, repository, tag) == image["digest"]
        labels = _config_labels(registry, repository, image["digest"])
        assert labels["org.opencontainers.image.version"] == "1.2.3"
        assert labels["org.opencontainers.image.revision"] == sha
        assert image["backend"] == "builtin"
    # What a consumer does: pull and run.
    ref = f"{registry.host}/acme/moltbook-frontend:1.2.3"
    dockerd.docker("pull", ref)
    listing = dockerd.docker("run", "--rm", "--network", "none", ref, "sh", "-c", "id -u; ls /srv/www")
    assert listing.stdout.split() == ["10001", "app.js", "index.html", "style.css"]
    api_ref = f"{registry.host}/acme/moltbook-api:1.2.3"
    dockerd.docker("pull", api_ref)
    node = dockerd.docker("run", "--rm", "--network", "none", api_ref, "node", "-e",
                          "require('ms'); console.log(process.env.NODE_ENV)")
    assert node.stdout.strip() == "production"


def test_build_all_one_failure_leaves_the_other_pushed(
    tmp_path: Path, registry: Registry, base_images: BaseImages
) -> None:
    base_images.node()
    repo = _repository(tmp_path, registry, break_frontend=True, org="broken")
    done = _anybuild(repo, "build", "frontend", "api", "--push", "--progress", "plain", "--backend", "builtin",
                     "--metadata-file", "result.json", data=tmp_path / "data")
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads((repo / "result.json").read_text())
    images = {image["name"]: image for image in result["images"]}
    assert images["api"]["ok"]
    assert manifest_digest(registry.url, "broken/moltbook-api", "1.2.3") == images["api"]["digest"]
    failed = images["frontend"]
    assert not failed["ok"]
    assert failed["diagnosis"]["rule"] == "run-nonzero"
    # The summary names both outcomes, and the failure's cause.
    assert "frontend" in done.stdout and "api" in done.stdout
    assert "RUN false" in done.stdout + done.stderr
    with pytest.raises(httpx.HTTPStatusError):
        manifest_digest(registry.url, "broken/moltbook-frontend", "1.2.3")


def test_build_with_docker_backend_same_result_schema(
    tmp_path: Path, registry: Registry, base_images: BaseImages, dockerd: Dockerd
) -> None:
    """Sam's story: with a healthy daemon, the same command and the same JSON result."""
    repo = _repository(tmp_path, registry, org="sam")
    done = _anybuild(repo, "build", "frontend", "--push", "--json", "--progress", "plain", "--backend", "docker",
                     data=tmp_path / "data", DOCKER_HOST=dockerd.env["DOCKER_HOST"])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    jsonschema.validate(result, load_result_schema())
    (image,) = result["images"]
    assert image["backend"] == "docker"
    assert manifest_digest(registry.url, "sam/moltbook-frontend", "1.2.3") == image["digest"]
    labels = _config_labels(registry, "sam/moltbook-frontend", image["digest"])
    assert labels["org.opencontainers.image.version"] == "1.2.3"
