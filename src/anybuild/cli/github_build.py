"""The github branch of `anybuild build`: the runner's arguments, then one workflow run for the images."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from anybuild.backends.base import LogSink
from anybuild.cli.session import Session
from anybuild.config import Config, ImageSpec
from anybuild.errors import UsageError
from anybuild.planner import Plan
from anybuild.process import Runner
from anybuild.result import RunResult

__all__ = ["run_github_build", "runner_args"]


def runner_args(*, push: bool, build_args: Mapping[str, str], platform: str | None, no_cache: bool,
                reproducible: bool, cache_from: Sequence[str], cache_to: str | None,
                mirrors: Sequence[str], insecure: Sequence[str], sandbox: str | None, load: bool,
                secrets: Sequence[str], redactor: Callable[[str], str]) -> tuple[str, ...]:
    """The `anybuild build` arguments the runner gets; what cannot travel is refused, with why."""
    if load:
        raise UsageError("--load cannot load an image built on a GitHub runner into a daemon here",
                         hint="push it (--push) and pull it, or build locally with --backend builtin")
    if secrets:
        raise UsageError("--secret values stay on this machine: a GitHub runner cannot read them",
                         hint="store the secret as a repository secret and build it with a local backend, "
                         "or drop --secret")
    args: list[str] = ["--push"] if push else []
    for name, value in build_args.items():
        pair = f"{name}={value}"
        if redactor(pair) != pair:
            raise UsageError(f"--build-arg {name}: its value looks like a secret, and dispatch inputs are "
                             "visible to anyone who can read the repository's Actions runs",
                             hint="pass secrets as repository secrets (RUN --mount=type=secret), not build args")
        args += ["--build-arg", pair]
    for flag, option in (("--platform", platform), ("--cache-to", cache_to), ("--sandbox", sandbox)):
        if option:
            args += [flag, option]
    for flag, values in (("--cache-from", cache_from), ("--registry-mirror", mirrors),
                         ("--insecure-registry", insecure)):
        for value in values:
            args += [flag, value]
    if no_cache:
        args.append("--no-cache")
    if reproducible:
        args.append("--reproducible")
    for arg in args:
        if "\n" in arg:
            raise UsageError(f"{arg!r}: arguments sent to the runner must be one line", hint="remove the newline")
    return tuple(args)


def run_github_build(session: Session, config: Config, images: Sequence[ImageSpec], plan: Plan, *,
                     args: tuple[str, ...], push: bool, allow_dirty: bool, fail_fast: bool, reproducible: bool,
                     source_date_epoch: int | None, runner: Runner, sink_for: Callable[[str], LogSink],
                     diagnose: Callable[[Sequence[str]], Sequence[Any]]) -> RunResult:
    from anybuild.backends.github.project import GithubRequest, GithubSeams, build_on_github
    from anybuild.gitstate import read_git_state

    first = plan.first
    assert first is not None
    git = read_git_state(config.root, runner, session.env)

    def show_failure(image: str, step: str, lines: Sequence[str]) -> None:
        if session.quiet:
            return
        session.echo(f"{image}: the log of step {step!r}:", err=True)
        for line in lines:
            session.echo(f"{image} | {line}", err=True)

    request = GithubRequest(
        images=tuple(images), args=args, push=push, allow_dirty=allow_dirty, fail_fast=fail_fast,
        reproducible=reproducible, source_date_epoch=source_date_epoch, reason=first.reason,
        skipped=tuple({"backend": str(e.backend), "reason": e.reason} for e in plan.exclusions),
    )
    seams = GithubSeams(runner=runner, env=session.env, redactor=session.redactor, sink_for=sink_for,
                        notify=lambda text: session.info(f"anybuild: {text}"), show_failure=show_failure,
                        diagnose=diagnose)
    return build_on_github(config, git, request, seams)  # Ctrl-C, SIGTERM: KeyboardInterrupt (handle_signals)
