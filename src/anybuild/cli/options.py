"""Options shared by several commands, and the one place the CLI loads the config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from anybuild.config import CONFIG_FILENAME, Config, find_config, load_config
from anybuild.errors import ConfigError

__all__ = ["config_option", "resolve_config"]

F = TypeVar("F", bound=Callable[..., Any])


def config_option(f: F) -> F:
    """Add `--config FILE` (default: the nearest anybuild.toml upwards)."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help=f"The configuration file (default: the nearest {CONFIG_FILENAME} upwards).",
    )(f)


def resolve_config(config_path: Path | None, cwd: Path) -> Config:
    """Load the configuration named, or found from *cwd* upwards."""
    if config_path is not None:
        return load_config(config_path if config_path.is_absolute() else cwd / config_path)
    found = find_config(cwd)
    if found is None:
        raise ConfigError(
            f"no {CONFIG_FILENAME} in {cwd} or any parent directory",
            hint=f"run from a repository with {CONFIG_FILENAME}, pass --config FILE, "
            "or see examples/moltbook/anybuild.toml",
        )
    return load_config(found)
