"""`jobline pipelines ...` as a user runs it: ls (recording the --app's pipelines), start, runs,
show, cancel, retry; JSON output, exit statuses and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.dirname(__file__))


@pytest.fixture
def jobline(db_url):
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning",
               "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
        return subprocess.run([sys.executable, "-m", "jobline", "--app", "apps.pipelines:app", *args], env=env,
                              capture_output=True, text=True, timeout=60, input=stdin)

    return run


def test_ls_start_runs_show_cancel_retry(jobline, sql):
    listed = jobline("pipelines", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "publish" in listed.stdout and "draft+" not in listed.stdout and "title+tags->assemble" in listed.stdout
    assert {p["name"] for p in json.loads(jobline("pipelines", "ls", "--json").stdout)} == {"publish", "flaky", "wide"}

    started = jobline("pipelines", "start", "publish", "--payload", '{"topic": "cli"}', "--owner", "alice", "--json")
    assert started.returncode == 0, started.stderr
    run = json.loads(started.stdout)
    assert (run["pipeline"], run["owner"], run["status"]) == ("publish", "alice", "running")
    assert [s["name"] for s in run["steps"]] == ["draft", "title", "tags", "assemble"]
    from_stdin = jobline("pipelines", "start", "publish", "--payload", "-", stdin='{"topic": "stdin"}')
    assert from_stdin.returncode == 0 and from_stdin.stdout.startswith("started run ")

    runs = json.loads(jobline("pipelines", "runs", "--json", "--limit", "1").stdout)
    assert len(runs["runs"]) == 1 and runs["next_cursor"] == runs["runs"][0]["id"]
    older = json.loads(jobline("pipelines", "runs", "--json", "--before", str(runs["next_cursor"])).stdout)
    assert [r["id"] for r in older["runs"]] == [run["id"]]
    assert json.loads(jobline("pipelines", "runs", "--owner", "alice", "--json").stdout)["runs"][0]["id"] == run["id"]
    assert "publish" in jobline("pipelines", "runs", "--status", "running").stdout

    shown = jobline("pipelines", "show", str(run["id"]))
    assert shown.returncode == 0 and f"run {run['id']} of publish: running" in shown.stdout
    assert "history:" in shown.stdout and "started" in shown.stdout

    cancelled = jobline("pipelines", "cancel", str(run["id"]), "--reason", "wrong topic")
    assert cancelled.stdout.strip() == f"run {run['id']} is cancelled"
    assert sql("SELECT DISTINCT last_error FROM jobline.jobs WHERE pipeline_run_id = %s", [run["id"]]) == [
        ("wrong topic",)]
    retried = jobline("pipelines", "retry", str(run["id"]))
    assert retried.returncode == 0 and f"run {run['id']} is running again: draft, title, tags, assemble" in retried.stdout


@pytest.mark.parametrize("args, status, message", [
    (["pipelines", "start", "nope"], 3, "no pipeline named 'nope'"),
    (["pipelines", "start", "publish", "--payload", "[1]"], 2, "--payload"),
    (["pipelines", "start", "publish", "--owner", " x"], 2, "owner"),
    (["pipelines", "show", "999"], 3, "no pipeline run with id 999"),
    (["pipelines", "retry", "999"], 3, "no pipeline run"),
    (["pipelines", "runs", "--status", "bogus"], 2, "bogus"),
])
def test_bad_input_is_one_line_and_an_exit_status(jobline, args, status, message):
    done = jobline(*args)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_retrying_a_running_run_is_a_conflict(jobline):
    run = json.loads(jobline("pipelines", "start", "publish", "--payload", '{"topic": "x"}', "--json").stdout)
    done = jobline("pipelines", "retry", str(run["id"]))
    assert done.returncode == 1 and "only failed or cancelled runs can be" in done.stderr


def test_a_schedule_starts_a_run_of_a_pipeline_on_each_tick(jobline, sql):
    added = jobline("cron", "add", "nightly-publish", "0 3 * * *", "--pipeline", "publish",
                    "--payload", '{"topic": "nightly"}', "--owner", "alice", "--json")
    assert added.returncode == 0, added.stderr
    assert sql("SELECT function, payload, owner FROM jobline.schedules WHERE name = 'nightly-publish'") == [
        ("pipeline", {"pipeline": "publish", "payload": {"topic": "nightly"}}, "alice")]
    jobline("pipelines", "ls")  # records the --app's pipelines
    triggered = json.loads(jobline("cron", "trigger", "nightly-publish", "--json").stdout)
    processed = jobline("process")
    assert processed.returncode == 0, processed.stderr
    result = sql("SELECT result FROM jobline.jobs WHERE id = %s", [triggered["job_id"]])[0][0]
    assert result["pipeline"] == "publish"
    assert sql("SELECT pipeline, owner, status, payload FROM jobline.pipeline_runs WHERE id = %s",
               [result["run_id"]]) == [("publish", "alice", "succeeded", {"topic": "nightly"})]
    both = jobline("cron", "add", "x", "@daily", "--pipeline", "publish", "--function", "draft")
    assert both.returncode == 2 and "one of a function, a SQL command or a pipeline" in both.stderr
