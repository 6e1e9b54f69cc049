"""A tiny Dockerfile project and a registry reader, for the real builds."""

from __future__ import annotations

from pathlib import Path

import httpx

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def hello_project(root: Path, *, run: str = "echo built > /built.txt") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "greeting.txt").write_text("hello from anybuild\n")
    (root / "Dockerfile").write_text(
        f'FROM busybox:1.36\nRUN {run}\nCOPY greeting.txt /greeting.txt\nCMD ["cat", "/greeting.txt"]\n'
    )
    return root


def manifest_digest(registry_url: str, repository: str, tag: str) -> str:
    """Pull the manifest back from the registry; its digest as the registry reports it."""
    response = httpx.get(
        f"{registry_url}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10
    )
    response.raise_for_status()
    digest = response.headers["Docker-Content-Digest"]
    assert digest.startswith("sha256:")
    return digest
