"""`anybuild lint [PATH]`: Dockerfile pitfalls that break builds, and which backends can build it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from anybuild.cli.session import Session, output_options, pass_session
from anybuild.dockerfile.dockerignore import DockerIgnore, find_ignore_file
from anybuild.dockerfile.lint import ContextFacts, LintReport, lint_dockerfile
from anybuild.dockerfile.parser import read_dockerfile
from anybuild.errors import ContextError, ExitCode, UsageError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["lint"]

_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


@click.command(
    epilog="""\b
Examples:
  anybuild lint
  anybuild lint services/api/Dockerfile --context services/api
  anybuild lint --json | jq '.findings[] | select(.severity == "error")'
  anybuild lint --workflow                 the GitHub Actions workflow anybuild dispatches
\b
Exit status: 0 without errors (warnings and info do not fail), 1 with errors,
2 if the Dockerfile does not parse.
""",
)
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--context", "context_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The build context (default: the Dockerfile's directory).")
@click.option("--build-arg", "build_args", multiple=True, metavar="NAME=VALUE",
              help="A build argument, as for a build (repeatable).")
@click.option("--workflow", is_flag=True,
              help="Check the GitHub Actions workflow instead (PATH: the file; default: the one of `github init`).")
@output_options
@pass_session
def lint(session: Session, path: Path | None, context_dir: Path | None, build_args: tuple[str, ...],
         workflow: bool) -> None:
    """Check a Dockerfile (default ./Dockerfile) for devpod and CI pitfalls, or the workflow (--workflow)."""
    if workflow:
        from anybuild.cli.github_cmd import lint_workflow_file

        lint_workflow_file(session, path)
        return
    target = session.cwd / (path or Path("Dockerfile"))
    dockerfile = target / "Dockerfile" if target.is_dir() else target
    if not dockerfile.is_file():
        raise UsageError(f"no Dockerfile at {dockerfile}", hint="pass the Dockerfile path: anybuild lint PATH")
    context = session.cwd / context_dir if context_dir else dockerfile.parent
    args: dict[str, str] = {}
    for item in build_args:
        name, sep, value = item.partition("=")
        if not sep:
            value = session.env.get(name, "")
        args[name] = value
    report = lint_dockerfile(read_dockerfile(dockerfile), context=_context_facts(context, dockerfile),
                             build_args=args)
    session.emit(report.to_dict(), lambda console: _render(console, report))
    if report.errors:
        sys.exit(int(ExitCode.BUILD_FAILED))  # click.Exit is swallowed by main()'s standalone_mode=False


def _context_facts(context: Path, dockerfile: Path) -> ContextFacts:
    """The few facts lint needs about the context: its top-level names and its .dockerignore."""
    try:
        names = frozenset(p.name for p in context.iterdir())
    except OSError as exc:
        raise ContextError(f"cannot read the build context {context}: {exc.strerror}",
                           hint="pass the context directory with --context") from exc
    ignore_file = find_ignore_file(context, dockerfile)
    return ContextFacts(
        top_level=names, ignore=DockerIgnore.from_file(ignore_file),
        ignore_file=str(ignore_file) if ignore_file else None,
    )


def _render(console: Console, report: LintReport) -> None:
    from rich.markup import escape

    for f in report.findings:
        style = _STYLE[f.severity.value]
        console.print(f"{escape(str(report.file))}:{f.line}:{f.column}: [{style}]{f.severity}[/{style}] "
                      f"{escape(f.message)} [dim]({escape(f.rule)})[/dim]", highlight=False)
        console.print(f"    {f.text.strip()}", markup=False)
        console.print(f"    hint: {f.hint}", markup=False)
        if f.docs:
            console.print(f"    docs: docs/{f.docs}.md", markup=False)
    counts = report.to_dict()["summary"]
    console.print(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info",
                  markup=False)
    if report.features:
        console.print("features: " + ", ".join(f.value for f in report.features), markup=False)
    for b in report.backends:
        verdict = "can build" if b.supported else "cannot build: " + "; ".join(b.reasons)
        console.print(f"  {b.backend}: {verdict}", markup=False)
