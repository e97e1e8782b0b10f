"""The README's first command: `jobline demo` on a fresh embedded database, then `db stop`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def test_demo_runs_on_a_fresh_embedded_database_and_db_stop_stops_it():
    parent = tempfile.mkdtemp(prefix="jobline-demo-")
    os.chmod(parent, 0o755)
    env = {k: v for k, v in os.environ.items() if k != "JOBLINE_DATABASE_URL"}
    env["JOBLINE_DATA_DIR"] = os.path.join(parent, "data")

    def jobline(*args):
        return subprocess.run([sys.executable, "-m", "jobline", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    try:
        demo = jobline("demo")
        assert demo.returncode == 0, demo.stderr
        assert "summary: 4 succeeded, 1 failed, 1 cancelled, 1 retried" in demo.stdout
        # The schedule fired, its SQL queued durable HTTP calls with vault secrets, the first got a
        # 503 and was retried with the same idempotency key.
        assert demo.stdout.count("succeeded  SELECT 1") >= 2
        assert "HTTP 503 Service Unavailable, ok -> 200" in demo.stdout
        # Seed 003's pipeline: the post is retried once and the run succeeds.
        assert "post      retrying   ConnectionError: the platform answered 503" in demo.stdout
        assert "run       succeeded  3 of 3 steps succeeded" in demo.stdout
        assert ("the endpoint got 3 calls, 3 with the vault's bearer token; the retry repeated its "
                "Idempotency-Key; the job rows hold only {{secret:demo_service_key}}") in demo.stdout
        runs = jobline("cron", "runs", "demo-adapter-check")
        assert runs.returncode == 0 and "succeeded" in runs.stdout
        assert "Traceback" not in demo.stderr
        listed = jobline("jobs", "list")  # attaches to the server the demo left running
        assert listed.returncode == 0 and "batch-ai-processor" in listed.stdout
        assert jobline("db", "stop").stdout.strip() == "stopped the embedded database"
        assert jobline("db", "stop").stdout.strip() == "the embedded database was not running"
    finally:
        jobline("db", "stop")
        subprocess.run(["rm", "-rf", parent], check=False)
