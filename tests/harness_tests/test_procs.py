"""Pure parts of the harness plumbing: access-log parsing, CI strictness, the shared cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.harness import procs
from tests.harness.bases import cached
from tests.harness.registry import RegistryRequest, parse_access_log


def test_parse_access_log_combined_lines_yield_requests() -> None:
    log = (
        '127.0.0.1 - - [28/Nov/2026:06:34:00 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "httpx"\n'
        "not an access line\n"
        '127.0.0.1 - anybuild [28/Nov/2026:06:34:01 +0000] "PUT /v2/a/blobs/uploads/x?digest=sha256%3Aab '
        'HTTP/1.1" 201 0 "" "skopeo"\n'
    )
    assert parse_access_log(log) == [
        RegistryRequest(method="GET", path="/v2/", status=401),
        RegistryRequest(method="PUT", path="/v2/a/blobs/uploads/x?digest=sha256%3Aab", status=201),
    ]


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [("true", pytest.fail.Exception), ("", pytest.skip.Exception)],
    ids=["ci-fails", "local-skips"],
)
def test_unavailable_under_ci_fails_else_skips(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="frobnicator"):
        procs.unavailable("frobnicator missing")


def test_cached_concurrent_callers_make_artefact_once(tmp_path: Path) -> None:
    calls: list[int] = []
    gate = threading.Barrier(4)

    def make(out: Path, scratch: Path) -> None:
        calls.append(1)
        out.write_text("made")

    results: list[Path] = []

    def worker() -> None:
        gate.wait()
        results.append(cached("artefact.txt", make, cache=tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert {p.read_text() for p in results} == {"made"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artefact.txt", "artefact.txt.lock"]


def test_mounts_under_unmounted_dir_is_empty(tmp_path: Path) -> None:
    assert procs.mounts_under(tmp_path) == []
