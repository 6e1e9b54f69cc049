"""Parser nodes -> typed instructions, with BuildKit's argument and flag checks.

Every error is a :class:`DockerfileError` naming the file, line, column (the
offending flag or argument when it can be found, else the instruction) and the
line's text, with a hint.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import TypedDict

from anybuild.dockerfile.flags import FlagError, FlagKind, FlagValues, parse_duration, parse_flags, parse_mount
from anybuild.dockerfile.heredoc import parse_heredoc_word
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
    Onbuild,
    Run,
    Shell,
    SourceFile,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from anybuild.dockerfile.nodes import Dockerfile, Node
from anybuild.errors import DockerfileError

__all__ = ["parse_instructions", "to_instruction"]

S, L, B = FlagKind.STRING, FlagKind.STRINGS, FlagKind.BOOL
_FLAGS: Mapping[str, Mapping[str, FlagKind]] = {
    "from": {"platform": S},
    "run": {"mount": L, "network": S, "security": S},
    "copy": {"from": S, "chown": S, "chmod": S, "link": B, "parents": B, "exclude": L},
    "add": {"chown": S, "chmod": S, "link": B, "checksum": S, "keep-git-dir": B, "unpack": B, "exclude": L},
    "healthcheck": {"interval": S, "timeout": S, "start-period": S, "start-interval": S, "retries": S},
}
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")
_ONBUILD_PREFIX = re.compile(r"(?i)^\s*ONBUILD\s*")
_NETWORKS = ("default", "none", "host")
_SECURITY = ("sandbox", "insecure")


class _Fail(Exception):
    def __init__(self, message: str, hint: str = "", needle: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.needle = needle


def parse_instructions(df: Dockerfile) -> tuple[Instruction, ...]:
    """Every node of *df* as a typed instruction."""
    return tuple(to_instruction(node, df) for node in df.nodes)


def to_instruction(node: Node, df: Dockerfile | None = None) -> Instruction:
    """Convert one parser node; errors carry *df*'s file and the line text."""
    try:
        return _convert(node)
    except (_Fail, FlagError) as exc:
        needle = exc.needle if isinstance(exc, _Fail) else exc.flag
        text = df.line_text(node.start_line) if df else node.original
        column = 1
        if needle:
            found = text.find(needle)
            column = found + 1 if found >= 0 else 1
        raise DockerfileError(
            exc.message, file=df.file if df else None, line=node.start_line, column=column,
            text=text, hint=exc.hint,
        ) from None


def _convert(node: Node) -> Instruction:
    kw = node.keyword
    if kw not in _HANDLERS:
        names = [k.value for k in Keyword]
        close = difflib.get_close_matches(node.written.upper(), names, n=1)
        hint = f"did you mean {close[0]}?" if close else "see the Dockerfile reference for the instructions"
        raise _Fail(f"unknown instruction: {node.written}", hint=hint, needle=node.written)
    values = parse_flags(kw.upper(), node.flags, _FLAGS.get(kw, {}))
    base = _Base(start_line=node.start_line, end_line=node.end_line, original=node.original)
    return _HANDLERS[kw](node, values, base)


class _Base(TypedDict):
    start_line: int
    end_line: int
    original: str


def _at_least_one(node: Node) -> None:
    if not node.args:
        raise _Fail(f"{node.keyword.upper()} requires at least one argument",
                    hint=f"give {node.keyword.upper()} its argument(s)")


def _exactly_one(node: Node) -> str:
    if len(node.args) != 1:
        raise _Fail(f"{node.keyword.upper()} requires exactly one argument",
                    hint=f"give {node.keyword.upper()} one argument")
    return node.args[0]


def _from(node: Node, flags: FlagValues, base: _Base) -> From:
    args = node.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _Fail(
                f"invalid name for build stage: {args[2]!r}, name can't start with a number or contain symbols",
                hint="stage names are letters, digits, '-', '_' and '.', starting with a letter",
                needle=args[2],
            )
    elif len(args) != 1:
        raise _Fail("FROM requires either one or three arguments", hint="write FROM IMAGE [AS NAME]")
    return From(image=args[0], name=name, platform=flags.get("platform"), **base)


def _command(node: Node) -> CommandLine:
    return CommandLine(args=node.args, exec_form=node.json)


def _run(node: Node, flags: FlagValues, base: _Base) -> Run:
    network = flags.get("network")
    if network is not None and network not in _NETWORKS:
        raise _Fail(f"unsupported network mode {network!r}", hint="use default, none or host",
                    needle="--network")
    security = flags.get("security")
    if security is not None and security not in _SECURITY:
        raise _Fail(f"unsupported security mode {security!r}", hint="use sandbox or insecure",
                    needle="--security")
    try:
        mounts = tuple(parse_mount(m) for m in flags.many("mount"))
    except FlagError as exc:
        raise _Fail(exc.message, hint=exc.hint, needle="--mount") from None
    if not node.args and not node.heredocs:
        raise _Fail("RUN requires at least one argument", hint="give RUN a command")
    return Run(command=_command(node), mounts=mounts, network=network, security=security,
               heredocs=node.heredocs, **base)


def _cmd(node: Node, flags: FlagValues, base: _Base) -> Cmd:
    return Cmd(command=_command(node), **base)


def _entrypoint(node: Node, flags: FlagValues, base: _Base) -> Entrypoint:
    return Entrypoint(command=_command(node), **base)


def _shell(node: Node, flags: FlagValues, base: _Base) -> Shell:
    if not node.json:
        raise _Fail("SHELL requires the arguments to be in JSON form",
                    hint='write SHELL ["/bin/sh", "-c"]')
    if not node.args:
        raise _Fail("SHELL requires at least one argument", hint='write SHELL ["/bin/sh", "-c"]')
    return Shell(shell=node.args, **base)


def _sources(node: Node) -> tuple[tuple[SourceFile, ...], str]:
    if len(node.args) < 2:
        kw = node.keyword.upper()
        raise _Fail(
            f"{kw} requires at least two arguments, but only one was provided. "
            "Destination could not be determined.",
            hint=f"write {kw} SOURCE... DEST",
        )
    sources: list[SourceFile] = []
    docs = list(node.heredocs)
    for src in node.args[:-1]:
        doc = parse_heredoc_word(src) if "<<" in src and not node.json else None
        if doc is not None and docs:
            sources.append(SourceFile(path=doc.name, heredoc=docs.pop(0)))
        else:
            sources.append(SourceFile(path=src))
    return tuple(sources), node.args[-1]


def _copy(node: Node, flags: FlagValues, base: _Base) -> Copy:
    sources, dest = _sources(node)
    return Copy(
        sources=sources, dest=dest, from_=flags.get("from"), chown=flags.get("chown"),
        chmod=flags.get("chmod"), link=bool(flags.flag("link")), parents=bool(flags.flag("parents")),
        excludes=flags.many("exclude"), exec_form=node.json, **base,
    )


def _add(node: Node, flags: FlagValues, base: _Base) -> Add:
    sources, dest = _sources(node)
    return Add(
        sources=sources, dest=dest, chown=flags.get("chown"), chmod=flags.get("chmod"),
        link=bool(flags.flag("link")), checksum=flags.get("checksum"),
        keep_git_dir=flags.flag("keep-git-dir"), unpack=flags.flag("unpack"),
        excludes=flags.many("exclude"), exec_form=node.json, **base,
    )


def _pairs(node: Node) -> tuple[KeyValue, ...]:
    _at_least_one(node)
    args = node.args
    return tuple(KeyValue(key=args[i], value=args[i + 1]) for i in range(0, len(args) - 2, 3))


def _env(node: Node, flags: FlagValues, base: _Base) -> Env:
    return Env(pairs=_pairs(node), **base)


def _label(node: Node, flags: FlagValues, base: _Base) -> Label:
    return Label(pairs=_pairs(node), **base)


def _arg(node: Node, flags: FlagValues, base: _Base) -> Arg:
    _at_least_one(node)
    defs: list[ArgDef] = []
    for word in node.args:
        name, has_value, value = word.partition("=")
        if has_value and not name:
            raise _Fail("ARG names can not be blank", hint="write ARG NAME or ARG NAME=DEFAULT", needle=word)
        defs.append(ArgDef(name=name, default=value if has_value else None))
    return Arg(args=tuple(defs), **base)


def _expose(node: Node, flags: FlagValues, base: _Base) -> Expose:
    _at_least_one(node)
    return Expose(ports=node.args, **base)


def _volume(node: Node, flags: FlagValues, base: _Base) -> Volume:
    _at_least_one(node)
    paths = tuple(p.strip() for p in node.args)
    if any(not p for p in paths):
        raise _Fail("VOLUME specified can not be an empty string", hint="give VOLUME a path")
    return Volume(paths=paths, **base)


def _user(node: Node, flags: FlagValues, base: _Base) -> User:
    return User(user=_exactly_one(node), **base)


def _workdir(node: Node, flags: FlagValues, base: _Base) -> Workdir:
    return Workdir(path=_exactly_one(node), **base)


def _stopsignal(node: Node, flags: FlagValues, base: _Base) -> Stopsignal:
    return Stopsignal(signal=_exactly_one(node), **base)


def _maintainer(node: Node, flags: FlagValues, base: _Base) -> Maintainer:
    return Maintainer(name=_exactly_one(node), **base)


def _duration(flags: FlagValues, name: str) -> int | None:
    value = flags.get(name)
    if value is None:
        return None
    if value == "":
        return 0
    try:
        nanos = parse_duration(value)
    except FlagError as exc:
        raise _Fail(exc.message, hint=exc.hint, needle=f"--{name}") from None
    if nanos < 0:
        raise _Fail(f"Interval {name} cannot be negative", hint="give a positive duration", needle=f"--{name}")
    if 0 < nanos < 1_000_000:
        raise _Fail(f"Interval {name} cannot be less than 1ms", hint="give at least 1ms", needle=f"--{name}")
    return nanos


def _healthcheck(node: Node, flags: FlagValues, base: _Base) -> Healthcheck:
    if not node.args:
        raise _Fail("HEALTHCHECK requires at least one argument", hint="write HEALTHCHECK CMD ... or NONE")
    kind = node.args[0].upper()
    rest = node.args[1:]
    if kind == "NONE":
        if rest:
            raise _Fail("HEALTHCHECK NONE takes no arguments", hint="write HEALTHCHECK NONE alone")
        return Healthcheck(test=("NONE",), **base)
    if kind != "CMD":
        raise _Fail(f"Unknown type {node.args[0]!r} in HEALTHCHECK (try CMD)", hint="write HEALTHCHECK CMD ...",
                    needle=node.args[0])
    if not rest:
        raise _Fail("Missing command after HEALTHCHECK CMD", hint="write HEALTHCHECK CMD command")
    test = ("CMD", *rest) if node.json else ("CMD-SHELL", *rest)
    retries: int | None = None
    if (raw := flags.get("retries")) is not None and raw != "":
        if not re.fullmatch(r"[+-]?\d+", raw) or abs(int(raw)) > 2**31 - 1:
            raise _Fail(f"invalid --retries value {raw!r}", hint="give a whole number", needle="--retries")
        retries = int(raw)
        if retries < 0:
            raise _Fail(f"--retries cannot be negative ({retries})", hint="give 0 or more", needle="--retries")
    return Healthcheck(
        test=test, interval=_duration(flags, "interval"), timeout=_duration(flags, "timeout"),
        start_period=_duration(flags, "start-period"), start_interval=_duration(flags, "start-interval"),
        retries=retries, **base,
    )


def _onbuild(node: Node, flags: FlagValues, base: _Base) -> Onbuild:
    sub = node.sub
    if sub is None:
        raise _Fail("ONBUILD requires at least one argument", hint="write ONBUILD INSTRUCTION ...")
    if sub.keyword in ("onbuild", "from", "maintainer"):
        raise _Fail(f"{sub.keyword.upper()} isn't allowed as an ONBUILD trigger",
                    hint="ONBUILD takes any instruction but ONBUILD, FROM and MAINTAINER", needle=sub.written)
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    trigger: Instruction | None
    try:
        trigger = _convert(Node(
            keyword=sub.keyword, written=sub.written, args=sub.args, flags=sub.flags, json=sub.json,
            heredocs=node.heredocs, original=expression, start_line=node.start_line, end_line=node.end_line,
        ))
    except (_Fail, FlagError):
        trigger = None
    return Onbuild(expression=expression, trigger=trigger, **base)


_HANDLERS: dict[str, Callable[[Node, FlagValues, _Base], Instruction]] = {
    "from": _from, "run": _run, "cmd": _cmd, "entrypoint": _entrypoint, "shell": _shell,
    "copy": _copy, "add": _add, "env": _env, "label": _label, "arg": _arg, "expose": _expose,
    "volume": _volume, "user": _user, "workdir": _workdir, "stopsignal": _stopsignal,
    "maintainer": _maintainer, "healthcheck": _healthcheck, "onbuild": _onbuild,
}
