"""Who anybuild runs as: uid, effective capabilities, user namespaces, seccomp, /dev/fuse."""

from __future__ import annotations

from enum import IntEnum

from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic
from anybuild.errors import BackendError

__all__ = ["Capability", "probe_privileges", "read_uid"]


class Capability(IntEnum):
    """Bit numbers of the capabilities the backends care about (linux/capability.h)."""

    CAP_MKNOD = 27
    CAP_SETUID = 7
    CAP_SYS_ADMIN = 21
    CAP_SYS_CHROOT = 18


_CAP_FACTS: tuple[tuple[FactKey, Capability], ...] = (
    (FactKey.CAP_SYS_ADMIN, Capability.CAP_SYS_ADMIN),
    (FactKey.CAP_SYS_CHROOT, Capability.CAP_SYS_CHROOT),
    (FactKey.CAP_SETUID, Capability.CAP_SETUID),
    (FactKey.CAP_MKNOD, Capability.CAP_MKNOD),
)
_SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}
_STATUS = "/proc/self/status"


def _fact(key: FactKey, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.PRIVILEGES)


def probe_privileges(ctx: ProbeContext) -> list[Fact]:
    status = _status_fields(ctx.read(_STATUS) or "")
    facts = [_uid(status), *_capabilities(status), _seccomp(status)]
    facts += [_max_userns(ctx), _apparmor(ctx), _userns_trial(ctx), _dev_fuse(ctx)]
    return facts


def _status_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def _uid(status: dict[str, str]) -> Fact:
    line = status.get("Uid")
    if not line:
        return _fact(FactKey.UID, None, f"{_STATUS}: no Uid line")
    effective = line.split()[1] if len(line.split()) > 1 else line.split()[0]
    return _fact(FactKey.UID, int(effective), f"{_STATUS}: Uid: {line}")


def _capabilities(status: dict[str, str]) -> list[Fact]:
    raw = status.get("CapEff")
    if raw is None:
        return [_fact(key, None, f"{_STATUS}: no CapEff line") for key, _ in _CAP_FACTS]
    mask = int(raw, 16)
    return [
        _fact(key, bool(mask >> int(cap) & 1), f"{_STATUS}: CapEff: {raw} (bit {int(cap)} {cap.name})")
        for key, cap in _CAP_FACTS
    ]


def _seccomp(status: dict[str, str]) -> Fact:
    raw = status.get("Seccomp")
    if raw is None:
        return _fact(FactKey.SECCOMP, None, f"{_STATUS}: no Seccomp line")
    return _fact(FactKey.SECCOMP, _SECCOMP_MODES.get(raw, raw), f"{_STATUS}: Seccomp: {raw}")


def _max_userns(ctx: ProbeContext) -> Fact:
    path = "/proc/sys/user/max_user_namespaces"
    text = ctx.read(path)
    if text is None or not text.strip().isdigit():
        return _fact(FactKey.MAX_USER_NAMESPACES, None, f"{path} unreadable")
    return _fact(FactKey.MAX_USER_NAMESPACES, int(text.strip()), f"{path}: {text.strip()}")


def _apparmor(ctx: ProbeContext) -> Fact:
    path = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
    text = ctx.read(path)
    if text is None:
        return _fact(FactKey.APPARMOR_RESTRICTS_USERNS, None, f"{path} absent (no such restriction)")
    return _fact(FactKey.APPARMOR_RESTRICTS_USERNS, text.strip() == "1", f"{path}: {text.strip()}")


def _userns_trial(ctx: ProbeContext) -> Fact:
    if not ctx.trials:
        return _fact(FactKey.USERNS_WORKS, None, "not tried (trials disabled)")
    unshare = ctx.which("unshare")
    if unshare is None:
        return _fact(FactKey.USERNS_WORKS, None, "unshare not on PATH; not tried")
    argv = [unshare, "--user", "--map-root-user", "true"]
    command = "unshare --user --map-root-user true"
    try:
        done = ctx.runner.run(argv, env=ctx.env, timeout=ctx.timeout)
    except BackendError as exc:
        return _fact(FactKey.USERNS_WORKS, False, f"{command}: {exc.message}")
    if done.ok:
        return _fact(FactKey.USERNS_WORKS, True, f"{command}: exit 0")
    detail = done.output.strip().splitlines()[-1:] or [""]
    return _fact(FactKey.USERNS_WORKS, False, f"{command}: exit {done.returncode} {detail[0]}".strip())


def _dev_fuse(ctx: ProbeContext) -> Fact:
    path = ctx.path("/dev/fuse")
    if not path.exists():
        return _fact(FactKey.DEV_FUSE, False, "/dev/fuse does not exist")
    try:
        with path.open("rb", buffering=0):
            pass
    except PermissionError:
        return _fact(FactKey.DEV_FUSE, False, "/dev/fuse exists but cannot be opened (permission denied)")
    except OSError as exc:
        return _fact(FactKey.DEV_FUSE, False, f"/dev/fuse exists but open failed: {exc.strerror}")
    return _fact(FactKey.DEV_FUSE, True, "/dev/fuse exists and opens")


def read_uid(ctx: ProbeContext) -> int | None:
    """The effective uid from /proc/self/status under the probe root."""
    fact = _uid(_status_fields(ctx.read(_STATUS) or ""))
    return fact.value if isinstance(fact.value, int) else None
