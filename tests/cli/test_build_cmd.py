"""`anybuild build`'s own pieces: the environment probes it runs in the background."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from anybuild.cli import build_cmd
from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import FactKey, Facts


def test_probe_in_background_gives_the_build_scoped_facts(tmp_path: Path) -> None:
    ctx = ProbeContext(env={**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path, thorough=False)
    facts = build_cmd._probe_in_background(ctx)()
    assert facts.value(FactKey.UID) == os.geteuid()
    assert facts.value(FactKey.ANYBUILD_OVERLAY) is None  # the builder makes its own trial
    assert "the built-in builder tries overlay itself" in facts.evidence(FactKey.ANYBUILD_OVERLAY)


def test_probe_in_background_runs_beside_the_caller_and_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()

    def probe(_ctx: ProbeContext) -> Facts:
        started.set()
        release.wait(5)
        raise RuntimeError("probe bug")

    monkeypatch.setattr(build_cmd, "collect_facts", probe)
    join = build_cmd._probe_in_background(ProbeContext(trials=False))
    assert started.wait(5)  # it runs while the caller goes on (importing the builder, in a build)
    release.set()
    with pytest.raises(RuntimeError, match="probe bug"):
        join()
