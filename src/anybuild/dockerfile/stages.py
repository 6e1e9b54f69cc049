"""The stage graph: stages by name and index, what each depends on, what a target needs.

:func:`build_stage_graph` splits typed instructions into the ARGs before the
first FROM and the stages; it substitutes FROM (with the global ARGs) and
``COPY --from`` / ``RUN --mount from=`` (with the stage's ARG/ENV scope) to find
which references are stages (by name or index) and which are images.
:meth:`StageGraph.needed` lists only the stages a ``--target`` needs, dependencies
first. :func:`expand_stage` walks a stage's instructions with their scopes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from anybuild.dockerfile.expand import Scope, expand_instruction, expand_word, meta_scope
from anybuild.dockerfile.flags import mount_fields
from anybuild.dockerfile.instructions import Arg, ArgDef, Copy, Env, From, Instruction, MountType, Onbuild, Run
from anybuild.errors import DockerfileError

__all__ = ["Dependency", "ResolvedInstruction", "Stage", "StageGraph", "build_stage_graph", "expand_stage"]

SCRATCH = "scratch"


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """One reference out of a stage: to another stage (``stage`` set) or an image."""

    ref: str  # as substituted
    stage: int | None  # index of the referenced stage, None for an image
    line: int
    via: str  # "from", "copy", "mount"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    index: int
    name: str | None
    base: From  # as written
    image: str  # FROM's image, substituted with the global ARGs
    platform: str | None  # FROM --platform, substituted
    instructions: tuple[Instruction, ...]  # after the FROM
    dependencies: tuple[Dependency, ...] = ()

    @property
    def parent(self) -> int | None:
        """The stage this one is built FROM, if it is a stage."""
        for dep in self.dependencies:
            if dep.via == "from":
                return dep.stage
        return None

    @property
    def is_scratch(self) -> bool:
        return self.parent is None and self.image.lower() == SCRATCH

    @property
    def start_line(self) -> int:
        return self.base.start_line

    @property
    def end_line(self) -> int:
        return self.instructions[-1].end_line if self.instructions else self.base.end_line

    @property
    def label(self) -> str:
        return self.name if self.name is not None else str(self.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class StageGraph:
    meta_args: tuple[Arg, ...]
    meta: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    stages: tuple[Stage, ...] = ()
    file: str | None = None

    def find(self, ref: str) -> Stage | None:
        """The stage named *ref* (any case), or with index *ref*."""
        lowered = ref.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None

    def target(self, name: str | None) -> Stage:
        if name is None:
            return self.stages[-1]
        stage = next((s for s in self.stages if s.name == name.lower()), None)
        if stage is None:
            names = ", ".join(s.name for s in self.stages if s.name) or "none has a name"
            raise DockerfileError(
                f"target stage {name!r} could not be found", file=self.file,
                hint=f"pick one of the stages: {names}",
            )
        return stage

    def needed(self, target: str | None = None) -> tuple[Stage, ...]:
        """The stages *target* needs (itself included), dependencies first."""
        order: list[int] = []
        state: dict[int, int] = {}  # 1 visiting, 2 done

        def visit(index: int, chain: tuple[int, ...]) -> None:
            if state.get(index) == 2:
                return
            if state.get(index) == 1:
                names = " -> ".join(self.stages[i].label for i in (*chain, index))
                stage = self.stages[index]
                raise DockerfileError(
                    f"circular dependency detected on stage: {stage.label} ({names})", file=self.file,
                    line=stage.start_line, column=1, text=stage.base.original,
                    hint="a stage cannot depend on itself, directly or not",
                )
            state[index] = 1
            for dep in sorted({d.stage for d in self.stages[index].dependencies if d.stage is not None}):
                visit(dep, (*chain, index))
            state[index] = 2
            order.append(index)

        visit(self.target(target).index, ())
        for index in order:  # BuildKit builds stages in the file's order, so COPY --from looks back only
            stage = self.stages[index]
            for dep in stage.dependencies:
                if dep.via == "copy" and dep.stage is not None and dep.stage > index:
                    raise DockerfileError(
                        f"cannot copy from stage {dep.ref!r}, it needs to be defined before current stage "
                        f"{stage.name or f'stage-{index}'!r}", file=self.file, line=dep.line, column=1,
                        hint=f"move the stage {dep.ref!r} above the one that copies from it",
                    )
        return tuple(self.stages[i] for i in order)

    def images(self, target: str | None = None) -> tuple[str, ...]:
        """External images the target needs (bases, COPY --from and mount sources)."""
        seen: dict[str, None] = {}
        for stage in self.needed(target):
            for dep in stage.dependencies:
                if dep.stage is None and dep.ref.lower() != SCRATCH:
                    seen.setdefault(dep.ref)
        return tuple(seen)


def build_stage_graph(
    instructions: Sequence[Instruction], *, build_args: Mapping[str, str] | None = None,
    predefined: Mapping[str, str] | None = None, escape: str = "\\", file: str | None = None,
) -> StageGraph:
    """Split *instructions* into global ARGs and stages, and resolve their references."""
    build_args = build_args or {}
    metas: list[Arg] = []
    groups: list[tuple[From, list[Instruction]]] = []
    for instr in instructions:
        if isinstance(instr, From):
            groups.append((instr, []))
        elif groups:
            groups[-1][1].append(instr)
        elif isinstance(instr, Arg):
            metas.append(instr)
        else:
            raise DockerfileError(
                f"no build stage in current context: {instr.keyword} before the first FROM",
                file=file, line=instr.start_line, column=1, text=instr.original,
                hint="only ARG may come before the first FROM",
            )
    if not groups:
        raise DockerfileError("the Dockerfile has no FROM instruction", file=file, line=1, column=1,
                              hint="start the build with FROM IMAGE")
    meta = meta_scope(metas, build_args, predefined=predefined, escape=escape, file=file)
    names: dict[str, int] = {}
    for index, (frm, _) in enumerate(groups):
        if frm.name is not None:
            if frm.name in names:
                raise DockerfileError(
                    f"duplicate stage name {frm.name!r}", file=file, line=frm.start_line, column=1,
                    text=frm.original, hint="give every stage its own name",
                )
            names[frm.name] = index
    count = len(groups)

    def lookup(ref: str, current: int) -> int | None:
        if ref.lower() in names:
            return names[ref.lower()]
        if ref.isdigit() and int(ref) < count and int(ref) != current:
            return int(ref)
        return None

    stages: list[Stage] = []
    for index, (frm, body) in enumerate(groups):
        image = expand_word(frm.image, meta, escape=escape, instr=frm, file=file)
        platform = None if frm.platform is None else expand_word(
            frm.platform, meta, escape=escape, instr=frm, file=file)
        parent = names.get(image.lower())
        deps = [Dependency(ref=image, stage=parent, line=frm.start_line, via="from")]
        if parent == index:
            raise DockerfileError(
                f"circular dependency detected on stage: {frm.name}", file=file, line=frm.start_line,
                column=1, text=frm.original, hint="a stage cannot be built FROM itself",
            )
        stage = Stage(index=index, name=frm.name, base=frm, image=image, platform=platform,
                      instructions=tuple(body))
        for resolved in expand_stage(stage, meta=meta, build_args=build_args, escape=escape, file=file):
            instr = resolved.instruction
            if isinstance(instr, Copy) and instr.from_ is not None:
                deps.append(Dependency(ref=instr.from_, stage=lookup(instr.from_, index),
                                       line=instr.start_line, via="copy"))
            elif isinstance(instr, Run):
                for mount in instr.mounts:
                    if mount.deferred and mount.target is None:  # waiting: its from= is read as written
                        fields = {k.lower(): v for k, _, v in (f.partition("=") for f in mount_fields(mount.raw))}
                        if fields.get("from") and fields.get("type", "bind").lower() in ("bind", "cache"):
                            deps.append(Dependency(ref=fields["from"], stage=lookup(fields["from"], index),
                                                   line=instr.start_line, via="mount"))
                        continue
                    if mount.from_ and mount.type in (MountType.BIND, MountType.CACHE):
                        deps.append(Dependency(ref=mount.from_, stage=lookup(mount.from_, index),
                                               line=instr.start_line, via="mount"))
        if parent is not None and parent != index:
            # the parent stage's ONBUILD triggers run here: their --from stages are needed too (BuildKit's
            # initOnBuildTriggers adds them before it picks the stages to build)
            for instr in groups[parent][1]:
                trigger = instr.trigger if isinstance(instr, Onbuild) else None
                refs = [trigger.from_] if isinstance(trigger, Copy) and trigger.from_ is not None else []
                if isinstance(trigger, Run):
                    refs += [m.from_ for m in trigger.mounts if m.from_ and not m.deferred
                             and m.type in (MountType.BIND, MountType.CACHE)]
                deps += [Dependency(ref=ref, stage=lookup(ref, index), line=frm.start_line,
                                    via="copy" if isinstance(trigger, Copy) else "mount") for ref in refs]
        stages.append(Stage(index=index, name=frm.name, base=frm, image=image, platform=platform,
                            instructions=tuple(body), dependencies=tuple(deps)))
    return StageGraph(meta_args=tuple(metas), meta=MappingProxyType(meta), stages=tuple(stages), file=file)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedInstruction:
    """An instruction with its variables substituted, the scope it ran in and the one after."""

    instruction: Instruction
    scope: Scope
    after: Scope


def expand_stage(
    stage: Stage, *, meta: Mapping[str, str], build_args: Mapping[str, str],
    base_env: Mapping[str, str] | None = None, escape: str = "\\", file: str | None = None,
) -> Iterator[ResolvedInstruction]:
    """Walk *stage*'s instructions, substituting each with the scope before it.

    *base_env* is the base image's environment (or the parent stage's ENV).
    """
    scope = Scope(env=MappingProxyType(dict(base_env or {})))
    for instr in stage.instructions:
        lookup = scope.lookup()
        if isinstance(instr, Arg):
            new_scope = scope.declare(instr.args, meta=meta, build_args=build_args, escape=escape,
                                      instr=instr, file=file)
            # a default is substituted only when no --build-arg overrides it (BuildKit: ARG BAR=${FOO:?}
            # builds with --build-arg BAR=1, moby/buildkit testArgDefaultExpansion): the values it declared
            declared = tuple(ArgDef(name=d.name, default=None if d.default is None else new_scope.args.get(d.name))
                             for d in instr.args)
            yield ResolvedInstruction(instruction=dataclasses.replace(instr, args=declared), scope=scope,
                                      after=new_scope)
            scope = new_scope
            continue
        # a RUN --mount may use the ENV of the stage this one is built FROM, not known here: it waits
        expanded = expand_instruction(instr, lookup, escape=escape, file=file, strict_mounts=False)
        new_scope = scope.with_env(expanded.pairs) if isinstance(expanded, Env) else scope
        yield ResolvedInstruction(instruction=expanded, scope=scope, after=new_scope)
        scope = new_scope
