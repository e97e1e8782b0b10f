"""`jobline dev` as a real process: it serves the dashboard, prints a one-time sign-in link that
works once, runs the jobs, and stops on Ctrl-C."""

from __future__ import annotations

import re
import signal
import time

import httpx

from conftest import start_jobline


def test_dev_serves_the_dashboard_runs_jobs_and_signs_in_once(db_url, sql, processes):
    dev = start_jobline(["dev", "--port", "0"], db_url, JOBLINE_SERVICE_KEY="")
    processes.append(dev)
    link = None
    deadline = time.monotonic() + 60
    while link is None and time.monotonic() < deadline:
        line = dev.stdout.readline()
        assert line or dev.poll() is None, "jobline dev exited"
        found = re.search(r"Sign in:\s+(http://\S+)", line)
        link = found[1] if found else None
    assert link is not None
    base = link.split("/sign-in")[0]
    with httpx.Client() as browser:
        signed_in = browser.get(link)
        assert signed_in.status_code == 303 and "jobline_session" in browser.cookies
        assert "service (dev link)" in browser.get(f"{base}/").text
    with httpx.Client() as again:
        assert again.get(link).status_code == 401  # used
    job_id = sql("SELECT jobline.enqueue('sql', '{\"command\": \"SELECT 1\"}'::jsonb)")[0][0]
    deadline = time.monotonic() + 30
    while sql("SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) != [("succeeded",)]:
        assert time.monotonic() < deadline, "the worker did not run the job"
        time.sleep(0.1)
    dev.send_signal(signal.SIGINT)
    output, _ = dev.communicate(timeout=30)
    assert dev.returncode == 0, output
    assert "token=" not in output  # the link was printed once, at the start, and never logged again
