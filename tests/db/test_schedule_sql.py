"""pg_cron's SQL interface on jobline: schedule / unschedule / alter_job with pg_cron's
signatures and semantics, the job and job_run_details views, refusals that store nothing, and
the same accepted expressions in SQL as in Python."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import psycopg
import pytest

from jobline.cron import Cron
from jobline.errors import InvalidInput
from jobline.runtime.scheduler import Scheduler

UTC = dt.timezone.utc


def refused(sql, statement: str, params=None) -> str:
    """The error's message, and its detail in parentheses when it has one."""
    with pytest.raises(psycopg.Error) as caught:
        sql(statement, params)
    diag = caught.value.diag
    return f"{diag.message_primary} ({diag.message_detail})" if diag.message_detail else diag.message_primary


def test_schedule_with_the_same_name_replaces_and_returns_the_same_id(sql):
    [(first,)] = sql("SELECT jobline.schedule('nightly', '0 3 * * *', 'SELECT 1')")
    [(again,)] = sql("SELECT jobline.schedule(job_name => 'nightly', schedule => '@hourly', command => 'SELECT 2')")
    assert first == again
    assert sql("SELECT jobid, schedule, command, active, jobname FROM jobline.job") == [
        (first, "@hourly", "SELECT 2", True, "nightly")]


def test_nameless_schedules_are_addressed_by_id(sql):
    [(a,)] = sql("SELECT jobline.schedule('*/5 * * * *', 'SELECT 1')")
    [(b,)] = sql("SELECT jobline.schedule('*/5 * * * *', 'SELECT 1')")
    assert a != b
    assert sql("SELECT jobline.unschedule(%s)", [a]) == [(True,)]
    assert sql("SELECT jobid, jobname FROM jobline.job") == [(b, None)]


def test_unschedule_removes_and_refuses_unknown_names_as_pg_cron_does(sql):
    sql("SELECT jobline.schedule('weekly-adapter-check', '0 3 * * SUN', 'SELECT 1')")
    assert sql("SELECT jobline.unschedule('weekly-adapter-check')") == [(True,)]
    assert refused(sql, "SELECT jobline.unschedule('weekly-adapter-check')") == (
        "could not find valid entry for job 'weekly-adapter-check'")
    assert refused(sql, "SELECT jobline.unschedule(404)") == "could not find valid entry for job 404"


def test_alter_job_changes_the_schedule_command_and_state(sql):
    [(jobid,)] = sql("SELECT jobline.schedule('j', '0 3 * * *', 'SELECT 1')")
    sql("UPDATE jobline.schedules SET next_run_at = '2030-01-01'")
    sql("SELECT jobline.alter_job(%s, schedule := '0 4 * * *', command := 'SELECT 4')", [jobid])
    assert sql("SELECT expression, payload, next_run_at FROM jobline.schedules") == [
        ("0 4 * * *", {"command": "SELECT 4"}, None)]
    sql("SELECT jobline.alter_job(%s, active := false)", [jobid])
    assert sql("SELECT active FROM jobline.job") == [(False,)]
    assert refused(sql, "SELECT jobline.alter_job(%s, database := 'other')", [jobid]) == (
        'database "other" does not exist')
    assert refused(sql, "SELECT jobline.alter_job(999, active := true)") == "Job 999 does not exist or you don't own it"
    assert refused(sql, "SELECT jobline.alter_job(%s)", [jobid]) == "no updates specified"


@pytest.mark.parametrize("call, message", [
    ("SELECT jobline.schedule('x', '61 * * * *', 'SELECT 1')",
     "invalid schedule: 61 * * * * (invalid cron expression '61 * * * *': Bad minute (minute field '61'))"),
    ("SELECT jobline.schedule('x', '0 3 * * FUNDAY', 'SELECT 1')",
     "invalid schedule: 0 3 * * FUNDAY (invalid cron expression '0 3 * * FUNDAY': Bad day-of-week "
     "(day-of-week field 'FUNDAY'))"),
    ("SELECT jobline.schedule('x', '90 seconds', 'SELECT 1')", "seconds must be 1 to 59"),
    ("SELECT jobline.schedule('x', '', 'SELECT 1')", "invalid schedule:  (the cron expression is empty)"),
    ("SELECT jobline.schedule('x', '@daily', '  ')", "jobline.schedule: command is empty"),
    ("SELECT jobline.schedule(' x', '@daily', 'SELECT 1')", "jobline.schedule: job_name ' x' is not a valid name"),
    ("SELECT jobline.schedule('@daily', NULL)", "jobline.schedule: command is empty"),
    ("SELECT jobline.alter_job(1, schedule := '* * *')", "Wrong number of fields"),
    ("SELECT jobline.schedule('x', '@daily', repeat('x', 1100000))", "jobline.schedule: command is larger than 1 MiB"),
    ("SELECT jobline.alter_job(1, command := ' ')", "jobline.alter_job: command is empty"),
])
def test_bad_input_is_refused_naming_the_bad_part_and_nothing_is_stored(sql, call, message):
    [(before,)] = sql("SELECT jobline.schedule('kept', '@daily', 'SELECT 1')")
    assert message in refused(sql, call)
    assert sql("SELECT id, name, expression, payload FROM jobline.schedules") == [
        (before, "kept", "@daily", {"command": "SELECT 1"})]


def test_views_have_pg_cron_columns(sql):
    def columns(view):
        return [name for (name,) in sql("""SELECT attname FROM pg_attribute
                                           WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum""", [view])]

    assert columns("jobline.job") == ["jobid", "schedule", "command", "nodename", "nodeport", "database",
                                      "username", "active", "jobname"]
    assert columns("jobline.job_run_details") == ["jobid", "runid", "job_pid", "database", "username", "command",
                                                  "status", "return_message", "start_time", "end_time"]


# Per field: mostly plausible terms (boundaries included), sometimes anything.
_FIELD_TERMS = [
    ["*", "0", "59", "60", "*/15", "5/15", "0-30/10", "1,2,3", "10-5", "*/0", "*/59", "*/60", "1/60", "*/060"],
    ["*", "0", "23", "24", "9-17", "*/6", "1,13", "3/4", "*/23", "*/24", "0-23/5000000000"],
    ["*", "1", "15", "29", "30", "31", "32", "0", "L", "LW", "15W", "1-15", "L/2", "*/10", "$", "$,1", "$foo",
     "*/31", "*/32", "L/32"],
    ["*", "1", "2", "12", "13", "JAN", "feb", "JAN-MAR", "2,4", "DEC-JAN", "*/3", "*/12", "*/13"],
    ["*", "0", "7", "8", "MON", "sun", "MON-FRI", "FRI-MON", "5L", "L", "3#2", "3#6", "SAT#1", "1-5/2", "*/7",
     "*/8", "$"],
]
_ANY_TERMS = ["?", "W", "FOO", "-", "#", "2-", "0x1", "1,,2", "/5", "L5", "5#", "#2", "1-", "**", "１", "$"]


def _random_expression(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["@daily", "@HOURLY", "@weekly", "@never", "5 seconds", "0 seconds", "60 seconds",
                           "1 second", "* * * *", "* * * * * *", "   ", "@restart", "@reboot", " @RESTART ",
                           "@restar", "@restart *", "$"])
    return " ".join(rng.choice(terms) if rng.random() < 0.93 else rng.choice(_ANY_TERMS) for terms in _FIELD_TERMS)


def _accepted_by_python(expression: str) -> bool:
    try:
        Cron.parse(expression)
        return True
    except InvalidInput:
        return False


def _accepted_by_sql(conn: psycopg.Connection, expression: str) -> bool:
    try:
        conn.execute("SELECT jobline.check_cron(%s)", [expression])
        return True
    except psycopg.errors.InvalidParameterValue:
        return False


def test_sql_and_python_accept_exactly_the_same_expressions(db_url):
    """The validator (migrations 0002 and 0011) mirrors cron.py and cronsim: 3,000 random expressions,
    pg_cron's `$`, `@restart` and steps past their field's range among them, agree."""
    rng = random.Random(20261125)
    expressions = sorted({_random_expression(rng) for _ in range(3000)})
    with psycopg.connect(db_url, autocommit=True) as conn:
        verdicts = {e: (_accepted_by_python(e), _accepted_by_sql(conn, e)) for e in expressions}
    assert [(e, v) for e, v in verdicts.items() if v[0] != v[1]] == []
    accepted = sum(python for python, _ in verdicts.values())
    assert 200 < accepted < len(expressions) - 200  # both kinds are well covered


ROLLUP = """
CREATE TABLE public.usage_events (user_id int, timestamp timestamptz, characters_processed int, event_type text);
CREATE TABLE public.monthly_usage (user_id int, month_start_date date, total_characters_processed bigint,
                                   last_updated timestamptz, PRIMARY KEY (user_id, month_start_date));
CREATE OR REPLACE FUNCTION public.rollup_daily_usage()
RETURNS void AS $$
DECLARE
  yesterday_start timestamptz := date_trunc('day', now() - interval '1 day');
  yesterday_end timestamptz := date_trunc('day', now()) - interval '1 second';
  month_start date := date_trunc('month', yesterday_start)::date;
BEGIN
  INSERT INTO public.monthly_usage (user_id, month_start_date, total_characters_processed, last_updated)
  SELECT user_id, month_start, SUM(characters_processed), now()
  FROM public.usage_events
  WHERE timestamp >= yesterday_start AND timestamp <= yesterday_end
    AND characters_processed > 0 AND event_type = 'TTS_REQUEST'
  GROUP BY user_id
  ON CONFLICT (user_id, month_start_date)
  DO UPDATE SET total_characters_processed = public.monthly_usage.total_characters_processed + EXCLUDED.total_characters_processed,
                last_updated = now();
END;
$$ LANGUAGE plpgsql VOLATILE SECURITY DEFINER;
INSERT INTO public.usage_events VALUES (1, date_trunc('day', now()) - interval '12 hours', 400, 'TTS_REQUEST'),
                                       (1, date_trunc('day', now()) - interval '11 hours', 100, 'TTS_REQUEST'),
                                       (2, date_trunc('day', now()) - interval '12 hours', 900, 'OTHER');
"""


async def test_seed_002_daily_usage_rollup_runs_and_shows_in_job_run_details(app, store, sql):
    """Seed 002's rollup, with only `cron.` changed to `jobline.`, at its 00:05 UTC tick."""
    sql(ROLLUP)
    sql("SELECT jobline.schedule('daily-usage-rollup', '5 0 * * *', $$ SELECT public.rollup_daily_usage(); $$)")
    midnight = dt.datetime(2026, 6, 1, tzinfo=UTC)
    sql("UPDATE jobline.schedules SET changed_at = %s", [midnight])
    await Scheduler(store, asyncio.Event()).tick(now=midnight + dt.timedelta(minutes=5, seconds=0.1))
    summary = await app.process_async()
    assert summary.succeeded == 1
    assert sql("SELECT user_id, total_characters_processed FROM public.monthly_usage") == [(1, 500)]
    [(jobid,)] = sql("SELECT jobid FROM jobline.job WHERE jobname = 'daily-usage-rollup'")
    details = sql("SELECT jobid, status, return_message, command, end_time IS NOT NULL FROM jobline.job_run_details")
    assert details == [(jobid, "succeeded", "SELECT 1", " SELECT public.rollup_daily_usage(); ", True)]
