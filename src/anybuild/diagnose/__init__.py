"""Failure diagnosis: name the real cause of a failed build, with the evidence and the fix.

Pure code. Rules are data (:mod:`anybuild.diagnose.catalog`); the engine streams a
log once and ranks what fired, with environment facts (:class:`Fact`) to confirm
or refine::

    diagnoses = diagnose_log(open("build.log"), facts={"docker.data_root_fs": "overlay"})
    root = diagnoses[0]            # Role.ROOT_CAUSE, unless nothing matched ([])
    root.to_dict()                 # cause, remedy, evidence lines, other_backend_helps, ...

The first diagnosis is the root cause; symptoms, other findings and red herrings
(each with its ``reason``) follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import BinaryIO

from anybuild.diagnose.catalog import RULES, rule_by_id
from anybuild.diagnose.engine import ANCHORS, Report, analyze_lines, analyze_stream
from anybuild.diagnose.facts import Fact
from anybuild.diagnose.model import Category, Diagnosis, Evidence, Role, Rule

__all__ = [
    "ANCHORS",
    "RULES",
    "Category",
    "Diagnosis",
    "Evidence",
    "Fact",
    "Report",
    "Role",
    "Rule",
    "diagnose_log",
    "diagnose_stream",
    "rule_by_id",
]


def diagnose_log(
    lines: Iterable[str],
    facts: Mapping[str, object] | None = None,
    *,
    exit_code: int | None = None,
) -> list[Diagnosis]:
    """Ranked diagnoses of a failed build's log (any tool's), root cause first; [] if none."""
    return list(analyze_lines(lines, RULES, facts, exit_code).diagnoses)


def diagnose_stream(
    stream: BinaryIO,
    facts: Mapping[str, object] | None = None,
    *,
    exit_code: int | None = None,
) -> Report:
    """Diagnose a binary stream (a log file, stdin); the report also has the last error lines."""
    return analyze_stream(stream, RULES, facts, exit_code)
