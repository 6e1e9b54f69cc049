"""The Handlebars subset: names, helpers with quoted arguments and tz=, moment.js formats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from anybuild.errors import ConfigError
from anybuild.tags.template import date_helper, format_moment, is_single_expression, render

MOMENT = datetime(2020, 1, 10, 15, 25, 50, 123000, tzinfo=UTC)


def test_render_names_and_unknown_names_render_empty() -> None:
    assert render("a-{{ branch }}-{{nope}}-b", {"branch": "main"}) == "a-main--b"


def test_render_without_braces_is_unchanged() -> None:
    assert render("plain:text", {}) == "plain:text"


def test_render_unterminated_expression_is_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        render("x-{{branch", {"branch": "main"})
    assert "unterminated" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{date 'YYYYMMDD'}}", "20200110"),
        ("{{date 'YYYYMMDD-HHmmss' tz='Asia/Tokyo'}}", "20200111-002550"),
        ('{{date "YYYY-MM-DD"}}', "2020-01-10"),
        ("{{date 'dddd, MMMM Do YYYY, h:mm:ss a'}}", "Friday, January 10th 2020, 3:25:50 pm"),
        ("{{date 'YYYY-MM-DDTHH:mm:ss.SSS[Z]'}}", "2020-01-10T15:25:50.123Z"),
        ("{{date 'HH:mm Z' tz='America/New_York'}}", "10:25 -05:00"),
        ("{{date YYYYMMDD}}", "2020-01-10T15:25:50Z"),
        ("{{date 'X'}}", str(int(MOMENT.timestamp()))),
    ],
    ids=["compact", "tokyo", "double-quotes", "readme-long", "iso-literal", "offset", "bare-word", "unix"],
)
def test_render_date_helper_formats_like_moment(template: str, expected: str) -> None:
    assert render(template, {"date": date_helper(MOMENT)}) == expected


def test_render_date_unknown_zone_is_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        render("{{date 'YYYY' tz='Mars/Olympus'}}", {"date": date_helper(MOMENT)})
    assert "Mars/Olympus" in info.value.message


def test_render_date_unknown_option_is_config_error() -> None:
    with pytest.raises(ConfigError):
        render("{{date 'YYYY' zone='UTC'}}", {"date": date_helper(MOMENT)})


@pytest.mark.parametrize(("day", "suffix"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                                             (12, "12th"), (13, "13th"), (21, "21st"), (22, "22nd"), (31, "31st")])
def test_format_moment_ordinal_day(day: int, suffix: str) -> None:
    assert format_moment(datetime(2020, 1, day, tzinfo=UTC), "Do") == suffix


@pytest.mark.parametrize(
    ("template", "expected"),
    [("{{raw}}", True), ("{{ raw}}", True), ("{{ raw }}", True), ("{{ raw }}.{{ version }}", False),
     ("{{version}}", False), ("v{{raw}}", False)],
    ids=["tight", "left-space", "spaces", "two", "version", "prefixed"],
)
def test_is_single_expression_raw(template: str, expected: bool) -> None:
    assert is_single_expression(template, "raw") is expected
