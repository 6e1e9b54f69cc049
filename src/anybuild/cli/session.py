"""The state one CLI invocation shares between its commands: output mode and consoles.

Commands get it with ``session = Session.of(ctx)`` (or the :func:`pass_session`
decorator), and render through it: ``session.emit(data, human=...)`` prints JSON
in ``--json`` mode and calls the human renderer otherwise. Everything printed
passes through the redactor.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from anybuild.cancellation import Cancellation
from anybuild.redaction import Redactor, secrets_from_env

if TYPE_CHECKING:  # rich costs ~35 ms to import: only what renders to a terminal (or a table) loads it
    from rich.console import Console

__all__ = ["Session", "output_options", "pass_session"]

F = TypeVar("F", bound=Callable[..., Any])

_FORCING = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")  # what makes rich treat a pipe as a terminal


@dataclass(slots=True)
class Session:
    """Output settings and the environment of one invocation."""

    json: bool = False
    debug: bool = False
    verbosity: int = 0
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    redactor: Redactor = field(default_factory=Redactor)
    cancel: Cancellation = field(default_factory=Cancellation)  # set by SIGINT, SIGTERM, SIGHUP (cli.main)
    _out: Console | None = None
    _err: Console | None = None

    @classmethod
    def create(cls, *, json_output: bool, debug: bool, verbosity: int) -> Session:
        env = dict(os.environ)
        return cls(
            json=json_output,
            debug=debug,
            verbosity=verbosity,
            env=env,
            redactor=Redactor(secrets_from_env(env)),
        )

    @classmethod
    def of(cls, ctx: click.Context) -> Session:
        root = ctx.find_root()
        if not isinstance(root.obj, Session):
            root.obj = cls.create(json_output=False, debug=False, verbosity=0)
        return cast(Session, root.obj)

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console(stderr=False)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err

    def is_terminal(self, *, err: bool) -> bool:
        """Whether stderr (*err*) or stdout is a terminal, as rich sees it (FORCE_COLOR, TTY_COMPATIBLE
        make it one); answered without loading rich when the stream is plainly not one."""
        stream = sys.stderr if err else sys.stdout
        isatty = getattr(stream, "isatty", None)
        if not (callable(isatty) and isatty()) and not any(self.env.get(v) for v in _FORCING):
            return False
        return (self.err if err else self.out).is_terminal

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def emit(self, data: Any, human: Callable[[Console], None] | None = None) -> None:
        """Print *data* as JSON in --json mode, else call *human* with the console."""
        if self.json or human is None:
            text = json.dumps(data, indent=2, sort_keys=False, default=str)
            sys.stdout.write(self.redactor(text) + "\n")
            sys.stdout.flush()
        else:
            human(self.out)

    def echo(self, text: str = "", *, err: bool = False) -> None:
        """Plain text line, redacted; no rich markup interpretation.

        Written straight to the stream unless that stream's console is in use (a live view
        redraws around the lines it is given), so that plain output never loads rich.
        """
        console = self._err if err else self._out
        if console is not None:
            console.print(self.redactor(text), markup=False, highlight=False)
            return
        stream = sys.stderr if err else sys.stdout
        stream.write(self.redactor(text) + "\n")
        stream.flush()

    def info(self, text: str) -> None:
        """A progress or status line on stderr, hidden by -q and in --json mode."""
        if not self.quiet:
            self.echo(text, err=True)

    def debug_log(self, text: str) -> None:
        if self.verbosity > 0 or self.debug:
            self.echo(text, err=True)


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Logs and pipes have no width: don't truncate tables to 80 columns.
        console.width = 200
    return console


def pass_session(f: F) -> F:
    """Decorator: pass the :class:`Session` as the command's first argument."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(Session.of(click.get_current_context()), *args, **kwargs)

    return cast(F, wrapper)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        Session.of(ctx).json = True
    return value


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if value:
        Session.of(ctx).verbosity -= value
    return value


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if value:
        Session.of(ctx).verbosity += value
    return value


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        Session.of(ctx).debug = True


def output_options(f: F) -> F:
    """Add --json, -q, -v and --debug to a subcommand, so they work after the command name too."""
    f = click.option(
        "--debug", is_flag=True, expose_value=False, callback=_set_debug, is_eager=True,
        help="Show tracebacks and internal detail.",
    )(f)
    f = click.option(
        "--json", "json_output", is_flag=True, expose_value=False, callback=_set_json,
        is_eager=True, help="Print machine-readable JSON on stdout.",
    )(f)
    f = click.option(
        "-q", "--quiet", count=True, expose_value=False, callback=_set_quiet,
        help="Print less.",
    )(f)
    return click.option(
        "-v", "--verbose", count=True, expose_value=False, callback=_set_verbose,
        help="Print more (repeat for more).",
    )(f)
