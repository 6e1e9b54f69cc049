"""Facts + policy → Plan: which backends to try, in which order, and why (pure).

The policy is the preference order (``[build] backends`` in anybuild.toml) and
an optional ``--backend`` override. Every backend in the order either becomes
a :class:`Candidate` (it can build here, with the reason) or an
:class:`Exclusion` (why not, with the evidence and the fix).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from anybuild.backends.base import Verdict
from anybuild.backends.catalog import LOCAL_BACKENDS, AvailabilityCheck
from anybuild.config import BackendName, Config
from anybuild.environment.facts import Facts

__all__ = ["Candidate", "Exclusion", "Plan", "plan_build", "push_registries"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    backend: BackendName
    reason: str
    evidence: tuple[str, ...] = ()
    local: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": str(self.backend),
            "reason": self.reason,
            "evidence": list(self.evidence),
            "local": self.local,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Exclusion:
    backend: BackendName
    reason: str
    evidence: tuple[str, ...] = ()
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"backend": str(self.backend), "reason": self.reason, "evidence": list(self.evidence), "fix": self.fix}


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Backends to try in order, and those left out."""

    candidates: tuple[Candidate, ...]
    exclusions: tuple[Exclusion, ...]
    order: tuple[BackendName, ...]
    override: BackendName | None = None

    @property
    def first(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def can_build_locally(self) -> bool:
        return any(c.local for c in self.candidates)

    def exclusion(self, backend: BackendName) -> Exclusion | None:
        return next((e for e in self.exclusions if e.backend is backend), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": [str(b) for b in self.order],
            "override": str(self.override) if self.override else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "exclusions": [e.to_dict() for e in self.exclusions],
        }


def plan_build(
    facts: Facts,
    *,
    order: Sequence[BackendName],
    checks: Mapping[BackendName, AvailabilityCheck],
    override: BackendName | None = None,
) -> Plan:
    """Ask each backend of the policy whether it can build here; keep the order of preference.

    With *override*, only that backend is considered (whatever the configured order),
    and the others are listed as excluded by the override.
    """
    considered = (override,) if override else tuple(dict.fromkeys(order))
    candidates: list[Candidate] = []
    exclusions: list[Exclusion] = []
    for name in considered:
        check = checks.get(name)
        verdict = check(facts) if check else Verdict(ok=False, reason=f"no availability check for {name}")
        if verdict.ok:
            candidates.append(
                Candidate(backend=name, reason=verdict.reason, evidence=verdict.evidence, local=name in LOCAL_BACKENDS)
            )
        else:
            exclusions.append(
                Exclusion(backend=name, reason=verdict.reason, evidence=verdict.evidence, fix=verdict.fix)
            )
    if candidates and not any(c.local for c in candidates) and any(e.backend in LOCAL_BACKENDS for e in exclusions):
        # a remote backend builds because nothing here can: say so where its reason is shown
        first = candidates[0]
        candidates[0] = replace(first, reason=f"no local backend can build here, so: {first.reason}")
    if override:
        exclusions += [
            Exclusion(backend=name, reason=f"--backend {override} was given") for name in order if name != override
        ]
    return Plan(candidates=tuple(candidates), exclusions=tuple(exclusions), order=tuple(considered), override=override)


def push_registries(config: Config | None) -> tuple[str, ...]:
    """The registry hosts a configuration pushes to (for the credential facts)."""
    if config is None:
        return ()
    hosts: list[str] = []
    if config.project.registry:
        hosts.append(config.project.registry)
    for spec in config.images:
        first = spec.repository.split("/", 1)[0]
        if "/" in spec.repository and ("." in first or ":" in first or first == "localhost"):
            hosts.append(first)
    hosts += list(config.registries)
    return tuple(dict.fromkeys(hosts))
