"""Debian and node base images (debootstrap, cached) run under the private dockerd."""

from __future__ import annotations

import pytest

from tests.harness.bases import BaseImages
from tests.harness.dockerd import Dockerd


@pytest.mark.slow
def test_debian_image_runs_under_dockerd(dockerd: Dockerd, base_images: BaseImages) -> None:
    assert base_images.debian().endswith("/library/debian:bookworm")
    ran = dockerd.docker("run", "--rm", "--network", "none", "debian:bookworm", "cat", "/etc/debian_version")
    assert ran.stdout.startswith("12.")


@pytest.mark.slow
def test_node_image_runs_node_as_user_node(dockerd: Dockerd, base_images: BaseImages) -> None:
    assert base_images.node().endswith("/library/node:20-bookworm-slim")
    image = "node:20-bookworm-slim"
    version = dockerd.docker("run", "--rm", "--network", "none", image, "node", "--version").stdout
    assert version.startswith("v20.")
    user = dockerd.docker("run", "--rm", "--network", "none", "--user", "node", image, "id").stdout
    assert user.startswith("uid=1000(node) gid=1000(node)")
    env = dockerd.docker("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout
    assert "NODE_VERSION=" in env
