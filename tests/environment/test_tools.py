"""Tools on PATH with versions, found through a prepared PATH of real scripts."""

from __future__ import annotations

import os
from dataclasses import replace
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


def test_tools_for_a_build_asks_docker_alone_for_its_version(tmp_path: Path) -> None:
    bin_dir, asked = tmp_path / "bin", tmp_path / "asked"
    for name in ("buildah", "kubectl", "runc"):
        _script(bin_dir, name, f'echo {name} >> "{asked}"; echo "{name} version 9.9.9"')
    docker = f'echo "docker $1" >> "{asked}"; [ "$1" = buildx ] && exit 1; echo "Docker version 28.2.2"'
    _script(bin_dir, "docker", docker)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    ctx = replace(context(tmp_path, env), thorough=False)
    facts = Facts.of(probe_tools(ctx))
    assert facts.value(FactKey.TOOL_DOCKER) == "28.2.2"  # docker_mode() reads the client version
    for key in (FactKey.TOOL_BUILDAH, FactKey.TOOL_KUBECTL, FactKey.TOOL_RUNC):
        assert facts.value(key) == "present", facts.evidence(key)
    assert facts.evidence(FactKey.TOOL_KUBECTL) == str(bin_dir / "kubectl")
    assert sorted(asked.read_text().split("\n")) == ["", "docker --version", "docker buildx"]  # each asked once


def test_tools_ask_each_docker_client_once(tmp_path: Path) -> None:
    """The docker tool fact and the list of clients share the first client's answer."""
    first, second = tmp_path / "a", tmp_path / "b"
    asked = tmp_path / "asked.log"
    _script(first, "docker", f'echo "$0 $*" >> {asked}; echo "Docker version 28.2.2"')
    _script(second, "docker", f'echo "$0 $*" >> {asked}; echo "Docker version 20.10.24+dfsg1"')
    env = {"PATH": f"{first}{os.pathsep}{second}", "HOME": str(tmp_path)}

    facts = Facts.of(probe_tools(context(tmp_path, env)))

    assert facts.value(FactKey.TOOL_DOCKER) == "28.2.2"
    assert facts.value(FactKey.DOCKER_CLIENTS) == (f"{first}/docker=28.2.2", f"{second}/docker=20.10.24+dfsg1")
    assert sorted(asked.read_text().splitlines()) == sorted(
        [f"{first}/docker --version", f"{first}/docker buildx version", f"{second}/docker --version"]
    )
