"""What anybuild imports to start (issue 23): a command loads the modules it uses, not the library.

Not timed: each test runs anybuild in a fresh interpreter under ``-X importtime`` and reads the
modules it imported (every thread's) from that report.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from anybuild.backends.unchanged import RACY_SECONDS
from anybuild.cli.commands import COMMANDS, SUMMARIES
from tests.harness.bases import BaseImages
from tests.harness.registry import Registry

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.MULTILINE)


def imported_by(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[set[str], str]:
    """The modules `python -m anybuild ARGS` imports, and its output (stderr without the import lines)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "anybuild", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    assert done.returncode == 0, output[-3000:]
    modules = set(_IMPORTED.findall(done.stderr))
    assert "anybuild.cli.main" in modules  # the report was read
    return modules, output


def _loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


@pytest.mark.parametrize("limit", [20, 45, 80, 1000])
def test_summaries_are_each_commands_own_short_help(limit: int) -> None:
    assert set(SUMMARIES) == set(COMMANDS)
    for name, target in COMMANDS.items():
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert not command.hidden, name
        listed = click.Command(name, help=SUMMARIES[name]).get_short_help_str(limit)  # as `--help` lists it
        assert listed == command.get_short_help_str(limit), name


def test_help_imports_no_command_and_no_rich() -> None:
    modules, output = imported_by("--help")
    assert "Build images, with the best backend that works here." in output
    commands = {target.partition(":")[0] for target in COMMANDS.values()}
    assert sorted(commands & modules) == []
    assert _loaded(modules, "rich") == []
    assert _loaded(modules, "httpx") == []


def test_version_imports_no_command() -> None:
    modules, output = imported_by("--version")
    assert "anybuild, version" in output
    assert "anybuild.cli.build_cmd" not in modules
    assert _loaded(modules, "rich") == []


def test_noop_build_push_imports_no_diagnosis_linter_or_rich(
    tmp_path: Path, registry: Registry, base_images: BaseImages
) -> None:
    """A build with nothing to do, plain progress into a pipe: no diagnosis rules (nothing failed),
    no rich (nothing drawn), no Dockerfile linter (a build does not lint)."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox:1.36\nCOPY app.txt /app/\nENV MODE=noop\n")
    (context / "app.txt").write_text("hello\n")
    env = {**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")}
    args = ("build", str(context), "-t", f"{registry.host}/startup/noop:1", "--push", "--progress", "plain",
            "--insecure-registry", registry.host, "--registry-mirror", registry.host, "--backend", "builtin")
    time.sleep(RACY_SECONDS + 0.2)  # files older than that: the first build leaves a record of its inputs
    first, _ = imported_by(*args, env=env)
    again, output = imported_by(*args, env=env)
    assert "1/1 image(s) built" in output
    assert "anybuild.builder.build" in first  # the first build ran the builder
    assert "nothing changed since the build of" in output  # the second was answered from its record
    assert "anybuild.builder.build" not in again and _loaded(again, "anybuild.dockerfile") == []
    for modules in (first, again):  # neither the build nor the no-op needs these
        assert _loaded(modules, "anybuild.diagnose") == []
        assert _loaded(modules, "rich") == []
        assert _loaded(modules, "anybuild.dockerfile.lint") == []
        assert _loaded(modules, "anybuild.dockerfile.lint_rules") == []
        assert _loaded(modules, "yaml") == []
