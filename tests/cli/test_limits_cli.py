"""`jobline limits ls|set|rm` and `jobline enqueue --concurrency-key`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def jobline(db_url):
    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning",
               "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..")}
        return subprocess.run([sys.executable, "-m", "jobline", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    return run


def test_set_list_and_remove_limits(jobline, sql):
    made = jobline("limits", "set", "--function", "post", "--per-key", "--concurrency", "1", "--rate", "30/1m")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "limit on function 'post': at most 1 running, 30 starts per 60 s, per key"
    assert jobline("limits", "set", "--queue", "social", "--concurrency", "5").returncode == 0
    listed = json.loads(jobline("limits", "ls", "--json").stdout)
    assert [(r["scope"], r["target"], r["per_key"], r["concurrency"], r["rate_count"], r["rate_seconds"], r["source"])
            for r in listed] == [("function", "post", True, 1, 30, 60.0, "runtime"),
                                 ("queue", "social", False, 5, None, None, "runtime")]
    table = jobline("limits", "ls").stdout
    assert "at most 5 running" in table and "social" in table
    removed = jobline("limits", "rm", "--function", "post", "--per-key")
    assert removed.returncode == 0 and "removed the limit on function 'post'" in removed.stdout
    missing = jobline("limits", "rm", "--function", "post")
    assert missing.returncode != 0 and "no limit on function 'post'" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert sql("SELECT target FROM jobline.limits") == [("social",)]


@pytest.mark.parametrize("args, message", [
    (["--function", "f"], "needs a concurrency, a rate, or both"),
    (["--function", "f", "--queue", "q", "--concurrency", "1"], "exactly one of --function and --queue"),
    (["--concurrency", "1"], "exactly one of --function and --queue"),
    (["--function", "f", "--concurrency", "0"], "concurrency must be between 1 and 100000"),
    (["--function", "f", "--rate", "30"], "COUNT/PERIOD"),
    (["--function", "f", "--rate", "30/0s"], "period must be between"),
])
def test_a_bad_limit_is_one_line_with_what_was_wrong(jobline, sql, args, message):
    done = jobline("limits", "set", *args)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert sql("SELECT count(*) FROM jobline.limits") == [(0,)]


def test_enqueue_with_a_concurrency_key(jobline, sql):
    made = jobline("enqueue", "post", "--concurrency-key", "user-42", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["concurrency_key"] == "user-42"
    assert sql("SELECT concurrency_key FROM jobline.jobs") == [("user-42",)]
    bad = jobline("enqueue", "post", "--concurrency-key", " x")
    assert bad.returncode != 0 and "concurrency_key ' x' has leading or trailing spaces" in bad.stderr
