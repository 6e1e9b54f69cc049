"""Render everything the front end derives from one Dockerfile, for golden files."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum

from anybuild.dockerfile import (
    Heredoc,
    Instruction,
    build_stage_graph,
    expand_stage,
    parse_dockerfile,
    parse_instructions,
    platform_args,
)
from anybuild.errors import DockerfileError

BUILD_PLATFORM = "linux/amd64"


def _value(value: object) -> str:
    if isinstance(value, Heredoc):
        flags = "".join(f for f, on in (("-", value.chomp), ("expand", value.expand)) if on)
        return f"<<{value.name}[fd={value.fd} {flags}]{value.content!r}"
    if isinstance(value, Enum):
        return str(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value)


def _fields(obj: object) -> str:
    parts: list[str] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        if f.name in ("start_line", "end_line", "original", "raw"):
            continue
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        parts.append(f"{f.name}={_value(value)}")
    return f"{type(obj).__name__}(" + " ".join(parts) + ")"


def _instr(instr: Instruction) -> str:
    return f"{instr.start_line}-{instr.end_line} {_fields(instr)}"


def render(text: str, *, build_args: Mapping[str, str], target: str | None,
           target_platform: str | None) -> str:
    """The parse dump, typed instructions, stage graph and expanded target stages."""
    out: list[str] = []
    try:
        df = parse_dockerfile(text, file="Dockerfile")
        out += ["# dump", df.dump()]
        if df.warnings:
            out += ["# warnings", *df.warnings]
        instrs = parse_instructions(df)
        out += ["# instructions", *(_instr(i) for i in instrs)]
        graph = build_stage_graph(
            instrs, build_args=build_args, escape=df.escape, file=df.file,
            predefined=platform_args(BUILD_PLATFORM, target_platform),
        )
        out += ["# meta", *(f"{k}={v}" for k, v in sorted(graph.meta.items()) if not k.endswith(
            ("PLATFORM", "OS", "ARCH", "VARIANT")) or k in {a.name for m in graph.meta_args for a in m.args})]
        out.append("# stages")
        for stage in graph.stages:
            deps = ", ".join(f"{d.via}:{d.ref}->{'image' if d.stage is None else d.stage}"
                             for d in stage.dependencies)
            out.append(f"{stage.index} name={stage.name} image={stage.image} platform={stage.platform} "
                       f"lines={stage.start_line}-{stage.end_line} deps=[{deps}]")
        needed = graph.needed(target)
        out.append(f"# needed for target {target or '(last)'}: " + " ".join(s.label for s in needed))
        out.append(f"# images: {' '.join(graph.images(target))}")
        for stage in needed:
            out.append(f"# expanded stage {stage.label}")
            steps = list(expand_stage(stage, meta=graph.meta, build_args=build_args, escape=df.escape,
                                      file=df.file))
            out += [_instr(step.instruction) for step in steps]
            if steps:
                scope = steps[-1].after
                out.append(f"scope args={dict(scope.args)} env={dict(scope.env)}")
    except DockerfileError as exc:
        out += [f"error: {exc}", f"text: {exc.text!r}", f"hint: {exc.hint}"]
    return "\n".join(out) + "\n"

