"""Context file digests remembered between builds by (size, mtime, ctime, inode)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from anybuild.builder.cache.hashes import FINE_SETTLE_NS, SETTLE_NS, ContextHashes, settle_ns
from anybuild.builder.cache.key import hash_files


def later() -> int:
    """A clock well past every file's ctime."""
    return time.time_ns() + 10 * SETTLE_NS


def make(tmp_path: Path) -> tuple[Path, list[str]]:
    context = tmp_path / "ctx"
    (context / "src").mkdir(parents=True)
    for i in range(5):
        (context / "src" / f"m{i}.py").write_text(f"print({i})\n")
    return context, [f"src/m{i}.py" for i in range(5)]


def test_unchanged_files_not_read_again_even_by_a_new_process(tmp_path: Path) -> None:
    context, files = make(tmp_path)
    store = tmp_path / "data" / "context"
    first = ContextHashes.for_context(store, context)
    first.clock_ns = later
    digests = hash_files(context, files, first)
    first.save()

    second = ContextHashes.for_context(store, context)
    again = hash_files(context, files, second)

    assert first.reads == 5
    assert again == digests
    assert second.reads == 0
    assert again == hash_files(context, files)  # the same as reading every file


def test_edit_with_same_size_and_restored_mtime_still_seen(tmp_path: Path) -> None:
    context, files = make(tmp_path)
    hashes = ContextHashes(clock_ns=later)
    before = dict(hash_files(context, files, hashes))
    target = context / "src" / "m0.py"
    info = target.stat()
    time.sleep(0.01)
    target.write_text("print(9)\n")  # same size
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))  # an editor or a checkout restoring the mtime

    after = dict(hash_files(context, files, hashes))

    assert after["src/m0.py"] != before["src/m0.py"]  # ctime moved: read again
    assert after["src/m1.py"] == before["src/m1.py"]
    assert hashes.reads == 6


def newest_change(context: Path, files: list[str]) -> int:
    infos = [(context / f).lstat() for f in files]
    return max(max(i.st_mtime_ns, i.st_ctime_ns) for i in infos)


def test_file_changed_within_a_tick_is_not_remembered(tmp_path: Path) -> None:
    context, files = make(tmp_path)
    now = newest_change(context, files) + settle_ns(*_times(context / files[0])) // 2
    hashes = ContextHashes(clock_ns=lambda: now)
    hash_files(context, files, hashes)
    hash_files(context, files, hashes)

    assert hashes.reads == 10
    assert hashes.entries == {}


def test_file_changed_a_moment_ago_on_a_fine_grained_filesystem_is_remembered(tmp_path: Path) -> None:
    """A checkout just before a build costs one read, not two: ns timestamps settle in 100 ms."""
    context, files = make(tmp_path)
    if settle_ns(*_times(context / files[0])) != FINE_SETTLE_NS:
        pytest.skip(f"{tmp_path} keeps whole-second timestamps")
    now = newest_change(context, files) + 2 * FINE_SETTLE_NS  # well under SETTLE_NS
    hashes = ContextHashes(clock_ns=lambda: now)
    hash_files(context, files, hashes)
    hash_files(context, files, hashes)

    assert hashes.reads == 5
    assert set(hashes.entries) == set(files)


def _times(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_mtime_ns, info.st_ctime_ns


def test_settle_time_follows_the_timestamps_grain() -> None:
    second = 1_000_000_000
    assert settle_ns(1_700_000_000 * second + 123_456_789, 1_700_000_000 * second + 5) == FINE_SETTLE_NS
    assert settle_ns(1_700_000_000 * second, 1_700_000_000 * second + 40_000_000) == FINE_SETTLE_NS  # mtime restored
    assert settle_ns(1_700_000_000 * second, 1_700_000_002 * second) == SETTLE_NS  # FAT, ext3
    assert FINE_SETTLE_NS < SETTLE_NS


def test_unreadable_memory_is_empty_not_an_error(tmp_path: Path) -> None:
    context, files = make(tmp_path)
    store = tmp_path / "data" / "context"
    hashes = ContextHashes.for_context(store, context)
    assert hashes.file is not None
    hashes.file.parent.mkdir(parents=True)
    for junk in (b"{not json", b'{"version": 1, "files": {"src/m0.py": [1]}}', b'["a list"]'):
        hashes.file.write_bytes(junk)
        loaded = ContextHashes.for_context(store, context)
        assert loaded.entries == {}
        assert dict(hash_files(context, files, loaded)) == dict(hash_files(context, files))
