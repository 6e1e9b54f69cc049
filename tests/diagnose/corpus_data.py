"""The corpus of real failure logs from public issue threads, and its fixed split.

Loaded from ``tests/diagnose/corpus/*.toml`` (see the README there). The split is by
source URL with a fixed seed, decided before any rule was written: about two thirds of the
threads are the tuning part, the rest the test part that rules are never adjusted on.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CORPUS_DIR",
    "FAMILY_OF_RULE",
    "MOVED_TO_TUNING",
    "SEED",
    "Case",
    "family_of",
    "load_corpus",
    "part_of",
]

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
SEED = "anybuild-diagnose-corpus-2026-12"
TUNING_SHARE = 2 / 3
# Test-part threads moved to tuning after being looked at (see corpus/LOOKED_AT.md).
MOVED_TO_TUNING: frozenset[str] = frozenset(
    {
        "https://github.com/moby/moby/issues/22469",  # exec format error from a CRLF script
    }
)

# The family each rule's diagnosis belongs to; a rule not listed is "other".
FAMILY_OF_RULE: dict[str, str] = {
    "nested-overlay": "nested-overlay",
    "overlay-dtype": "overlay-dtype",
    "npm-enotempty": "npm-fs",
    "npm-ebusy": "npm-fs",
    "npm-exdev": "npm-fs",
    "registry-rate-limit": "rate-limit",
    "registry-auth-pull": "registry-auth",
    "registry-auth-push": "registry-auth",
    "ghcr-package-permission": "registry-auth",
    "daemon-unreachable": "daemon-unreachable",
    "docker-socket-permission": "daemon-unreachable",
    "daemon-start-failed": "daemon-unreachable",
    "userns-refused": "rootless",
    "fuse-missing": "rootless",
    "rootless-overlay": "rootless",
    "kaniko-not-in-container": "kaniko",
    "kaniko-push-permission": "kaniko",
    "kaniko-filesystem": "kaniko",
    "disk-full": "disk-full",
    "network-dns": "network",
    "oom-killed": "oom",
    "gha-cache": "gha",
    "buildx-docker-driver-cache": "gha",
    "gha-login-credentials": "gha",
    "copy-source-missing": "dockerfile",
    "dockerfile-unknown-instruction": "dockerfile",
    "dockerfile-stage-name": "dockerfile",
    "script-crlf": "dockerfile",
    "command-not-found": "dockerfile",
    "run-nonzero": "dockerfile",
}


@dataclass(frozen=True, slots=True)
class Case:
    id: str  # family/index
    family: str
    url: str
    tool: str
    log: str
    cause: str
    fix: str
    other_backend_helps: bool | None  # None: the thread does not settle it
    note: str
    part: str  # "tuning" or "test"


def family_of(rule_id: str) -> str:
    return FAMILY_OF_RULE.get(rule_id, "unrecognised" if rule_id == "unrecognised" else "other")


def part_of(url: str) -> str:
    """The fixed part of a thread: "tuning" (about two thirds) or "test"."""
    if url in MOVED_TO_TUNING:
        return "tuning"
    digest = hashlib.sha256(f"{SEED}:{url}".encode()).digest()
    return "tuning" if int.from_bytes(digest[:8], "big") / 2**64 < TUNING_SHARE else "test"


def load_corpus(directory: Path = CORPUS_DIR) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(directory.glob("*.toml")):
        family = path.stem
        for index, raw in enumerate(tomllib.loads(path.read_text(encoding="utf-8"))["case"]):
            helps = raw["other_backend_helps"]
            cases.append(
                Case(
                    id=f"{family}/{index}",
                    family=family,
                    url=raw["url"],
                    tool=raw["tool"],
                    log=raw["log"],
                    cause=raw["cause"],
                    fix=raw["fix"],
                    other_backend_helps=helps if isinstance(helps, bool) else None,
                    note=raw.get("note", ""),
                    part=part_of(raw["url"]),
                )
            )
    return cases
