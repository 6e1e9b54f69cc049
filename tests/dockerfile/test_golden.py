"""Golden directories: tests/dockerfile/golden/<case>/Dockerfile -> expected.txt.

Each case may hold ``build-args`` (KEY=VALUE lines), ``target`` and ``platform``
files. Regenerate with ``ANYBUILD_REGEN_GOLDEN=1 pytest tests/dockerfile/test_golden.py``
and review the diff before keeping it. Cases named ``error-*`` must fail with a
location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dockerfile.golden_render import render

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
REGEN = os.environ.get("ANYBUILD_REGEN_GOLDEN") == "1"


def _optional(folder: Path, name: str) -> str | None:
    path = folder / name
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def _render_case(folder: Path) -> str:
    args: dict[str, str] = {}
    for line in (_optional(folder, "build-args") or "").splitlines():
        key, _, value = line.partition("=")
        args[key] = value
    text = (folder / "Dockerfile").read_bytes().decode("utf-8", "surrogateescape")
    return render(text, build_args=args, target=_optional(folder, "target"),
                  target_platform=_optional(folder, "platform"))


def test_golden_suite_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert sum(c.startswith("error-") for c in CASES) >= 12


@pytest.mark.parametrize("case", CASES)
def test_golden_case_matches_expected(case: str) -> None:
    folder = GOLDEN / case
    got = _render_case(folder)
    expected_path = folder / "expected.txt"
    if REGEN:
        expected_path.write_text(got, encoding="utf-8")
    assert expected_path.is_file(), f"{case}: no expected.txt (run with ANYBUILD_REGEN_GOLDEN=1)"
    assert got == expected_path.read_text(encoding="utf-8")
    if case.startswith("error-"):
        assert got.splitlines()[-3].startswith("error: Dockerfile:"), "error cases must fail with a location"
    else:
        assert "error:" not in got
