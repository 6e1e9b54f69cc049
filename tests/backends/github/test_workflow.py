"""The workflow of `anybuild github init`: golden, valid for GitHub's schema and actionlint, pinned."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from anybuild.backends.github.lint import lint_workflow, load_workflow
from anybuild.backends.github.pins import PINNED_USES, PINS
from anybuild.backends.github.workflow import (
    RegistryLogin,
    WorkflowSpec,
    registry_login,
    render_workflow,
    workflow_spec,
)
from anybuild.config import GithubSettings, load_config
from tests.backends.github.validators import actionlint, check_jsonschema

ROOT = Path(__file__).resolve().parents[3]
MOLTBOOK = ROOT / "examples" / "moltbook" / "anybuild.toml"
GOLDEN = Path(__file__).parent / "golden" / "moltbook-anybuild.yml"


def moltbook_workflow() -> str:
    spec = workflow_spec(load_config(MOLTBOOK), requirement="anybuild==0.1.0", working_directory=".")
    return render_workflow(spec)


def test_workflow_moltbook_matches_golden() -> None:
    text = moltbook_workflow()
    if os.environ.get("ANYBUILD_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), f"{GOLDEN} differs; diff it, and rewrite with ANYBUILD_UPDATE_GOLDEN=1"


def test_workflow_moltbook_passes_github_workflow_schema(tmp_path: Path) -> None:
    path = tmp_path / "anybuild.yml"
    path.write_text(moltbook_workflow())
    done = check_jsonschema(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout

    broken = tmp_path / "broken.yml"  # the check can fail: a key GitHub does not have
    broken.write_text(moltbook_workflow().replace("    timeout-minutes: 60\n", "    timeout-minute: 60\n"))
    assert check_jsonschema(broken).returncode == 1


def test_workflow_moltbook_passes_actionlint(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    path = workflows / "anybuild.yml"
    path.write_text(moltbook_workflow())
    assert actionlint(path) == []

    # the check can fail: an unknown context and an input that is not declared
    path.write_text(moltbook_workflow().replace("${{ inputs.args }}", "${{ inputs.argz }}"))
    findings = actionlint(path)
    assert [f.kind for f in findings] == ["expression"], findings
    assert "argz" in findings[0].message


def test_workflow_every_uses_pinned_to_a_commit() -> None:
    data, _ = load_workflow(moltbook_workflow())
    uses = [step["uses"] for step in data["jobs"]["build"]["steps"] if "uses" in step]
    assert uses == [pin.uses for pin in PINS]
    for text in uses:
        assert PINNED_USES.match(text), text
    for pin in PINS:
        assert re.fullmatch(r"[0-9a-f]{40}", pin.sha)
        assert pin.source  # where the commit was read
        assert f"{pin.uses} # {pin.version}" in moltbook_workflow()


def test_workflow_moltbook_shape_is_what_dispatch_relies_on() -> None:
    data, _ = load_workflow(moltbook_workflow())
    inputs = data["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"request-id", "images", "args"}
    assert yaml.safe_load(inputs["images"]["default"]) == ["api", "frontend"]
    assert data["run-name"] == "anybuild ${{ inputs.request-id }}"
    assert data["permissions"] == {"contents": "read"}
    job = data["jobs"]["build"]
    assert job["permissions"] == {"contents": "read", "packages": "write"}  # ghcr.io
    assert job["timeout-minutes"] == 60
    assert data["concurrency"]["group"] == "anybuild-${{ github.ref }}"
    build = next(s for s in job["steps"] if s.get("id") == "build")
    assert "${{" not in build["run"]  # inputs reach the script through the environment only
    assert build["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert lint_workflow(moltbook_workflow()).findings == ()


@pytest.mark.parametrize(
    ("host", "secrets", "expected"),
    [("ghcr.io", {}, RegistryLogin(host="ghcr.io")),
     ("docker.io", {}, RegistryLogin(host="docker.io", secret_prefix="DOCKERHUB")),
     ("registry.example.com:5000", {}, RegistryLogin(host="registry.example.com:5000",
                                                     secret_prefix="REGISTRY_EXAMPLE_COM_5000")),
     ("ghcr.io", {"ghcr.io": "BOT"}, RegistryLogin(host="ghcr.io", secret_prefix="BOT"))],
    ids=["ghcr-token", "docker-hub", "other-host", "configured"],
)
def test_registry_login_names_secrets(host: str, secrets: dict[str, str], expected: RegistryLogin) -> None:
    assert registry_login(host, GithubSettings(secrets=secrets)) == expected


def test_workflow_other_registry_id_token_and_runner_labels_still_valid(tmp_path: Path) -> None:
    settings = GithubSettings(id_token=True, runs_on=("self-hosted", "linux"), timeout_minutes=30)
    spec = WorkflowSpec(images=("api",), settings=settings, requirement="anybuild==0.1.0",
                        logins=(RegistryLogin(host="registry.example.com", secret_prefix="EXAMPLE"),),
                        working_directory="services/build")
    text = render_workflow(spec)
    data, _ = load_workflow(text)
    job = data["jobs"]["build"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}  # no ghcr.io: no packages: write
    assert job["runs-on"] == ["self-hosted", "linux"]
    assert job["defaults"]["run"]["working-directory"] == "services/build"
    login = next(s for s in job["steps"] if s.get("name") == "Log in to registry.example.com")
    assert login["env"] == {"REGISTRY_USERNAME": "${{ secrets.EXAMPLE_USERNAME }}",
                            "REGISTRY_PASSWORD": "${{ secrets.EXAMPLE_PASSWORD }}"}
    assert lint_workflow(text, id_token_allowed=True).findings == ()
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "anybuild.yml").write_text(text)
    assert check_jsonschema(workflows / "anybuild.yml").returncode == 0
    # actionlint does not know the self-hosted label set of this runner ("linux" is one of its defaults)
    assert actionlint(workflows / "anybuild.yml") == []


def test_workflow_action_inputs_known_to_actionlint_for_the_majors_it_knows(tmp_path: Path) -> None:
    """actionlint 1.7.7 does not know the v7 releases pinned; under the majors it knows, it checks every `with:`."""
    text = moltbook_workflow()
    for pin, major in ((PINS[0], "v4"), (PINS[1], "v5"), (PINS[2], "v4")):
        text = text.replace(f"{pin.uses} # {pin.version}", f"{pin.action}@{major}")
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    path = workflows / "anybuild.yml"
    path.write_text(text)
    assert actionlint(path) == []
    path.write_text(text.replace("          retention-days: 7\n", "          retention-days: 7\n          bogus: 1\n"))
    assert ['input "bogus" is not defined' in f.message for f in actionlint(path)] == [True]
