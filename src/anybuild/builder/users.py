"""Users and groups named in USER, ``--chown`` and cache mounts, resolved in the image.

Docker resolves names in the image's own ``/etc/passwd`` and ``/etc/group``
(never the host's). Numeric ids need no files. A ``USER name`` without a group
uses the user's primary group and its supplementary groups from ``/etc/group``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from anybuild.builder.inroot import RootDir
from anybuild.errors import BuildFailed

__all__ = ["Identity", "home_of", "parse_group", "parse_passwd", "resolve_chown", "resolve_user"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()  # additional gids: the primary one first, then the supplementary ones


def parse_passwd(text: str) -> dict[str, tuple[int, int]]:
    """name -> (uid, gid) from passwd text (malformed lines skipped)."""
    users: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
            users.setdefault(fields[0], (int(fields[2]), int(fields[3])))
    return users


def parse_group(text: str) -> dict[str, tuple[int, tuple[str, ...]]]:
    """name -> (gid, members) from group text."""
    groups: dict[str, tuple[int, tuple[str, ...]]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            members = tuple(m for m in (fields[3].split(",") if len(fields) > 3 else []) if m)
            groups.setdefault(fields[0], (int(fields[2]), members))
    return groups


def _read(root: RootDir, rel: str) -> str:
    try:
        fd = root.open_file(root.resolve(rel))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        return handle.read(4 * 1024 * 1024).decode("utf-8", "replace")


def _lookup_user(name: str, users: dict[str, tuple[int, int]], what: str) -> tuple[int, int | None]:
    if name.isdigit():
        uid = int(name)
        primary = next((g for u, g in users.values() if u == uid), None)
        return uid, primary
    if name not in users:
        if name == "root":
            return 0, 0  # root is root even without /etc/passwd (FROM scratch)
        raise BuildFailed(
            f"{what}: no user {name!r} in the image's /etc/passwd",
            hint="create the user in an earlier RUN (useradd/adduser) or use a numeric uid",
        )
    return users[name]


def _lookup_group(name: str, groups: dict[str, tuple[int, tuple[str, ...]]], what: str) -> int:
    if name.isdigit():
        return int(name)
    if name not in groups:
        if name == "root":
            return 0
        raise BuildFailed(
            f"{what}: no group {name!r} in the image's /etc/group",
            hint="create the group in an earlier RUN (groupadd/addgroup) or use a numeric gid",
        )
    return groups[name][0]


def home_of(spec: str, root: RootDir) -> str:
    """The HOME runc gives a process of ``USER spec`` that has none: the home field of its /etc/passwd
    entry (by name, or the first with its uid), else ``/`` (libcontainer's GetExecUser defaults)."""
    user = (spec or "0").partition(":")[0]
    for line in _read(root, "etc/passwd").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and (fields[0] == user or (user.isdigit() and fields[2] == user)):
            return fields[5] or "/"
    return "/"


def resolve_user(spec: str, root: RootDir) -> Identity:
    """``USER`` value (``name``, ``uid``, ``name:group``, ``uid:gid``) -> ids for a RUN."""
    if not spec:
        spec = "0"
    user, _, group = spec.partition(":")
    users = parse_passwd(_read(root, "etc/passwd"))
    groups = parse_group(_read(root, "etc/group"))
    uid, primary = _lookup_user(user, users, f"USER {spec}")
    if group:
        gid = _lookup_group(group, groups, f"USER {spec}")
        return Identity(uid=uid, gid=gid, groups=(gid,))
    gid = primary if primary is not None else 0
    name = next((n for n, (u, _) in users.items() if u == uid), user)
    extra = tuple(sorted({g for g, members in groups.values() if name in members and g != gid}))
    # the primary group leads the additional ones, as in BuildKit since the fix of CVE-2023-25173
    # (moby/buildkit testUserAdditionalGids: root runs with groups=0(root),10(wheel))
    return Identity(uid=uid, gid=gid, groups=(gid, *extra))


def resolve_chown(spec: str, root: RootDir) -> tuple[int, int]:
    """The owner BuildKit's file operations give for ``--chown=SPEC`` or a ``WORKDIR`` made under ``USER SPEC``.

    As BuildKit's readUser (solver/llbsolver/file/user_linux.go): a numeric user gives that uid and the
    same gid, a name found in the image's /etc/passwd its uid and primary gid, and a name not found
    uid 0 and gid 0 (no error: ``USER docker`` then ``WORKDIR /app`` builds, /app owned by root); then a
    numeric group gives that gid, a name found in /etc/group its gid, and a name not found changes nothing.
    """
    user, _, group = spec.partition(":")
    uid = gid = 0
    if user.isdigit():
        uid = gid = int(user)
    elif user:
        uid, gid = parse_passwd(_read(root, "etc/passwd")).get(user, (0, 0))
    if group.isdigit():
        gid = int(group)
    elif group:
        gid = parse_group(_read(root, "etc/group")).get(group, (gid, ()))[0]
    return uid, gid
