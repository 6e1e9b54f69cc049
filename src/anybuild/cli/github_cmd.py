"""`anybuild github ...`: the GitHub Actions backend's own commands (`init`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from anybuild.cli.options import config_option, resolve_config
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.errors import AnybuildError, ExitCode
from anybuild.process import SubprocessRunner

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["github"]


@click.group()
def github() -> None:
    """Build on GitHub's runners: write the workflow that `anybuild build --backend github` dispatches."""


@github.command(
    epilog="""\b
Examples:
  anybuild github init                 write .github/workflows/anybuild.yml
  anybuild github init --print         show it, write nothing
  anybuild github init --force         replace a file that differs (shows the diff)
\b
Then commit and push it: workflow_dispatch only starts workflows present on the
default branch. Exit status: 0 written or up to date, 1 not written (a different
file is in place, or a validator found a problem).
""",
)
@click.option("--force", is_flag=True, help="Replace a workflow file that differs from what anybuild writes.")
@click.option("--print", "print_only", is_flag=True, help="Print the workflow on stdout; write nothing.")
@config_option
@output_options
@pass_session
def init(session: Session, force: bool, print_only: bool, config_path: Path | None) -> None:
    """Write the GitHub Actions workflow for the images of anybuild.toml, validated first."""
    import anybuild
    from anybuild.backends.github.init import prepare_workflow, write_workflow

    config = resolve_config(config_path, session.cwd)
    if not config.images:
        raise AnybuildError(f"{config.file} defines no images: the workflow would have nothing to build",
                            hint="add an [images.NAME] table first", docs="config")
    prepared = prepare_workflow(config, requirement=f"anybuild=={anybuild.__version__}", runner=SubprocessRunner())
    if prepared.root_note:
        session.info(f"note: {prepared.root_note}")
    if print_only:
        sys.stdout.write(prepared.text)
        return
    for finding in prepared.findings:
        where = f"line {finding.line}: " if finding.line else ""
        session.echo(f"{finding.tool}: {where}{finding.message}", err=True)
    data = {**prepared.to_dict(), "written": False}
    if prepared.findings and not force:
        raise AnybuildError(
            f"{', '.join(prepared.tools[1:])} found {len(prepared.findings)} problem(s) in the workflow anybuild "
            f"would write; {prepared.path} was not written",
            hint="report the findings above as an anybuild bug, or write it anyway with --force",
            docs="backends/github")
    if prepared.current is not None and not prepared.changed:
        session.emit({**data, "written": False},
                     lambda console: console.print(f"{prepared.path} is up to date", markup=False))
        return
    if prepared.current is not None and not force:
        if session.json:
            session.emit(data)
        else:
            sys.stdout.write(prepared.diff)
        raise AnybuildError(
            f"{prepared.path} differs from what anybuild would write (diff above); nothing was changed",
            hint="keep your edits and check them with `anybuild lint --workflow`, or replace the file with "
            "`anybuild github init --force`", docs="backends/github")
    write_workflow(prepared)
    data["written"] = True
    if force and prepared.current is not None and not session.json:
        sys.stdout.write(prepared.diff)
    session.emit(data, lambda console: _render_written(console, prepared.path, config.backend.github.workflow))
    sys.exit(int(ExitCode.OK))


def _render_written(console: Console, path: Path, name: str) -> None:
    console.print(f"wrote {path}", markup=False)
    console.print("next: commit it and push it to the default branch (workflow_dispatch starts only workflows "
                  "that are there):", markup=False)
    console.print(f"  git add .github/workflows/{name} && git commit -m 'anybuild workflow' && git push",
                  markup=False)
    console.print("then: anybuild build --all --push --backend github", markup=False)


def lint_workflow_file(session: Session, path: Path | None) -> None:
    """`anybuild lint --workflow [PATH]`: anybuild's rules, then actionlint and check-jsonschema if on PATH."""
    import anybuild
    from anybuild.backends.github.init import repository_root
    from anybuild.backends.github.lint import external_findings, lint_workflow, merge_reports
    from anybuild.backends.github.workflow import WORKFLOW_DIR
    from anybuild.config import find_config, load_config
    from anybuild.errors import UsageError

    runner = SubprocessRunner()
    found = find_config(session.cwd)
    config = load_config(found) if found else None
    settings = config.backend.github if config else None
    if path is None:
        root, _ = repository_root(config.root if config else session.cwd, runner)
        target = root / WORKFLOW_DIR / (settings.workflow if settings else "anybuild.yml")
    else:
        target = path if path.is_absolute() else session.cwd / path
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the workflow {target}: {exc.strerror or exc}",
                         hint="write it with `anybuild github init`, or pass its path: "
                         "anybuild lint --workflow .github/workflows/FILE.yml") from exc
    report = lint_workflow(text, file=str(target), anybuild_version=anybuild.__version__,
                           id_token_allowed=bool(settings and settings.id_token))
    extra, tools = external_findings(target, runner)
    report = merge_reports(report, extra, tools)

    def render(console: Console) -> None:
        for f in report.findings:
            where = f":{f.line}" if f.line else ""
            console.print(f"{report.file}{where}: {f.severity}: {f.message} ({f.tool}: {f.rule})", markup=False)
            if f.hint:
                console.print(f"    hint: {f.hint}", markup=False)
        counts = report.to_dict()["summary"]
        console.print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info "
                      f"(checked by {', '.join(report.tools)})", markup=False)

    session.emit(report.to_dict(), render)
    if report.errors:
        sys.exit(int(ExitCode.BUILD_FAILED))
