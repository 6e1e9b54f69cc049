"""Typed instructions from parser nodes: fields, flags and argument checks."""

from __future__ import annotations

import pytest

from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.flags import FlagError, parse_duration
from anybuild.dockerfile.instructions import (
    Add,
    Arg,
    ArgDef,
    Cmd,
    CommandLine,
    Copy,
    Env,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Keyword,
    MountType,
    Onbuild,
    Run,
    User,
)
from anybuild.dockerfile.parser import parse_dockerfile
from anybuild.errors import DockerfileError


def _one(text: str) -> Instruction:
    return parse_instructions(parse_dockerfile("FROM a\n" + text))[1]


def test_from_with_platform_and_stage_name() -> None:
    (instr,) = parse_instructions(parse_dockerfile("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\n"))
    assert instr == From(image="golang:1.22", name="build", platform="$BUILDPLATFORM",
                         start_line=1, end_line=1, original="FROM --platform=$BUILDPLATFORM golang:1.22 AS Build")
    assert instr.keyword is Keyword.FROM


def test_run_mounts_network_security_and_heredoc() -> None:
    instr = _one(
        "RUN --mount=type=cache,target=/root/.npm,sharing=locked --mount=type=secret,id=npm "
        "--network=none --security=sandbox <<EOF\nnpm ci\nEOF\n"
    )
    assert isinstance(instr, Run)
    assert [(m.type, m.target, m.sharing, m.readonly) for m in instr.mounts] == [
        (MountType.CACHE, "/root/.npm", "locked", False), (MountType.SECRET, None, None, True),
    ]
    assert instr.mounts[1].id == "npm"
    assert (instr.network, instr.security) == ("none", "sandbox")
    assert instr.command == CommandLine(args=("<<EOF",), exec_form=False)
    assert instr.heredocs[0].content == "npm ci\n"
    assert (instr.start_line, instr.end_line) == (2, 4)


def test_cmd_exec_and_shell_forms() -> None:
    exec_form = _one('CMD ["a", "b c"]\n')
    shell_form = _one("CMD a b\n")
    assert isinstance(exec_form, Cmd)
    assert isinstance(shell_form, Cmd)
    assert exec_form.command == CommandLine(args=("a", "b c"), exec_form=True)
    assert shell_form.command == CommandLine(args=("a b",), exec_form=False)


def test_copy_flags_and_heredoc_sources() -> None:
    instr = _one(
        "COPY --from=build --chown=1000:1000 --chmod=0644 --link --parents --exclude=*.md --exclude=.git "
        "<<a.txt b /dst/\nhello\na.txt\n"
    )
    assert isinstance(instr, Copy)
    assert (instr.from_, instr.chown, instr.chmod, instr.link, instr.parents) == (
        "build", "1000:1000", "0644", True, True)
    assert instr.excludes == ("*.md", ".git")
    assert [s.path for s in instr.sources] == ["a.txt", "b"]
    heredoc = instr.sources[0].heredoc
    assert heredoc is not None
    assert heredoc.content == "hello\n"
    assert instr.sources[1].heredoc is None
    assert instr.dest == "/dst/"


def test_add_checksum_keep_git_dir() -> None:
    instr = _one("ADD --checksum=sha256:abc --keep-git-dir=false --link=false https://x/y.tgz /y\n")
    assert isinstance(instr, Add)
    assert (instr.checksum, instr.keep_git_dir, instr.link) == ("sha256:abc", False, False)


def test_env_label_arg_pairs() -> None:
    env = _one('ENV A=1 B="two words"\n')
    legacy = _one("ENV C three words\n")
    arg = _one("ARG X Y=1 Z=\n")
    assert isinstance(env, Env)
    assert isinstance(legacy, Env)
    assert isinstance(arg, Arg)
    assert env.pairs == (KeyValue(key="A", value="1"), KeyValue(key="B", value='"two words"'))
    assert legacy.pairs == (KeyValue(key="C", value="three words"),)
    assert arg.args == (ArgDef(name="X"), ArgDef(name="Y", default="1"), ArgDef(name="Z", default=""))


def test_healthcheck_options_none_and_shell() -> None:
    hc = _one("HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s --retries=3 CMD curl -f x\n")
    none = _one("HEALTHCHECK NONE\n")
    assert isinstance(hc, Healthcheck)
    assert isinstance(none, Healthcheck)
    assert hc.test == ("CMD-SHELL", "curl -f x")
    assert (hc.interval, hc.timeout, hc.start_period, hc.retries) == (90 * 10**9, 5 * 10**8, 2 * 10**9, 3)
    assert none.none


def test_onbuild_keeps_expression_and_trigger() -> None:
    instr = _one("ONBUILD RUN echo hi\n")
    assert isinstance(instr, Onbuild)
    assert instr.expression == "RUN echo hi"
    assert isinstance(instr.trigger, Run)


def test_user_keyword_enum() -> None:
    instr = _one("USER app:app\n")
    assert isinstance(instr, User)
    assert instr.keyword == "USER"


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("FORM busybox\n", 1, "unknown instruction: FORM"),
        ("COPY --form=x a b\n", 6, "unknown flag: form"),
        ("COPY a\n", 1, "requires at least two arguments"),
        ("FROM a b\n", 1, "one or three arguments"),
        ("FROM a AS 1x\n", 11, "invalid name for build stage"),
        ("SHELL /bin/sh -c\n", 1, "JSON form"),
        ("HEALTHCHECK --interval=1x CMD true\n", 13, "invalid duration"),
        ("HEALTHCHECK PING\n", 13, "Unknown type"),
        ("HEALTHCHECK CMD\n", 1, "Missing command"),
        ("HEALTHCHECK NONE x\n", 1, "takes no arguments"),
        ("RUN --mount=type=nfs,target=/x true\n", 5, "unsupported mount type"),
        ("RUN --mount=type=cache true\n", 5, "mount target is required"),
        ("RUN --network=bridge true\n", 5, "unsupported network mode"),
        ("COPY --link=maybe a b\n", 6, "expecting boolean value"),
        ("COPY --from=a --from=b x y\n", 15, "Duplicate flag"),
        ("ONBUILD FROM x\n", 9, "isn't allowed as an ONBUILD trigger"),
        ("ARG =x\n", 5, "ARG names can not be blank"),
        ("ENV\n", 1, "ENV requires at least one argument"),
        ("USER\n", 1, "USER requires exactly one argument"),
        ("WORKDIR --x=1 /a\n", 9, "unknown flag: x"),
    ],
    ids=["unknown", "bad-flag", "copy-one-arg", "from-two", "stage-name", "shell-json", "duration",
         "hc-type", "hc-cmd", "hc-none", "mount-type", "mount-target", "network", "bool", "dup-flag",
         "onbuild-from", "arg-blank", "env-empty", "user-empty", "workdir-flag"],
)
def test_convert_invalid_instruction_raises_with_column(text: str, column: int, fragment: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_instructions(parse_dockerfile(text if text.startswith("FROM") else "FROM a\n" + text, file="Df"))
    err = info.value
    assert fragment in err.message
    assert err.file == "Df"
    assert err.column == column
    assert err.hint
    assert err.text is not None


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("0", 0), ("1s", 10**9), ("1.5h", 5400 * 10**9), ("1m30s", 90 * 10**9), ("300ms", 3 * 10**8),
     ("2us", 2000), ("-1s", -(10**9)), (".5s", 5 * 10**8)],
)
def test_parse_duration_go_syntax(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "1", "s", "1x", ".s", "1s2"])
def test_parse_duration_invalid_raises(text: str) -> None:
    with pytest.raises(FlagError):
        parse_duration(text)
