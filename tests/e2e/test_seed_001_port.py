"""Seed 001's hourly pg_cron + pg_net + Vault call, ported as the issue writes it, run by real
processes: secrets set with the CLI, the schedule made in SQL, a worker sending the call to a
real local server. The service key's plaintext reaches the server and nothing else: not the
worker's debug logs, not a pg_dump of the database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import canary
from conftest import eventually, start_jobline
from jobline import vault

pytestmark = pytest.mark.timeout(120)

SERVICE_ROLE_KEY = "jl_canary_" + "5f0c1e9a7b3d4e2f8a6c0b1d2e3f4a5b"

# With the references written out, as jobline's docs show it.
PORTED = """SELECT jobline.schedule('sync_game_platform_stats', '0 * * * *', $$ SELECT jobline.http_post(url := '{{secret:project_url}}/functions/v1/sync', headers := jsonb_build_object('Content-Type', 'application/json', 'Authorization', 'Bearer {{secret:service_role_key}}'), timeout_milliseconds := 10000); $$);"""

# Seed 001's command exactly as written, with `cron.`, `net.` and `vault.` renamed to `jobline.`.
RENAMED = """select jobline.schedule(
  job_name => 'sync_game_platform_stats',
  schedule => '0 * * * *',              -- top of every hour
  command  => $$
    select
      jobline.http_post(
        url := (select decrypted_secret from jobline.decrypted_secrets where name = 'project_url') || '/functions/v1/sync',
        headers := jsonb_build_object(
          'Content-Type','application/json',
          'Authorization','Bearer ' || (select decrypted_secret from jobline.decrypted_secrets where name = 'service_role_key')
        ),
        timeout_milliseconds := 10000
      );
  $$
);"""


@pytest.fixture
def edge_function():
    """A local stand-in for the Edge Function `sync`, recording what it receives."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            reply = json.dumps({"synced": 12, "echo": self.headers.get("Authorization")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", [PORTED, RENAMED], ids=["references", "renamed"])
async def test_seed_001_hourly_call_works_and_its_key_appears_only_at_the_receiver(db_url, sql, edge_function,
                                                                                  processes, command):
    url, received = edge_function
    env = {"JOBLINE_MASTER_KEY": vault.generate_key(), "JOBLINE_HTTP_ALLOW": "127.0.0.1",
           "JOBLINE_LOG_LEVEL": "debug", "JOBLINE_LOG_FORMAT": "json"}

    def jobline(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "jobline", *args], input=stdin, capture_output=True, text=True,
                              timeout=60, env={**os.environ, "JOBLINE_DATABASE_URL": db_url, **env})

    assert jobline("secrets", "set", "project_url", url).returncode == 0
    assert jobline("secrets", "set", "service_role_key", "--from-stdin", stdin=SERVICE_ROLE_KEY + "\n").returncode == 0
    sql(command)
    # The hourly tick, now: the schedule runs once outside its ticks, as `jobline cron trigger` does.
    triggered = jobline("cron", "trigger", "sync_game_platform_stats")
    assert triggered.returncode == 0, triggered.stderr

    worker = start_jobline(["worker", "--concurrency", "2"], db_url, **env)
    processes.append(worker)
    await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE function = 'http' AND status = 'succeeded'")
                     == [(1,)], timeout=30)
    worker.send_signal(signal.SIGTERM)
    logs = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, logs

    [call] = received
    assert call["path"] == "/functions/v1/sync"
    assert call["headers"]["Authorization"] == f"Bearer {SERVICE_ROLE_KEY}"
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["headers"]["Idempotency-Key"]
    [(status, result, payload)] = sql("SELECT status, result, payload FROM jobline.jobs WHERE function = 'http'")
    assert (status, result["status"]) == ("succeeded", 200)
    assert payload["headers"]["Authorization"] == "Bearer {{secret:service_role_key}}"
    assert result["body"]["echo"] == "Bearer {{secret:service_role_key}}"  # the echo was scrubbed
    assert sql("SELECT status FROM jobline.job_run_details") == [("succeeded",)]

    assert '"event": "job.succeeded"' in logs  # the logs are there, and say nothing secret
    canary.assert_nowhere(logs.encode(), SERVICE_ROLE_KEY)
    dumped = canary.pg_dump(db_url)
    if dumped is None:
        pytest.skip("no pg_dump binary here that can dump this server")
    assert b"{{secret:service_role_key}}" in dumped
    canary.assert_nowhere(dumped, SERVICE_ROLE_KEY)
