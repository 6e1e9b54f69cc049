"""Instruction flags (``--name=value``) and the value syntaxes they use.

:class:`FlagSpec` / :func:`parse_flags` follow BuildKit's ``BFlags``: unknown
flags, repeated single-valued flags and bad booleans are errors. Also here:
Go duration parsing (``HEALTHCHECK --interval=1m30s``) and ``RUN --mount``
option parsing. Errors are :class:`FlagError` (message + hint); the caller adds
the Dockerfile location.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from anybuild.dockerfile.instructions import Mount, MountType

__all__ = [
    "FlagError",
    "FlagKind",
    "FlagValues",
    "mount_fields",
    "parse_duration",
    "parse_flags",
    "parse_mount",
]


class FlagError(Exception):
    def __init__(self, message: str, hint: str = "", flag: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.flag = flag


class FlagKind(StrEnum):
    STRING = "string"
    STRINGS = "strings"  # may repeat
    BOOL = "bool"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagValues:
    """Parsed flag values by name; absent flags are missing from the maps."""

    strings: Mapping[str, str]
    lists: Mapping[str, tuple[str, ...]]
    bools: Mapping[str, bool]

    def get(self, name: str) -> str | None:
        return self.strings.get(name)

    def many(self, name: str) -> tuple[str, ...]:
        return self.lists.get(name, ())

    def flag(self, name: str) -> bool | None:
        return self.bools.get(name)


def parse_flags(keyword: str, flags: tuple[str, ...], spec: Mapping[str, FlagKind]) -> FlagValues:
    strings: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    bools: dict[str, bool] = {}
    allowed = ", ".join(f"--{n}" for n in spec) or "none"
    for raw in flags:
        if not raw.startswith("--"):
            raise FlagError(f"Arg {raw!r} must start with '--'", flag=raw)
        name, has_value, value = raw[2:].partition("=")
        kind = spec.get(name)
        if kind is None:
            raise FlagError(
                f"unknown flag: {name}", hint=f"{keyword} accepts these flags: {allowed}", flag=raw
            )
        seen = name in strings or name in bools
        if seen and kind is not FlagKind.STRINGS:
            raise FlagError(f"Duplicate flag specified: {name}", hint=f"give --{name} once", flag=raw)
        match kind:
            case FlagKind.BOOL:
                if has_value and value == "":
                    raise FlagError(f"missing a value on flag: {name}", flag=raw)
                lowered = value.lower()
                if lowered not in ("true", "false", ""):
                    raise FlagError(
                        f"expecting boolean value for flag {name}, not: {value}",
                        hint=f"write --{name}, --{name}=true or --{name}=false", flag=raw,
                    )
                bools[name] = lowered != "false"
            case FlagKind.STRING:
                if not has_value:
                    raise FlagError(f"missing a value on flag: {name}", hint=f"write --{name}=VALUE", flag=raw)
                strings[name] = value
            case FlagKind.STRINGS:
                if not has_value:
                    raise FlagError(f"missing a value on flag: {name}", hint=f"write --{name}=VALUE", flag=raw)
                lists.setdefault(name, []).append(value)
    return FlagValues(strings=strings, lists={k: tuple(v) for k, v in lists.items()}, bools=bools)


_UNITS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(r"[-+]?(?:\d*(?:\.\d*)?(?:ns|us|µs|μs|ms|s|m|h))+\Z")


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration``, in nanoseconds."""
    if text in ("0", "+0", "-0"):
        return 0
    if not text or not _DURATION.match(text):
        raise FlagError(f"time: invalid duration {text!r}", hint="write a duration such as 30s, 1m30s or 500ms")
    sign = -1 if text.startswith("-") else 1
    total = Fraction(0)
    for m in _DURATION_PART.finditer(text.lstrip("+-")):
        whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
        if not whole and not frac:
            raise FlagError(f"time: invalid duration {text!r}", hint="write a duration such as 30s")
        value = Fraction(int(whole or "0"))
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        total += value * _UNITS[unit]
    result = int(total) * sign
    if abs(result) > 2**63 - 1:
        raise FlagError(f"time: invalid duration {text!r}", hint="use a shorter duration")
    return result


_MOUNT_KEYS = {
    "type": "type", "from": "from_", "source": "source", "src": "source", "target": "target",
    "dst": "target", "destination": "target", "id": "id", "sharing": "sharing", "mode": "mode",
    "uid": "uid", "gid": "gid", "env": "env", "size": "size",
}
_SHARING = ("shared", "private", "locked")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _go_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlagError(f"invalid value for {key}: {value}", hint=f"write {key}=true or {key}=false")


def mount_fields(value: str) -> list[str]:
    """The ``key=value`` fields of a ``--mount`` value (CSV, as BuildKit reads it)."""
    try:
        return next(csv.reader([value]), [])
    except csv.Error as exc:
        raise FlagError(f"invalid mount {value!r}: {exc}", hint="write --mount=type=TYPE,target=PATH") from exc


def parse_mount(value: str, *, expanded: bool = False) -> Mount:
    """Parse the value of one ``RUN --mount=`` flag (CSV of key=value fields).

    A value with a variable in it is only checked for its CSV form here: BuildKit expands every
    option's value with the stage's ARG and ENV (Dockerfile 1.3, moby/buildkit#2089) before it reads
    them, ``type=$T`` included, so the expansion step parses it again (*expanded*).
    """
    fields = mount_fields(value)
    if not expanded and "$" in value:
        try:
            return dataclasses.replace(_parse_mount(fields, value), deferred=True)
        except FlagError:  # e.g. type=$T, uid=$UID: known once expanded
            return Mount(raw=value, deferred=True)
    return _parse_mount(fields, value)


def _parse_mount(fields: list[str], value: str) -> Mount:
    opts: dict[str, str] = {}
    mount_type = MountType.BIND
    readonly: bool | None = None
    required: bool | None = None
    for field in fields:
        key, has_value, val = field.partition("=")
        key = key.lower()
        if key in ("readonly", "ro", "readwrite", "rw"):
            flag = _go_bool(key, val) if has_value else True
            readonly = flag if key in ("readonly", "ro") else not flag
            continue
        if key == "required":
            required = _go_bool(key, val) if has_value else True
            continue
        if not has_value or key not in _MOUNT_KEYS:
            raise FlagError(
                f"unexpected key '{key}' in '{field}'",
                hint="mount keys: type, from, source, target, ro/rw, id, sharing, mode, uid, gid, "
                "required, env, size",
            )
        if key == "type":
            try:
                mount_type = MountType(val.lower())
            except ValueError:
                raise FlagError(
                    f"unsupported mount type {val!r}",
                    hint="use one of: " + ", ".join(t.value for t in MountType),
                ) from None
            continue
        opts[_MOUNT_KEYS[key]] = val
    sharing = opts.get("sharing")
    if sharing and sharing not in _SHARING:
        raise FlagError(f"unsupported sharing value {sharing!r}", hint="use shared, private or locked")
    if sharing and mount_type is not MountType.CACHE:
        raise FlagError(f"invalid cache sharing set for {mount_type} mount", hint="sharing= is for type=cache")
    if required is not None and mount_type not in (MountType.SECRET, MountType.SSH):
        raise FlagError(f"unexpected key 'required' for mount type '{mount_type}'",
                        hint="required is for type=secret and type=ssh")
    if "size" in opts and mount_type is not MountType.TMPFS:
        raise FlagError(f"unexpected key 'size' for mount type '{mount_type}'", hint="size= is for type=tmpfs")
    for key in ("mode", "uid", "gid"):
        if key in opts and not re.fullmatch(r"[0-7]+" if key == "mode" else r"\d+", opts[key]):
            raise FlagError(f"failed to parse {key} {opts[key]!r}", hint=f"{key} must be a number")
    if mount_type in (MountType.BIND, MountType.CACHE, MountType.TMPFS) and not opts.get("target"):
        raise FlagError(f"mount target is required for a {mount_type} mount", hint="add target=/path")
    if readonly is None:
        readonly = mount_type not in (MountType.CACHE, MountType.TMPFS)
    return Mount(
        type=mount_type, target=opts.get("target"), source=opts.get("source"), from_=opts.get("from_"),
        readonly=readonly, id=opts.get("id"), sharing=sharing, mode=opts.get("mode"),
        uid=opts.get("uid"), gid=opts.get("gid"), required=required, env=opts.get("env"),
        size=opts.get("size"), raw=value,
    )
