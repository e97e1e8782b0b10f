"""Cron parsing, next ticks and daylight-saving policy (pure)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from jobline.cron import Cron
from jobline.errors import InvalidInput

UTC = dt.timezone.utc


def ticks(cron: Cron, start: dt.datetime, count: int) -> list[dt.datetime]:
    out = []
    for _ in range(count):
        start = cron.next_after(start)
        out.append(start)
    return out


def test_weekly_and_business_hours_expressions():
    sunday = Cron.parse("0 3 * * SUN")
    assert ticks(sunday, dt.datetime(2026, 3, 25, 12, tzinfo=UTC), 2) == [
        dt.datetime(2026, 3, 29, 3, tzinfo=UTC), dt.datetime(2026, 4, 5, 3, tzinfo=UTC)]
    office = Cron.parse("*/15 9-17 * * MON-FRI")
    assert ticks(office, dt.datetime(2026, 3, 27, 17, 40, tzinfo=UTC), 2) == [
        dt.datetime(2026, 3, 27, 17, 45, tzinfo=UTC), dt.datetime(2026, 3, 30, 9, 0, tzinfo=UTC)]


@pytest.mark.parametrize("macro, expected", [("@daily", dt.datetime(2026, 1, 2, tzinfo=UTC)),
                                             ("@hourly", dt.datetime(2026, 1, 1, 1, tzinfo=UTC)),
                                             ("@monthly", dt.datetime(2026, 2, 1, tzinfo=UTC)),
                                             ("@yearly", dt.datetime(2027, 1, 1, tzinfo=UTC))])
def test_macros(macro, expected):
    assert Cron.parse(macro).next_after(dt.datetime(2026, 1, 1, tzinfo=UTC)) == expected


def test_last_day_and_nth_weekday():
    assert Cron.parse("0 0 L * *").next_after(dt.datetime(2026, 2, 1, tzinfo=UTC)) == dt.datetime(2026, 2, 28, tzinfo=UTC)
    assert Cron.parse("0 0 * * 5#3").next_after(dt.datetime(2026, 1, 1, tzinfo=UTC)) == dt.datetime(2026, 1, 16, tzinfo=UTC)


def test_pg_cron_seconds_interval():
    every_ten = Cron.parse("10 seconds")
    assert every_ten.interval_seconds == 10
    assert every_ten.next_after(dt.datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)) == dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)


@pytest.mark.parametrize("expression, message", [
    ("", "empty"), ("61 * * * *", "minute field '61'"), ("* * *", "expected 5 fields"),
    ("0 0 15W * *", "day-of-month field '15W'"), ("0 0 31 2 *", "day-of-month"), ("90 seconds", "1 to 59"),
    ("0 25 * * *", "hour field '25'"), ("* * * * FUNDAY", "day-of-week"),
])
def test_bad_expressions_name_the_bad_part(expression, message):
    with pytest.raises(InvalidInput, match=message):
        Cron.parse(expression)


def test_unknown_time_zone_is_refused():
    with pytest.raises(InvalidInput, match="unknown time zone 'Mars/Olympus'"):
        Cron.parse("@daily", "Mars/Olympus")


def test_daily_run_neither_skips_nor_doubles_across_dst_transitions():
    new_york = zoneinfo.ZoneInfo("America/New_York")
    # 2026-03-08: 02:00-02:59 does not exist. The 02:30 run fires once, at 03:00 local.
    spring = ticks(Cron.parse("30 2 * * *", "America/New_York"), dt.datetime(2026, 3, 7, 12, tzinfo=new_york), 3)
    assert [t.astimezone(new_york).strftime("%m-%d %H:%M") for t in spring] == ["03-08 03:00", "03-09 02:30", "03-10 02:30"]
    # 2026-11-01: 01:00-01:59 happens twice. The 01:30 run fires once, at the first (EDT).
    autumn = ticks(Cron.parse("30 1 * * *", "America/New_York"), dt.datetime(2026, 10, 31, 12, tzinfo=new_york), 3)
    assert autumn[0] == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert [t.astimezone(new_york).day for t in autumn] == [1, 2, 3]


def test_pg_cron_last_day_of_month_dollar():
    last = Cron.parse("0 11 $ * *")
    assert ticks(last, dt.datetime(2026, 1, 31, 12, tzinfo=UTC), 3) == [
        dt.datetime(2026, 2, 28, 11, tzinfo=UTC), dt.datetime(2026, 3, 31, 11, tzinfo=UTC),
        dt.datetime(2026, 4, 30, 11, tzinfo=UTC)]
    assert ticks(Cron.parse("0 0 $ 2 *"), dt.datetime(2027, 6, 1, tzinfo=UTC), 1) == [
        dt.datetime(2028, 2, 29, tzinfo=UTC)]


@pytest.mark.parametrize("expression", ["0 11 $foo * *", "0 11 $,1 * *", "$ * * * *", "0 0 * * $", "0 0 1-$ * *"])
def test_dollar_is_only_the_whole_day_of_month_field_as_in_pg_cron(expression):
    with pytest.raises(InvalidInput):
        Cron.parse(expression)


@pytest.mark.parametrize("expression, accepted", [
    ("*/59 * * * *", True), ("*/60 10 * * *", False), ("*/5000000000 10 * * *", False), ("0-59/60 * * * *", False),
    ("0 */23 * * *", True), ("0 */24 * * *", False), ("0 0 */31 * *", True), ("0 0 */32 * *", False),
    ("0 0 1 */12 *", True), ("0 0 1 */13 *", False), ("0 0 * * */7", True), ("0 0 * * */8", False),
])
def test_a_step_may_not_exceed_its_field_as_in_pg_cron(expression, accepted):
    try:
        Cron.parse(expression)
    except InvalidInput as exc:
        assert not accepted and "Bad " in str(exc)
    else:
        assert accepted


@pytest.mark.parametrize("expression", ["@restart", "@reboot", " @RESTART "])
def test_restart_fires_at_server_starts_not_at_times(expression):
    cron = Cron.parse(expression)
    assert cron.restart
    with pytest.raises(InvalidInput, match="fires when the PostgreSQL server starts"):
        cron.next_after(dt.datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInput, match="Wrong number of fields"):
        Cron.parse("@restar")
