"""Schedule validation and tick planning: catch-up policies, caps and long downtimes (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from jobline.cron import Cron
from jobline.errors import InvalidInput
from jobline.schedule import MISFIRE_SECONDS, new_schedule, plan, plan_restart

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
FIVE_MINUTES = Cron.parse("*/5 * * * *")


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def test_a_schedule_on_time_runs_its_tick_and_moves_on():
    p = plan(FIVE_MINUTES, next_run_at=T0, changed_at=T0 - minutes(60), now=T0 + dt.timedelta(seconds=0.2))
    assert (p.ticks, p.next_run_at, p.missed_at) == ([T0], T0 + minutes(5), None)


def test_a_new_schedule_starts_at_the_first_tick_after_its_change():
    waiting = plan(FIVE_MINUTES, next_run_at=None, changed_at=T0 + minutes(1), now=T0 + minutes(2))
    assert (waiting.ticks, waiting.next_run_at) == ([], T0 + minutes(5))
    # Created before its first tick, but seen by a scheduler only after it: the tick still runs.
    late = plan(FIVE_MINUTES, next_run_at=None, changed_at=T0 + minutes(4), now=T0 + minutes(5.5))
    assert late.ticks == [T0 + minutes(5)]


def test_three_hours_down_with_catch_up_latest_runs_the_last_tick_once_and_records_the_rest():
    p = plan(FIVE_MINUTES, next_run_at=T0, changed_at=T0, now=T0 + minutes(180) + minutes(1))
    assert p.ticks == [T0 + minutes(180)]
    assert p.next_run_at == T0 + minutes(185)
    assert p.missed_at == T0
    assert p.missed_note == ("36 tick(s) from 2026-01-01T00:00:00Z to 2026-01-01T02:55:00Z were not run "
                             "(catch-up: latest)")


def test_catch_up_none_runs_nothing_late_but_a_tick_within_the_misfire_window():
    down = plan(FIVE_MINUTES, next_run_at=T0, changed_at=T0, now=T0 + minutes(182), catch_up="none")
    assert down.ticks == [] and down.missed_note.startswith("37 tick(s)") and down.next_run_at == T0 + minutes(185)
    on_time = plan(FIVE_MINUTES, next_run_at=T0, changed_at=T0, catch_up="none",
                   now=T0 + dt.timedelta(seconds=MISFIRE_SECONDS - 1))
    assert on_time.ticks == [T0] and on_time.missed_at is None


def test_catch_up_all_runs_at_most_the_cap_and_records_the_cap():
    p = plan(FIVE_MINUTES, next_run_at=T0, changed_at=T0, now=T0 + minutes(181), catch_up="all", catch_up_max=10)
    assert p.ticks == [T0 + minutes(5 * n) for n in range(27, 37)]
    assert p.missed_note == ("27 tick(s) from 2026-01-01T00:00:00Z to 2026-01-01T02:10:00Z were not run "
                             "(catch-up: all, at most 10)")
    few = plan(FIVE_MINUTES, next_run_at=T0, changed_at=T0, now=T0 + minutes(11), catch_up="all")
    assert few.ticks == [T0, T0 + minutes(5), T0 + minutes(10)] and few.missed_at is None


def test_a_frequent_schedule_after_a_long_downtime_is_planned_without_counting_every_tick():
    every_second = Cron.parse("1 seconds")
    now = T0 + dt.timedelta(days=30, seconds=0.5)
    latest = plan(every_second, next_run_at=T0, changed_at=T0, now=now)
    assert latest.ticks == [now.replace(microsecond=0)] and latest.next_run_at == now.replace(microsecond=0) + dt.timedelta(seconds=1)
    assert latest.missed_note.startswith("more than 1000 tick(s) from 2026-01-01T00:00:00Z")
    every = plan(every_second, next_run_at=T0, changed_at=T0, now=now, catch_up="all", catch_up_max=3)
    assert every.ticks == [now.replace(microsecond=0) - dt.timedelta(seconds=s) for s in (2, 1, 0)]


@pytest.mark.parametrize("kwargs, message", [
    ({"expression": "61 * * * *", "function": "f"}, "minute field '61'"),
    ({"expression": "@daily", "function": "f", "timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
    ({"expression": "@daily"}, "needs a target"),
    ({"expression": "@daily", "function": "f", "sql": "SELECT 1"}, "needs a target"),
    ({"expression": "@daily", "sql": "  "}, "SQL command is empty"),
    ({"expression": "@daily", "function": "bad\nname"}, "control character"),
    ({"expression": "@daily", "function": "f", "overlap": "queue"}, "overlap must be one of skip, allow"),
    ({"expression": "@daily", "function": "f", "catch_up": "some"}, "catch_up must be one of latest, none, all"),
    ({"expression": "@daily", "function": "f", "catch_up_max": 0}, "catch_up_max must be between 1 and 1000"),
    ({"expression": "* * * * * *", "function": "f"}, "expected 5 fields"),
])
def test_bad_schedules_are_refused_naming_the_bad_part(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        new_schedule("s", **kwargs)


def test_a_sql_schedule_is_the_sql_function_with_its_command():
    spec = new_schedule("rollup", " 5  0 * * * ", sql="SELECT public.rollup_daily_usage()")
    assert (spec.function, spec.payload_json, spec.expression) == (
        "sql", '{"command":"SELECT public.rollup_daily_usage()"}', "5 0 * * *")


def test_a_restart_schedule_fires_once_per_server_start_made_after_it():
    started = T0 + minutes(30)
    made_before = plan_restart(changed_at=T0, started_at=started)
    assert (made_before.ticks, made_before.next_run_at) == ([started], started)
    # Made (or changed, or resumed) while the server runs: it waits for the next start.
    made_after = plan_restart(changed_at=started + minutes(1), started_at=started)
    assert (made_after.ticks, made_after.next_run_at) == ([], started)
