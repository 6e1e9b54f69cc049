""".dockerignore semantics and the context files COPY/ADD read."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.dockerignore import (
    DockerIgnore,
    IgnoreMode,
    find_ignore_file,
    glob_regex,
    read_ignore_patterns,
    select_context_files,
    sources_for,
)
from anybuild.dockerfile.instructions import Add, Copy
from anybuild.dockerfile.parser import MAX_FILE_SIZE, parse_dockerfile
from anybuild.errors import ContextError


def test_read_ignore_patterns_normalises_like_docker() -> None:
    text = "\ufeff# comment\n  # not a comment\n\n /abs/path/ \n./rel\n!  keep \na/../b\n*.md\n"
    assert read_ignore_patterns(text) == ["# not a comment", "abs/path", "rel", "!keep", "b", "*.md"]


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.md"], "README.md", True),
        (["*.md"], "docs/a.md", False),
        (["**/*.md"], "docs/a.md", True),
        (["**/*.md"], "a.md", True),
        (["**"], "anything/at/all", True),
        (["docs/**"], "docs/a/b", True),
        (["docs/**"], "docs", False),
        (["**/node_modules"], "web/node_modules/x/y.js", True),
        (["node_modules"], "node_modules/x/y.js", True),
        (["node_modules"], "web/node_modules", False),
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        (["[a-c]x"], "bx", True),
        (["[^a-c]x"], "bx", False),
        (["[^a-c]x"], "dx", True),
        (["\\*x"], "*x", True),
        (["\\*x"], "ax", False),
        (["a.b"], "axb", False),
        (["*", "!keep"], "keep", False),
        (["*", "!keep"], "other", True),
        (["!keep", "*"], "keep", True),
        (["build", "!build/keep.txt"], "build/keep.txt", False),
        (["build", "!build/keep.txt"], "build/drop.txt", True),
        (["*.log", "!important.log", "important.log"], "important.log", True),
        (["dir/*/x"], "dir/a/x", True),
        (["dir/*/x"], "dir/a/b/x", False),
        (["dir/**/x"], "dir/a/b/x", True),
        (["dir/**/x"], "dir/x", True),
        (["**/.git"], ".git/HEAD", True),
    ],
)
def test_docker_ignore_excluded(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excluded(path) is excluded


@pytest.mark.parametrize("pattern", ["[", "[a-", "[]", "a\\", "!", "[z-a]x\\"])
def test_docker_ignore_bad_pattern_raises_context_error(pattern: str) -> None:
    with pytest.raises(ContextError) as info:
        DockerIgnore([pattern])
    assert info.value.hint


def _tree(root: Path, files: list[str]) -> None:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


FILES = ["Dockerfile", ".dockerignore", "app.js", "README.md", "node_modules/x/index.js",
         "build/keep.txt", "build/drop.txt", "src/a.go", "src/b_test.go", "src/deep/c.go"]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ([], FILES),
        (["node_modules", "*.md"], [f for f in FILES if not f.startswith("node_modules") and f != "README.md"]),
        (["build", "!build/keep.txt"], [f for f in FILES if f != "build/drop.txt"]),
        (["build", "!**/keep.txt"], [f for f in FILES if f != "build/drop.txt"]),
        (["*", "!src"], ["src/a.go", "src/b_test.go", "src/deep/c.go"]),
        (["**/*_test.go"], [f for f in FILES if f != "src/b_test.go"]),
        (["Dockerfile", ".dockerignore"], [f for f in FILES if f not in ("Dockerfile", ".dockerignore")]),
    ],
    ids=["none", "node-md", "prefix-exception", "wildcard-exception", "star-except-dir",
         "doublestar", "self"],
)
def test_select_context_files_walks_like_buildkit(tmp_path: Path, patterns: list[str],
                                                  expected: list[str]) -> None:
    _tree(tmp_path, FILES)
    assert select_context_files(tmp_path, DockerIgnore(patterns)) == sorted(expected)


def test_select_context_files_wildcard_exception_enters_excluded_dirs(tmp_path: Path) -> None:
    _tree(tmp_path, ["a/keep.txt", "a/drop.txt", "b.txt"])
    assert select_context_files(tmp_path, DockerIgnore(["a", "!a/*.txt"])) == [
        "a/drop.txt", "a/keep.txt", "b.txt"]


def test_find_ignore_file_prefers_dockerfile_specific(tmp_path: Path) -> None:
    _tree(tmp_path, [".dockerignore", "docker/api.Dockerfile", "docker/api.Dockerfile.dockerignore"])
    assert find_ignore_file(tmp_path, tmp_path / "docker/api.Dockerfile") == (
        tmp_path / "docker/api.Dockerfile.dockerignore")
    assert find_ignore_file(tmp_path, tmp_path / "Dockerfile") == tmp_path / ".dockerignore"
    assert find_ignore_file(tmp_path / "docker", None) is None


def test_docker_ignore_from_file_missing_is_empty(tmp_path: Path) -> None:
    assert DockerIgnore.from_file(tmp_path / "nope").patterns == ()


def _copy(line: str) -> Copy | Add:
    instr = parse_instructions(parse_dockerfile("FROM a\n" + line + "\n"))[1]
    assert isinstance(instr, Copy | Add)
    return instr


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("COPY . /app", FILES),
        ("COPY ./src /app", ["src/a.go", "src/b_test.go", "src/deep/c.go"]),
        ("COPY src/*.go /app", ["src/a.go", "src/b_test.go"]),
        ("COPY --exclude=*_test.go src /app", ["src/a.go", "src/deep/c.go"]),
        ("COPY app.js /src/../README.md /app/", ["README.md", "app.js"]),
        ("COPY --from=build /x /y", []),
        ("ADD https://example.com/x.tgz /x", []),
        ("COPY <<EOF /x\nhi\nEOF", []),
        ("COPY b[u]ild /b", ["build/drop.txt", "build/keep.txt"]),
    ],
    ids=["dot", "dir", "glob", "exclude", "two", "from", "url", "heredoc", "class"],
)
def test_sources_for_copy_reads_matching_files(line: str, expected: list[str]) -> None:
    assert sorted(sources_for(_copy(line), FILES)) == sorted(expected)


@pytest.mark.parametrize(
    ("pattern", "path", "ok"),
    [("*.go", "a.go", True), ("*.go", "d/a.go", False), ("[!a]x", "!x", True), ("[\\]]", "]", True),
     ("a\\*", "a*", True)],
)
def test_glob_regex_go_filepath_match(pattern: str, path: str, ok: bool) -> None:
    assert (glob_regex(pattern).match(path) is not None) is ok


@pytest.mark.parametrize(
    ("patterns", "current", "legacy"),
    [
        (["build", "!**/keep.txt"], True, False),
        (["**", "!src/**/*.go"], True, False),
        (["build", "!build/keep.txt"], True, True),
    ],
    ids=["wildcard-exception", "doublestar-exception", "prefix-exception"],
)
def test_select_context_files_modes_differ_on_wildcard_exceptions(
    tmp_path: Path, patterns: list[str], current: bool, legacy: bool
) -> None:
    _tree(tmp_path, ["build/keep.txt", "src/util/keep.txt", "src/util/x.go", "build/drop.txt"])
    wanted = "src/util/x.go" if "src" in patterns[1] else "build/keep.txt"
    modern = select_context_files(tmp_path, DockerIgnore(patterns, mode=IgnoreMode.CURRENT))
    old = select_context_files(tmp_path, DockerIgnore(patterns, mode=IgnoreMode.LEGACY))
    assert (wanted in modern, wanted in old) == (current, legacy)


def test_docker_ignore_legacy_checks_parent_at_pattern_depth_only() -> None:
    assert DockerIgnore(["**/b"]).excluded("x/y/b/f")
    assert not DockerIgnore(["**/b"], mode=IgnoreMode.LEGACY).excluded("x/y/b/f")
    assert DockerIgnore(["*/b"], mode=IgnoreMode.LEGACY).excluded("a/b/c/d")


def test_docker_ignore_from_file_error_names_line(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("# header\n*.md\n\ndocs/[a\n")
    with pytest.raises(ContextError, match=r"\.dockerignore:4: invalid pattern 'docs/\[a'"):
        DockerIgnore.from_file(tmp_path / ".dockerignore")


def test_docker_ignore_over_buildkits_size_limit_refused(tmp_path: Path) -> None:
    with (tmp_path / ".dockerignore").open("wb") as handle:
        handle.truncate(MAX_FILE_SIZE + 1)
    with pytest.raises(ContextError, match=rf"\.dockerignore exceeds maximum allowed size of {MAX_FILE_SIZE}"):
        DockerIgnore.from_file(tmp_path / ".dockerignore")
