"""`anybuild tags`: the tags and labels a build would use, and why each rule gave them or not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from anybuild.cli.options import config_option, resolve_config
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.epoch import source_date_epoch
from anybuild.errors import UsageError
from anybuild.gitstate import GitState, read_git_state
from anybuild.process import SubprocessRunner
from anybuild.tags import Metadata, Outcome, compute_image_metadata
from anybuild.tags.evaluate import DEFAULT_SHORT_SHA_LENGTH

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["tags"]

_MARK = {Outcome.PRODUCED: "+", Outcome.DUPLICATE: "=", Outcome.SKIPPED: "-", Outcome.DISABLED: "x"}


@click.command(
    "tags",
    epilog="""\b
Examples:
  anybuild tags                      every image's tags, labels and the reason for each
  anybuild tags api --json           one image, as JSON
  SOURCE_DATE_EPOCH=0 anybuild tags  a fixed created label
  anybuild tags --reproducible       created = the commit time
""",
)
@click.argument("images", nargs=-1)
@click.option("--reproducible", is_flag=True,
              help="Use the commit time for the created label when SOURCE_DATE_EPOCH is unset.")
@config_option
@output_options
@pass_session
def tags(session: Session, images: tuple[str, ...], reproducible: bool, config_path: Path | None) -> None:
    """Print the tags and OCI labels computed from git like docker/metadata-action.

    The rules are anybuild.toml's [tags] rules (or an image's own tags = [...]), in
    metadata-action's syntax; the flavor is [tags] flavor. Outside CI, a tag at HEAD
    is built as a push of that tag, else a push of the branch; CI variables
    (GitHub Actions, GitLab CI) name the event when present.
    """
    cfg = resolve_config(config_path, session.cwd)
    specs = [cfg.image(name) for name in images] if images else list(cfg.images)
    git = read_git_state(cfg.root, SubprocessRunner(), session.env)
    now = datetime.now(UTC)
    epoch = source_date_epoch(session.env)
    short = _int_env(session, "DOCKER_METADATA_SHORT_SHA_LENGTH", DEFAULT_SHORT_SHA_LENGTH)
    results = [
        (spec.name, spec.repository, compute_image_metadata(
            cfg, spec, git, now, reproducible=reproducible, source_date_epoch=epoch,
            short_sha_length=short if short is not None else DEFAULT_SHORT_SHA_LENGTH,
        ))
        for spec in specs
    ]
    data: dict[str, Any] = {
        "git": git.to_dict(),
        "flavor": list(cfg.tags.flavor),
        "images": [{"name": name, "repository": repo, **meta.to_dict()} for name, repo, meta in results],
    }
    session.emit(data, lambda console: _render(console, git, results))


def _int_env(session: Session, name: str, default: int | None) -> int | None:
    text = session.env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a whole number",
                         hint=f"unset {name} or set it to an integer, e.g. {name}=0") from None


def _describe(git: GitState) -> str:
    if not git.sha:
        return "no commit"
    where = git.ref or "detached HEAD"
    state = "dirty" if git.dirty else "clean"
    return f"{git.event} of {where} at {git.sha[:7]} ({state}, from {git.source})"


def _render(console: Console, git: GitState, results: list[tuple[str, str, Metadata]]) -> None:
    def line(text: str = "") -> None:
        console.print(text, markup=False, highlight=False)

    line(f"git: {_describe(git)}")
    for note in git.notes:
        line(f"  {note}")
    for name, repository, meta in results:
        line()
        line(f"image {name} -> {repository}")
        if meta.references:
            line(f"  version: {meta.version}")
            line("  tags:")
            for reference in meta.references:
                line(f"    {reference}")
        else:
            line("  tags: none (no rule produced a tag; see the reasons below)")
        line(f"  latest: {meta.latest_reason}")
        line("  rules (+ produced, = duplicate, - nothing, x disabled):")
        width = max((len(e.rule) for e in meta.explanations), default=0)
        for explanation in meta.explanations:
            produced = f" -> {explanation.tag}" if explanation.tag else ""
            line(f"    {_MARK[explanation.outcome]} {explanation.rule.ljust(width)}{produced}  "
                 f"[{explanation.reason}]")
        line(f"  labels (created from {meta.created_from}):")
        for key, value in meta.labels.items():
            line(f"    {key}={value}")
