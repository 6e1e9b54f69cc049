"""Make tags and image names valid, as metadata-action does, plus the two rules it leaves out.

A tag is at most 128 characters of ``[A-Za-z0-9_.-]`` and may not start with ``.`` or
``-``. Like metadata-action, every run of other characters becomes one ``-``
(``my/feature#1245`` → ``my-feature-1245``); beyond it, leading ``.``/``-`` are dropped
and the tag is cut at 128 characters, so that a registry never refuses it.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TAG_LENGTH", "sanitize_image_name", "sanitize_tag"]

MAX_TAG_LENGTH = 128
_INVALID = re.compile(r"[^a-zA-Z0-9._-]+")


def sanitize_tag(text: str) -> tuple[str, list[str]]:
    """The valid tag made from *text*, and what was changed (empty when nothing was)."""
    notes: list[str] = []
    tag = _INVALID.sub("-", text)
    if tag != text:
        notes.append(f"invalid characters in {text!r} replaced with '-'")
    stripped = tag.lstrip(".-")
    if stripped != tag:
        notes.append(f"leading {tag[: len(tag) - len(stripped)]!r} removed (a tag may not start with '.' or '-')")
        tag = stripped
    if len(tag) > MAX_TAG_LENGTH:
        notes.append(f"cut to {MAX_TAG_LENGTH} characters (was {len(tag)})")
        tag = tag[:MAX_TAG_LENGTH]
    return tag, notes


def sanitize_image_name(name: str) -> str:
    """Image names are lower case."""
    return name.lower()
