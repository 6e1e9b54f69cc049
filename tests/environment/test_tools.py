"""Tools on PATH with versions, found through a prepared PATH of real scripts."""

from __future__ import annotations

import os
from pathlib import Path

from anybuild.environment.facts import FactKey, Facts
from anybuild.environment.tools import probe_tools
from tests.environment.trees import context


def _script(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_tools_versions_read_and_absent_tools_named(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _script(first, "buildah", 'echo "buildah version 1.33.7 (image-spec 1.1.0)"')
    _script(
        first,
        "docker",
        'if [ "$1" = buildx ]; then echo "unknown command" >&2; exit 1; fi; echo "Docker version 28.2.2"',
    )
    _script(second, "docker", 'echo "Docker version 20.10.24+dfsg1, build 297e128"')
    _script(first, "newuidmap", "exit 1")
    _script(first, "runc", "/bin/sleep 5")
    env = {"PATH": f"{first}{os.pathsep}{second}", "HOME": str(tmp_path)}
    facts = Facts.of(probe_tools(context(tmp_path, env)))
    assert facts.value(FactKey.TOOL_BUILDAH) == "1.33.7"
    assert facts.value(FactKey.TOOL_DOCKER) == "28.2.2"
    assert facts.value(FactKey.TOOL_NEWUIDMAP) == "present"
    assert facts.value(FactKey.TOOL_PODMAN) is None
    assert "podman not on PATH" in facts.evidence(FactKey.TOOL_PODMAN)
    assert facts.value(FactKey.TOOL_RUNC) == "unknown"  # hung --version: bounded by the timeout
    assert "did not finish" in facts.evidence(FactKey.TOOL_RUNC)
    assert facts.value(FactKey.DOCKER_BUILDX) is None
    assert facts.value(FactKey.DOCKER_CLIENTS) == (f"{first}/docker=28.2.2", f"{second}/docker=20.10.24+dfsg1")
