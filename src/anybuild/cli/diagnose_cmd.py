"""`anybuild diagnose`: name the real cause of a failed build from its log."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from anybuild.cli.session import Session, output_options, pass_session
from anybuild.diagnose import Diagnosis, Report, Role, diagnose_stream
from anybuild.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["diagnose", "render_report"]


@click.command(
    "diagnose",
    epilog="""\b
Examples:
  anybuild diagnose build.log
  docker build . 2>&1 | anybuild diagnose -
  anybuild diagnose build.log --facts facts.json --json
""",
)
@click.argument("log", required=False, default="-", type=click.Path(path_type=Path, allow_dash=True))
@click.option(
    "--facts",
    "facts_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A JSON object of environment facts (as `anybuild doctor --json` writes them).",
)
@click.option("--exit-code", type=int, default=None, help="The failed build's exit status.")
@output_options
@pass_session
def diagnose(session: Session, log: Path, facts_path: Path | None, exit_code: int | None) -> None:
    """Read a failed build's log (any tool's) and name the root cause, the evidence and the fix.

    Exits 0 when a cause was found, 1 when none matched (the answer then names the failing
    step, its exit status, the last error line and the tool, and says the cause is not
    recognised).
    """
    facts = _load_facts(facts_path, session.cwd) if facts_path else {}
    name = "stdin" if str(log) == "-" else str(log)
    if str(log) == "-":
        report = diagnose_stream(sys.stdin.buffer, facts, exit_code=exit_code)
    else:
        report = _diagnose_file(log if log.is_absolute() else session.cwd / log, facts, exit_code)
    session.emit(_to_dict(name, report), lambda console: render_report(console, report))
    if not _recognised(report):
        sys.exit(1)  # documented: 1 when no cause matched (the report was printed)


def _diagnose_file(path: Path, facts: Mapping[str, object], exit_code: int | None) -> Report:
    try:
        stream: BinaryIO = path.open("rb")
    except OSError as exc:
        raise UsageError(
            f"cannot read the log {path}: {exc.strerror}", hint="pass a log file, or - for stdin"
        ) from exc
    with stream:
        return diagnose_stream(stream, facts, exit_code=exit_code)


def _load_facts(path: Path, cwd: Path) -> dict[str, object]:
    full = path if path.is_absolute() else cwd / path
    try:
        data = json.loads(full.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read facts from {full}: {exc}",
            hint="pass a JSON object such as {\"docker.data_root_fs\": \"overlay\"}",
        ) from exc
    if not isinstance(data, dict):
        raise UsageError(f"facts in {full} are not a JSON object", hint="write {\"key\": value, ...}")
    facts = data.get("facts", data)
    return dict(facts) if isinstance(facts, dict) else dict(data)


def _recognised(report: Report) -> bool:
    return bool(report.diagnoses) and report.diagnoses[0].rule_id != "unrecognised"


def _to_dict(name: str, report: Report) -> dict[str, Any]:
    known = _recognised(report)
    return {
        "log": name,
        "lines": report.lines,
        "diagnosed": known,
        "diagnoses": [d.to_dict() for d in report.diagnoses],
        "tail": [] if known else [e.to_dict() for e in report.tail],
    }


def render_report(console: Console, report: Report) -> None:
    """The human answer: root cause, evidence, fix, then what else was seen and dismissed."""

    def say(text: str = "") -> None:
        console.print(text, markup=False, highlight=False)

    if not _recognised(report):
        say(f"No known cause matched in {report.lines} lines of log.")
        if report.diagnoses:
            say(report.diagnoses[0].cause)
        if report.tail:
            say("The last error-looking lines:")
            for e in report.tail:
                say(f"  line {e.line}: {e.text}")
        say("Run `anybuild doctor` to check the environment, or read the log above the first error.")
        return
    root, *rest = report.diagnoses
    say(f"Root cause: {root.cause}")
    _evidence(say, root)
    say(f"Fix: {root.remedy}")
    if root.other_backend_helps:
        say("Another backend would help: yes (this is the environment, not your Dockerfile).")
    else:
        say("Another backend would help: no (it would fail the same way).")
    if root.retryable:
        say("Retrying may help: yes.")
    say(f"More: {root.docs}")
    others = [d for d in rest if d.role is not Role.RED_HERRING]
    herrings = [d for d in rest if d.role is Role.RED_HERRING]
    if others:
        say("")
        say("Also seen:")
        for d in others:
            where = f"line {d.first_line}" if d.first_line else "exit status"
            note = f" ({d.reason})" if d.reason else ""
            say(f"  {d.title} at {where}{note}")
    if herrings:
        say("")
        say("Dismissed:")
        for d in herrings:
            say(f"  Not {_article(d.title)}: {d.reason}.")
            for e in d.evidence[:2]:
                say(f"    line {e.line}: {e.text}")


def _evidence(say: Any, diag: Diagnosis) -> None:
    for e in diag.evidence[:6]:
        prefix = f"line {e.line}" if e.line is not None else "exit"
        say(f"  {prefix}: {e.text}")
    if diag.matches > len(diag.evidence):
        say(f"  ({diag.matches} matching lines in all)")


_PROPER = frozenset({"Docker", "GHCR", "Kaniko", "DNS", "COPY/ADD", "RUN", "npm/yarn"})


def _article(title: str) -> str:
    first = title.split(" ", 1)[0]
    text = title if first in _PROPER or first.isupper() else title[0].lower() + title[1:]
    return ("an " if text[0].lower() in "aeiou" else "a ") + text
