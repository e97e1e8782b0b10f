"""The `jobline` command as a user runs it: output, JSON, exit statuses and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from apps.core import create_ledger
from jobline.db import migrate


@pytest.fixture
def jobline(db_url):
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning",
               "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..")}
        return subprocess.run([sys.executable, "-m", "jobline", *args], env=env, capture_output=True, text=True,
                              timeout=60, input=stdin)

    return run


def test_enqueue_then_list_and_show_as_json(jobline):
    made = jobline("enqueue", "report-generator", "--payload", '{"day": "2026-01-31"}', "--owner", "u1",
                   "--priority", "3", "--json")
    assert made.returncode == 0, made.stderr
    job = json.loads(made.stdout)
    listed = json.loads(jobline("jobs", "list", "--json").stdout)
    assert [(j["id"], j["function"], j["owner"], j["served"]) for j in listed] == [
        (job["id"], "report-generator", "u1", False)]
    assert listed[0]["note"] == "no live worker serves this function"
    shown = json.loads(jobline("jobs", "show", str(job["id"]), "--json").stdout)
    assert shown["payload"] == {"day": "2026-01-31"} and shown["attempt_history"] == []
    table = jobline("jobs", "list").stdout
    assert "report-generator" in table and "no live worker" in table


@pytest.mark.parametrize("args, status, message", [
    (["enqueue", "f", "--payload", '{"a":'], 2, "payload is not valid JSON"),
    (["enqueue", "f", "--priority", "5000"], 2, "priority must be between -1000 and 1000"),
    (["enqueue", "f", "--depends-on", "999999"], 2, "do not exist"),
    (["enqueue", "f", "--run-at", "soon"], 2, "ISO 8601"),
    (["enqueue", "f", "--run-at", "2030-01-01", "--delay", "5"], 2, "either --run-at or --delay"),
    (["enqueue", " f"], 2, "leading or trailing spaces"),
    (["jobs", "show", "424242"], 3, "no job with id 424242"),
    (["jobs", "retry", "424242"], 3, "no job with id 424242"),
    (["jobs", "show", "0"], 2, "Invalid value"),
    (["--app", "missing_module:app", "worker"], 1, "cannot import 'missing_module'"),
    (["enqueue", "f", "--bogus"], 2, "error: No such option '--bogus' (see `jobline enqueue --help`)"),
    (["enqueue"], 2, "error: Missing argument 'FUNCTION'"),
    (["enqueue", "f", "--payload", "@/nonexistent/payload.json"], 2,
     "--payload @/nonexistent/payload.json: cannot read '/nonexistent/payload.json': No such file"),
    (["enqueue", "f", "--payload", "[1]"], 2, "--payload: payload must be a JSON object"),
    (["--database-url", "postgresql://app:pa@ss@db.internal/jobs", "jobs", "list"], 1,
     "--database-url) is malformed: its host 'ss@db.internal' is not a host name"),
    (["--database-url", "nonsense", "jobs", "list"], 1, "is malformed: it is neither a postgresql:// URL"),
    (["--database-url", "postgresql://db.internal:99999/jobs", "jobs", "list"], 1, "its port must be a number"),
    (["--database-url", "", "--data-dir", "/dev/null/jobline", "jobs", "list"], 1,
     "cannot use /dev/null/jobline as the embedded database's data directory: Not a directory"),
])
def test_bad_input_gets_one_line_and_an_exit_status(jobline, args, status, message):
    result = jobline(*args)
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pa@ss" not in result.stderr  # a URL's password is never repeated


def test_a_payload_comes_from_a_file_or_stdin_up_to_the_limit(jobline, tmp_path):
    big = {"blob": "x" * 600_000}  # far past what a shell's argument list takes
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(big))
    made = json.loads(jobline("enqueue", "f", "--payload", f"@{path}", "--json").stdout)
    assert made["payload"] == big
    piped = jobline("enqueue", "f", "--payload", "-", "--json", stdin='{"from": "stdin"}')
    assert json.loads(piped.stdout)["payload"] == {"from": "stdin"}
    path.write_text(json.dumps({"blob": "x" * (1024 * 1024)}))
    too_big = jobline("enqueue", "f", "--payload", f"@{path}")
    assert too_big.returncode == 2 and "larger than the 1024 KiB limit" in too_big.stderr


def test_db_url_prints_the_url_with_its_password_hidden(jobline, db_url):
    shown = jobline("db", "url")
    assert shown.returncode == 0 and shown.stdout.strip() == db_url  # the test URL has no password
    with_password = f"{db_url} password=hunter2"  # trust authentication ignores it
    hidden = jobline("--database-url", with_password, "db", "url")
    assert "hunter2" not in hidden.stdout and "password=****" in hidden.stdout
    assert "hunter2" in jobline("--database-url", with_password, "db", "url", "--show-password").stdout
    assert jobline("db", "status").stdout.startswith("database: ")


def test_list_shows_no_error_for_a_job_that_succeeded_and_no_next_page_when_exactly_full(jobline, sql):
    first = json.loads(jobline("enqueue", "f", "--json").stdout)["id"]
    second = json.loads(jobline("enqueue", "f", "--json").stdout)["id"]
    sql("UPDATE jobline.jobs SET status = 'succeeded', last_error = 'attempt 1: boom' WHERE id = %s", [first])
    listed = jobline("jobs", "list", "--limit", "2").stdout
    assert "boom" not in listed and "(more:" not in listed
    assert f"(more: --before {second})" in jobline("jobs", "list", "--limit", "1").stdout


def test_steering_a_job_in_the_wrong_state_says_which_states_are_allowed(jobline):
    job = json.loads(jobline("enqueue", "f", "--json").stdout)
    result = jobline("jobs", "retry", str(job["id"]))
    assert result.returncode == 1 and "only failed or cancelled jobs can be" in result.stderr
    assert jobline("jobs", "cancel", str(job["id"])).stdout.strip() == f"job {job['id']} is now cancelled"


def test_process_runs_due_jobs_and_prints_a_summary(jobline, db_url):
    create_ledger(db_url)  # apps.core's handlers write to it
    for _ in range(2):
        assert jobline("enqueue", "work").returncode == 0
    assert jobline("enqueue", "flaky", "--payload", '{"succeed_on": 2}').returncode == 0
    result = jobline("--app", "apps.core:app", "process", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["processed"], summary["succeeded"], summary["retried"]) == (3, 2, 1)
    assert summary["by_function"] == {"flaky": {"retried": 1}, "work": {"succeeded": 2}}
    text = jobline("--app", "apps.core:app", "process").stdout
    assert text.startswith("processed ") and "will retry" in text


def test_functions_ls_and_db_status(jobline):
    jobline("enqueue", "orphan-task")
    functions = json.loads(jobline("functions", "ls", "--json").stdout)
    assert [(f["function"], f["pending"], f["workers"], f["note"]) for f in functions] == [
        ("orphan-task", 1, 0, "not served by any live worker")]
    status = json.loads(jobline("db", "status", "--json").stdout)
    assert [(m["version"], m["state"]) for m in status] == [(m.version, "applied") for m in migrate.available()]


def test_demo_against_a_server_prints_the_summary(jobline):
    result = jobline("demo")
    assert result.returncode == 0, result.stderr
    assert "summary: 4 succeeded, 1 failed, 1 cancelled, 1 retried" in result.stdout


def test_jobs_run_runs_one_pending_job_here_whatever_its_run_at(jobline, db_url, sql):
    create_ledger(db_url)  # apps.core's handlers write to it
    later = json.loads(jobline("enqueue", "work", "--delay", "3600", "--json").stdout)["id"]
    other = json.loads(jobline("enqueue", "work", "--json").stdout)["id"]
    ran = jobline("--app", "apps.core:app", "jobs", "run", str(later))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"job {later} (work) succeeded"
    assert sql("SELECT id, status FROM jobline.jobs ORDER BY id") == [(later, "succeeded"), (other, "pending")]
    flaky = json.loads(jobline("enqueue", "flaky", "--payload", '{"succeed_on": 3}', "--json").stdout)["id"]
    failed_once = jobline("--app", "apps.core:app", "jobs", "run", str(flaky))
    assert failed_once.returncode == 0 and "will retry at" in failed_once.stdout
    assert "RuntimeError: failing attempt 1 on purpose" in failed_once.stdout
    again = jobline("--app", "apps.core:app", "jobs", "run", str(later))  # succeeded: not pending
    assert again.returncode == 1 and "it is succeeded; only a pending job can be run" in again.stderr
    unknown = json.loads(jobline("enqueue", "not-in-the-app", "--json").stdout)["id"]
    no_handler = jobline("--app", "apps.core:app", "jobs", "run", str(unknown))
    assert no_handler.returncode == 3 and "no handler for" in no_handler.stderr
    assert sql("SELECT status, attempts FROM jobline.jobs WHERE id = %s", [unknown]) == [("pending", 0)]
    assert jobline("--app", "apps.core:app", "jobs", "run", "424242").returncode == 3


def test_queues_pause_ls_resume_and_jobs_run_while_paused(jobline, db_url, sql):
    create_ledger(db_url)
    held = json.loads(jobline("enqueue", "work", "--queue", "emails", "--json").stdout)["id"]
    paused = jobline("queues", "pause", "emails", "--reason", "provider outage")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith("queue 'emails' is paused (since ")
    listed = jobline("queues", "ls")
    assert listed.stdout.splitlines()[0].split() == ["QUEUE", "STATE", "WAITING", "PENDING", "DUE", "RUNNING",
                                                     "SUCCEEDED_1H", "FAILED_1H"]
    assert listed.stdout.splitlines()[1].split()[:3] == ["emails", "paused", "since"]
    assert json.loads(jobline("queues", "ls", "--json").stdout)[0]["pause_reason"] == "provider outage"
    processed = jobline("--app", "apps.core:app", "process")
    assert processed.returncode == 0 and sql("SELECT status FROM jobline.jobs") == [("pending",)]
    ran = jobline("--app", "apps.core:app", "jobs", "run", str(held))  # the manual tool still works
    assert ran.returncode == 0 and ran.stdout.strip() == f"job {held} (work) succeeded"
    assert jobline("queues", "resume", "emails").stdout.strip() == "queue 'emails' is resumed"
    assert jobline("queues", "resume", "emails").stdout.strip() == "queue 'emails' was not paused"
    refused = jobline("queues", "pause", "bad\tname")
    assert refused.returncode == 2 and refused.stderr.startswith("error: queue 'bad\\tname' contains a control")
    assert len(refused.stderr.splitlines()) == 1
