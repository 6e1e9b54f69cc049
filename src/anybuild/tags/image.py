"""The metadata of one configured image: its rules, the flavor and labels from anybuild.toml."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from anybuild.config import Config, ImageSpec
from anybuild.errors import ConfigError
from anybuild.tags.evaluate import DEFAULT_SHORT_SHA_LENGTH, Metadata, compute_metadata

if TYPE_CHECKING:
    from anybuild.gitstate import GitState

__all__ = ["compute_image_metadata"]


def compute_image_metadata(
    config: Config,
    spec: ImageSpec,
    git: GitState,
    now: datetime,
    *,
    reproducible: bool = False,
    source_date_epoch: int | None = None,
    short_sha_length: int = DEFAULT_SHORT_SHA_LENGTH,
) -> Metadata:
    """:func:`compute_metadata` for *spec*; a mistake in a rule names the file and key it is in.

    Without a remote URL the title is the project's name, which says more than the
    checkout directory's name."""
    title = config.project.name if not git.repository_url else ""
    try:
        return compute_metadata(
            spec.tags, config.tags.flavor, git, spec.repository, now, labels=spec.labels, title=title,
            reproducible=reproducible, source_date_epoch=source_date_epoch, short_sha_length=short_sha_length,
        )
    except ConfigError as exc:
        if exc.key == "tags.flavor":
            key = "tags.flavor"
        elif spec.tags == config.tags.rules:
            key = "tags.rules"
        else:
            key = f"images.{spec.name}.tags"
        where = f"{config.file}: " if config.file else ""
        raise ConfigError(f"{where}{key}: {exc.message}", file=config.file, key=key, value=exc.value,
                          hint=exc.hint, docs=exc.docs) from exc
