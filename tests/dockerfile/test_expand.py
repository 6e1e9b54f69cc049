"""Variable substitution rules, ARG/ENV scopes and per-instruction expansion."""

from __future__ import annotations

import pytest

from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.expand import (
    Scope,
    expand_instruction,
    expand_word,
    expand_words,
    meta_scope,
    platform_args,
)
from anybuild.dockerfile.instructions import Arg, ArgDef, Copy, Env, Expose, From, KeyValue, Run, Workdir
from anybuild.dockerfile.lex import LexError, ShellLex
from anybuild.dockerfile.parser import parse_dockerfile
from anybuild.errors import DockerfileError

ENV = {"PWD": "/home", "SHELL": "bash", "EMPTY": "", "PATHX": "/usr/local/bin/app.tar.gz", "KOREAN": "한국어"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("hello", "hello"),
        ("$PWD", "/home"),
        ("${PWD}", "/home"),
        ("x${PWD}y", "x/homey"),
        ("$PWDx", ""),
        ("$KOREAN", "한국어"),
        ("$", "$"),
        ("$/", "$/"),
        ("\\$PWD", "$PWD"),
        ("\\${PWD}", "${PWD}"),
        ("'$PWD'", "$PWD"),
        ('"$PWD"', "/home"),
        ('"\\$PWD"', "$PWD"),
        ('"a\\b"', "a\\b"),
        ('"a\\"b"', 'a"b'),
        ("a\\ b", "a b"),
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${UNSET-def}", "def"),
        ("${PWD:-def}", "/home"),
        ("${PWD:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-$PWD/x}", "/home/x"),
        ("${UNSET:-'a b'}", "a b"),
        ("${PATHX#*/}", "usr/local/bin/app.tar.gz"),
        ("${PATHX##*/}", "app.tar.gz"),
        ("${PATHX%.*}", "/usr/local/bin/app.tar"),
        ("${PATHX%%.*}", "/usr/local/bin/app"),
        ("${PATHX%.zip}", "/usr/local/bin/app.tar.gz"),
        ("${PATHX#/usr}", "/local/bin/app.tar.gz"),
        ("${SHELL#?}", "ash"),
        ("${PATHX/local/opt}", "/usr/opt/bin/app.tar.gz"),
        ("${PATHX//\\//_}", "_usr_local_bin_app.tar.gz"),
        ("${PATHX/*bin/X}", "X/app.tar.gz"),
        ("${SHELL//a/$$}", "bsh"),
        ("${SHELL/#/x}", "bash"),  # no bash-style anchors in BuildKit
        ("${PWD?}", "/home"),
        ("${EMPTY?}", ""),
        ("${1}", ""),
        ("$1x", "x"),
    ],
)
def test_expand_word_docker_rules(word: str, expected: str) -> None:
    assert expand_word(word, ENV) == expected


@pytest.mark.parametrize(
    ("word", "fragment"),
    [
        ("${", "missing '}'"),
        ("${PWD", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:x}", "bad substitution"),
        ("${PWD:x}", "unsupported modifier (:x)"),
        ("${PWD^^}", "unsupported modifier (^)"),
        ("${PWD:#x}", "unsupported modifier (:#)"),
        ("${UNSET?must be set}", "UNSET: must be set"),
        ("${UNSET:?}", "UNSET: is not allowed to be unset"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("'abc", "single-quote"),
        ('"abc', "double-quote"),
        ("${PWD/x", "missing '/'"),
        ("${PWD#\\x}", "invalid escape"),
    ],
)
def test_expand_word_invalid_raises_dockerfile_error(word: str, fragment: str) -> None:
    with pytest.raises(DockerfileError) as info:
        expand_word(word, ENV)
    assert fragment in info.value.message
    assert info.value.hint


def test_expand_word_backtick_escape() -> None:
    assert expand_word("`$PWD", ENV, escape="`") == "$PWD"
    assert expand_word("a\\b", ENV, escape="`") == "a\\b"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("a b  c", ["a", "b", "c"]),
        ('"a b" c', ["a b", "c"]),
        ("$SPACED", ["x", "y"]),
        ('"$SPACED"', ["x y"]),
        ("a\\ b", ["a b"]),
        ("''", []),
    ],
)
def test_expand_words_splits_after_substitution(word: str, expected: list[str]) -> None:
    assert expand_words(word, {"SPACED": "x y"}) == expected


def test_shell_lex_skip_unset_keeps_references_and_tracks_matches() -> None:
    lex = ShellLex(skip_unset=True)
    result = lex.process("$A ${B:-x} ${C#y} $D", {"D": "d"})
    assert result.result == "$A ${B:-x} ${C#y} d"
    assert result.unmatched == {"A", "B", "C"}
    assert result.matched == {"D"}


def test_shell_lex_raw_quotes_and_escapes_keep_text() -> None:
    lex = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset=True)
    assert lex.process_words("RUN 'a b' \"c\\\"d\" e\\ f <<EOF", {}) == [
        "RUN", "'a b'", '"c\\"d"', "e\\ f", "<<EOF"]


def test_shell_lex_error_mentions_source() -> None:
    with pytest.raises(LexError, match='failed to process "\\$\\{x"'):
        ShellLex().process_word("${x", {})


def test_platform_args_split_os_arch_variant() -> None:
    args = platform_args("linux/amd64", "linux/arm/v7")
    assert args["BUILDPLATFORM"] == "linux/amd64"
    assert (args["TARGETOS"], args["TARGETARCH"], args["TARGETVARIANT"]) == ("linux", "arm", "v7")
    assert args["BUILDVARIANT"] == ""


def _instrs(text: str) -> list[object]:
    return list(parse_instructions(parse_dockerfile(text)))


def test_meta_scope_build_arg_overrides_default_and_chains() -> None:
    instrs = _instrs("ARG A=1\nARG B=${A}2\nARG C\nFROM x\n")
    metas = [i for i in instrs if isinstance(i, Arg)]
    assert meta_scope(metas, {}) == {"A": "1", "B": "12"}
    assert meta_scope(metas, {"A": "9", "C": "c"}) == {"A": "9", "B": "92", "C": "c"}


def test_meta_scope_predefined_platform_args_visible() -> None:
    metas = [i for i in _instrs("ARG IMG=busybox-$TARGETARCH\nFROM x\n") if isinstance(i, Arg)]
    assert meta_scope(metas, {}, predefined=platform_args("linux/arm64"))["IMG"] == "busybox-arm64"


def test_scope_declare_precedence_build_arg_default_meta() -> None:
    scope = Scope()
    meta = {"V": "meta"}
    assert scope.declare([ArgDef(name="V")], meta=meta, build_args={}).args == {"V": "meta"}
    assert scope.declare([ArgDef(name="V", default="d")], meta=meta, build_args={}).args == {"V": "d"}
    assert scope.declare([ArgDef(name="V", default="d")], meta=meta, build_args={"V": "b"}).args == {"V": "b"}
    unset = scope.declare([ArgDef(name="W")], meta=meta, build_args={})
    assert unset.args == {}
    assert unset.declared == {"W"}


def test_scope_env_overrides_arg_of_same_name() -> None:
    scope = Scope().declare([ArgDef(name="V", default="arg")], meta={}, build_args={"V": "cli"})
    scope = scope.with_env([KeyValue(key="V", value="env")])
    assert scope.lookup()["V"] == "env"
    assert expand_word("$V", scope.lookup()) == "env"


def test_scope_run_env_includes_undeclared_proxy_args_only() -> None:
    scope = Scope().declare([ArgDef(name="A", default="1")], meta={}, build_args={})
    env = scope.run_env({"HTTP_PROXY": "http://p", "SECRET": "x", "no_proxy": "n"})
    assert env == {"HTTP_PROXY": "http://p", "http_proxy": "http://p", "NO_PROXY": "n", "no_proxy": "n", "A": "1"}


@pytest.mark.parametrize("text", ["FROM a\nCOPY --from=$S /x /y\n", "FROM a\nCOPY --from=${S:-b} /x /y\n",
                                  "FROM a\nRUN --mount=from=$S,target=/m true\n"])
def test_stage_references_refuse_variables_as_buildkit_does(text: str) -> None:
    # BuildKit: "variable expansion is not supported for --from, define a new stage with FROM using ARG
    # from global scope as a workaround" (and "'from' doesn't support variable expansion" for mounts).
    [_, instr] = parse_instructions(parse_dockerfile(text))
    with pytest.raises(DockerfileError) as info:
        expand_instruction(instr, {"S": "b"})
    assert "variable expansion is not supported" in info.value.message
    assert "FROM" in (info.value.hint or "")


def test_expand_instruction_expands_only_buildkit_fields() -> None:
    env = {"V": "1.0", "D": "/app", "U": "node", "P": "8080", "S": "build"}
    df = parse_dockerfile(
        "FROM img:$V\nENV K=$V\nCOPY --from=stage --chown=$U a-$V $D/\nEXPOSE $P 9000\n"
        "WORKDIR $D\nRUN --mount=type=cache,target=$D/cache echo $V\n"
        "COPY <<F <<'G' /x\n$V\nF\n$V\nG\n"
    )
    out = [expand_instruction(i, env) for i in parse_instructions(df)]
    frm, envi, copy, expose, workdir, run, heredoc = out
    assert isinstance(frm, From) and frm.image == "img:1.0"
    assert isinstance(envi, Env) and envi.pairs == (KeyValue(key="K", value="1.0"),)
    assert isinstance(copy, Copy)
    assert (copy.from_, copy.chown, copy.sources[0].path, copy.dest) == ("stage", "node", "a-1.0", "/app/")
    assert isinstance(expose, Expose) and expose.ports == ("8080", "9000")
    assert isinstance(workdir, Workdir) and workdir.path == "/app"
    assert isinstance(run, Run)
    assert run.mounts[0].target == "/app/cache"
    assert run.command.args == ("echo $V",)
    assert isinstance(heredoc, Copy)
    contents = [s.heredoc.content for s in heredoc.sources if s.heredoc]
    assert contents == ["1.0\n", "$V\n"]


def test_expand_instruction_heredoc_keeps_quotes() -> None:
    df = parse_dockerfile("FROM a\nCOPY <<F /x\necho \"$V\" '$V'\nF\n")
    copy = expand_instruction(parse_instructions(df)[1], {"V": "v"})
    assert isinstance(copy, Copy)
    assert copy.sources[0].heredoc is not None
    assert copy.sources[0].heredoc.content == "echo \"v\" 'v'\n"


def test_expand_instruction_error_has_instruction_location() -> None:
    df = parse_dockerfile("FROM a\nWORKDIR ${X\n", file="Df")
    with pytest.raises(DockerfileError) as info:
        expand_instruction(parse_instructions(df)[1], {}, file="Df")
    assert (info.value.file, info.value.line, info.value.column) == ("Df", 2, 1)
    assert info.value.text == "WORKDIR ${X"


def test_scope_arg_set_after_env_wins_until_next_env() -> None:
    scope = Scope().with_env([KeyValue(key="V", value="env")])
    scope = scope.declare([ArgDef(name="V", default="arg")], meta={}, build_args={})
    assert scope.lookup()["V"] == "arg"
    assert scope.env == {"V": "env"}
    assert scope.with_env([KeyValue(key="V", value="env2")]).lookup()["V"] == "env2"


def test_scope_arg_declared_without_value_keeps_earlier_value() -> None:
    scope = Scope().declare([ArgDef(name="V", default="1")], meta={}, build_args={})
    assert scope.declare([ArgDef(name="V")], meta={}, build_args={}).lookup() == {"V": "1"}


def test_scope_declare_substitutes_default_once() -> None:
    scope = Scope().declare([ArgDef(name="A", default="x")], meta={}, build_args={})
    scope = scope.declare([ArgDef(name="B", default="'$A'")], meta={}, build_args={})
    assert scope.lookup()["B"] == "$A"


def test_volume_expanded_to_nothing_refused_as_buildkit_does() -> None:
    # moby TestBuildEmptyStringVolume: ENV foo="" then VOLUME $foo fails
    [_, instr] = parse_instructions(parse_dockerfile('FROM a\nVOLUME $foo\n'))
    with pytest.raises(DockerfileError, match="can not be an empty string"):
        expand_instruction(instr, {"foo": ""})


def test_mount_values_expanded_before_they_are_read_as_buildkit_does() -> None:
    # Dockerfile 1.3 (moby/buildkit#2089): testMountArg uses type=$MNT_TYPE; uid and mode may be variables too
    from anybuild.dockerfile.instructions import MountType

    [_, run] = parse_instructions(parse_dockerfile("FROM a\nRUN --mount=type=$T,target=$D/c,uid=$U,mode=$M true\n"))
    assert isinstance(run, Run) and run.mounts[0].deferred
    expanded = expand_instruction(run, {"T": "cache", "D": "/x", "U": "1001", "M": "0751"})
    assert isinstance(expanded, Run)
    [mount] = expanded.mounts
    assert (mount.type, mount.target, mount.uid, mount.mode, mount.readonly) == (MountType.CACHE, "/x/c", "1001",
                                                                                   "0751", False)
    with pytest.raises(DockerfileError, match="unsupported mount type 'tmp'"):
        expand_instruction(run, {"T": "tmp", "D": "/x", "U": "1", "M": "7"})
