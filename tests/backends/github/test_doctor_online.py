"""`anybuild doctor --online` reports GitHub access from attempts against the (fake) API."""

from __future__ import annotations

import json

from tests.backends.github.conftest import Checkout
from tests.backends.github.fakegithub import FakeGithub


def github_facts(checkout: Checkout) -> dict[str, dict[str, object]]:
    done = checkout.anybuild("doctor", "--online", "--json")
    data = json.loads(done.stdout)
    return {k: v for k, v in data["facts"].items() if k.startswith("github.")}


def test_doctor_online_token_scopes_workflow_and_actions(checkout: Checkout, fake: FakeGithub) -> None:
    facts = github_facts(checkout)
    assert facts["github.token"]["value"] is True
    assert facts["github.repository"]["value"] == "acme/moltbook"
    assert facts["github.repository_access"]["value"] is True
    assert "permissions.push=true" in facts["github.repository_access"]["evidence"]
    assert facts["github.token_scopes"]["value"] == "classic token, scopes: repo, workflow"
    assert facts["github.workflow"]["value"] is True
    assert ".github/workflows/anybuild.yml on main (the default branch): present, state active" in \
        facts["github.workflow"]["evidence"]
    assert facts["github.actions_enabled"]["value"] is True
    assert ("GET", "/repos/acme/moltbook/contents/.github/workflows/anybuild.yml?ref=main") in \
        [(m, p) for m, p, _ in fake.requests]


def test_doctor_online_workflow_missing_fine_grained_token_no_admin(checkout: Checkout, fake: FakeGithub) -> None:
    fake.workflow_on_default_branch = False
    fake.scopes = None  # fine-grained tokens get no X-OAuth-Scopes header
    fake.actions_enabled = None  # and without administration: read the setting is refused
    facts = github_facts(checkout)
    assert facts["github.workflow"]["value"] is False
    assert "absent: run `anybuild github init`, commit, push" in facts["github.workflow"]["evidence"]
    assert facts["github.token_scopes"]["value"].startswith("fine-grained or app token")
    assert facts["github.actions_enabled"]["value"] is None
    assert "administration: read" in facts["github.actions_enabled"]["evidence"]


def test_doctor_online_bad_token(checkout: Checkout, fake: FakeGithub) -> None:
    done = checkout.anybuild("doctor", "--online", "--json", GH_ENTERPRISE_TOKEN="tok-wrong-value")
    facts = json.loads(done.stdout)["facts"]
    assert facts["github.repository_access"]["value"] is False
    assert "401 Bad credentials" in facts["github.repository_access"]["evidence"]
    assert "tok-wrong-value" not in done.stdout
