"""Fuzzing: arbitrary text makes the front end raise DockerfileError or nothing at all."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.expand import expand_instruction, expand_word
from anybuild.dockerfile.parser import parse_dockerfile
from anybuild.dockerfile.stages import build_stage_graph, expand_stage
from anybuild.errors import DockerfileError

# Text biased towards Dockerfile syntax: keywords, flags, quotes, escapes, heredocs, substitutions.
_PIECES = st.sampled_from([
    "FROM ", "RUN ", "COPY ", "ADD ", "ENV ", "ARG ", "LABEL ", "CMD ", "ENTRYPOINT ", "SHELL ", "ONBUILD ",
    "HEALTHCHECK ", "EXPOSE ", "VOLUME ", "USER ", "WORKDIR ", "STOPSIGNAL ", "MAINTAINER ", " AS ", "--from=",
    "--mount=", "type=cache,target=/x", "--chown=", "--link", "--platform=", "<<EOF", "<<-EOF", "EOF", "<<'E'",
    "E", "\\", "`", "\n", "\r\n", " ", "\t", "#", "# escape=`\n", "# syntax=x\n", "'", '"', "[", "]", ",", "=",
    "$", "${", "}", ":-", ":+", "#", "%", "/", "?", "*", "a", "b", "1", "NONE", "CMD", "\x00", "é", "\ufeff",
])
_TEXT = st.one_of(st.text(max_size=200), st.lists(_PIECES, max_size=40).map("".join))
_ENV = {"A": "a", "B": "", "P": "/usr/lib/x.tar.gz"}


def _front_end(text: str) -> None:
    df = parse_dockerfile(text)
    df.dump()
    instrs = parse_instructions(df)
    for instr in instrs:
        expand_instruction(instr, _ENV, escape=df.escape)
    graph = build_stage_graph(instrs, escape=df.escape)
    for stage in graph.needed():
        for _ in expand_stage(stage, meta=graph.meta, build_args={}, escape=df.escape):
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_fuzz_front_end_raises_only_dockerfile_error(text: str) -> None:
    try:
        _front_end(text)
    except DockerfileError as exc:
        assert exc.message
        assert exc.line is None or exc.line >= 1


_WORD = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(["$", "{", "}", "A", "B", "P", ":", "-", "+", "?", "#", "%", "/", "*", "\\",
                              "'", '"', " ", "x", "[", "]", "`"]), max_size=30).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(_WORD, st.sampled_from(["\\", "`"]))
def test_fuzz_expand_word_raises_only_dockerfile_error(word: str, escape: str) -> None:
    try:
        result = expand_word(word, _ENV, escape=escape)
    except DockerfileError as exc:
        assert exc.hint
    else:
        assert isinstance(result, str)
