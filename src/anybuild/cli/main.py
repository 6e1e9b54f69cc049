"""`anybuild` entry point: global options, lazy subcommands, and error rendering.

Every :class:`~anybuild.errors.AnybuildError` becomes ``error:`` / ``hint:`` /
``docs:`` lines on stderr (or one JSON object on stdout with ``--json``) and its
exit code. Anything else is a bug: one line saying so, and the traceback with
``--debug``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from anybuild.cancellation import handle_signals, signum_of
from anybuild.cli.commands import COMMANDS, SUMMARIES
from anybuild.cli.session import Session
from anybuild.errors import AnybuildError, ExitCode, Interrupted, UsageError

__all__ = ["cli", "main", "render_error", "run"]

INTERNAL_ERROR = 70  # EX_SOFTWARE

EPILOG = """\b
Examples:
  anybuild doctor                 what can build here, and why
  anybuild build --all --push     build and push every image of anybuild.toml
  anybuild diagnose build.log     name the real cause of a failed build
  anybuild config show --json     the resolved configuration
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their summaries, as click lists them, without importing any command."""
        names = [name for name in self.list_commands(ctx) if name in SUMMARIES]
        if len(names) < len(self.list_commands(ctx)):  # a command without a summary: click's own way
            super().format_commands(ctx, formatter)
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, click.Command(name, help=SUMMARIES[name]).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import anybuild

    click.echo(f"anybuild, version {anybuild.__version__}")
    ctx.exit()


@click.group(
    cls=LazyGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON on stdout.")
@click.option("--debug", is_flag=True, help="Show tracebacks and internal detail.")
@click.option("-q", "--quiet", count=True, help="Print less.")
@click.option("-v", "--verbose", count=True, help="Print more (repeat for more).")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, json_output: bool, debug: bool, quiet: int, verbose: int) -> None:
    """Build OCI container images anywhere, including where `docker build` breaks.

    anybuild picks the best backend that works here (its own daemonless builder,
    Docker, buildah, a Kaniko Job, a GitHub Actions workflow), explains its choice,
    and names the real cause when a build fails.

    Shell completion: eval "$(_ANYBUILD_COMPLETE=bash_source anybuild)"
    (zsh_source, fish_source for other shells).
    """
    session = Session.of(ctx)
    session.json = session.json or json_output
    session.debug = session.debug or debug
    session.verbosity += verbose - quiet


def render_error(error: AnybuildError, session: Session) -> None:
    """Print a user-facing error as lines on stderr, or as JSON on stdout."""
    if session.json:
        session.emit({"error": error.to_dict()})
        return
    message = str(error) if error.__class__.__str__ is not Exception.__str__ else error.message
    session.echo(f"error: {message}", err=True)
    if error.hint:
        session.echo(f"hint: {error.hint}", err=True)
    if error.docs:
        session.echo(f"docs: docs/{error.docs}.md", err=True)


def _fail(session: Session, error: AnybuildError) -> NoReturn:
    if session.debug and error.__cause__ is not None:
        session.echo(_traceback_text(error), err=True)
    render_error(error, session)
    sys.exit(int(error.exit_code))


def _signal_word(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _traceback_text(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc)).rstrip()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; never lets a user-facing error escape as a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Read the global flags before click parses, so errors in parsing render right.
    session = Session.create(
        json_output="--json" in args, debug="--debug" in args, verbosity=0
    )
    try:
        # Without standalone mode click *returns* the code given to ctx.exit(n). SIGTERM and SIGHUP stop a
        # command as Ctrl-C does (its clean-up runs); `build` observes the cancellation in its threads instead.
        with handle_signals(session.cancel, interrupt_main=True):
            returned = cli.main(args=args, prog_name="anybuild", standalone_mode=False, obj=session)
        if isinstance(returned, int) and returned:
            sys.exit(returned)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click's word for a KeyboardInterrupt (a signal: see handle_signals)
        cause = exc.__cause__
        signum = signum_of(cause) if isinstance(cause, KeyboardInterrupt) else session.cancel.signum or signal.SIGINT
        _fail(session, Interrupted(f"interrupted by {_signal_word(signum)}; temporary files were removed",
                                   signum=signum, hint="run the command again"))
    except click.ClickException as exc:
        hint = "run `anybuild --help` (or COMMAND --help) for usage"
        usage = UsageError(exc.format_message(), hint=hint)
        _fail(session, usage)
    except KeyboardInterrupt as exc:
        signum = signum_of(exc)
        _fail(session, Interrupted(f"interrupted by {_signal_word(signum)}; temporary files were removed",
                                   signum=signum, hint="run the command again"))
    except AnybuildError as exc:
        _fail(session, exc)
    except BrokenPipeError:
        sys.exit(int(ExitCode.OK))
    except Exception as exc:
        if session.debug:
            session.echo(_traceback_text(exc), err=True)
        detail: dict[str, Any] = {
            "kind": "internal",
            "message": f"internal error: {type(exc).__name__}: {exc}",
            "hint": "this is a bug in anybuild; rerun with --debug and report the traceback",
            "exit_code": INTERNAL_ERROR,
        }
        if session.json:
            session.emit({"error": detail})
        else:
            session.echo(f"error: {detail['message']}", err=True)
            session.echo(f"hint: {detail['hint']}", err=True)
        sys.exit(INTERNAL_ERROR)
    sys.exit(int(ExitCode.OK))


def run() -> NoReturn:
    """The ``anybuild`` program: :func:`main`, then a quick exit.

    Tearing the interpreter down (every module's objects, one by one) costs 40-70 ms
    of CPU after the work is done, more than a no-change build's own work. Once
    :func:`main` returns, the exit handlers run and the output is flushed, so
    nothing is lost by skipping the rest; while a non-daemon thread still runs, the
    exit is the ordinary one, which waits for it. ``python -m anybuild`` calls
    :func:`main` instead, so a wrapper (``python -m cProfile``) still sees the end.
    """
    try:
        main()
        code = int(ExitCode.OK)
    except SystemExit as exc:
        code = _status(exc.code)
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more to say
            stream.flush()
    os._exit(code)


def _status(code: object) -> int:
    """The exit status ``sys.exit(code)`` would give (a message is printed, as Python prints it)."""
    if code is None:
        return int(ExitCode.OK)
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
