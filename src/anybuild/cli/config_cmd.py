"""`anybuild config show`: the resolved configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from anybuild.cli.options import config_option, resolve_config
from anybuild.cli.session import Session, output_options, pass_session
from anybuild.config import Config

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["config"]


@click.group()
def config() -> None:
    """Inspect anybuild.toml."""


@config.command(
    "show",
    epilog="""\b
Examples:
  anybuild config show
  anybuild config show --json | jq '.images[].repository'
  anybuild config show --config examples/moltbook/anybuild.toml
""",
)
@config_option
@output_options
@pass_session
def show(session: Session, config_path: Path | None) -> None:
    """Print the resolved configuration: images, paths, backends, registries."""
    resolved = resolve_config(config_path, session.cwd)
    session.emit(resolved.to_dict(), lambda console: _render(console, resolved))


def _render(console: Console, cfg: Config) -> None:
    from rich.table import Table

    console.print(f"configuration: {cfg.file}", markup=False)
    console.print(f"backends (preferred first): {', '.join(cfg.build.backends)}", markup=False)
    if cfg.build.platforms:
        console.print(f"platforms: {', '.join(cfg.build.platforms)}", markup=False)
    if cfg.tags.rules:
        console.print(f"tag rules: {'; '.join(cfg.tags.rules)}", markup=False)
    for host, registry in cfg.registries.items():
        mirrors = ", ".join(registry.mirrors) or "none"
        console.print(
            f"registry {host}: mirrors {mirrors}; insecure {str(registry.insecure).lower()}",
            markup=False,
        )
    table = Table(title=f"{len(cfg.images)} image(s)", title_justify="left")
    for column in ("image", "repository", "context", "dockerfile", "target", "args"):
        table.add_column(column)
    for spec in cfg.images:
        table.add_row(
            spec.name,
            spec.repository,
            _rel(spec.context, cfg.root),
            _rel(spec.dockerfile, cfg.root),
            spec.target or "",
            " ".join(f"{k}={v}" for k, v in spec.args.items()),
        )
    console.print(table)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)
