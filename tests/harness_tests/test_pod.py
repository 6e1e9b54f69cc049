"""The pods are what the issue says a devpod is: checked from inside each one, as a build would see it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.pod import DEFAULT_CAPABILITIES, POD_VARIANTS, Pod, PodVariant, running_pod

# Bit numbers (linux/capability.h) of Docker's default set.
_BITS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6,
         "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18,
         "CAP_SYS_ADMIN": 21, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31}
PROBE = r"""
grep -E '^(Uid|CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status
echo "root=$(awk '$5 == "/" {print $9}' /proc/self/mountinfo)"
for c in /sys/fs/cgroup /sys/fs/cgroup/*; do mkdir "$c/anybuild-probe" 2>/dev/null && echo "cgroup=rw $c"; done
echo "cgroup=ro"
echo "keys=$(stat -c %t:%T /proc/keys)"
echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo "procsys=rw" || echo "procsys=ro"
unshare --user true 2>/dev/null && echo "userns=yes" || echo "userns=no"
mount -t tmpfs tmpfs /mnt 2>/dev/null && echo "mount=yes" || echo "mount=no"
"""


def _mask(names: tuple[str, ...]) -> int:
    return sum(1 << _BITS[name] for name in names)


@pytest.fixture(params=POD_VARIANTS, ids=[v.name for v in POD_VARIANTS])
def pod(request: pytest.FixtureRequest) -> Iterator[Pod]:
    with running_pod(request.param) as started:
        yield started


def _facts(pod: Pod) -> dict[str, str]:
    done = pod.exec(["/bin/sh", "-c", PROBE])
    assert done.returncode == 0, done.stderr
    facts: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.replace(":\t", "=", 1).partition("=")
        facts.setdefault(key.strip(), value.strip())
    return facts


def test_pod_is_an_unprivileged_devpod(pod: Pod) -> None:
    variant: PodVariant = pod.variant
    facts = _facts(pod)
    caps = (*DEFAULT_CAPABILITIES, *variant.add_caps)
    assert facts["Uid"].split()[0] == str(variant.uid)
    assert int(facts["CapBnd"], 16) == _mask(caps)
    assert int(facts["CapEff"], 16) == (_mask(caps) if variant.uid == 0 else 0)
    assert int(facts["CapEff"], 16) & (1 << _BITS["CAP_SYS_ADMIN"]) == 0
    assert facts["Seccomp"] == ("2" if variant.runtime_default else "0")
    assert facts["NoNewPrivs"] == ("1" if variant.no_new_privs else "0")
    assert facts["root"] == "overlay"
    assert facts["cgroup"] == "ro"  # the first line: no cgroup directory could be made
    assert facts["keys"] == "1:3"  # masked: /dev/null bound over it
    assert facts["procsys"] == "ro"
    assert facts["mount"] == "no"  # no CAP_SYS_ADMIN, whoever the user is
    # user namespaces: refused by RuntimeDefault, allowed by the kernel otherwise
    assert facts["userns"] == ("no" if variant.runtime_default else "yes")


def test_pod_home_and_data_dir_belong_to_its_user(pod: Pod) -> None:
    done = pod.exec(["/bin/sh", "-c", f"mkdir -p {pod.data_dir} && stat -c %u {pod.data_dir} && df -T {pod.data_dir}"])
    assert done.returncode == 0, done.stderr
    owner, _, df = done.stdout.partition("\n")
    assert owner == str(pod.variant.uid)
    assert df.splitlines()[-1].split()[1] == ("ext4" if pod.variant.emptydir else "overlay")
    assert pod.host_path(pod.data_dir).is_dir()
