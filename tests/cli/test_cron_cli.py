"""`jobline cron ...` as a user runs it: add, ls, runs, pause, resume, trigger, rm; JSON output,
exit statuses and one-line errors that store nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def jobline(db_url):
    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning"}
        return subprocess.run([sys.executable, "-m", "jobline", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    return run


def test_add_list_pause_resume_trigger_runs_and_remove(jobline, sql):
    added = jobline("cron", "add", "weekly-adapter-check", "0 3 * * SUN", "--function", "adapter-health",
                    "--payload", '{"deep": true}', "--timezone", "Europe/London", "--json")
    assert added.returncode == 0, added.stderr
    schedule = json.loads(added.stdout)
    assert (schedule["expression"], schedule["timezone"], schedule["state"]) == ("0 3 * * SUN", "Europe/London", "active")
    assert schedule["next_run"].endswith("+00:00")
    sql_added = jobline("cron", "add", "rollup", "@daily", "--sql", "SELECT 1")
    assert sql_added.returncode == 0 and "schedule rollup" in sql_added.stdout

    listed = jobline("cron", "ls")
    assert "weekly-adapter-check" in listed.stdout and "adapter-health {\"deep\":true}" in listed.stdout
    assert "SELECT 1" in listed.stdout

    assert jobline("cron", "pause", "weekly-adapter-check").stdout.strip() == "schedule weekly-adapter-check is paused"
    assert json.loads(jobline("cron", "ls", "--json").stdout)[1]["next_run"] is None
    resumed = jobline("cron", "resume", str(schedule["id"]))  # by id
    assert resumed.stdout.startswith("schedule weekly-adapter-check is active, next run")

    triggered = json.loads(jobline("cron", "trigger", "weekly-adapter-check", "--json").stdout)
    assert sql("SELECT function, payload FROM jobline.jobs WHERE id = %s", [triggered["job_id"]]) == [
        ("adapter-health", {"deep": True})]
    runs = json.loads(jobline("cron", "runs", "weekly-adapter-check", "--json").stdout)
    assert [(r["status"], r["tick_at"], r["outcome"], r["job_id"]) for r in runs] == [
        ("triggered", None, "pending", triggered["job_id"])]
    assert "(triggered)" in jobline("cron", "runs", "weekly-adapter-check").stdout
    assert "weekly-adapter-check" in jobline("cron", "ls").stdout.split("\n")[2]  # latest run shown

    removed = jobline("cron", "rm", "weekly-adapter-check")
    assert removed.returncode == 0 and "removed schedule weekly-adapter-check" in removed.stdout
    assert sql("SELECT name FROM jobline.schedules") == [("rollup",)]


@pytest.mark.parametrize("args, status, message", [
    (["cron", "add", "x", "0 3 * * FUNDAY", "--function", "f"], 2,
     "error: invalid cron expression '0 3 * * FUNDAY': Bad day-of-week (day-of-week field 'FUNDAY')"),
    (["cron", "add", "x", "@daily", "--function", "f", "--timezone", "Mars/Base"], 2,
     "error: unknown time zone 'Mars/Base'"),
    (["cron", "add", "x", "@daily"], 2, "error: a schedule needs a target"),
    (["cron", "add", "x", "@daily", "--sql", ""], 2, "error: the schedule's SQL command is empty"),
    (["cron", "add", "x", "@daily", "--function", "f", "--payload", "[1]"], 2, "error: --payload: payload must be a JSON object"),
    (["cron", "add", "kept", "@daily", "--function", "f"], 1, "error: the schedule name 'kept' is taken"),
    (["cron", "pause", "nope"], 3, "error: no schedule named or numbered 'nope'"),
    (["cron", "runs", "999"], 3, "error: no schedule named or numbered '999'"),
    (["cron", "runs", "²"], 3, "error: no schedule named or numbered '²'"),  # a digit to str.isdigit()
])
def test_bad_input_gets_one_line_and_stores_nothing(jobline, sql, args, status, message):
    assert jobline("cron", "add", "kept", "@hourly", "--function", "f").returncode == 0
    result = jobline(*args)
    assert (result.returncode, result.stderr.strip().splitlines()[0][:len(message)]) == (status, message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert sql("SELECT name, expression FROM jobline.schedules") == [("kept", "@hourly")]


def test_replace_swaps_a_schedule_of_the_same_name(jobline, sql):
    jobline("cron", "add", "r", "@hourly", "--function", "f")
    replaced = jobline("cron", "add", "r", "@daily", "--sql", "SELECT 2", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert sql("SELECT expression, function FROM jobline.schedules") == [("@daily", "sql")]


def test_a_restart_schedule_says_it_runs_at_the_next_server_start(jobline):
    added = jobline("cron", "add", "on-start", "@restart", "--sql", "SELECT 1")
    assert added.stdout.strip() == ("schedule on-start (id 1) added: @restart UTC, runs when the PostgreSQL server "
                                    "next starts")
    assert "at server start" in jobline("cron", "ls").stdout
    assert json.loads(jobline("cron", "ls", "--json").stdout)[0]["next_run"] is None
