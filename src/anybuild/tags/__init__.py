"""Image tags and OCI labels computed from git, the way docker/metadata-action computes them.

The rule syntax is metadata-action's, so a workflow's ``tags:`` and ``flavor:`` lines paste
into anybuild.toml unchanged::

    metadata = compute_metadata(
        ["type=ref,event=branch", "type=semver,pattern={{version}}", "type=sha"],
        ["latest=auto"],
        git_state,                      # anybuild.gitstate.read_git_state(...)
        "ghcr.io/acme/api",
        now,
    )
    metadata.references   # ('ghcr.io/acme/api:1.2.3', 'ghcr.io/acme/api:sha-90dd603', ...latest)
    metadata.explanations # why each rule did or did not produce a tag

Everything here is pure: git state, the clock and the environment come in as values.
"""

from __future__ import annotations

from anybuild.tags.evaluate import Explanation, Metadata, Outcome, compute_metadata
from anybuild.tags.image import compute_image_metadata
from anybuild.tags.rules import DEFAULT_RULES, Flavor, TagRule, parse_flavor, parse_rules
from anybuild.tags.sanitize import sanitize_tag

__all__ = [
    "DEFAULT_RULES",
    "Explanation",
    "Flavor",
    "Metadata",
    "Outcome",
    "TagRule",
    "compute_image_metadata",
    "compute_metadata",
    "parse_flavor",
    "parse_rules",
    "sanitize_tag",
]
