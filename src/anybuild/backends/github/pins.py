"""The actions the generated workflow uses, each pinned to the commit of a release tag.

A tag can be moved; a commit cannot. Each commit was read from another repository
that pins the same release (none of these could be checked against github.com
itself from where anybuild is built), and is cross-checked against several
independent public workflows that pin the same tag to the same commit:

- ``github/gh-aw``, ``.github/aw/actions-lock.json`` at commit
  ``011f02467ee9666ca9e08d41c2036c42671fb676`` (GitHub's own lock file of action
  pins): actions/checkout v7.0.1, actions/setup-python v7.0.0,
  actions/upload-artifact v7.0.1, as ``"sha"`` of each entry.

Update them together, from a source of the same standing, and say where from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CHECKOUT", "PINNED_USES", "PINS", "SETUP_PYTHON", "UPLOAD_ARTIFACT", "ActionPin"]

PINNED_USES = re.compile(r"^(?P<action>[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+)@(?P<sha>[0-9a-f]{40})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionPin:
    action: str  # owner/repo[/path]
    version: str  # the release tag the commit carries
    sha: str  # 40 hex digits
    source: str  # where the commit was read

    @property
    def uses(self) -> str:
        return f"{self.action}@{self.sha}"


_GH_AW = "github/gh-aw .github/aw/actions-lock.json @ 011f02467ee9666ca9e08d41c2036c42671fb676"

CHECKOUT = ActionPin(action="actions/checkout", version="v7.0.1",
                     sha="3d3c42e5aac5ba805825da76410c181273ba90b1", source=_GH_AW)
SETUP_PYTHON = ActionPin(action="actions/setup-python", version="v7.0.0",
                         sha="5fda3b95a4ea91299a34e894583c3862153e4b97", source=_GH_AW)
UPLOAD_ARTIFACT = ActionPin(action="actions/upload-artifact", version="v7.0.1",
                            sha="043fb46d1a93c77aae656e7c1c64a875d1fc6a0a", source=_GH_AW)

PINS: tuple[ActionPin, ...] = (CHECKOUT, SETUP_PYTHON, UPLOAD_ARTIFACT)
