"""Evaluate tag rules against a :class:`~anybuild.gitstate.GitState`: tags, version, labels, and why.

The semantics are docker/metadata-action's:

- rules run in priority order (highest first; ties keep their written order);
- each rule yields at most one tag, with its own ``prefix``/``suffix`` or else the flavor's;
- the first tag is the *version* (the ``org.opencontainers.image.version`` label), the
  others follow without duplicates;
- with ``latest=auto`` the first rule that yields a tag decides whether ``latest`` is
  added: yes for ``type=ref,event=tag``, ``type=match`` and released ``type=semver`` /
  ``type=pep440`` versions, no for everything else (``latest=true|false`` forces it);
  ``latest`` comes last, with the flavor's prefix/suffix only when ``onlatest=true``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from anybuild.errors import ConfigError
from anybuild.tags.labels import oci_labels, resolve_created
from anybuild.tags.rules import Flavor, LatestMode, RefEvent, RuleType, ShaFormat, TagRule, parse_flavor, parse_rules
from anybuild.tags.sanitize import sanitize_image_name, sanitize_tag
from anybuild.tags.template import Value, date_helper, is_single_expression, render
from anybuild.tags.version import parse_pep440, parse_semver

if TYPE_CHECKING:
    from anybuild.gitstate import GitState

__all__ = ["Explanation", "Metadata", "Outcome", "compute_metadata"]

DEFAULT_SHORT_SHA_LENGTH = 7


class Outcome(StrEnum):
    PRODUCED = "produced"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """What one rule did, and why."""

    rule: str
    priority: int
    outcome: Outcome
    tag: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "priority": self.priority, "outcome": str(self.outcome),
                "tag": self.tag, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class Metadata:
    """Tags (bare and as references), the version, the labels, the annotations (the OCI
    labels for manifests and indexes), and an explanation per rule."""

    tags: tuple[str, ...]
    references: tuple[str, ...]
    version: str
    latest: bool
    latest_reason: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    explanations: tuple[Explanation, ...]
    notes: tuple[str, ...] = ()
    created_from: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tags": list(self.tags),
            "references": list(self.references),
            "latest": {"added": self.latest, "reason": self.latest_reason},
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "created_from": self.created_from,
            "rules": [e.to_dict() for e in self.explanations],
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Result:
    """A rule's raw tag (before sanitising) and its latest=auto opinion, or why it has none."""

    raw: str | None
    reason: str
    latest: bool = False


@dataclass(slots=True)
class _Evaluator:
    git: GitState
    flavor: Flavor
    now: datetime
    short_sha_length: int
    globals: dict[str, Value] = field(default_factory=dict)

    def __post_init__(self) -> None:
        git = self.git
        self.globals = {
            "branch": git.ref_branch or "",
            "tag": git.ref_tag or "",
            "sha": self.short_sha(),
            "base_ref": git.base_ref if (git.ref_tag is not None or git.pull_request is not None) else "",
            "is_default_branch": "true" if self.is_default_branch() else "false",
            "date": date_helper(self.now),
            "commit_date": date_helper(git.commit_time or self.now),
        }

    def short_sha(self) -> str:
        return self.git.sha[: self.short_sha_length] if self.short_sha_length > 0 else self.git.sha

    def is_default_branch(self) -> bool:
        branch = self.git.ref.removeprefix("refs/heads/")
        if not branch:
            return False
        if self.git.default_branch and branch == self.git.default_branch:
            return True
        # these events always run on the last commit of the default branch
        return re.search(r"create|discussion|issues|schedule", self.git.event) is not None

    def expand(self, text: str) -> str:
        return render(text, self.globals)

    def where(self) -> str:
        ref = self.git.ref or "no ref (detached HEAD without a tag)"
        return f"event {self.git.event}, {ref}"

    def affix(self, value: str, rule: TagRule) -> str:
        if rule.prefix is not None:
            value = self.expand(rule.prefix) + value
        elif self.flavor.prefix:
            value = self.expand(self.flavor.prefix) + value
        if rule.suffix is not None:
            value += self.expand(rule.suffix)
        elif self.flavor.suffix:
            value += self.expand(self.flavor.suffix)
        return value

    # --- one method per rule type -----------------------------------------------------------

    def evaluate(self, rule: TagRule) -> _Result:
        match rule.type:
            case RuleType.SCHEDULE:
                return self.schedule(rule)
            case RuleType.SEMVER | RuleType.PEP440:
                return self.version(rule)
            case RuleType.MATCH:
                return self.match(rule)
            case RuleType.EDGE:
                return self.edge(rule)
            case RuleType.REF:
                return self.ref(rule)
            case RuleType.RAW:
                return _Result(raw=self.affix(self.expand(rule.value), rule), reason="raw value", latest=False)
            case RuleType.SHA:
                if not self.git.sha:
                    return _Result(raw=None, reason="no commit (not a git checkout, or no commit yet)")
                sha = self.git.sha if rule.format is ShaFormat.LONG else self.short_sha()
                return _Result(raw=self.affix(sha, rule), reason=f"commit {self.git.sha[:12]}")

    def schedule(self, rule: TagRule) -> _Result:
        if "schedule" not in self.git.event:
            return _Result(raw=None, reason=f"only on schedule events ({self.where()})")
        context: dict[str, Value] = {"date": self.globals["date"], "commit_date": self.globals["commit_date"]}
        return _Result(raw=self.affix(render(rule.pattern, context), rule), reason="schedule event")

    def _version_source(self, rule: TagRule, *, keep_slashes: bool) -> tuple[str | None, str]:
        if rule.value:
            return self.expand(rule.value), "value="
        tag = self.git.ref_tag
        if tag is None:
            return None, f"not a tag build ({self.where()}); set value= to use another version"
        return (tag if keep_slashes else tag.replace("/", "-")), f"tag {tag}"

    def version(self, rule: TagRule) -> _Result:
        text, source = self._version_source(rule, keep_slashes=False)
        if text is None:
            return _Result(raw=None, reason=source)
        parsed = parse_semver(text) if rule.type is RuleType.SEMVER else parse_pep440(text)
        if parsed is None:
            spec = "a valid semver (https://semver.org)" if rule.type is RuleType.SEMVER else "PEP 440"
            return _Result(raw=None, reason=f"{text!r} ({source}) is not {spec}")
        fields: dict[str, Value] = dict(parsed.fields())
        if parsed.is_prerelease:
            pattern = rule.pattern if is_single_expression(rule.pattern, "raw") else "{{version}}"
            return _Result(
                raw=self.affix(render(pattern, fields), rule),
                reason=f"{text} ({source}) is a pre-release: only its full version is tagged, never latest",
                latest=False,
            )
        return _Result(raw=self.affix(render(rule.pattern, fields), rule),
                       reason=f"{text} ({source}) is a release", latest=True)

    def match(self, rule: TagRule) -> _Result:
        text, source = self._version_source(rule, keep_slashes=True)
        if text is None:
            return _Result(raw=None, reason=source)
        groups = _regex_groups(rule, text)
        if groups is None:
            return _Result(raw=None, reason=f"pattern {rule.pattern} does not match {text!r} ({source})")
        if rule.group >= len(groups) or groups[rule.group] is None:
            return _Result(raw=None, reason=f"group {rule.group} does not exist in {rule.pattern} for {text!r}")
        return _Result(raw=self.affix(groups[rule.group] or "", rule),
                       reason=f"pattern matched {text!r} ({source})", latest=True)

    def edge(self, rule: TagRule) -> _Result:
        branch = self.git.ref_branch
        if branch is None:
            return _Result(raw=None, reason=f"not a branch build ({self.where()})")
        edge_branch = rule.branch or self.git.default_branch
        if not edge_branch:
            return _Result(raw=None, reason="the default branch is unknown (no origin/HEAD): write branch=NAME")
        if branch != edge_branch:
            return _Result(raw=None, reason=f"branch {branch} is not the edge branch {edge_branch}")
        return _Result(raw=self.affix("edge", rule), reason=f"branch {branch} is the edge branch")

    def ref(self, rule: TagRule) -> _Result:
        git = self.git
        match rule.event:
            case RefEvent.BRANCH:
                if git.ref_branch is None:
                    return _Result(raw=None, reason=f"not a branch build ({self.where()})")
                return _Result(raw=self.affix(git.ref_branch, rule), reason=f"branch {git.ref_branch}")
            case RefEvent.TAG:
                if git.ref_tag is None:
                    return _Result(raw=None, reason=f"not a tag build ({self.where()})")
                return _Result(raw=self.affix(git.ref_tag, rule), reason=f"tag {git.ref_tag}", latest=True)
            case _:
                if git.pull_request is None:
                    return _Result(raw=None, reason=f"not a pull request ({self.where()})")
                return _Result(raw=self.affix(git.pull_request, rule), reason=f"pull request {git.pull_request}")


def _regex_groups(rule: TagRule, text: str) -> list[str | None] | None:
    """JavaScript's ``text.match(pattern)``: the groups, or with the ``g`` flag every match."""
    pattern, flags_text = rule.pattern, ""
    if (literal := re.fullmatch(r"/(.+)/([a-z]*)", rule.pattern, re.DOTALL)) is not None:
        pattern, flags_text = literal.group(1), literal.group(2)
    flags = 0
    for letter, flag in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL)):
        if letter in flags_text:
            flags |= flag
    pattern = re.sub(r"\(\?<(?![=!])", "(?P<", pattern)  # JS named groups
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigError(f"tag rule {rule.text!r}: invalid pattern: {exc}", key="tags", value=rule.text,
                          hint="fix the regular expression (quote the field if it has a comma)",
                          docs="tags") from exc
    if "g" in flags_text:
        found = [m.group(0) for m in compiled.finditer(text)]
        return list(found) if found else None
    match = compiled.search(text)
    if match is None:
        return None
    return [match.group(0), *match.groups()]


def compute_metadata(
    rules: Iterable[str],
    flavor: Iterable[str],
    git: GitState,
    repository: str,
    now: datetime,
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "",
    reproducible: bool = False,
    source_date_epoch: int | None = None,
    short_sha_length: int = DEFAULT_SHORT_SHA_LENGTH,
) -> Metadata:
    """The tags, version and OCI labels *rules* give for *git*; *now* is the clock for
    ``{{date}}`` and, unless SOURCE_DATE_EPOCH or reproducibility say otherwise, ``created``.
    *labels* override the OCI labels; *title* replaces the repository name as the title."""
    parsed = parse_rules(rules)
    flavor_value = parse_flavor(flavor)
    evaluator = _Evaluator(git=git, flavor=flavor_value, now=now, short_sha_length=short_sha_length)
    version: str | None = None
    others: list[str] = []
    latest: bool | None = None
    latest_reason = "no rule produced a tag"
    explanations: list[Explanation] = []

    def explain(rule: TagRule, outcome: Outcome, tag: str | None, reason: str) -> None:
        if rule.extra:
            reason += f"; unknown attribute(s) ignored: {', '.join(sorted(rule.extra))}"
        explanations.append(Explanation(rule=rule.text, priority=rule.priority, outcome=outcome,
                                        tag=tag, reason=reason))

    for rule in parsed:
        enabled = evaluator.expand(rule.enable)
        if enabled not in ("true", "false"):
            raise ConfigError(f"tag rule {rule.text!r}: enable={rule.enable} gives {enabled!r}",
                              key="tags", value=rule.text,
                              hint="enable= must be true or false, or an expression giving one, "
                                   "e.g. enable={{is_default_branch}}", docs="tags")
        if enabled == "false":
            shown = "" if rule.enable == "false" else f" ({rule.enable} is false for {evaluator.where()})"
            explain(rule, Outcome.DISABLED, None, f"enable=false{shown}")
            continue
        result = evaluator.evaluate(rule)
        if result.raw is None:
            explain(rule, Outcome.SKIPPED, None, result.reason)
            continue
        tag, changes = sanitize_tag(result.raw)
        reason = "; ".join([result.reason, *changes])
        if not tag:
            explain(rule, Outcome.SKIPPED, None, f"{reason}; the tag is empty")
            continue
        if latest is None:
            latest = (result.latest if flavor_value.latest is LatestMode.AUTO
                      else flavor_value.latest is LatestMode.TRUE)
            latest_reason = _latest_reason(rule, flavor_value, result, latest)
        if tag == version or tag in others:
            explain(rule, Outcome.DUPLICATE, tag, f"{reason}; same tag as a higher-priority rule")
            continue
        if version is None:
            version = tag
        else:
            others.append(tag)
        explain(rule, Outcome.PRODUCED, tag, reason)

    tags: list[str] = [version, *others] if version is not None else []
    if tags and latest:
        word = (flavor_value.prefix if flavor_value.prefix_on_latest else "") + "latest" + (
            flavor_value.suffix if flavor_value.suffix_on_latest else "")
        tags.append(sanitize_tag(word)[0])
    image = sanitize_image_name(repository)
    created, created_from = resolve_created(now=now, commit_time=git.commit_time,
                                            source_date_epoch=source_date_epoch, reproducible=reproducible)
    return Metadata(
        tags=tuple(tags),
        references=tuple(f"{image}:{tag}" if image else tag for tag in tags),
        version=version or "",
        latest=bool(tags and latest),
        latest_reason=latest_reason,
        labels=oci_labels(git=git, version=version or "", created=created, custom=labels or {},
                          render=evaluator.expand, title=title),
        # like metadata-action, the configured labels do not become annotations
        annotations=oci_labels(git=git, version=version or "", created=created, custom={},
                               render=evaluator.expand, title=title),
        explanations=tuple(explanations),
        notes=git.notes,
        created_from=created_from,
    )


def _latest_reason(rule: TagRule, flavor: Flavor, result: _Result, latest: bool) -> str:
    if flavor.latest is not LatestMode.AUTO:
        return f"flavor latest={flavor.latest}"
    verdict = "added" if latest else "not added"
    return f"{verdict}: the first rule with a tag is {rule.text!r} ({result.reason}) and latest=auto " + (
        "tags latest for tags, matches and released versions" if latest
        else "adds latest only for tags, matches and released versions")
