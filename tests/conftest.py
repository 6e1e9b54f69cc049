"""Root conftest: the harness fixtures (tests/harness/fixtures.py) and marker wiring."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.harness.fixtures", "tests.builder.upstream_figures"]

# Builds trim their cache when the data directory's filesystem runs short of free space; on a CI
# machine with a nearly full disk that would make every cache test depend on the disk. Trimming
# is tested on its own (tests/builder/test_trim.py) with explicit minimums.
os.environ.setdefault("ANYBUILD_MIN_FREE_SPACE", "0")

# Fixtures that need root; tests using them get the `root` marker (select with -m "not root").
_ROOT_FIXTURES = frozenset({"dockerd", "buildah", "nested_overlay", "overlay_dockerd_failure"})


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """Each test leaves SIGINT, SIGTERM and SIGHUP as it found them. A command run in-process that was
    interrupted keeps its handlers on purpose (a late Ctrl-C during its clean-up only says so); in a
    test worker that would turn a later test's SIGINT into that message instead of a KeyboardInterrupt."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _ROOT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.root)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real components were proven in this run (CI must show them ran, not skipped)."""
    outcomes: dict[str, str] = {}
    for status in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(status, []):
            nodeid = getattr(report, "nodeid", "")
            when = getattr(report, "when", "call")
            relevant = nodeid.startswith("tests/harness_tests/") and when in ("call", "setup")
            if relevant and (status != "passed" or nodeid not in outcomes):
                outcomes[nodeid] = status
    if outcomes:
        terminalreporter.section("real components (tests/harness_tests)")
        for nodeid, status in sorted(outcomes.items()):
            terminalreporter.write_line(f"{status.upper():8} {nodeid.removeprefix('tests/harness_tests/')}")
