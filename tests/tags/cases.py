"""Git states mirroring docker/metadata-action's test fixtures (``__tests__/fixtures/*.env``).

The clock and the commit time are metadata-action's mocked ``2020-01-10T00:30:00.000Z``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from anybuild.gitstate import GitState

NOW = datetime(2020, 1, 10, 0, 30, tzinfo=UTC)

SHA_DEV = "860c1904a1ce19322e91ac35af1ab07466440c37"
SHA_MASTER = "266574110acf203503badf966df2ea24b5d732d7"
SHA_PR = "a9c8c5828b91be19d9728548b24759e352367ef1"
SHA_INVALID = "983315b5e8d46e46fc4c49869e85e7ee5fb289ba"

_BASE = GitState(
    event="push",
    sha=SHA_DEV,
    commit_time=NOW,
    default_branch="master",
    repository_url="https://github.com/octocat/Hello-World",
    repository_name="Hello-World",
)

EMPTY = GitState()
PUSH_DEV = replace(_BASE, ref="refs/heads/dev")
PUSH_MASTER = replace(_BASE, ref="refs/heads/master", sha=SHA_MASTER)
PUSH_RELEASES = replace(_BASE, ref="refs/heads/releases/v1")
PUSH_INVALIDCHARS = replace(_BASE, ref="refs/heads/my/feature#1245", sha=SHA_INVALID)
WORKFLOW_DISPATCH = replace(_BASE, event="workflow_dispatch", ref="refs/heads/master")
PULL_REQUEST = replace(_BASE, event="pull_request", ref="refs/pull/15/merge", sha=SHA_PR, base_ref="master")
PULL_REQUEST_2 = replace(PULL_REQUEST, ref="refs/pull/2/merge")
SCHEDULE = replace(_BASE, event="schedule", ref="refs/heads/master")
RELEASE = replace(_BASE, event="release", ref="refs/tags/v1.1.1")
DETACHED = replace(_BASE, ref="")


def tag(name: str, *, base_ref: str = "") -> GitState:
    """A push of tag *name* (event_tag_*.env)."""
    return replace(_BASE, ref=f"refs/tags/{name}", base_ref=base_ref)
