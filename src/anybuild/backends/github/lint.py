"""``anybuild lint --workflow``: does a (possibly hand-edited) workflow still work with anybuild?

The rules check what the dispatching side relies on (see :mod:`.workflow`) and the
hygiene the generated file promises: every ``uses:`` pinned to a commit, least
privilege, a timeout, a pinned anybuild. The file is read as GitHub reads it:
YAML 1.2 booleans only, so ``on:`` stays a key. External validators
(``actionlint``, ``check-jsonschema``) run too when they are on PATH
(:func:`external_findings`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from anybuild.backends.github.pins import PINNED_USES
from anybuild.backends.github.workflow import (
    ARTIFACT_PREFIX,
    INPUT_ARGS,
    INPUT_IMAGES,
    INPUT_REQUEST_ID,
)
from anybuild.process import Runner

__all__ = ["Finding", "Severity", "WorkflowReport", "external_findings", "lint_workflow", "load_workflow"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    hint: str = ""
    line: int | None = None
    tool: str = "anybuild"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": str(self.severity), "message": self.message, "hint": self.hint,
                "line": self.line, "tool": self.tool}


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowReport:
    file: str
    findings: tuple[Finding, ...]
    tools: tuple[str, ...] = ("anybuild",)  # the validators that ran

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    def to_dict(self) -> dict[str, Any]:
        counts = {s.value: sum(f.severity is s for f in self.findings) for s in Severity}
        return {"file": self.file, "tools": list(self.tools), "findings": [f.to_dict() for f in self.findings],
                "summary": counts}


class _GithubLoader(yaml.SafeLoader):
    """YAML as GitHub reads workflows: only true/false are booleans (``on:`` is a key, not True)."""


_GithubLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_GithubLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf"))


def load_workflow(text: str) -> tuple[Any, dict[str, int]]:
    """The document and the line (1-based) of each dotted path; raises yaml.YAMLError."""
    node = yaml.compose(text, Loader=_GithubLoader)
    data = yaml.load(text, Loader=_GithubLoader)  # noqa: S506 - a SafeLoader subclass
    lines: dict[str, int] = {}
    if node is not None:
        _positions(node, "", lines)
    return data, lines


def _positions(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = f"{path}.{key.value}" if path else str(key.value)
            lines.setdefault(name, key.start_mark.line + 1)
            _positions(value, name, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _positions(item, f"{path}[{index}]", lines)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _steps(job: Mapping[str, Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    steps = job.get("steps")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, Mapping):
            yield index, step


def lint_workflow(text: str, *, file: str = "anybuild.yml", anybuild_version: str | None = None,
                  id_token_allowed: bool = False) -> WorkflowReport:
    """The findings of anybuild's own rules on the workflow *text*."""
    try:
        data, lines = load_workflow(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return WorkflowReport(file=file, findings=(Finding(
            rule="yaml", severity=Severity.ERROR, message=f"not valid YAML: {exc}".replace("\n", " "),
            hint="fix the YAML syntax at that line", line=mark.line + 1 if mark is not None else None),))
    findings: list[Finding] = []

    def add(rule: str, severity: Severity, message: str, hint: str, where: str = "") -> None:
        findings.append(Finding(rule=rule, severity=severity, message=message, hint=hint, line=lines.get(where)))

    if not isinstance(data, Mapping):
        add("yaml", Severity.ERROR, "the workflow is not a mapping of keys", "start from `anybuild github init`")
        return WorkflowReport(file=file, findings=tuple(findings))
    _check_trigger(data, add)
    _check_permissions(data, add, id_token_allowed)
    jobs = {name: job for name, job in _mapping(data.get("jobs")).items() if isinstance(job, Mapping)}
    if not jobs:
        add("jobs", Severity.ERROR, "the workflow has no jobs", "write it anew with `anybuild github init --force`")
    image_jobs = [name for name, job in jobs.items() if _builds_images(job)]
    if jobs and not image_jobs:
        add("image-jobs", Severity.ERROR,
            "no job is named ${{ matrix.image }} over a matrix image: ${{ fromJSON(inputs.images) }}",
            "anybuild follows each image by its job's name: keep `name: ${{ matrix.image }}` and the matrix",
            "jobs")
    for name, job in jobs.items():
        where = f"jobs.{name}"
        if "timeout-minutes" not in job and "uses" not in job:
            add("timeout", Severity.WARNING, f"job {name} has no timeout-minutes (GitHub's default is 360)",
                "set timeout-minutes, e.g. [backend.github] timeout-minutes = 60", where)
        perms = job.get("permissions")
        if perms == "write-all":
            add("permissions", Severity.ERROR, f"job {name} asks for permissions: write-all",
                "list only what it needs: contents: read, packages: write", f"{where}.permissions")
        elif isinstance(perms, Mapping):
            _check_id_token(perms, add, id_token_allowed, f"{where}.permissions")
        if "uses" in job:
            _check_uses(str(job["uses"]), add, f"{where}.uses")
        for index, step in _steps(job):
            if "uses" in step:
                _check_uses(str(step["uses"]), add, f"{where}.steps[{index}].uses")
        if name in image_jobs:
            _check_image_job(name, job, add, anybuild_version)
    return WorkflowReport(file=file, findings=tuple(findings))


Add = Any  # the `add` callback of lint_workflow (kept loose: a local closure)


def _check_trigger(data: Mapping[str, Any], add: Add) -> None:
    trigger = data.get("on")
    events = trigger if isinstance(trigger, Mapping) else dict.fromkeys(
        trigger if isinstance(trigger, list) else [trigger])
    if "workflow_dispatch" not in events:
        add("dispatch", Severity.ERROR, "the workflow has no workflow_dispatch trigger: anybuild cannot start it",
            "add `on: workflow_dispatch` with the inputs of `anybuild github init`", "on")
        return
    inputs = _mapping(_mapping(events.get("workflow_dispatch")).get("inputs"))
    for name in (INPUT_REQUEST_ID, INPUT_IMAGES, INPUT_ARGS):
        if name not in inputs:
            add("dispatch-inputs", Severity.ERROR,
                f"workflow_dispatch has no input {name!r}: GitHub refuses a dispatch with inputs it does not know",
                f"declare the input {name} as `anybuild github init` writes it", "on.workflow_dispatch")
    run_name = str(data.get("run-name") or "")
    if f"inputs.{INPUT_REQUEST_ID}" not in run_name.replace(" ", ""):
        add("run-name", Severity.ERROR,
            "run-name does not carry inputs.request-id: where GitHub does not return the run's id, "
            "anybuild cannot tell its run from another",
            "write run-name: anybuild ${{ inputs.request-id }}", "run-name")


def _check_permissions(data: Mapping[str, Any], add: Add, id_token_allowed: bool) -> None:
    perms = data.get("permissions")
    if perms is None:
        add("permissions", Severity.WARNING,
            "no top-level permissions: the job token gets the repository's default, which may be write-all",
            "add permissions: contents: read")
    elif perms == "write-all":
        add("permissions", Severity.ERROR, "permissions: write-all gives every job every write permission",
            "write permissions: contents: read, and packages: write on the build job only", "permissions")
    elif isinstance(perms, Mapping):
        _check_id_token(perms, add, id_token_allowed, "permissions")


def _check_id_token(perms: Mapping[str, Any], add: Add, allowed: bool, where: str) -> None:
    if perms.get("id-token") == "write" and not allowed:
        add("permissions", Severity.WARNING,
            "id-token: write lets the job mint OIDC tokens, and [backend.github] id-token is not set",
            "remove it, or set id-token = true in [backend.github] if the build needs OIDC", where)


def _check_uses(uses: str, add: Add, where: str) -> None:
    if uses.startswith("./") or (uses.startswith("docker://") and "@sha256:" in uses):
        return
    if not PINNED_USES.match(uses):
        add("pinned-actions", Severity.ERROR, f"{uses} is not pinned to a commit: a tag or branch can be moved",
            "pin it to the 40-hex commit of the release, with the tag in a comment: owner/repo@<sha> # v1.2.3",
            where)


def _builds_images(job: Mapping[str, Any]) -> bool:
    matrix = _mapping(_mapping(job.get("strategy")).get("matrix"))
    source = str(matrix.get("image", "")).replace(" ", "")
    return str(job.get("name", "")).replace(" ", "") == "${{matrix.image}}" and f"inputs.{INPUT_IMAGES}" in source


def _check_image_job(name: str, job: Mapping[str, Any], add: Add, version: str | None) -> None:
    where = f"jobs.{name}"
    steps = list(_steps(job))
    uploads = [s for _, s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    artifact = f"{ARTIFACT_PREFIX}${{{{matrix.image}}}}"
    if not any(str(_mapping(s.get("with")).get("name", "")).replace(" ", "") == artifact for s in uploads):
        add("result-artifact", Severity.ERROR,
            f"job {name} uploads no artifact named {ARTIFACT_PREFIX}${{{{ matrix.image }}}}: "
            "anybuild reads each image's digest and result from it",
            "keep the `Publish the result` step of `anybuild github init`", f"{where}.steps")
    elif not any(str(s.get("if", "")).replace(" ", "") in ("always()", "${{always()}}") for s in uploads):
        add("result-artifact", Severity.WARNING,
            "the result artifact is not uploaded when the build fails: anybuild then shows only the log",
            "keep `if: always()` on the `Publish the result` step", f"{where}.steps")
    scripts = "\n".join(str(s.get("run", "")) + json.dumps(s.get("env", {})) for _, s in steps)
    if "anybuild build" not in scripts:
        add("anybuild-build", Severity.ERROR, f"no step of job {name} runs `anybuild build`",
            "keep the `Build` step of `anybuild github init`", f"{where}.steps")
    pinned = re.findall(r"anybuild==([A-Za-z0-9.+!_-]+)", scripts)
    if not pinned and "anybuild @ " not in scripts and "git+" not in scripts:
        add("anybuild-version", Severity.WARNING,
            "the anybuild installed on the runner is not pinned: a later release could build differently",
            "install anybuild==VERSION, the version you run locally", f"{where}.steps")
    elif version and pinned and version not in pinned:
        add("anybuild-version", Severity.INFO,
            f"the runner installs anybuild {', '.join(pinned)}, you run {version}",
            "run `anybuild github init --force` to pin the version you run", f"{where}.steps")


# --- external validators -----------------------------------------------------------------------

_ACTIONLINT_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<message>.*) \[(?P<kind>[^\]]+)\]$")


def external_findings(path: Path, runner: Runner, *, which: Any = shutil.which) -> tuple[list[Finding], list[str]]:
    """Findings of ``actionlint`` and ``check-jsonschema`` on *path*, where they are on PATH.

    Returns the findings and the names of the tools that ran."""
    findings: list[Finding] = []
    tools: list[str] = []
    actionlint = which("actionlint")
    if actionlint:
        done = runner.run([actionlint, "-no-color", "-oneline", str(path)], timeout=60)
        tools.append("actionlint")
        for line in done.stdout.splitlines():
            match = _ACTIONLINT_LINE.match(line.strip())
            if match:
                findings.append(Finding(rule=match["kind"], severity=Severity.ERROR, message=match["message"],
                                        line=int(match["line"]), tool="actionlint"))
    checker = which("check-jsonschema")
    if checker:
        done = runner.run([checker, "--builtin-schema", "vendor.github-workflows", "--output-format", "text",
                           str(path)], timeout=60)
        tools.append("check-jsonschema")
        if not done.ok:
            detail = " ".join(line.strip() for line in done.output.splitlines() if line.strip())
            findings.append(Finding(rule="schema", severity=Severity.ERROR, message=detail[:2000],
                                    hint="fix the keys check-jsonschema names", tool="check-jsonschema"))
    return findings, tools


def merge_reports(report: WorkflowReport, extra: Sequence[Finding], tools: Sequence[str]) -> WorkflowReport:
    return WorkflowReport(file=report.file, findings=(*report.findings, *extra), tools=(*report.tools, *tools))
