"""A backend's plan of commands (argv + env + files), pure data, and the thin step running it.

Paths the run step decides (a private work directory holding generated files
and the tools' output files such as ``--iidfile``) appear in the argv as the
placeholder ``{work}``, so an :class:`Invocation` renders identically on every
machine and is compared with golden files.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from anybuild.backends.base import LogSink
from anybuild.process import Completed, Runner, format_command

__all__ = ["WORK", "Command", "Invocation", "InvocationRun", "run_invocation"]

WORK = "{work}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One command of an invocation; ``env`` holds only what it sets over the base environment."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    purpose: str = "build"

    def resolve(self, work: Path) -> tuple[str, ...]:
        return tuple(a.replace(WORK, str(work)) for a in self.argv)


@dataclass(frozen=True, slots=True, kw_only=True)
class Invocation:
    """The commands a backend runs for one build, in order, and the files they need."""

    commands: tuple[Command, ...]
    files: Mapping[str, str] = field(default_factory=dict)  # name under {work} -> content

    def render(self) -> str:
        """A stable text form, for golden files."""
        out: list[str] = []
        for name, content in sorted(self.files.items()):
            out.append(f"# file {WORK}/{name}")
            out.extend(f"  {line}" for line in content.splitlines())
        for command in self.commands:
            out.append(f"# {command.purpose}")
            out.extend(f"  env {k}={v}" for k, v in sorted(command.env.items()))
            out.append("  " + format_command(command.argv))
        return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class InvocationRun:
    """What running an invocation left: each command's result and the work directory's outputs."""

    results: tuple[Completed, ...]
    outputs: Mapping[str, str]  # file name under {work} -> content, read before cleanup

    @property
    def failed(self) -> Completed | None:
        return next((r for r in self.results if not r.ok), None)

    @property
    def lines(self) -> list[str]:
        return [line for r in self.results for line in r.stdout.splitlines()]


@contextmanager
def _work_dir(parent: Path | None) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="anybuild-invocation-", dir=parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_invocation(
    invocation: Invocation,
    *,
    runner: Runner,
    base_env: Mapping[str, str],
    sink: LogSink,
    cwd: Path | None = None,
    timeout: float | None = None,
    tmp_parent: Path | None = None,
) -> InvocationRun:
    """Write the files, run the commands in order streaming their lines, stop at the first failure."""
    results: list[Completed] = []
    with _work_dir(tmp_parent) as work:
        for name, content in invocation.files.items():
            (work / name).write_text(content)
        for command in invocation.commands:
            env = {**base_env, **{k: v.replace(WORK, str(work)) for k, v in command.env.items()}}
            done = runner.run(command.resolve(work), env=env, cwd=cwd, timeout=timeout, on_line=sink.line)
            results.append(done)
            if not done.ok:
                break
        outputs = {
            p.name: p.read_text(errors="replace")
            for p in work.iterdir()
            if p.is_file() and p.name not in invocation.files
        }
    return InvocationRun(results=tuple(results), outputs=outputs)
