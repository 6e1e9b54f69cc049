"""anybuild's own planning and fallback lines are never evidence (issue 16)."""

from __future__ import annotations

from anybuild.diagnose import diagnose_log

PLANNING = [
    "anybuild: not using docker: failed to mount overlay: invalid argument",
    "anybuild:   evidence: ERROR: mount source: \"overlay\", fstype: overlay, err: invalid argument",
    "anybuild: building with builtin: no daemon needed",
    "sandbox: runc (rootless in a user namespace)",
    "snapshotter: copy",
]


def test_own_planning_lines_do_not_fire_rules() -> None:
    fired = [d.rule_id for d in diagnose_log(PLANNING) if d.rule_id != "unrecognised"]
    assert fired == []


def test_run_permission_denied_after_planning_is_not_nested_overlay() -> None:
    lines = [*PLANNING, "touch: /y: Permission denied", "Dockerfile:3: RUN id > /y failed with exit code 1"]
    diagnoses = diagnose_log(lines)
    assert "nested-overlay" not in [d.rule_id for d in diagnoses]
    assert diagnoses[0].other_backend_helps is False


def test_own_lines_behind_the_progress_prefix_are_skipped_too() -> None:
    lines = [f"[api] {line}" for line in PLANNING]
    assert [d.rule_id for d in diagnose_log(lines) if d.rule_id != "unrecognised"] == []


def test_internal_error_is_never_the_dockerfile() -> None:
    lines = [*PLANNING, "Dockerfile:2: RUN npm ci failed with exit code 1",
             "error: internal error: PermissionError: [Errno 1] Operation not permitted: 'srv'"]
    root = diagnose_log(lines)[0]
    assert root.rule_id == "anybuild-internal-error"
    assert "not a mistake in the Dockerfile" in root.cause and "--debug" in root.remedy


def test_sandbox_setup_failure_is_environmental_not_the_command() -> None:
    lines = ["sandbox: chroot (root without user namespaces)",
             "PermissionError: mount proc on /tmp/anybuild/x/proc: Operation not permitted",
             "Dockerfile:4: RUN npm ci failed with exit code 1"]
    diagnoses = diagnose_log(lines)
    assert diagnoses[0].rule_id == "sandbox-setup"
    assert diagnoses[0].other_backend_helps is True
    assert ("run-nonzero", "symptom") in [(d.rule_id, d.role.value) for d in diagnoses]
