"""The stage graph: names, indexes, dependencies, targets and cycles."""

from __future__ import annotations

import pytest

from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.expand import platform_args
from anybuild.dockerfile.instructions import Env, Workdir
from anybuild.dockerfile.parser import parse_dockerfile
from anybuild.dockerfile.stages import StageGraph, build_stage_graph, expand_stage
from anybuild.errors import DockerfileError

MULTI = """\
ARG NODE=20
ARG BASE=node:${NODE}-bookworm-slim
FROM $BASE AS deps
RUN npm ci
FROM busybox:1.36 AS tools
FROM deps AS build
ARG OUT=dist
COPY --from=tools /bin/tool /usr/bin/
RUN --mount=type=bind,from=assets,target=/assets npm run build -- --out $OUT
FROM alpine AS assets
FROM scratch AS unused
COPY --from=ghcr.io/x/y:1 / /
FROM nginx:1.27 AS final
COPY --from=build /app/dist /usr/share/nginx/html
COPY --from=1 /x /y
"""


def _graph(text: str, **kwargs: object) -> StageGraph:
    df = parse_dockerfile(text)
    return build_stage_graph(parse_instructions(df), **kwargs)  # type: ignore[arg-type]


def test_stage_graph_names_images_and_dependencies() -> None:
    graph = _graph(MULTI)
    assert [s.name for s in graph.stages] == ["deps", "tools", "build", "assets", "unused", "final"]
    assert graph.stages[0].image == "node:20-bookworm-slim"
    assert graph.stages[2].parent == 0
    assert [(d.ref, d.stage, d.via) for d in graph.stages[2].dependencies] == [
        ("deps", 0, "from"), ("tools", 1, "copy"), ("assets", 3, "mount")]
    assert graph.find("BUILD") is graph.stages[2]
    assert graph.find("5") is graph.stages[5]
    assert graph.stages[4].is_scratch


def test_stage_graph_needed_stages_in_dependency_order() -> None:
    graph = _graph(MULTI)
    assert [s.label for s in graph.needed()] == ["tools", "deps", "assets", "build", "final"]
    assert [s.label for s in graph.needed("build")] == ["deps", "tools", "assets", "build"]
    assert [s.label for s in graph.needed("unused")] == ["unused"]
    assert graph.images("unused") == ("ghcr.io/x/y:1",)
    assert graph.images() == ("busybox:1.36", "node:20-bookworm-slim", "alpine", "nginx:1.27")


def test_stage_graph_build_args_change_base() -> None:
    graph = _graph(MULTI, build_args={"NODE": "22"})
    assert graph.stages[0].image == "node:22-bookworm-slim"


def test_stage_graph_platform_args_in_from() -> None:
    graph = _graph("FROM --platform=$BUILDPLATFORM golang AS b\nFROM alpine-$TARGETARCH\n",
                   predefined=platform_args("linux/amd64", "linux/arm64"))
    assert graph.stages[0].platform == "linux/amd64"
    assert graph.stages[1].image == "alpine-arm64"


def test_stage_graph_copy_from_refuses_stage_args() -> None:
    # BuildKit refuses variables in --from: the stage graph must not depend on a stage's own scope.
    with pytest.raises(DockerfileError, match="variable expansion is not supported for --from"):
        _graph("FROM a AS one\nFROM b\nARG SRC=one\nCOPY --from=$SRC /x /y\n")


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("RUN x\nFROM a\n", "no build stage in current context", 1),
        ("ARG X\n", "no FROM instruction", 1),
        ("FROM a AS x\nFROM b AS X\n", "duplicate stage name 'x'", 2),
        ("FROM a AS x\nCOPY --from=y / /\nFROM b AS y\nCOPY --from=x / /\n", "circular dependency", None),
        ("FROM x AS x\n", "circular dependency", 1),
        ("FROM a AS x\nCOPY --from=y / /\nFROM b AS y\nFROM x\n", "cannot copy from stage 'y', it needs to be "
         "defined before current stage 'x'", 2),
    ],
    ids=["run-first", "no-from", "dup-name", "cycle", "self", "copy-from-later"],
)
def test_stage_graph_invalid_raises(text: str, fragment: str, line: int | None) -> None:
    with pytest.raises(DockerfileError) as info:
        _graph(text).needed()
    assert fragment in info.value.message
    assert info.value.hint
    if line is not None:
        assert info.value.line == line


def test_stage_graph_unknown_target_names_choices() -> None:
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found") as info:
        _graph(MULTI).needed("nope")
    assert "deps" in info.value.hint


def test_expand_stage_tracks_arg_and_env_scope() -> None:
    graph = _graph("ARG V=1\nFROM a\nARG V\nENV W=$V-x\nARG V=2\nWORKDIR /$W/$V\n")
    steps = list(expand_stage(graph.stages[0], meta=graph.meta, build_args={}))
    env = steps[1].instruction
    workdir = steps[3].instruction
    assert isinstance(env, Env) and env.pairs[0].value == "1-x"
    assert isinstance(workdir, Workdir) and workdir.path == "/1-x/2"
    assert steps[3].scope.env == {"W": "1-x"}


def test_stage_graph_onbuild_copy_from_needs_its_stage() -> None:
    # The parent stage's ONBUILD triggers run in the child: the stages they copy from are built first
    # (BuildKit's initOnBuildTriggers, moby/buildkit#5357).
    graph = _graph("FROM a AS src\nFROM b AS base\nONBUILD COPY --from=src /x /y\nFROM base AS mid\nFROM scratch\n"
                   "COPY --from=mid /y /\n")
    assert [(d.ref, d.stage, d.via) for d in graph.stages[2].dependencies] == [("base", 1, "from"), ("src", 0, "copy")]
    assert [s.label for s in graph.needed()] == ["src", "base", "mid", "3"]
