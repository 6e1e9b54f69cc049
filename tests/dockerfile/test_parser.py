"""The parser against BuildKit's own test data, and its finer rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from anybuild.dockerfile.parser import MAX_FILE_SIZE, parse_dockerfile, parse_heredoc_word, read_dockerfile
from anybuild.dockerfile.quote import go_quote
from anybuild.errors import DockerfileError

CONFORMANCE = Path(__file__).resolve().parents[1] / "data" / "conformance" / "buildkit-parser"
POSITIVE = sorted(p.name for p in (CONFORMANCE / "testfiles").iterdir()) if CONFORMANCE.is_dir() else []
NEGATIVE = (
    sorted(p.name for p in (CONFORMANCE / "testfiles-negative").iterdir()) if CONFORMANCE.is_dir() else []
)


def test_conformance_data_present() -> None:
    # Guards against the parametrized tests below silently collecting nothing.
    assert len(POSITIVE) >= 30, CONFORMANCE
    assert len(NEGATIVE) >= 4, CONFORMANCE


@pytest.mark.parametrize("case", POSITIVE)
def test_parse_buildkit_testfile_matches_result(case: str) -> None:
    folder = CONFORMANCE / "testfiles" / case
    expected = (folder / "result").read_text(encoding="utf-8")
    assert read_dockerfile(folder / "Dockerfile").dump() + "\n" == expected


@pytest.mark.parametrize("case", NEGATIVE)
def test_parse_buildkit_negative_testfile_raises(case: str) -> None:
    with pytest.raises(DockerfileError) as info:
        read_dockerfile(CONFORMANCE / "testfiles-negative" / case / "Dockerfile")
    assert info.value.line is not None
    assert info.value.hint


@pytest.mark.parametrize(
    ("text", "dump"),
    [
        ("FROM a\nRUN echo \\\n  hi\n", '(from "a")\n(run "echo   hi")'),
        ("# escape=`\nFROM a\nRUN echo `\n  hi\n", '(from "a")\n(run "echo   hi")'),
        ("FROM a\nRUN a \\\n# c\n\n  b\n", '(from "a")\n(run "a   b")'),
        ("from a\nrun x\n", '(from "a")\n(run "x")'),
        # text after the array makes it shell form, as json.Unmarshal reads it (moby/buildkit#5107)
        ('FROM a\nCMD ["a"] trailing\n', '(from "a")\n(cmd "[\\"a\\"] trailing")'),
        ("FROM a\nCMD [NaN]\n", '(from "a")\n(cmd "[NaN]")'),
        ("FROM a\nFOO bar\n", '(from "a")\n(foo "")'),
        ("FROM a\nONBUILD COPY --from=b x y\n", '(from "a")\n(onbuild (copy ["--from=b"] "x" "y"))'),
        ("\ufeffFROM a\n", '(from "a")'),
        ("FROM a\r\nRUN b \\\r\n c\r\n", '(from "a")\n(run "b  c")'),
        ("FROM a\nARG\nENV\n", '(from "a")\n(arg)\n(env)'),
        (
            "FROM a\nRUN --mount='type=cache,target=/x y' ls\n",
            '(from "a")\n(run ["--mount=type=cache,target=/x y"] "ls")',
        ),
    ],
    ids=["cont", "backtick", "comment-in-cont", "lowercase", "json-trailing", "nan-is-shell",
         "unknown", "onbuild-flags", "bom", "crlf", "empty-args", "quoted-flag"],
)
def test_parse_text_dumps_like_buildkit(text: str, dump: str) -> None:
    assert parse_dockerfile(text).dump() == dump


def test_parse_line_ranges_cover_continuations_and_heredocs() -> None:
    df = parse_dockerfile("FROM a\n\nRUN x \\\n  y\nCOPY <<A <<B /d\n1\nA\n2\nB\nUSER u\n")
    assert [(n.keyword, n.start_line, n.end_line) for n in df.nodes] == [
        ("from", 1, 1), ("run", 3, 4), ("copy", 5, 9), ("user", 10, 10),
    ]
    assert [(h.name, h.content) for h in df.nodes[2].heredocs] == [("A", "1\n"), ("B", "2\n")]


def test_parse_directives_are_recorded() -> None:
    df = parse_dockerfile("# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`\nFROM a\n")
    assert dict(df.directives) == {"syntax": "docker/dockerfile:1", "check": "skip=all", "escape": "`"}
    assert df.escape == "`"


def test_parse_directive_after_instruction_is_a_comment() -> None:
    df = parse_dockerfile("FROM a\n# escape=`\nRUN x \\\n y\n")
    assert df.escape == "\\"
    assert df.nodes[1].args == ("x  y",)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("# escape=x\nFROM a\n", 1, "invalid escape token"),
        ("# escape=`\n# escape=\\\nFROM a\n", 2, "only one escape parser directive"),
        ("FROM a\nRUN <<EOF\necho\n", 2, "unterminated heredoc EOF"),
        ("FROM a\nLABEL a=b c\n", 2, "can't find = in"),
        ("FROM a\nCMD [1]\n", 2, "arrays must be comprised of strings"),
        ("", 1, "file with no instructions"),
    ],
    ids=["bad-escape", "dup-directive", "unterminated-heredoc", "label-no-eq", "json-number", "empty"],
)
def test_parse_invalid_text_raises_with_location(text: str, line: int, fragment: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(text, file="Dockerfile")
    assert info.value.line == line
    assert info.value.column == 1
    assert fragment in info.value.message


def test_parse_heredoc_in_json_form_is_not_a_heredoc() -> None:
    df = parse_dockerfile('FROM a\nRUN ["<<EOF"]\nEOF\n')
    assert df.nodes[1].heredocs == ()
    assert df.nodes[2].keyword == "eof"


@pytest.mark.parametrize("word", ["<<EOF", "<<'EOF'", '<<"EOF"', "<<-EOF", "<<-'EOF'", '<<EO"F"', "<< EOF"])
def test_parse_heredoc_word_valid_names_eof(word: str) -> None:
    doc = parse_heredoc_word(word)
    assert doc is not None
    assert doc.name == "EOF"


@pytest.mark.parametrize("word", ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"])
def test_parse_heredoc_word_non_heredoc_is_none(word: str) -> None:
    assert parse_heredoc_word(word) is None


@pytest.mark.parametrize("word", ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"'])
def test_parse_heredoc_word_unbalanced_quote_raises(word: str) -> None:
    with pytest.raises(DockerfileError, match="unexpected end"):
        parse_heredoc_word(word)


def test_heredoc_text_chomps_leading_tabs_only_with_dash() -> None:
    df = parse_dockerfile("FROM a\nRUN <<-X\n\thello\n\tX\nRUN <<Y\n\thello\nY\n")
    assert df.nodes[1].heredocs[0].text() == "hello\n"
    assert df.nodes[2].heredocs[0].text() == "\thello\n"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("plain", '"plain"'), ('a"b\\c', '"a\\"b\\\\c"'), ("\x00\t", '"\\x00\\t"'), ("♥", '"♥"'),
     ("\u200b", '"\\u200b"'), ("\U0001f600", '"\U0001f600"'), ("\x7f", '"\\x7f"')],
    ids=["plain", "escapes", "control", "unicode", "zero-width", "emoji", "del"],
)
def test_go_quote_matches_strconv(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_parse_many_continuation_lines_joined_in_order() -> None:
    lines = 50_000
    df = parse_dockerfile("FROM busybox\nRUN echo \\\n" + "".join(f" w{i} \\\n" for i in range(lines)) + " end\n")
    run = df.nodes[1]
    assert (run.start_line, run.end_line) == (2, lines + 3)
    assert run.args[0].split() == ["echo", *(f"w{i}" for i in range(lines)), "end"]


def test_read_dockerfile_over_buildkits_size_limit_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "Dockerfile"
    with big.open("wb") as handle:  # sparse: nothing of it is written, or read
        handle.truncate(MAX_FILE_SIZE + 1)
    with pytest.raises(DockerfileError) as info:
        read_dockerfile(big)
    assert f"Dockerfile exceeds maximum allowed size of {MAX_FILE_SIZE} bytes" in info.value.message
    assert info.value.hint and info.value.exit_code == 2


def test_read_dockerfile_at_the_size_limit_parsed(tmp_path: Path) -> None:
    text = "FROM busybox\n# " + "x" * 60_000 + "\n"
    path = tmp_path / "Dockerfile"
    path.write_text(text * (MAX_FILE_SIZE // len(text)))
    assert read_dockerfile(path).nodes[0].keyword == "from"
