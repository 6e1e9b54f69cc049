"""The Dockerfile front end: parse, type, substitute, stage, ignore, lint.

Pure code: nothing here reads anything but the files it is given.

::

    text ──parse_dockerfile──▶ Dockerfile (Nodes with line ranges; dump() == BuildKit's)
         ──parse_instructions──▶ typed Instructions (From, Run, Copy, ...)
         ──build_stage_graph──▶ StageGraph (stages, dependencies, needed(target))
         ──expand_stage──▶ instructions with ARG/ENV substituted, and their Scope

    .dockerignore ──DockerIgnore──▶ select_context_files(root) / sources_for(copy)
"""

from anybuild.dockerfile.convert import parse_instructions, to_instruction
from anybuild.dockerfile.dockerignore import (
    DockerIgnore,
    IgnoreMode,
    find_ignore_file,
    read_ignore_patterns,
    select_context_files,
    sources_for,
)
from anybuild.dockerfile.expand import (
    DEFAULT_PATH,
    PLATFORM_ARGS,
    PROXY_ARGS,
    Scope,
    expand_instruction,
    expand_word,
    expand_words,
    meta_scope,
    platform_args,
)
from anybuild.dockerfile.instructions import (
    Add,
    Arg,
    ArgDef,
    Cmd,
    CommandLine,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Keyword,
    Label,
    Maintainer,
    Mount,
    MountType,
    Onbuild,
    Run,
    Shell,
    SourceFile,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from anybuild.dockerfile.parser import Dockerfile, Heredoc, Node, parse_dockerfile, read_dockerfile
from anybuild.dockerfile.stages import (
    Dependency,
    ResolvedInstruction,
    Stage,
    StageGraph,
    build_stage_graph,
    expand_stage,
)

__all__ = [
    "DEFAULT_PATH",
    "PLATFORM_ARGS",
    "PROXY_ARGS",
    "Add",
    "Arg",
    "ArgDef",
    "Cmd",
    "CommandLine",
    "Copy",
    "Dependency",
    "DockerIgnore",
    "Dockerfile",
    "Entrypoint",
    "Env",
    "Expose",
    "From",
    "Healthcheck",
    "Heredoc",
    "IgnoreMode",
    "Instruction",
    "KeyValue",
    "Keyword",
    "Label",
    "Maintainer",
    "Mount",
    "MountType",
    "Node",
    "Onbuild",
    "ResolvedInstruction",
    "Run",
    "Scope",
    "Shell",
    "SourceFile",
    "Stage",
    "StageGraph",
    "Stopsignal",
    "User",
    "Volume",
    "Workdir",
    "build_stage_graph",
    "expand_instruction",
    "expand_stage",
    "expand_word",
    "expand_words",
    "find_ignore_file",
    "meta_scope",
    "parse_dockerfile",
    "parse_instructions",
    "platform_args",
    "read_dockerfile",
    "read_ignore_patterns",
    "select_context_files",
    "sources_for",
    "to_instruction",
]
