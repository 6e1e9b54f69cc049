"""Variable substitution with Docker's rules, and ARG/ENV scopes.

- :func:`expand_word` / :func:`expand_words`: ``$VAR``, ``${VAR}``, ``${VAR:-w}``,
  ``${VAR-w}``, ``${VAR:+w}``, ``${VAR+w}``, ``${VAR?w}``, ``${VAR:?w}``,
  ``${VAR#p}``, ``${VAR##p}``, ``${VAR%p}``, ``${VAR%%p}``, ``${VAR/p/r}``,
  ``${VAR//p/r}``, quotes and the escape token (see :mod:`.lex`).
- :func:`expand_instruction`: substitutes exactly the fields BuildKit expands
  (FROM image/--platform, ENV/LABEL keys and values, ARG defaults, COPY/ADD
  sources/dest/--from/--chown/--chmod/--exclude/--checksum and unquoted heredoc
  files, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, RUN --mount options).
  RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK/ONBUILD are left to the shell.
- :class:`Scope`: the ARGs and ENVs in effect in a stage; ENV wins over ARG.
  :func:`meta_scope` evaluates the ARGs before the first FROM;
  :meth:`Scope.declare` applies an ARG (``--build-arg`` > default > global ARG).
- :func:`platform_args` / :data:`PROXY_ARGS`: the predefined ARGs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from anybuild.dockerfile.flags import FlagError, mount_fields, parse_mount
from anybuild.dockerfile.instructions import (
    Add,
    Arg,
    ArgDef,
    Copy,
    Env,
    Expose,
    From,
    Instruction,
    KeyValue,
    Label,
    Mount,
    Run,
    SourceFile,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from anybuild.dockerfile.lex import LexError, ShellLex
from anybuild.errors import DockerfileError

__all__ = [
    "DEFAULT_PATH",
    "PLATFORM_ARGS",
    "PROXY_ARGS",
    "Scope",
    "expand_instruction",
    "expand_word",
    "expand_words",
    "meta_scope",
    "platform_args",
    "stage_reference",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})
PLATFORM_ARGS = (
    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
    "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
)
_LEXERS = {
    (esc, raw): ShellLex(esc, skip_quotes=raw) for esc in ("\\", "`") for raw in (False, True)
}
InstrT = TypeVar("InstrT", bound=Instruction)


def _lexer(escape: str, raw: bool = False) -> ShellLex:
    return _LEXERS[(escape, raw)]


def _fail(exc: LexError, word: str, instr: Instruction | None, file: str | None) -> DockerfileError:
    return DockerfileError(
        str(exc), file=file, line=instr.start_line if instr else None, column=1 if instr else None,
        text=instr.original if instr else word,
        hint=_hint(str(exc), word),
    )


def _hint(message: str, word: str) -> str:
    if "quote" in message:
        return "close the quote, or escape it with the escape character"
    if "allowed to be" in message or ("?" in word and "syntax" not in message and "modifier" not in message):
        return "pass the variable with --build-arg NAME=VALUE or declare it with a default"
    return "check the ${...} syntax; write \\$ for a literal dollar sign"


def expand_word(
    word: str, env: Mapping[str, str], *, escape: str = "\\", instr: Instruction | None = None,
    file: str | None = None,
) -> str:
    """Substitute variables in *word* and remove its quotes (BuildKit's ProcessWord)."""
    if not any(c in word for c in ("$", "'", '"', escape)):
        return word
    try:
        return _lexer(escape).process_word(word, env)
    except LexError as exc:
        raise _fail(exc, word, instr, file) from None


def expand_words(
    word: str, env: Mapping[str, str], *, escape: str = "\\", instr: Instruction | None = None,
    file: str | None = None,
) -> list[str]:
    """Substitute variables, then split into words (BuildKit's ProcessWords)."""
    try:
        return _lexer(escape).process_words(word, env)
    except LexError as exc:
        raise _fail(exc, word, instr, file) from None


def _expand_raw(word: str, env: Mapping[str, str], instr: Instruction, file: str | None) -> str:
    """Heredoc file content: variables only, quotes left alone."""
    try:
        return _lexer("\\", raw=True).process_word(word, env)
    except LexError as exc:
        raise _fail(exc, word, instr, file) from None


def platform_args(build_platform: str, target_platform: str | None = None) -> dict[str, str]:
    """The automatic BUILD*/TARGET* ARGs for ``os/arch[/variant]`` platforms."""
    out: dict[str, str] = {}
    for prefix, value in (("BUILD", build_platform), ("TARGET", target_platform or build_platform)):
        parts = value.split("/")
        out[f"{prefix}PLATFORM"] = value
        out[f"{prefix}OS"] = parts[0]
        out[f"{prefix}ARCH"] = parts[1] if len(parts) > 1 else ""
        out[f"{prefix}VARIANT"] = parts[2] if len(parts) > 2 else ""
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """ARGs and ENVs in effect at one point of a stage (values already substituted).

    As in BuildKit, both live in one environment where the last writer wins: an
    ENV overrides an earlier ARG of the same name, and an ARG given a value
    later overrides that ENV for substitution and RUN (never in the image config).
    """

    args: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    declared: frozenset[str] = frozenset()  # ARG names declared, set or not
    args_over_env: frozenset[str] = frozenset()  # ARGs set after the last ENV of the same name

    def lookup(self) -> dict[str, str]:
        """What ``$NAME`` sees: the ARG and ENV values, the later one winning."""
        values = {**self.args, **self.env}
        for name in self.args_over_env:
            values[name] = self.args[name]
        return values

    def with_env(self, pairs: Sequence[KeyValue]) -> Scope:
        env = dict(self.env)
        for pair in pairs:
            env[pair.key] = pair.value
        return dataclasses.replace(self, env=MappingProxyType(env),
                                   args_over_env=self.args_over_env - {p.key for p in pairs})

    def declare(
        self, defs: Sequence[ArgDef], *, meta: Mapping[str, str], build_args: Mapping[str, str],
        escape: str = "\\", instr: Instruction | None = None, file: str | None = None,
    ) -> Scope:
        """Apply an ARG instruction: --build-arg, else the default, else the global ARG.

        Pass the ARG as written: defaults are substituted here, once.
        """
        args = dict(self.args)
        declared = set(self.declared)
        over = set(self.args_over_env)
        for d in defs:
            declared.add(d.name)
            if d.name in build_args:
                value: str | None = build_args[d.name]
            elif d.default is not None:
                value = expand_word(d.default, self._current(args, over), escape=escape, instr=instr, file=file)
            else:
                value = meta.get(d.name)
            if value is None:
                continue  # declared without a value: an earlier value stays
            args[d.name] = value
            if d.name in self.env:
                over.add(d.name)
        return dataclasses.replace(self, args=MappingProxyType(args), declared=frozenset(declared),
                                   args_over_env=frozenset(over))

    def _current(self, args: Mapping[str, str], over: set[str]) -> dict[str, str]:
        values = {**args, **self.env}
        for name in over:
            values[name] = args[name]
        return values

    def run_env(self, build_args: Mapping[str, str]) -> dict[str, str]:
        """The environment of a RUN: proxy build args, then the ARG/ENV values.

        A proxy build arg, in either case, gives the RUN both spellings (BuildKit's ProxyEnv:
        --build-arg http_proxy=X sets HTTP_PROXY and http_proxy, moby/buildkit testBuiltinArgs).
        """
        proxies: dict[str, str] = {}
        for name in sorted(build_args, key=lambda k: k.isupper()):  # the upper-case spelling wins
            if name in PROXY_ARGS:
                proxies[name.upper()] = proxies[name.lower()] = build_args[name]
        return {**proxies, **self.lookup()}


def meta_scope(
    meta_args: Sequence[Arg], build_args: Mapping[str, str], *,
    predefined: Mapping[str, str] | None = None, escape: str = "\\", file: str | None = None,
) -> dict[str, str]:
    """Values of the ARGs declared before the first FROM (plus the predefined ones)."""
    values: dict[str, str] = dict(predefined or {})
    for instr in meta_args:
        for d in instr.args:
            if d.name in build_args:
                values[d.name] = build_args[d.name]
            elif d.default is not None:
                values[d.name] = expand_word(d.default, values, escape=escape, instr=instr, file=file)
            elif d.name not in values:
                values.pop(d.name, None)
    return values


def expand_instruction(
    instr: InstrT, env: Mapping[str, str], *, escape: str = "\\", file: str | None = None,
    strict_mounts: bool = True,
) -> InstrT:
    """A copy of *instr* with the fields BuildKit substitutes substituted (see _reparse_mount for
    *strict_mounts*)."""

    def w(word: str) -> str:
        return expand_word(word, env, escape=escape, instr=instr, file=file)

    def opt(word: str | None) -> str | None:
        return None if word is None else w(word)

    new: Instruction
    match instr:
        case From():
            new = dataclasses.replace(instr, image=w(instr.image), platform=opt(instr.platform))
        case Env() | Label():
            pairs = tuple(KeyValue(key=w(p.key), value=w(p.value)) for p in instr.pairs)
            new = dataclasses.replace(instr, pairs=pairs)
        case Arg():
            defs = tuple(ArgDef(name=d.name, default=opt(d.default)) for d in instr.args)
            new = dataclasses.replace(instr, args=defs)
        case Copy():
            new = dataclasses.replace(
                instr, sources=tuple(_expand_source(s, env, instr, w, file) for s in instr.sources),
                dest=w(instr.dest), chown=opt(instr.chown), chmod=opt(instr.chmod),
                excludes=tuple(w(e) for e in instr.excludes),
                from_=stage_reference(instr.from_, "--from", instr, escape, file),
            )
        case Add():
            new = dataclasses.replace(
                instr, sources=tuple(_expand_source(s, env, instr, w, file) for s in instr.sources),
                dest=w(instr.dest), chown=opt(instr.chown), chmod=opt(instr.chmod),
                excludes=tuple(w(e) for e in instr.excludes), checksum=opt(instr.checksum),
            )
        case Expose():
            ports: list[str] = []
            for port in instr.ports:
                ports += expand_words(port, env, escape=escape, instr=instr, file=file)
            new = dataclasses.replace(instr, ports=tuple(ports))
        case Volume():
            new = dataclasses.replace(instr, paths=tuple(w(p) for p in instr.paths))
            if any(not p for p in new.paths):  # BuildKit's dispatchVolume checks the expanded paths
                raise DockerfileError("VOLUME specified can not be an empty string", file=file, line=instr.start_line,
                                      column=1, text=instr.original, hint="give VOLUME a path (is a variable unset?)")
        case User():
            new = dataclasses.replace(instr, user=w(instr.user))
        case Workdir():
            new = dataclasses.replace(instr, path=w(instr.path))
        case Stopsignal():
            new = dataclasses.replace(instr, signal=w(instr.signal))
        case Run():
            mounts = tuple(_reparse_mount(m, w, instr, escape, file, strict=strict_mounts) if m.deferred else m
                           for m in instr.mounts)
            for mount in mounts:
                stage_reference(mount.from_, "--mount from", instr, escape, file)
            new = dataclasses.replace(instr, mounts=tuple(_expand_mount(m, opt) for m in mounts))
        case _:
            new = instr
    assert isinstance(new, type(instr))
    return new


def _reparse_mount(mount: Mount, w: Callable[[str], str], instr: Instruction, escape: str,
                   file: str | None, *, strict: bool = True) -> Mount:
    """A ``--mount`` whose values hold variables, parsed with them expanded (``from`` excepted).

    Not *strict*, a value that does not parse yet leaves the mount waiting (the stage graph reads a
    stage before the ENV of the stage it is built FROM is known; the build expands it again)."""
    try:
        fields = []
        for field in mount_fields(mount.raw):
            key, has_value, value = field.partition("=")
            if has_value and key.lower() == "from":
                stage_reference(value, "--mount from", instr, escape, file)
            fields.append(f"{key}={w(value)}" if has_value and key.lower() != "from" else field)
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(fields)
        return dataclasses.replace(parse_mount(out.getvalue(), expanded=True), raw=mount.raw)
    except FlagError as exc:
        if not strict:
            return mount
        raise DockerfileError(exc.message, file=file, line=instr.start_line, column=1, text=instr.original,
                              hint=exc.hint) from None


def stage_reference(word: str | None, what: str, instr: Instruction, escape: str = "\\",
                    file: str | None = None) -> str | None:
    """*word* as written: BuildKit refuses variables (and quotes) in a stage reference, whose value
    must be known before any stage's scope is (the stage graph depends on it)."""
    if word is None or expand_word(word, {}, escape=escape, instr=instr, file=file) == word:
        return word
    raise DockerfileError(
        f"variable expansion is not supported for {what}: {word}", file=file, line=instr.start_line, column=1,
        text=instr.original,
        hint="define a stage with FROM using an ARG from the global scope (ARG IMAGE=... before the first FROM, "
             "then FROM $IMAGE AS name) and name that stage here",
    )


def _expand_source(src: SourceFile, env: Mapping[str, str], instr: Instruction,
                   w: Callable[[str], str], file: str | None) -> SourceFile:
    doc = src.heredoc
    if doc is None:
        return SourceFile(path=w(src.path))
    if not doc.expand:
        return src
    return SourceFile(path=src.path, heredoc=dataclasses.replace(
        doc, content=_expand_raw(doc.content, env, instr, file)))


def _expand_mount(mount: Mount, opt: Callable[[str | None], str | None]) -> Mount:
    return dataclasses.replace(
        mount, target=opt(mount.target), source=opt(mount.source),
        id=opt(mount.id), uid=opt(mount.uid), gid=opt(mount.gid), mode=opt(mount.mode),
        env=opt(mount.env), size=opt(mount.size),
    )
