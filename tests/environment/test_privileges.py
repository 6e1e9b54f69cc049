"""uid, capabilities, seccomp, user namespaces, AppArmor, /dev/fuse from prepared trees (and for real)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import FactKey, Facts
from anybuild.environment.privileges import probe_privileges
from tests.environment.trees import STATUS, context, tree

FULL_CAPS = "000001ffffffffff"
DOCKER_DEFAULT_CAPS = "00000000a80425fb"  # docker run default: no SYS_ADMIN, has CHROOT/SETUID/MKNOD


def _facts(root: Path) -> Facts:
    return Facts.of(probe_privileges(context(root)))


@pytest.mark.parametrize(
    ("capeff", "expected"),
    [
        (FULL_CAPS, (True, True, True, True)),
        (DOCKER_DEFAULT_CAPS, (False, True, True, True)),
        ("0000000000000000", (False, False, False, False)),
    ],
    ids=["privileged", "docker-default", "none"],
)
def test_privileges_capabilities_decoded_from_capeff(
    tmp_path: Path, capeff: str, expected: tuple[bool, bool, bool, bool]
) -> None:
    tree(tmp_path, {"/proc/self/status": STATUS.format(uid=1000, capeff=capeff, seccomp=2)})
    facts = _facts(tmp_path)
    keys = (FactKey.CAP_SYS_ADMIN, FactKey.CAP_SYS_CHROOT, FactKey.CAP_SETUID, FactKey.CAP_MKNOD)
    assert tuple(facts.value(k) for k in keys) == expected
    assert f"CapEff: {capeff}" in facts.evidence(FactKey.CAP_SYS_ADMIN)
    assert facts.value(FactKey.UID) == 1000
    assert facts.value(FactKey.SECCOMP) == "filter"


def test_privileges_userns_and_apparmor_restriction_read(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "/proc/self/status": STATUS.format(uid=1000, capeff="0", seccomp=0),
            "/proc/sys/user/max_user_namespaces": "0\n",
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
            "/dev/fuse": "",
        },
    )
    facts = _facts(tmp_path)
    assert facts.value(FactKey.MAX_USER_NAMESPACES) == 0
    assert facts.value(FactKey.APPARMOR_RESTRICTS_USERNS) is True
    assert facts.value(FactKey.USERNS_WORKS) is None  # trials off in prepared trees
    assert facts.value(FactKey.DEV_FUSE) is True


def test_privileges_missing_files_give_unknown_not_errors(tmp_path: Path) -> None:
    facts = _facts(tmp_path)
    assert facts.value(FactKey.UID) is None
    assert facts.value(FactKey.CAP_SYS_ADMIN) is None
    assert facts.value(FactKey.DEV_FUSE) is False
    assert facts.value(FactKey.APPARMOR_RESTRICTS_USERNS) is None


def test_privileges_this_machine_userns_attempt_is_real() -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc")
    facts = Facts.of(probe_privileges(ProbeContext()))
    assert facts.value(FactKey.UID) == os.geteuid()
    assert facts.value(FactKey.USERNS_WORKS) in (True, False)
    assert "unshare --user" in facts.evidence(FactKey.USERNS_WORKS)
