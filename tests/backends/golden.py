"""Compare rendered invocations with tests/backends/golden/*.txt (ANYBUILD_UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("ANYBUILD_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with ANYBUILD_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{path} differs; diff it, and rewrite with ANYBUILD_UPDATE_GOLDEN=1"
