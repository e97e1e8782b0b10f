"""`jobline notifications ...` and the CLI's side of deactivation (`cron add
--max-consecutive-failures`, `cron show`, the `deactivated` state), as a user runs them: JSON
output, exit statuses, and one-line errors that store nothing."""

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


def test_subscribe_list_and_unsubscribe(jobline, sql):
    added = jobline("notifications", "subscribe", "https://hooks.example.com/jobline", "--event", "job.failed",
                    "--event", "function.failing", "--header", "Authorization: Bearer {{secret:hook_token}}", "--json")
    assert added.returncode == 0, added.stderr
    sub = json.loads(added.stdout)
    assert sub["owner"] is None and sub["events"] == ["job.failed", "function.failing"]
    assert sub["headers"] == {"Authorization": "Bearer {{secret:hook_token}}"}
    users = jobline("notifications", "subscribe", "https://alice.example.com/", "--owner", "alice")
    assert users.returncode == 0 and "user 'alice''s events" in users.stdout

    listed = jobline("notifications", "subscriptions")
    assert "hooks.example.com" in listed.stdout and "alice.example.com" in listed.stdout
    assert [s["owner"] for s in json.loads(jobline("notifications", "subscriptions", "--json").stdout)] == [None, "alice"]

    removed = jobline("notifications", "unsubscribe", str(sub["id"]))
    assert removed.returncode == 0 and removed.stdout.strip() == f"subscription {sub['id']} removed"
    missing = jobline("notifications", "unsubscribe", str(sub["id"]))
    assert missing.returncode == 3 and missing.stderr.strip() == f"error: no subscription with id {sub['id']}"


@pytest.mark.parametrize("args, message", [
    (["ftp://x.example.com/"], "http:// or https://"),
    (["https://x.example.com/", "--event", "job.exploded"], "job.exploded"),
    (["https://x.example.com/", "--header", "no colon"], "write it as 'Name: value'"),
    (["https://x.example.com/", "--header", "X-A: 1", "--header", "X-A: 2"], "given twice"),
    (["https://x.example.com/", "--header", "X-A: 1", "--header", "x-a: 2"], "given twice"),
    (["https://x.example.com/", "--owner", "alice", "--header", "X: {{secret:t}}"], "{{owner_secret:NAME}}"),
    (["http://169.254.169.254/"], "169.254.169.254"),
])
def test_a_bad_subscription_is_one_line_naming_what_is_wrong_and_stores_nothing(jobline, sql, args, message):
    refused = jobline("notifications", "subscribe", *args)
    assert refused.returncode in (1, 2), refused
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert sql("SELECT count(*) FROM jobline.notification_subscriptions") == [(0,)]


@pytest.mark.parametrize("args, message", [
    (["--since", "garbage"], "--since 'garbage' is not an ISO 8601 date-time"),
    (["--before", "99999999999999999999"], "--before"),
])
def test_a_bad_listing_option_is_one_line_naming_it(jobline, args, message):
    refused = jobline("notifications", "ls", *args)
    assert refused.returncode in (1, 2), refused
    assert message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr


def test_notifications_lists_events_newest_first(jobline, sql):
    for n in range(3):
        sql("SELECT jobline.record_event('job.failed', 'alice', %s, %s::jsonb)",
            [f"job {n}", json.dumps({"job_id": n, "error": f"RuntimeError: number {n}\nTraceback..."})])
    sql("SELECT jobline.record_event('function.failing', NULL, 'resize', '{\"failures\": 5, \"window_seconds\": 600}')")
    shown = jobline("notifications")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "function.failing" in lines[1] and "5 failures within 600 s" in lines[1]
    assert "RuntimeError: number 2" in lines[2] and "Traceback" not in shown.stdout
    rows = json.loads(jobline("notifications", "ls", "--kind", "job.failed", "--limit", "2", "--json").stdout)
    assert [r["subject"] for r in rows] == ["job 2", "job 1"]
    paged = jobline("notifications", "--kind", "job.failed", "--limit", "2")
    assert f"(more: --before {rows[-1]['id']})" in paged.stdout
    assert json.loads(jobline("notifications", "--owner", "bob", "--json").stdout) == []
    assert json.loads(jobline("notifications", "--since", "2999-01-01", "--json").stdout) == []
    assert jobline("notifications", "--kind", "nope").returncode == 2


def test_cron_add_takes_max_consecutive_failures_and_show_says_why_it_paused(jobline, sql):
    added = jobline("cron", "add", "nightly", "0 3 * * *", "--function", "report", "--max-consecutive-failures", "3",
                    "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["max_consecutive_failures"] == 3
    for bad in ("0", "1001", "x"):
        refused = jobline("cron", "add", "other", "0 3 * * *", "--function", "report",
                          "--max-consecutive-failures", bad)
        assert refused.returncode == 2 and "max" in refused.stderr, refused.stderr
    assert "never" not in jobline("cron", "show", "nightly").stdout
    sql("UPDATE jobline.schedules SET active = false, deactivated_at = now(), "
        "deactivated_reason = '3 runs in a row failed (max_consecutive_failures 3); the last, job 9: boom'")
    shown = jobline("cron", "show", "nightly")
    assert shown.returncode == 0, shown.stderr
    assert "deactivated" in shown.stdout and "the last, job 9: boom" in shown.stdout
    assert "deactivated" in jobline("cron", "ls").stdout
    assert json.loads(jobline("cron", "show", "nightly", "--json").stdout)["state"] == "deactivated"
    assert jobline("cron", "resume", "nightly").stdout.startswith("schedule nightly is active")
    assert json.loads(jobline("cron", "show", "nightly", "--json").stdout)["deactivated_reason"] is None
    assert jobline("cron", "show", "nothing-here").returncode == 3
