"""A job's log as GitHub serves it, made readable: timestamps off, the failing step's lines found."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["clean_log", "failing_section"]

_STAMP = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?")
_MAX_LINES = 120


def clean_log(text: str) -> list[str]:
    """The log's lines without the timestamp GitHub puts before each one."""
    return [_STAMP.sub("", line) for line in text.splitlines()]


def failing_section(lines: Sequence[str]) -> list[str]:
    """The lines of the step that failed: from its ``##[group]Run`` header to its last ``##[error]``.

    Without an error marker, the end of the log (a job killed by its timeout has none).
    Workflow markers are made plain (``##[error]x`` → ``error: x``)."""
    errors = [i for i, line in enumerate(lines) if line.startswith("##[error]")]
    if errors:
        end = errors[-1]
        starts = [i for i, line in enumerate(lines[: end + 1]) if line.startswith("##[group]Run ")]
        start = starts[-1] if starts else max(0, end - _MAX_LINES)
        section = list(lines[start: end + 1])
    else:
        section = list(lines)
    shown: list[str] = []
    for line in section[-_MAX_LINES:]:
        if line.startswith("##[endgroup]"):
            continue
        line = line.replace("##[group]", "", 1) if line.startswith("##[group]") else line
        for marker, word in (("##[error]", "error: "), ("##[warning]", "warning: "), ("##[notice]", "notice: ")):
            if line.startswith(marker):
                line = word + line[len(marker):]
        shown.append(line)
    return shown
