"""``anybuild github init``: the workflow for a repository, validated, written only when asked to.

:func:`prepare_workflow` renders the text and validates it (anybuild's own rules
must pass, or it is a bug; ``actionlint`` and ``check-jsonschema`` run where they
are on PATH) and compares it with the file in place. :func:`write_workflow`
writes it atomically. Nothing is written over a different file unless forced.
"""

from __future__ import annotations

import difflib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anybuild.backends.github.lint import Finding, external_findings, lint_workflow
from anybuild.backends.github.workflow import WORKFLOW_DIR, render_workflow, workflow_spec
from anybuild.config import Config
from anybuild.errors import BackendError
from anybuild.oci.layout import atomic_write
from anybuild.process import Runner

__all__ = ["PreparedWorkflow", "prepare_workflow", "repository_root", "write_workflow"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedWorkflow:
    path: Path
    text: str
    current: str | None  # the file in place, if any
    findings: tuple[Finding, ...]
    tools: tuple[str, ...]
    root_note: str = ""  # why the repository root was not found by git, if it was not

    @property
    def changed(self) -> bool:
        return self.current != self.text

    @property
    def diff(self) -> str:
        if self.current is None or not self.changed:
            return ""
        name = str(self.path.name)
        return "".join(difflib.unified_diff(
            self.current.splitlines(keepends=True), self.text.splitlines(keepends=True),
            fromfile=f"{name} (in place)", tofile=f"{name} (anybuild github init)"))

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "exists": self.current is not None, "changed": self.changed,
                "diff": self.diff or None, "findings": [f.to_dict() for f in self.findings],
                "tools": list(self.tools)}


def repository_root(start: Path, runner: Runner) -> tuple[Path, str]:
    """The top of the git work tree holding *start* (the workflow goes there), and a note if none."""
    try:
        done = runner.run(["git", "rev-parse", "--show-toplevel"], cwd=start, timeout=30)
    except BackendError as exc:
        return start, f"git cannot run ({exc.message}): the workflow goes beside anybuild.toml"
    if not done.ok or not done.stdout.strip():
        return start, f"{start} is not in a git work tree: the workflow goes beside anybuild.toml"
    return Path(done.stdout.strip()), ""


def prepare_workflow(config: Config, *, requirement: str, runner: Runner) -> PreparedWorkflow:
    root, note = repository_root(config.root, runner)
    try:
        working = config.root.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        working, note = ".", f"{config.root} is outside the git work tree {root}"
    spec = workflow_spec(config, requirement=requirement, working_directory=working)
    text = render_workflow(spec)
    path = root / WORKFLOW_DIR / config.backend.github.workflow
    own = lint_workflow(text, file=str(path), id_token_allowed=config.backend.github.id_token)
    if own.findings:  # the generator and the rules disagree: a bug, not the user's mistake
        raise AssertionError(f"generated workflow fails anybuild's own rules: {own.findings}")
    with tempfile.TemporaryDirectory(prefix="anybuild-workflow-") as scratch:
        candidate = Path(scratch) / path.name
        candidate.write_text(text, encoding="utf-8")
        extra, tools = external_findings(candidate, runner)
    try:
        current: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    return PreparedWorkflow(path=path, text=text, current=current, findings=tuple(extra),
                            tools=("anybuild", *tools), root_note=note)


def write_workflow(prepared: PreparedWorkflow) -> None:
    with atomic_write(prepared.path) as handle:
        handle.write(prepared.text.encode("utf-8"))
