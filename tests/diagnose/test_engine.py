"""Ranking, red herrings, facts, streaming and rendering of the diagnosis engine."""

from __future__ import annotations

import io
import json

import pytest

from anybuild.diagnose import RULES, Fact, Role, diagnose_log, diagnose_stream
from anybuild.diagnose.engine import analyze_lines, analyze_stream

OVERLAY = 'ERROR: mount source: "overlay", target: "/var/lib/docker/x/merged", fstype: overlay, err: invalid argument'
RETRIED_429 = (
    "#3 0.5 failed to fetch manifest, retrying: unexpected status code "
    "https://registry-1.docker.io/v2/library/node/manifests/20: 429 Too Many Requests"
)
RUN_FAILED = 'ERROR: failed to solve: process "/bin/sh -c npm ci" did not complete successfully: exit code: 1'
ENOTEMPTY = "npm ERR! ENOTEMPTY: directory not empty, rename '/app/node_modules/a' -> '/app/node_modules/.a-x1'"


def roles(lines: list[str], facts: dict[str, object] | None = None) -> list[tuple[str, str]]:
    return [(d.rule_id, d.role.value) for d in diagnose_log(lines, facts)]


def test_engine_429_retried_before_overlay_error_is_red_herring() -> None:
    lines = ["#1 [internal] load build definition", RETRIED_429, "#3 DONE 2.1s", *["noise"] * 30, OVERLAY]
    diagnoses = diagnose_log(lines)
    assert diagnoses[0].rule_id == "nested-overlay"
    assert diagnoses[0].evidence[0].line == 34
    herring = next(d for d in diagnoses if d.rule_id == "registry-rate-limit")
    assert herring.role is Role.RED_HERRING
    assert "line 2" in herring.reason and "line 34" in herring.reason


def test_engine_429_as_last_error_is_the_root_cause() -> None:
    assert roles(["#3 [internal] load metadata", RETRIED_429]) == [("registry-rate-limit", "root-cause")]


def test_engine_rate_limit_words_without_429_do_not_fire() -> None:
    lines = ["Docker Hub rate limit: 100 pulls per 6 hours", "ratelimit-remaining: 97", RUN_FAILED]
    assert [r for r, _ in roles(lines)] == ["run-nonzero"]


def test_engine_run_failure_after_specific_cause_is_symptom() -> None:
    assert roles([ENOTEMPTY, RUN_FAILED]) == [("npm-enotempty", "root-cause"), ("run-nonzero", "symptom")]


@pytest.mark.parametrize(
    ("facts", "variant", "helps"),
    [
        ({}, "", True),
        ({Fact.CONTEXT_HAS_NODE_MODULES: True, Fact.DOCKERIGNORE_EXCLUDES_NODE_MODULES: False},
         "node-modules-in-context", False),
        ({Fact.DOCKER_DATA_ROOT_FS: "overlay"}, "nested-overlay", True),
        ({Fact.CONTEXT_HAS_NODE_MODULES: True, Fact.DOCKERIGNORE_EXCLUDES_NODE_MODULES: True,
          Fact.DOCKER_DATA_ROOT_FS: "ext4"}, "", True),
    ],
    ids=["no-facts", "context", "overlay", "neither"],
)
def test_engine_enotempty_facts_choose_cause(facts: dict[str, object], variant: str, helps: bool) -> None:
    root = diagnose_log([ENOTEMPTY], facts)[0]
    assert (root.variant, root.other_backend_helps) == (variant, helps)
    assert "/app/node_modules/a" in root.cause


def test_engine_disk_full_names_filesystem_from_mounts_fact() -> None:
    line = "cp: error writing '/tmp/build/out.bin': No space left on device"
    facts = {Fact.MOUNTS: {"/": "overlay", "/tmp": "tmpfs", "/tmp/other": "ext4"}}
    root = diagnose_log([line], facts)[0]
    assert root.rule_id == "disk-full"
    assert "tmpfs filesystem mounted at /tmp" in root.cause


def test_engine_disk_full_without_facts_names_the_path() -> None:
    root = diagnose_log(["write /var/lib/docker/tmp/x: no space left on device"])[0]
    assert "/var/lib/docker/tmp/x" in root.cause


def test_engine_unshare_enospc_is_userns_not_disk_full() -> None:
    fired = roles(["unshare: unshare failed: No space left on device"], {Fact.KERNEL_MAX_USER_NAMESPACES: 0})
    assert fired == [("userns-refused", "root-cause")]
    root = diagnose_log(["unshare: unshare failed: No space left on device"], {"kernel.max_user_namespaces": 0})[0]
    assert root.variant == "max-user-namespaces-zero"


def test_engine_run_failure_quotes_command_exit_code_and_dockerfile_line() -> None:
    facts = {Fact.DOCKERFILE_PATH: "api/Dockerfile", Fact.DOCKERFILE_LINES: ["FROM node:20", "RUN npm ci"]}
    root = diagnose_log([RUN_FAILED], facts)[0]
    assert root.rule_id == "run-nonzero"
    assert "`/bin/sh -c npm ci`" in root.cause and "code 1" in root.cause
    assert "api/Dockerfile line 2: `RUN npm ci`" in root.cause
    assert root.other_backend_helps is False


def test_engine_buildkit_snippet_gives_dockerfile_line() -> None:
    lines = ["Dockerfile:3", "   3 | >>> RUN exit 3", 'ERROR: process "/bin/sh -c exit 3" did not complete '
             "successfully: exit code: 3"]
    root = diagnose_log(lines)[0]
    assert "Dockerfile line 3: `RUN exit 3`" in root.cause
    assert [e.line for e in root.evidence] == [2, 3]


def test_engine_copy_excluded_by_dockerignore_fact() -> None:
    line = 'ERROR: failed to solve: failed to compute cache key: "/config/app.env" not found: not found'
    root = diagnose_log([line], {Fact.DOCKERIGNORE_EXCLUDED_PATHS: ["config"]})[0]
    assert root.variant == "excluded-by-dockerignore"
    assert ".dockerignore" in root.cause and root.other_backend_helps is False


def test_engine_exit_code_137_alone_is_oom() -> None:
    diagnoses = diagnose_log(["building...", "done?"], exit_code=137)
    assert diagnoses[0].rule_id == "oom-killed"
    assert diagnoses[0].evidence[-1].line is None


def test_engine_no_match_still_answers_with_step_exit_status_error_and_tool() -> None:
    lines = ["=> ERROR [build 3/5] RUN make", "compiling", "error: something odd happened",
             "The command '/bin/sh -c make' returned a non-zero code: 2"]
    report = analyze_lines(lines, [r for r in RULES if r.id != "run-nonzero"])
    (root,) = report.diagnoses
    assert (root.rule_id, root.role, root.other_backend_helps) == ("unrecognised", Role.ROOT_CAUSE, None)
    assert "Cause not recognised" in root.cause and "`RUN make (step build 3/5)`" in root.cause
    assert "exit status 2" in root.cause and "BuildKit" in root.cause
    assert root.evidence[0].line == 4 or root.evidence[0].text == "error: something odd happened"
    assert "anybuild doctor" in root.remedy
    assert root.to_dict()["other_backend_helps"] is None
    assert report.lines == 4


@pytest.mark.parametrize("block", [7, 64, 1 << 20], ids=["tiny", "small", "default"])
def test_engine_stream_blocks_keep_line_numbers(block: int) -> None:
    lines = [f"step {i}: ok" for i in range(50)] + [OVERLAY] + [f"after {i}" for i in range(10)]
    data = ("\r\n".join(lines) + "\r\n").encode()
    report = analyze_stream(io.BytesIO(data), RULES, block_bytes=block)
    assert report.diagnoses[0].evidence[0].line == 51
    assert report.lines == 61


def test_engine_lines_without_newlines_and_small_batches_agree() -> None:
    lines = [f"line {i}" for i in range(20)] + [ENOTEMPTY, RUN_FAILED]
    a = analyze_lines(lines, RULES, block_lines=3)
    b = analyze_lines([f"{s}\n" for s in lines], RULES)
    assert [(d.rule_id, d.evidence) for d in a.diagnoses] == [(d.rule_id, d.evidence) for d in b.diagnoses]
    assert a.diagnoses[0].evidence[0].line == 21


def test_engine_strips_ansi_and_handles_invalid_utf8() -> None:
    data = b"\x1b[91mKilled\n\x1b[0m\xff\xfe garbage\nThe command '/bin/sh -c make' returned a non-zero code: 137\n"
    report = diagnose_stream(io.BytesIO(data))
    assert report.diagnoses[0].rule_id == "oom-killed"
    assert report.diagnoses[0].evidence[0].text == "Killed"


def test_engine_evidence_is_bounded_for_repeated_lines() -> None:
    lines = [OVERLAY] * 1000
    root = diagnose_log(lines)[0]
    assert root.matches == 1000
    assert len(root.evidence) <= 6
    assert root.evidence[-1].line == 1000


def test_engine_to_dict_is_json() -> None:
    payload = [d.to_dict() for d in diagnose_log([RETRIED_429, *["x"] * 3, OVERLAY])]
    text = json.dumps(payload)
    assert payload[0]["rule"] == "nested-overlay" and payload[0]["role"] == "root-cause"
    assert payload[1]["role"] == "red-herring" and payload[1]["reason"]
    assert "docs/troubleshooting/nested-overlay.md" in text


def test_engine_push_phase_separates_pull_and_push_401() -> None:
    pull = ["Step 1/2 : FROM 127.0.0.1:5000/app:1", "unauthorized: authentication required"]
    push = ["The push refers to repository [127.0.0.1:5000/app]", "a1: Preparing",
            "unauthorized: authentication required"]
    assert roles(pull)[0][0] == "registry-auth-pull"
    assert roles(push)[0][0] == "registry-auth-push"


def test_engine_plain_http_registry_gets_insecure_remedy() -> None:
    line = ('Error: pinging container registry 127.0.0.1:5000: Get "https://127.0.0.1:5000/v2/": '
            "http: server gave HTTP response to HTTPS client")
    root = diagnose_log([line])[0]
    assert (root.rule_id, root.variant) == ("registry-tls", "plain-http")
    assert "127.0.0.1:5000" in root.cause and "insecure" in root.remedy


def test_engine_buildah_glob_filtered_by_dockerignore_names_source() -> None:
    line = ('Error: building at STEP "COPY config/app.env /app/": no items matching glob "/ctx/config/app.env" '
            "copied (1 filtered out using /ctx/.dockerignore): no such file or directory")
    root = diagnose_log([line])[0]
    assert (root.rule_id, root.variant) == ("copy-source-missing", "excluded-by-dockerignore")
    assert "copies config/app.env" in root.cause


def test_engine_registry_host_named_from_buildkit_wording() -> None:
    line = ("failed to solve with frontend dockerfile.v0: failed to create LLB definition: pulling from host "
            "127.0.0.1:47767 failed with status code [manifests 1.36]: 401 Unauthorized")
    root = diagnose_log([line])[0]
    assert root.rule_id == "registry-auth-pull"
    assert root.cause.startswith("The registry 127.0.0.1:47767 refused the pull")


CLONE = "user namespaces are not enabled in /proc/sys/user/max_user_namespaces"  # the cause: no anchor word
RUNTIME = "Error: could not get runtime: cannot re-exec process"


@pytest.mark.parametrize("block", [5, 40, 1 << 20], ids=["tiny", "small", "default"])
@pytest.mark.parametrize("gap", [0, 1])
def test_engine_reads_unanchored_lines_next_to_an_anchored_line(block: int, gap: int) -> None:
    """The cause line before or after an error line is read, also across block boundaries."""
    for lines, cause_line in (
        ([f"noise {i}" for i in range(9)] + [CLONE] + ["noise"] * gap + [RUNTIME] + ["more"] * 5, 10),
        ([f"noise {i}" for i in range(9)] + [RUNTIME] + ["noise"] * gap + [CLONE] + ["more"] * 5, 11 + gap),
    ):
        data = "".join(f"{s}\n" for s in lines).encode()
        report = analyze_stream(io.BytesIO(data), RULES, block_bytes=block)
        root = report.diagnoses[0]
        assert root.rule_id == "userns-refused"
        assert [e.line for e in root.evidence] == [cause_line]
        assert report.lines == len(lines)


def test_engine_unanchored_line_far_from_any_anchor_is_not_read() -> None:
    lines = [CLONE, "noise 1", "noise 2", "noise 3", RUNTIME]
    assert diagnose_log(lines)[0].rule_id == "unrecognised"


def test_engine_exec_format_names_platforms_only_with_evidence() -> None:
    bare = diagnose_log(["exec /entrypoint.sh: exec format error"])[0]
    assert bare.rule_id == "exec-format" and bare.variant == ""
    assert "#!" in bare.cause and "another CPU" in bare.cause
    assert bare.other_backend_helps is False
    warned = diagnose_log([
        "WARNING: The requested image's platform (linux/arm64) does not match the detected host platform "
        "(linux/amd64) and no specific platform was requested",
        "exec /usr/local/bin/tool: exec format error",
    ])[0]
    assert warned.variant == "foreign-platform"
    assert "linux/arm64" in warned.cause and "linux/amd64" in warned.cause
    assert warned.other_backend_helps is False


def test_engine_connect_error_with_failed_lookup_is_the_missing_daemon_not_the_network() -> None:
    root, *rest = diagnose_log([
        "$ docker info",
        'error during connect: Post "http://docker:2375/v1.24/auth": dial tcp: lookup docker on '
        "169.254.169.254:53: no such host",
    ])
    assert (root.rule_id, root.variant, root.other_backend_helps) == ("daemon-unreachable", "daemon-host-unknown", True)
    assert "docker:dind" in root.remedy
    assert "network-dns" not in [d.rule_id for d in rest]


def test_engine_pull_lookup_failure_outside_a_connect_error_stays_network() -> None:
    line = "dial tcp: lookup registry-1.docker.io on 10.0.0.2:53: no such host"
    assert diagnose_log([f"ERROR: failed to solve: {line}"])[0].rule_id == "network-dns"


@pytest.mark.parametrize(
    ("facts", "variant"),
    [(None, "rm-not-empty"), ({"docker.data_root_fs": "overlay"}, "rm-not-empty-nested-overlay")],
)
def test_engine_rm_directory_not_empty_blames_the_storage_not_the_run(
    facts: dict[str, object] | None, variant: str
) -> None:
    lines = [
        "Step 12/30 : RUN rm -rf ./clients/*",
        "rm: cannot remove `./clients/path/launcher/css': Directory not empty",
        "rm: cannot remove './clients/path/launcher/js': Directory not empty",
        "The command '/bin/sh -c rm -rf ./clients/*' returned a non-zero code: 1",
    ]
    found = diagnose_log(lines, facts)
    assert [(d.rule_id, d.role.value) for d in found] == [("overlay-dtype", "root-cause"), ("run-nonzero", "symptom")]
    assert found[0].variant == variant and found[0].other_backend_helps is True


def test_engine_overlay_refused_over_xfs_is_d_type_over_extfs_is_kernel() -> None:
    xfs = "'overlay' is not supported over xfs at \"/var/lib/containers/storage/overlay\": backing file system"
    ext = "'overlay' is not supported over extfs at \"/var/lib/containers/storage/overlay\": backing file system"
    assert diagnose_log([f"Error: kernel does not support overlay fs: {xfs}"])[0].rule_id == "overlay-dtype"
    assert diagnose_log([f"Error: kernel does not support overlay fs: {ext}"])[0].rule_id == "rootless-overlay"


def test_engine_cache_blob_missing_is_the_cache_not_the_image() -> None:
    root = diagnose_log([" > exporting cache:", "error: failed to solve: blob sha256:1fb1 not found"])[0]
    assert (root.rule_id, root.variant, root.other_backend_helps) == ("gha-cache", "cache-blob-missing", False)


@pytest.mark.parametrize(
    ("lines", "variant"),
    [
        (["npm ERR! ENOTEMPTY: directory not empty, rename '/usr/lib/node_modules/yo' -> "
          "'/usr/lib/node_modules/.yo.DELETE'"], "stale-delete-directory"),
        (["npm ERR! errno -66", "npm ERR! ENOTEMPTY: directory not empty, rename '/x/node_modules/chai' -> "
          "'/x/node_modules/.chai-ioYsTChA'"], "host-install"),
    ],
)
def test_engine_enotempty_outside_a_container_build_is_not_the_environment(lines: list[str], variant: str) -> None:
    root = diagnose_log(lines)[0]
    assert (root.rule_id, root.variant, root.other_backend_helps) == ("npm-enotempty", variant, False)


def test_engine_enotempty_on_storage_without_d_type_is_the_filesystem() -> None:
    found = roles([
        "WARNING: overlay2: the backing xfs filesystem is formatted without d_type support, which leads to "
        "incorrect behavior.",
        ENOTEMPTY,
        RUN_FAILED,
    ])
    assert found == [("overlay-dtype", "root-cause"), ("npm-enotempty", "symptom"), ("run-nonzero", "symptom")]


_FIXTURE_LOGS = sorted((__import__("pathlib").Path(__file__).parent / "logs").rglob("*.log"))


@pytest.mark.parametrize("block", [13, 97, 4096])
def test_engine_block_size_never_changes_a_diagnosis(block: int) -> None:
    """Anchors, their context and line numbers come out the same however the stream is cut."""
    for log in _FIXTURE_LOGS:
        data = log.read_bytes()
        whole = analyze_stream(io.BytesIO(data), RULES)
        cut = analyze_stream(io.BytesIO(data), RULES, block_bytes=block)
        assert [(d.rule_id, d.evidence) for d in cut.diagnoses] == [
            (d.rule_id, d.evidence) for d in whole.diagnoses
        ], log.name
        assert cut.lines == whole.lines, log.name
