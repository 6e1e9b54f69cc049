"""The figures of the upstream conformance suite (tests/builder/test_upstream_conformance.py), at the end
(a plugin of tests/conftest.py, so that the controller of a parallel run loads it).

Each of its tests records its outcome as the ``upstream`` user property (it reaches the
controller under xdist too); this adds them up: cases, builds, outcomes, per kind of base,
and the share identical to Docker among the cases compared with it.
"""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest

_OUTCOMES: list[dict[str, Any]] = []
_SKIPPED: dict[str, str] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "test_upstream_case_matches_docker" not in report.nodeid:
        return
    for name, value in report.user_properties:
        if name == "upstream" and report.when == "call":
            _OUTCOMES.append(json.loads(str(value)))
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED[report.nodeid.split("[", 1)[-1].rstrip("]")] = str(reason).removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES and not _SKIPPED:
        return
    write = terminalreporter.write_line
    terminalreporter.section("upstream conformance (tests/builder/upstream)")
    for kind in sorted({o["kind"] for o in _OUTCOMES}):
        counts = collections.Counter(o["outcome"] for o in _OUTCOMES if o["kind"] == kind)
        builds = sum(o["builds"] for o in _OUTCOMES if o["kind"] == kind)
        write(f"base {kind}: {sum(counts.values())} cases, {builds} anybuild builds: "
              + ", ".join(f"{n} {what}" for what, n in counts.most_common()))
    counts = collections.Counter(o["outcome"] for o in _OUTCOMES)
    compared = sum(n for what, n in counts.items() if not what.startswith("newer"))
    same = sum(n for what, n in counts.items() if what.startswith(("identical", "both refuse")))
    if compared:
        strict = counts["identical"] + counts["both refuse"]
        stubs = counts["identical but for Docker 20.10's mount stubs"]
        write(f"all: {sum(counts.values())} case builds; compared with Docker 20.10: {compared}; identical: "
              f"{same} ({100 * same / compared:.1f}%, of which {stubs}"
              f" but for the mount stubs BuildKit 0.8 leaves; {100 * strict / compared:.1f}% without them); "
              f"differing, listed: {counts['Docker 20.10 differs (listed)']}")
    limits = collections.Counter(o["proot"] for o in _OUTCOMES if "proot" in o)
    for limit, n in limits.most_common():
        write(f"proot falls short ({n} case builds, listed in PROOT_LIMITS): {limit}")
    for reason, n in collections.Counter(_SKIPPED.values()).most_common():
        write(f"skipped {n}: {reason}")
