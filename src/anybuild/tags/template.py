"""The Handlebars subset metadata-action's rules use: ``{{name}}`` and ``{{date 'fmt' tz='Zone'}}``.

A template is text with ``{{ expression }}`` blocks. An expression is a name,
then positional arguments (``'quoted'`` strings, or bare words that look up
nothing, as in Handlebars) and ``key='value'`` options. A name maps to a string
or to a :data:`Helper` called with the arguments; an unknown name renders as
the empty string, as Handlebars does. Dates use moment.js format tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from anybuild.errors import ConfigError

__all__ = ["Helper", "date_helper", "format_moment", "is_single_expression", "render"]

Helper = Callable[[tuple[str | None, ...], Mapping[str, str]], str]
Value = str | Helper

_BLOCK = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TOKEN = re.compile(r"""(?:[^\s'"=]+=)?(?:'[^']*'|"[^"]*"|[^\s'"]+)""")

_HINT = "write expressions as {{branch}}, {{sha}} or {{date 'YYYYMMDD' tz='Europe/Paris'}}"


def render(template: str, context: Mapping[str, Value]) -> str:
    """*template* with every ``{{ ... }}`` replaced from *context*."""
    if "{{" not in template:
        return template

    def substitute(match: re.Match[str]) -> str:
        return _evaluate(match.group(1), template, context)

    rendered = _BLOCK.sub(substitute, template)
    if "{{" in _BLOCK.sub("", template):
        raise ConfigError(
            f"unterminated expression in {template!r}", value=template, hint=_HINT, docs="tags"
        )
    return rendered


def is_single_expression(template: str, name: str) -> bool:
    """True when *template* is exactly one ``{{ name }}`` block (spaces allowed)."""
    match = _BLOCK.fullmatch(template.strip())
    return match is not None and match.group(1).strip() == name


def _evaluate(expression: str, template: str, context: Mapping[str, Value]) -> str:
    tokens = _TOKEN.findall(expression.strip())
    if not tokens:
        raise ConfigError(f"empty expression in {template!r}", value=template, hint=_HINT, docs="tags")
    name, *rest = tokens
    args: list[str | None] = []
    options: dict[str, str] = {}
    for token in rest:
        key, sep, value = token.partition("=")
        if sep and not key.startswith(("'", '"')):
            options[key] = _unquote(value) or ""
        else:
            args.append(_unquote(token))
    value = context.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value(tuple(args), options)


def _unquote(token: str) -> str | None:
    """A quoted literal's text; None for a bare word (a path that resolves to nothing)."""
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return None


def date_helper(moment: datetime) -> Helper:
    """A ``date``-style helper rendering *moment* with a moment.js format and ``tz=``."""

    def helper(args: tuple[str | None, ...], options: Mapping[str, str]) -> str:
        zone_name = "UTC"
        for key, value in options.items():
            if key != "tz":
                raise ConfigError(
                    f"unknown {key} attribute in a date expression", value=key,
                    hint="the only option of date and commit_date is tz='Area/City'", docs="tags",
                )
            zone_name = value
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"unknown time zone {zone_name!r}", value=zone_name,
                hint="use an IANA zone name such as UTC, Europe/Berlin or Asia/Tokyo", docs="tags",
            ) from exc
        local = moment.astimezone(zone)
        fmt = args[0] if args else None
        if fmt is None:  # moment().format() with no format: ISO 8601
            fmt = "YYYY-MM-DDTHH:mm:ss[Z]" if zone_name.upper() == "UTC" else "YYYY-MM-DDTHH:mm:ssZ"
        return format_moment(local, fmt)

    return helper


_MOMENT_TOKEN = re.compile(
    r"\[[^\]]*\]|YYYY|YY|Q|MMMM|MMM|MM|Mo|M|DDDD|DDD|Do|DD|D|dddd|ddd|dd|d|E|e"
    r"|HH|H|hh|h|kk|k|mm|m|ss|s|SSS|SS|S|A|a|ZZ|Z|X|x"
)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def _offset(dt: datetime, sep: str) -> str:
    delta = dt.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{sep}{mins:02d}"


def format_moment(dt: datetime, fmt: str) -> str:
    """*dt* rendered with moment.js format tokens (``YYYYMMDD-HHmmss``, ``[literal]``, ``Do``...)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    weekday = (dt.weekday() + 1) % 7  # moment: Sunday is 0
    hour12 = dt.hour % 12 or 12

    def token(match: re.Match[str]) -> str:
        tok = match.group(0)
        match tok:
            case _ if tok.startswith("["):
                return tok[1:-1]
            case "YYYY":
                return f"{dt.year:04d}"
            case "YY":
                return f"{dt.year % 100:02d}"
            case "Q":
                return str((dt.month - 1) // 3 + 1)
            case "MMMM":
                return _MONTHS[dt.month - 1]
            case "MMM":
                return _MONTHS[dt.month - 1][:3]
            case "MM":
                return f"{dt.month:02d}"
            case "Mo":
                return _ordinal(dt.month)
            case "M":
                return str(dt.month)
            case "DDDD":
                return f"{dt.timetuple().tm_yday:03d}"
            case "DDD":
                return str(dt.timetuple().tm_yday)
            case "Do":
                return _ordinal(dt.day)
            case "DD":
                return f"{dt.day:02d}"
            case "D":
                return str(dt.day)
            case "dddd":
                return _DAYS[weekday]
            case "ddd":
                return _DAYS[weekday][:3]
            case "dd":
                return _DAYS[weekday][:2]
            case "d" | "e":
                return str(weekday)
            case "E":
                return str(dt.isoweekday())
            case "HH":
                return f"{dt.hour:02d}"
            case "H":
                return str(dt.hour)
            case "hh":
                return f"{hour12:02d}"
            case "h":
                return str(hour12)
            case "kk":
                return f"{dt.hour or 24:02d}"
            case "k":
                return str(dt.hour or 24)
            case "mm":
                return f"{dt.minute:02d}"
            case "m":
                return str(dt.minute)
            case "ss":
                return f"{dt.second:02d}"
            case "s":
                return str(dt.second)
            case "SSS":
                return f"{dt.microsecond // 1000:03d}"
            case "SS":
                return f"{dt.microsecond // 10000:02d}"
            case "S":
                return str(dt.microsecond // 100000)
            case "A":
                return "AM" if dt.hour < 12 else "PM"
            case "a":
                return "am" if dt.hour < 12 else "pm"
            case "ZZ":
                return _offset(dt, "")
            case "Z":
                return _offset(dt, ":")
            case "X":
                return str(int(dt.timestamp()))
            case "x":
                return str(int(dt.timestamp() * 1000))
            case _:
                return tok

    return _MOMENT_TOKEN.sub(token, fmt)
