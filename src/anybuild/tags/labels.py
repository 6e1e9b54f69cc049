"""OCI image labels (``org.opencontainers.image.*``) from git, as metadata-action writes them.

metadata-action asks the GitHub API for the title, description, URL and licence;
anybuild takes them from git and the configuration instead (no network): the
title is the repository's name, ``url`` and ``source`` its web URL, ``version``
the highest-priority tag, ``revision`` the commit, and ``created`` the build
time — ``SOURCE_DATE_EPOCH`` when set, else the commit time for a reproducible
build, else the clock. Labels from the configuration override these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anybuild.gitstate import GitState

__all__ = ["OciLabel", "format_created", "oci_labels", "resolve_created"]


class OciLabel(StrEnum):
    TITLE = "org.opencontainers.image.title"
    DESCRIPTION = "org.opencontainers.image.description"
    URL = "org.opencontainers.image.url"
    SOURCE = "org.opencontainers.image.source"
    VERSION = "org.opencontainers.image.version"
    CREATED = "org.opencontainers.image.created"
    REVISION = "org.opencontainers.image.revision"
    LICENSES = "org.opencontainers.image.licenses"


def resolve_created(
    *,
    now: datetime,
    commit_time: datetime | None,
    source_date_epoch: int | None = None,
    reproducible: bool = False,
) -> tuple[datetime, str]:
    """The ``created`` time and where it came from."""
    if source_date_epoch is not None:
        return datetime.fromtimestamp(source_date_epoch, tz=UTC), "SOURCE_DATE_EPOCH"
    if reproducible and commit_time is not None:
        return commit_time.astimezone(UTC), "the commit time (reproducible build)"
    return now.astimezone(UTC), "the clock"


def format_created(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as JavaScript's toISOString: 2020-01-10T00:30:00.000Z."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def oci_labels(
    *,
    git: GitState,
    version: str,
    created: datetime,
    custom: Mapping[str, str],
    render: Callable[[str], str],
    title: str = "",
    description: str = "",
    licenses: str = "",
) -> dict[str, str]:
    """The OCI labels, overridden by *custom* (whose values may use the global expressions),
    sorted by key. The title is *title*, else the repository's name."""
    labels: dict[str, str] = {
        OciLabel.TITLE: title or git.repository_name,
        OciLabel.DESCRIPTION: description,
        OciLabel.URL: git.repository_url,
        OciLabel.SOURCE: git.repository_url,
        OciLabel.VERSION: version,
        OciLabel.CREATED: format_created(created),
        OciLabel.REVISION: git.sha,
        OciLabel.LICENSES: licenses,
    }
    for key, value in custom.items():
        labels[key] = render(value)
    return {str(key): labels[key] for key in sorted(labels)}
