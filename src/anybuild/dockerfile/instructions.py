"""Typed Dockerfile instructions: one frozen dataclass per instruction.

Values are kept as written (variables not yet substituted); :mod:`.expand`
returns substituted copies. Every instruction carries its source line range.
:func:`anybuild.dockerfile.convert.to_instruction` builds them from parser nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from anybuild.dockerfile.nodes import Heredoc

__all__ = [
    "Add",
    "Arg",
    "ArgDef",
    "Cmd",
    "CommandLine",
    "Copy",
    "Entrypoint",
    "Env",
    "Expose",
    "From",
    "Healthcheck",
    "Instruction",
    "KeyValue",
    "Keyword",
    "Label",
    "Maintainer",
    "Mount",
    "MountType",
    "Onbuild",
    "Run",
    "Shell",
    "SourceFile",
    "Stopsignal",
    "User",
    "Volume",
    "Workdir",
]


class Keyword(StrEnum):
    """Dockerfile instruction keywords (upper case, as in the reference)."""

    ADD = "ADD"
    ARG = "ARG"
    CMD = "CMD"
    COPY = "COPY"
    ENTRYPOINT = "ENTRYPOINT"
    ENV = "ENV"
    EXPOSE = "EXPOSE"
    FROM = "FROM"
    HEALTHCHECK = "HEALTHCHECK"
    LABEL = "LABEL"
    MAINTAINER = "MAINTAINER"
    ONBUILD = "ONBUILD"
    RUN = "RUN"
    SHELL = "SHELL"
    STOPSIGNAL = "STOPSIGNAL"
    USER = "USER"
    VOLUME = "VOLUME"
    WORKDIR = "WORKDIR"


class MountType(StrEnum):
    BIND = "bind"
    CACHE = "cache"
    TMPFS = "tmpfs"
    SECRET = "secret"  # noqa: S105 - a mount type, not a password
    SSH = "ssh"


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    """Fields every instruction has: where it is in the Dockerfile."""

    start_line: int = 0
    end_line: int = 0
    original: str = ""

    @property
    def keyword(self) -> Keyword:
        return Keyword(type(self).__name__.upper())


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandLine:
    """A command in exec form (``args`` as given) or shell form (one string)."""

    args: tuple[str, ...]
    exec_form: bool

    @property
    def shell_text(self) -> str:
        return " ".join(self.args)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValue:
    key: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgDef:
    name: str
    default: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFile:
    """A COPY/ADD source: a path/URL/glob, or an inline heredoc file."""

    path: str
    heredoc: Heredoc | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One ``RUN --mount=...``; unset options are None."""

    type: MountType = MountType.BIND
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    readonly: bool | None = None
    id: str | None = None
    sharing: str | None = None
    mode: str | None = None
    uid: str | None = None
    gid: str | None = None
    required: bool | None = None
    env: str | None = None
    size: str | None = None
    raw: str = ""
    deferred: bool = False  # values hold variables: parsed once the stage's scope expands them (see expand)


@dataclass(frozen=True, slots=True, kw_only=True)
class From(Instruction):
    image: str
    name: str | None = None  # the stage name, lower case
    platform: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Instruction):
    command: CommandLine
    mounts: tuple[Mount, ...] = ()
    network: str | None = None
    security: str | None = None
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cmd(Instruction):
    command: CommandLine


@dataclass(frozen=True, slots=True, kw_only=True)
class Entrypoint(Instruction):
    command: CommandLine


@dataclass(frozen=True, slots=True, kw_only=True)
class Shell(Instruction):
    shell: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(Instruction):
    sources: tuple[SourceFile, ...]
    dest: str
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    exec_form: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(Instruction):
    sources: tuple[SourceFile, ...]
    dest: str
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    checksum: str | None = None
    keep_git_dir: bool | None = None
    unpack: bool | None = None
    excludes: tuple[str, ...] = ()
    exec_form: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Env(Instruction):
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg(Instruction):
    args: tuple[ArgDef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(Instruction):
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expose(Instruction):
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume(Instruction):
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Instruction):
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopsignal(Instruction):
    signal: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(Instruction):
    """``test`` is Docker's form: ``("NONE",)``, ``("CMD", ...)`` or ``("CMD-SHELL", cmd)``.

    Durations are in nanoseconds (as in the image config); None when not given.
    """

    test: tuple[str, ...]
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None

    @property
    def none(self) -> bool:
        return self.test == ("NONE",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Onbuild(Instruction):
    """A trigger; ``expression`` is the text after ONBUILD, as Docker stores it."""

    expression: str
    trigger: Instruction | None = None  # None when the trigger itself does not parse


@dataclass(frozen=True, slots=True, kw_only=True)
class Maintainer(Instruction):
    name: str
