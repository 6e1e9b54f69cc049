"""compute_metadata beyond the tag lists: explanations, latest, labels, created, errors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from anybuild.errors import ConfigError
from anybuild.gitstate import GitState
from anybuild.tags import Outcome, compute_metadata
from tests.tags.cases import DETACHED, EMPTY, NOW, PULL_REQUEST, PUSH_DEV, PUSH_MASTER, SHA_DEV, tag

RULES = ["type=ref,event=branch", "type=ref,event=tag", "type=ref,event=pr", "type=semver,pattern={{version}}",
         "type=sha", "type=edge"]


def _reasons(git_state: GitState, rules: list[str]) -> dict[str, tuple[Outcome, str]]:
    metadata = compute_metadata(rules, [], git_state, "user/app", NOW)
    return {e.rule: (e.outcome, e.reason) for e in metadata.explanations}


def test_explanations_detached_head_say_why_ref_rules_produce_nothing() -> None:
    reasons = _reasons(DETACHED, RULES)
    assert reasons["type=ref,event=branch"][0] is Outcome.SKIPPED
    assert "detached HEAD without a tag" in reasons["type=ref,event=branch"][1]
    assert "not a tag build" in reasons["type=semver,pattern={{version}}"][1]
    assert reasons["type=sha"][0] is Outcome.PRODUCED


def test_explanations_branch_push_names_the_ref() -> None:
    reasons = _reasons(PUSH_DEV, RULES)
    assert reasons["type=ref,event=tag"] == (Outcome.SKIPPED, "not a tag build (event push, refs/heads/dev)")
    assert reasons["type=ref,event=pr"][1].startswith("not a pull request")
    assert reasons["type=edge"][1] == "branch dev is not the edge branch master"


def test_explanations_invalid_semver_tag_says_so() -> None:
    reasons = _reasons(tag("sometag"), ["type=semver,pattern={{version}}"])
    assert reasons["type=semver,pattern={{version}}"] == (
        Outcome.SKIPPED, "'sometag' (tag sometag) is not a valid semver (https://semver.org)")


def test_explanations_prerelease_says_only_full_version() -> None:
    reasons = _reasons(tag("v2.0.8-beta.67"), ["type=semver,pattern={{major}}"])
    outcome, reason = reasons["type=semver,pattern={{major}}"]
    assert outcome is Outcome.PRODUCED
    assert "pre-release" in reason


def test_explanations_disabled_by_expression_names_the_expression() -> None:
    reasons = _reasons(PUSH_DEV, ["type=raw,value=latest,enable={{is_default_branch}}", "type=sha"])
    outcome, reason = reasons["type=raw,value=latest,enable={{is_default_branch}}"]
    assert outcome is Outcome.DISABLED
    assert "{{is_default_branch}} is false" in reason


def test_explanations_duplicate_tag_is_reported() -> None:
    reasons = _reasons(PUSH_DEV, ["type=ref,event=branch", "type=raw,dev"])
    assert reasons["type=raw,dev"][0] is Outcome.DUPLICATE


def test_explanations_sanitised_tag_reports_the_change() -> None:
    metadata = compute_metadata(["type=ref,event=branch"], [], replace(PUSH_DEV, ref="refs/heads/a/b"),
                                "user/app", NOW)
    assert "replaced with '-'" in metadata.explanations[0].reason


def test_explanations_edge_without_default_branch_asks_for_branch() -> None:
    reasons = _reasons(replace(PUSH_DEV, default_branch=None), ["type=edge"])
    assert "branch=NAME" in reasons["type=edge"][1]


def test_latest_reason_names_first_rule() -> None:
    metadata = compute_metadata(["type=semver,pattern={{version}}"], [], tag("v1.2.3"), "user/app", NOW)
    assert metadata.latest
    assert "type=semver" in metadata.latest_reason


def test_latest_forced_by_flavor_says_flavor() -> None:
    metadata = compute_metadata(["type=ref,event=tag"], ["latest=false"], tag("v1.2.3"), "user/app", NOW)
    assert not metadata.latest
    assert metadata.latest_reason == "flavor latest=false"


def test_enable_invalid_value_is_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        compute_metadata(["type=raw,value=x,enable=yes"], [], PUSH_DEV, "user/app", NOW)
    assert "enable" in info.value.hint


def test_match_invalid_regex_is_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        compute_metadata(["type=match,pattern=v(unclosed"], [], tag("v1"), "user/app", NOW)
    assert "invalid pattern" in info.value.message


def test_match_js_named_group_is_translated() -> None:
    metadata = compute_metadata(["type=match,pattern=v(?<ver>\\d+),group=1"], [], tag("v42"), "user/app", NOW)
    assert metadata.tags == ("42", "latest")


def test_references_lowercase_the_repository() -> None:
    metadata = compute_metadata(["type=ref,event=tag"], ["latest=false"], tag("v1.1.1"),
                                "ghcr.io/MyUSER/MyApp", NOW)
    assert metadata.references == ("ghcr.io/myuser/myapp:v1.1.1",)


def test_references_without_repository_are_bare_tags() -> None:
    metadata = compute_metadata(["type=ref,event=branch"], [], PUSH_DEV, "", NOW)
    assert metadata.references == ("dev",)


def test_short_sha_length_is_honoured() -> None:
    metadata = compute_metadata(["type=sha", "type=raw,{{sha}}"], [], PUSH_DEV, "user/app", NOW,
                                short_sha_length=12)
    assert metadata.tags == (SHA_DEV[:12], f"sha-{SHA_DEV[:12]}")




def test_labels_are_sorted_and_complete() -> None:
    metadata = compute_metadata(["type=semver,pattern={{version}}"], [], tag("v1.2.3"), "name/app", NOW)
    assert metadata.labels == {
        "org.opencontainers.image.created": "2020-01-10T00:30:00.000Z",
        "org.opencontainers.image.description": "",
        "org.opencontainers.image.licenses": "",
        "org.opencontainers.image.revision": SHA_DEV,
        "org.opencontainers.image.source": "https://github.com/octocat/Hello-World",
        "org.opencontainers.image.title": "Hello-World",
        "org.opencontainers.image.url": "https://github.com/octocat/Hello-World",
        "org.opencontainers.image.version": "1.2.3",
    }
    assert list(metadata.labels) == sorted(metadata.labels)


def test_labels_custom_override_and_expand_expressions() -> None:
    metadata = compute_metadata(
        ["type=ref,event=branch"], [], PUSH_DEV, "user/app", NOW,
        labels={"org.opencontainers.image.title": "MyTitle", "maintainer": "x",
                "org.opencontainers.image.created": "{{commit_date 'YYYY-MM-DDTHH:mm:ss.SSS[Z]'}}",
                "com.example.branch": "{{branch}}"},
    )
    assert metadata.labels["org.opencontainers.image.title"] == "MyTitle"
    assert metadata.labels["com.example.branch"] == "dev"
    assert metadata.labels["org.opencontainers.image.created"] == "2020-01-10T00:30:00.000Z"
    assert next(iter(metadata.labels)) == "com.example.branch"


def test_labels_title_argument_replaces_repository_name() -> None:
    metadata = compute_metadata([], [], PUSH_DEV, "user/app", NOW, title="moltbook")
    assert metadata.labels["org.opencontainers.image.title"] == "moltbook"


COMMIT = datetime(2019, 5, 4, 3, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("epoch", "reproducible", "created", "source"),
    [
        (0, False, "1970-01-01T00:00:00.000Z", "SOURCE_DATE_EPOCH"),
        (0, True, "1970-01-01T00:00:00.000Z", "SOURCE_DATE_EPOCH"),
        (None, True, "2019-05-04T03:02:01.000Z", "the commit time (reproducible build)"),
        (None, False, "2020-01-10T00:30:00.000Z", "the clock"),
    ],
    ids=["epoch", "epoch-wins", "reproducible", "clock"],
)
def test_labels_created_source_order(epoch: int | None, reproducible: bool, created: str, source: str) -> None:
    metadata = compute_metadata([], [], replace(PUSH_DEV, commit_time=COMMIT), "user/app", NOW,
                                source_date_epoch=epoch, reproducible=reproducible)
    assert metadata.labels["org.opencontainers.image.created"] == created
    assert metadata.created_from == source


def test_labels_reproducible_without_commit_falls_back_to_clock() -> None:
    metadata = compute_metadata([], [], EMPTY, "user/app", NOW, reproducible=True)
    assert metadata.created_from == "the clock"
    assert metadata.labels["org.opencontainers.image.revision"] == ""


def test_pr_labels_revision_is_the_pr_commit() -> None:
    metadata = compute_metadata([], [], PULL_REQUEST, "user/app", NOW)
    assert metadata.labels["org.opencontainers.image.revision"] == PULL_REQUEST.sha
    assert metadata.labels["org.opencontainers.image.version"] == "pr-15"


def test_to_dict_round_trips_through_json() -> None:
    import json

    metadata = compute_metadata(RULES, ["latest=auto"], PUSH_MASTER, "user/app",
                                datetime(2020, 1, 10, tzinfo=UTC))
    data = json.loads(json.dumps(metadata.to_dict()))
    assert data["version"] == "edge"
    assert data["tags"] == ["edge", "master", "sha-2665741"]
    assert {r["outcome"] for r in data["rules"]} == {"produced", "skipped"}


def test_explanations_unknown_attribute_is_reported() -> None:
    reasons = _reasons(PUSH_DEV, ["type=ref,event=branch,prefx=v"])
    outcome, reason = reasons["type=ref,event=branch,prefx=v"]
    assert outcome is Outcome.PRODUCED
    assert reason.endswith("unknown attribute(s) ignored: prefx")


def test_annotations_are_oci_labels_without_configured_labels() -> None:
    metadata = compute_metadata([], [], PUSH_DEV, "user/app", NOW, labels={"org.opencontainers.image.title": "T"})
    assert metadata.labels["org.opencontainers.image.title"] == "T"
    assert metadata.annotations["org.opencontainers.image.title"] == "Hello-World"
    assert metadata.annotations["org.opencontainers.image.version"] == "dev"
