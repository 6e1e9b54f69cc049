"""`anybuild build --backend github` through the CLI, against the fake GitHub on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import jsonschema
import pytest

from anybuild.result import load_result_schema
from tests.backends.github.conftest import Checkout, result_document
from tests.backends.github.fakegithub import FakeGithub, Fault

FAILED_PUSH_LOG = """##[group]Run actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1
Syncing repository: acme/moltbook
##[endgroup]
##[group]Run set -euo pipefail
set -euo pipefail
shell: /usr/bin/bash -e {0}
##[endgroup]
anybuild: building with docker: a Docker daemon answers (BuildKit)
#8 [3/4] RUN npm ci --omit=dev
#8 DONE 5.1s
pushing ghcr.io/acme/moltbook-frontend:main
error: pushing ghcr.io/acme/moltbook-frontend:main: PUT https://ghcr.io/v2/acme/moltbook-frontend/manifests/main \
→ 403 denied: permission_denied: write_package
##[error]Process completed with exit code 4.
##[group]Run actions/upload-artifact@043fb46d1a93c77aae656e7c1c64a875d1fc6a0a
Artifact anybuild-result-frontend has been successfully uploaded!
##[endgroup]
"""


def dispatched(fake: FakeGithub) -> list[dict[str, object]]:
    return fake.dispatches


def summary_and_result(checkout: Checkout, *args: str) -> tuple[int, str, dict[str, object]]:
    done = checkout.anybuild("build", "--all", "--push", "--backend", "github", "--metadata-file",
                             str(checkout.home / "result.json"), *args)
    result = json.loads((checkout.home / "result.json").read_text())
    jsonschema.validate(result, load_result_schema())
    return done.returncode, done.stdout + done.stderr, result


def test_build_github_dispatch_answered_with_run_details_two_jobs_digests_from_artifacts(
        checkout: Checkout, fake: FakeGithub) -> None:
    code, output, result = summary_and_result(checkout)
    assert code == 0, output
    body = fake.dispatches[0]
    assert body["ref"] == "main" and body["return_run_details"] is True
    inputs = body["inputs"]
    assert isinstance(inputs, dict)
    assert json.loads(inputs["images"]) == ["api", "frontend"] and json.loads(inputs["args"]) == ["--push"]
    assert fake.paths("GET").count("/repos/acme/moltbook/actions/workflows/anybuild.yml/runs") == 0  # not needed
    images = {i["name"]: i for i in result["images"]}  # type: ignore[union-attr]
    for name in ("api", "frontend"):
        image = images[name]
        assert image["ok"] and image["backend"] == "github"
        assert image["digest"] == "sha256:" + (name.encode().hex() * 64)[:64]
        assert image["references"] == [f"{r}@{image['digest']}" for r in checkout.expected_references(name)]
        assert "workflow run 9001" in image["backend_reason"] and "on the runner: docker" in image["backend_reason"]
        assert image["warnings"] == []
    assert "2/2 image(s) built" in output
    assert images["api"]["digest"][:19] in output  # the summary table shows the digests
    assert "step 6/8: Build api" in output and "step 6/8: Build frontend" in output  # each job's step, as it ran
    assert fake.blob_requests and fake.blob_auth_rejected == 0  # artifacts fetched from the other host, no token


def test_build_github_204_run_found_by_request_id_on_third_look(checkout: Checkout, fake: FakeGithub) -> None:
    fake.dispatch_mode = "no-content"
    fake.run_listed_after = 2
    code, output, result = summary_and_result(checkout)
    assert code == 0, output
    looks = [p for p in fake.paths("GET") if p.startswith("/repos/acme/moltbook/actions/workflows/anybuild.yml/runs")]
    assert len(looks) == 3
    assert "event=workflow_dispatch" in looks[0] and "branch=main" in looks[0]
    request_id = fake.dispatches[0]["inputs"]["request-id"]  # type: ignore[index]
    assert f"looking for the run named 'anybuild {request_id}'" in output
    assert result["ok"] is True


def test_build_github_older_ghes_without_return_run_details(checkout: Checkout, fake: FakeGithub) -> None:
    fake.dispatch_mode = "old-ghes"
    code, output, _ = summary_and_result(checkout)
    assert code == 0, output
    assert len(fake.dispatches) == 1 and "return_run_details" not in fake.dispatches[0]
    assert len(fake.paths("POST")) == 2  # refused with the parameter, accepted without
    assert "does not know return_run_details" in output


def test_build_github_workflow_not_dispatchable_on_default_branch_names_init(checkout: Checkout,
                                                                           fake: FakeGithub) -> None:
    fake.workflow_dispatchable = False
    done = checkout.anybuild("build", "--all", "--push", "--backend", "github")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "has no dispatchable workflow anybuild.yml on its default branch" in done.stderr
    assert "422 Workflow does not have 'workflow_dispatch' trigger" in done.stderr
    assert "hint: run `anybuild github init`, commit .github/workflows/anybuild.yml and push it" in done.stderr
    assert fake.runs == {}


def test_build_github_failed_job_log_through_redirect_shown_and_diagnosed(checkout: Checkout,
                                                                         fake: FakeGithub) -> None:
    fake.plans["frontend"].conclusion = "failure"
    fake.plans["frontend"].log = FAILED_PUSH_LOG
    fake.plans["frontend"].result = result_document("frontend", (), ok=False)
    code, output, result = summary_and_result(checkout)
    assert code == 1, output
    assert "frontend: the log of step 'Build frontend':" in output
    assert "frontend | error: pushing ghcr.io/acme/moltbook-frontend:main" in output
    assert "frontend | Syncing repository" not in output  # only the failing step's lines
    images = {i["name"]: i for i in result["images"]}  # type: ignore[union-attr]
    assert images["api"]["ok"] is True
    failed = images["frontend"]
    assert failed["ok"] is False and failed["error"]["kind"] == "build"
    assert "step 'Build frontend' failed (failure) in workflow run 9001" in failed["error"]["message"]
    assert failed["diagnosis"]["rule"] == "ghcr-package-permission"
    assert "packages: write" in failed["error"]["hint"]
    assert "root cause" in output
    logs = [t for t, _ in fake.blob_requests if t.startswith("/logs/")]
    assert logs and fake.blob_auth_rejected == 0  # the signed-URL host saw no Authorization header


def test_build_github_rate_limits_and_server_errors_waited_out(checkout: Checkout, fake: FakeGithub) -> None:
    secondary = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                           "again.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits"}
    fake.faults += [
        Fault("GET", r"/actions/runs/\d+$", 403, body=secondary, headers={"retry-after": "1"}),
        Fault("GET", r"/actions/runs/\d+/jobs$", 403, body={"message": "API rate limit exceeded for user ID 1."},
              headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 1)}),
        Fault("GET", r"/actions/runs/\d+/artifacts$", 502, body={"message": "Server Error"}),
    ]
    started = time.monotonic()
    code, output, result = summary_and_result(checkout)
    assert code == 0, output
    assert time.monotonic() - started >= 1.0  # retry-after was honoured, not skipped
    assert "GitHub rate limit (403) on reading run 9001; retrying in 1s" in output
    assert "GitHub rate limit (403) on reading the jobs of run 9001; retrying in" in output
    assert "502 Server Error; retrying in 1s" in output
    assert all(f.times == 0 for f in fake.faults)
    assert result["ok"] is True


def test_build_github_conditional_requests_304(checkout: Checkout, fake: FakeGithub) -> None:
    fake.hold = True
    proc = checkout.popen("build", "--all", "--push", "--backend", "github")
    try:
        deadline = time.monotonic() + 60
        while fake.not_modified < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert fake.not_modified >= 4  # the run and its jobs, unchanged, answered 304
        fake.hold = False
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    conditional = [h for m, p, h in fake.requests if m == "GET" and "/actions/runs/" in p and "if-none-match" in h]
    assert conditional
    assert "2/2 image(s) built" in out + err


@pytest.mark.parametrize(("sent", "word"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"),
                                            (signal.SIGHUP, "SIGHUP")], ids=["ctrl-c", "sigterm", "sighup"])
def test_build_github_ctrl_c_cancels_the_run(checkout: Checkout, fake: FakeGithub, sent: int, word: str) -> None:
    fake.hold = True
    proc = checkout.popen("build", "--all", "--push", "--backend", "github")
    try:
        deadline = time.monotonic() + 60
        while (not fake.runs or next(iter(fake.runs.values())).reads < 4) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.runs and proc.poll() is None
        proc.send_signal(sent)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 128 + sent, err  # 130, 143, 129: the shell's status for the signal
    assert fake.cancels == [9001]
    assert f"interrupted by {word}: cancelled workflow run 9001" in err
    assert "Traceback" not in err


def test_build_github_dirty_tree_refused_with_hint_then_allowed(checkout: Checkout, fake: FakeGithub) -> None:
    source = checkout.path / "api" / "server.js"
    source.write_text("// changed\n")
    (checkout.path / "NOTES.md").write_text("not in any context\n")
    done = checkout.anybuild("build", "--all", "--push", "--backend", "github")
    assert done.returncode == 2
    assert "uncommitted changes a local build would include" in done.stderr
    assert "api/server.js (untracked)" in done.stderr and "NOTES.md" not in done.stderr
    assert "hint: commit and push them (git add -A && git commit" in done.stderr
    assert "--allow-dirty" in done.stderr
    assert fake.dispatches == []

    code, output, result = summary_and_result(checkout, "--allow-dirty")
    assert code == 0, output
    assert "--allow-dirty: left out of the build, not committed: api/server.js (untracked)" in output
    api = next(i for i in result["images"] if i["name"] == "api")  # type: ignore[union-attr]
    assert "left out of the build (uncommitted): api/server.js (untracked)" in api["warnings"]


def test_build_github_head_not_on_remote_refused(checkout: Checkout, fake: FakeGithub) -> None:
    fake.branches["main"] = "1" * 40
    done = checkout.anybuild("build", "--all", "--push", "--backend", "github")
    assert done.returncode == 2
    assert f"HEAD is {checkout.sha[:12]} but acme/moltbook's branch main is 111111111111" in done.stderr
    assert "git push origin HEAD:main" in done.stderr
    del fake.branches["main"]
    missing = checkout.anybuild("build", "--all", "--push", "--backend", "github")
    assert missing.returncode == 2 and "git push -u origin main" in missing.stderr
    assert fake.dispatches == []


def test_build_github_tags_differ_from_here_warns(checkout: Checkout, fake: FakeGithub) -> None:
    fake.plans["api"].result = result_document("api", ("ghcr.io/acme/moltbook-api:other",))
    code, output, result = summary_and_result(checkout)
    assert code == 0, output
    api = next(i for i in result["images"] if i["name"] == "api")  # type: ignore[union-attr]
    assert any(w.startswith("the run pushed ghcr.io/acme/moltbook-api:other; here the tag rules give")
               for w in api["warnings"])


def test_build_github_one_directory_and_secrets_refused(checkout: Checkout, fake: FakeGithub) -> None:
    directory = checkout.anybuild("build", "api", "--backend", "github", "--secret", "id=npm,env=HOME")
    assert directory.returncode == 2
    assert "--secret values stay on this machine" in directory.stderr
    loose = checkout.anybuild("build", str(checkout.path / "api"), "--backend", "github", "-t", "x/y:1")
    assert loose.returncode == 2
    assert "builds the images of anybuild.toml in one workflow run, not the directory" in loose.stderr
    assert "hint: name the images: anybuild build NAME... --backend github" in loose.stderr
    assert fake.dispatches == []


@pytest.mark.parametrize("source", ["env", "gh-hosts"], ids=["env-token", "gh-stored-token"])
def test_build_github_token_in_no_output_error_log_or_result(checkout: Checkout, fake: FakeGithub, token: str,
                                                             source: str, tmp_path: Path) -> None:
    env: dict[str, str] = {}
    if source == "gh-hosts":
        gh = tmp_path / "gh"
        gh.mkdir()
        (gh / "hosts.yml").write_text(f"{fake.host}:\n    oauth_token: {token}\n    user: dana\n")
        env = {"GH_ENTERPRISE_TOKEN": "", "GH_CONFIG_DIR": str(gh), "PATH": "/usr/bin:/bin"}
    fake.plans["frontend"].conclusion = "failure"
    # the token in the failing step's log, on the line the diagnosis keeps as evidence
    fake.plans["frontend"].log = FAILED_PUSH_LOG.replace(
        "write_package\n##[error]", f"write_package {token}\n##[error]leaked {token} ")
    fake.faults.append(Fault("GET", r"/actions/runs/\d+$", 500, body={"message": f"boom {token}"}))
    outputs = []
    for args, code in ((["--debug", "build", "--all", "--push", "--backend", "github", "-v", "--metadata-file",
                         str(checkout.home / "result.json")], 1),
                       (["build", "--all", "--push", "--backend", "github", "--json", "--progress", "json"], 1),
                       (["doctor", "--online", "--json"], None)):
        done = checkout.anybuild(*args, **env)
        outputs += [done.stdout, done.stderr]
        assert code is None or done.returncode == code, done.stderr
        fake.faults.append(Fault("GET", r"/actions/runs/\d+$", 500, body={"message": f"boom {token}"}))
    assert len(fake.dispatches) == 2, "both builds ran"
    result = json.loads((checkout.home / "result.json").read_text())
    assert result["images"][1]["diagnosis"]["rule"] == "ghcr-package-permission"  # from the log holding the token
    doctor = json.loads(outputs[-2])["facts"]
    assert doctor["github.repository_access"]["value"] is True
    assert any("***" in text for text in outputs)  # the token was there to hide, and hidden
    written = [p.read_text(errors="replace") for p in checkout.home.rglob("*") if p.is_file()]
    written += [p.read_text(errors="replace") for p in checkout.path.rglob("*")
                if p.is_file() and ".git/" not in str(p)]
    for text in outputs + written:
        assert token not in text
