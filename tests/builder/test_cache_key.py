"""Step keys (pure): what changes a key and what does not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from anybuild.builder.cache.key import base_key, canonical, hash_files, step_key, under
from anybuild.dockerfile.instructions import CommandLine, Copy, Mount, MountType, Run, SourceFile

PARENT = base_key(image="busybox:1.36", digest="sha256:" + "a" * 64, platform="linux/amd64")
RUN = Run(command=CommandLine(args=("echo hi",), exec_form=False), start_line=3, original="RUN echo hi")


def test_step_key_ignores_where_the_instruction_was_written() -> None:
    moved = dataclasses.replace(RUN, start_line=30, end_line=31, original="RUN   echo hi")
    assert step_key(PARENT, moved) == step_key(PARENT, RUN)


@pytest.mark.parametrize(
    "other",
    [
        lambda: step_key(PARENT, dataclasses.replace(RUN, command=CommandLine(args=("echo ho",), exec_form=False))),
        lambda: step_key(PARENT, RUN, env={"FLAVOUR": "spicy"}),
        lambda: step_key(PARENT, RUN, files=[("a.txt", "644:sha256:" + "b" * 64)]),
        lambda: step_key(PARENT, RUN, refs={"builder": "sha256:" + "c" * 64}),
        lambda: step_key(base_key(image="busybox:1.36", digest="sha256:" + "d" * 64, platform="linux/amd64"), RUN),
        lambda: step_key(base_key(image="busybox:1.36", digest="sha256:" + "a" * 64, platform="linux/arm64"), RUN),
    ],
    ids=["command", "env", "files", "refs", "base-digest", "platform"],
)
def test_step_key_input_changed_key_changes(other: object) -> None:
    assert callable(other)
    assert other() != step_key(PARENT, RUN)


def test_step_key_secret_mount_by_id_only() -> None:
    secret = dataclasses.replace(RUN, mounts=(Mount(type=MountType.SECRET, id="npmrc", raw="type=secret,id=npmrc"),))
    renamed = dataclasses.replace(RUN, mounts=(Mount(type=MountType.SECRET, id="other"),))
    assert step_key(PARENT, secret) != step_key(PARENT, renamed)
    assert "npmrc" in str(canonical(secret))
    assert "raw" not in str(canonical(secret))


def test_step_key_copy_env_does_not_matter_only_files() -> None:
    copy = Copy(sources=(SourceFile(path="a.txt"),), dest="/app/")
    assert step_key(PARENT, copy, files=[("a.txt", "x")]) != step_key(PARENT, copy, files=[("a.txt", "y")])


def test_hash_files_content_and_mode_not_mtime(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one")
    (tmp_path / "l").symlink_to("a")
    first = hash_files(tmp_path, ["a", "l", "gone"])
    (tmp_path / "a").touch()
    assert hash_files(tmp_path, ["a", "l", "gone"]) == first
    assert first[1] == ("l", "link:a") and first[2] == ("gone", "missing")
    (tmp_path / "a").chmod(0o755)
    assert hash_files(tmp_path, ["a"]) != first[:1]
    (tmp_path / "a").chmod(0o644)
    (tmp_path / "a").write_text("two")
    assert hash_files(tmp_path, ["a"]) != first[:1]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [(".", ["a", "src/b", "srcx"]), ("src", ["src/b"]), ("/src/", ["src/b"]), ("a", ["a"])],
    ids=["all", "dir", "slashes", "file"],
)
def test_under_selects_a_subtree(prefix: str, expected: list[str]) -> None:
    assert under(["a", "src/b", "srcx"], prefix) == expected
