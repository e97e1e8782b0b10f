"""`jobline serve` as a real process: it answers on the port it is given (option or
JOBLINE_PORT), rescues expired remote leases by itself, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import time

import httpx
from api_support import JWT_SECRET, RUNNER_SECRET, SERVICE, SERVICE_KEY, as_user, enqueue, user_jwt
from conftest import eventually, start_jobline

CLAIM = "/functions/v1/claim-next-task"
CREDENTIALS = {"JOBLINE_SERVICE_KEY": SERVICE_KEY, "JOBLINE_JWT_SECRET": JWT_SECRET,
               "JOBLINE_RUNNER_SECRET": RUNNER_SECRET}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("jobline serve did not come up")


async def test_serve_answers_rescues_expired_leases_and_stops_on_sigterm(db_url, sql, processes):
    port = free_port()
    enqueue(sql, "render", "alice")
    stale = enqueue(sql, "render", "alice")
    sql("""UPDATE jobline.jobs SET status = 'running', attempts = 1, worker_id = 'remote:' || repeat('0', 32),
             started_at = now() - interval '10 minutes', lease_until = now() - interval '1 minute' WHERE id = %s""",
        [stale])
    server = start_jobline(["--app", "apps.api:app", "serve"], db_url, JOBLINE_PORT=port, **CREDENTIALS)
    processes.append(server)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, server)
    with httpx.Client(base_url=url) as http:
        assert http.post("/functions/v1/claim-next-task", headers=as_user("alice")).status_code == 200
        assert http.post("/functions/v1/echo", headers=SERVICE, json={"a": 1}).json() == {"got": {"a": 1}}
        assert http.post("/functions/v1/public").status_code == 200
    # Nothing but the server runs: its maintenance role rescues the expired remote lease.
    await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [stale]) == [("pending",)],
                     timeout=15)
    server.send_signal(signal.SIGTERM)
    output, _ = server.communicate(timeout=20)
    assert server.returncode == 0, output
    assert "api.started" in output and "api.stopped" in output and "job.rescued" in output
    for secret in (SERVICE_KEY, JWT_SECRET, RUNNER_SECRET):
        assert secret not in output


def test_serve_ignores_x_forwarded_for_unless_told_which_proxies_to_trust(db_url, processes):
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default: a client there could rotate it
    to escape the failure limit. `jobline serve` trusts it only from JOBLINE_FORWARDED_ALLOW_IPS."""
    forged = {"Authorization": "Bearer " + user_jwt("alice", secret="z" * 40)}
    for trusted in (None, "127.0.0.1"):
        port = free_port()
        # uvicorn's own FORWARDED_ALLOW_IPS is not read (a warning says so).
        env = {**CREDENTIALS, **({"JOBLINE_FORWARDED_ALLOW_IPS": trusted} if trusted else
                                 {"FORWARDED_ALLOW_IPS": "127.0.0.1"})}
        server = start_jobline(["--app", "apps.api:app", "serve", "--port", str(port)], db_url, **env)
        processes.append(server)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server)
        with httpx.Client(base_url=url) as http:
            for i in range(30):
                refused = http.post(CLAIM, headers={**forged, "X-Forwarded-For": f"203.0.113.{i}"})
                assert refused.status_code == 401, refused.text
            fresh = http.post(CLAIM, headers={**as_user("alice"), "X-Forwarded-For": "198.51.100.1"})
        # Untrusted, the header changes nothing: 127.0.0.1 failed 30 times. Trusted, each forwarded
        # address failed once.
        assert fresh.status_code == (429 if trusted is None else 204), (trusted, fresh.text)
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=20)
        assert ("api.forwarded_ignored" in output) == (trusted is None), output


def test_serve_refuses_a_malformed_forwarded_allow_ips(db_url, processes):
    server = start_jobline(["serve", "--port", str(free_port())], db_url, JOBLINE_FORWARDED_ALLOW_IPS="*")
    processes.append(server)
    output, _ = server.communicate(timeout=30)
    assert server.returncode == 1 and "JOBLINE_FORWARDED_ALLOW_IPS" in output and "Traceback" not in output


def test_serve_fails_clearly_without_a_database(processes):
    port = free_port()
    server = start_jobline(["serve", "--port", str(port)], "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    processes.append(server)
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 1
    assert output.startswith("error: connection failed") and "Traceback" not in output


def test_serve_refuses_a_short_service_key(db_url, processes):
    server = start_jobline(["serve", "--port", str(free_port())], db_url, JOBLINE_SERVICE_KEY="short")
    processes.append(server)
    output, _ = server.communicate(timeout=30)
    assert server.returncode == 1
    assert "JOBLINE_SERVICE_KEY is shorter than 32 bytes" in output and "short" not in output.replace(
        "shorter", "")


def test_serve_on_a_taken_port_says_so_in_one_line(db_url, processes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_jobline(["--log-level", "warning", "serve", "--port", str(port)], db_url)
        processes.append(server)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 1, output
    assert output.strip() == (f"error: cannot listen on 127.0.0.1:{port}: Address already in use "
                              "(is another `jobline serve` running? choose another --port)")


def test_serve_logs_carry_no_terminal_colour_codes(db_url, processes):
    port = free_port()
    server = start_jobline(["--log-format", "json", "serve"], db_url, JOBLINE_PORT=port)
    processes.append(server)
    wait_until_up(f"http://127.0.0.1:{port}", server)
    server.send_signal(signal.SIGTERM)
    output, _ = server.communicate(timeout=20)
    assert "Application startup complete." in output  # uvicorn's own lines are there...
    assert "\x1b[" not in output and "color_message" not in output  # ...without their ANSI copies


def test_serve_workers_runs_several_processes_on_one_port_and_stops_them_all(db_url, sql, processes):
    port = free_port()
    ids = [enqueue(sql, "render", "alice") for _ in range(3)]
    server = start_jobline(["--app", "apps.api:app", "serve", "--workers", "2", "--port", str(port)], db_url,
                           **CREDENTIALS)
    processes.append(server)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, server)
    pids = set()
    deadline = time.monotonic() + 60  # until both children accept (one may still be starting)
    while len(pids) < 2 and time.monotonic() < deadline:
        # A new connection each time: the kernel hands each to whichever process accepts first.
        answer = httpx.post(f"{url}/functions/v1/pid", headers=SERVICE, timeout=5)
        assert answer.status_code == 200, answer.text
        pids.add(answer.json()["pid"])
    assert len(pids) == 2 and server.pid not in pids
    # Every process is a whole server over the same database: claims stay distinct.
    claimed = [httpx.post(f"{url}{CLAIM}", headers=as_user("alice"), json={"limit": 2}).json()["tasks"]
               for _ in range(2)]
    assert sorted(t["task_id"] for batch in claimed for t in batch) == ids
    server.send_signal(signal.SIGTERM)
    output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert output.count("api.started") == 2 and output.count("api.stopped") == 2
    for pid in pids:  # the children are gone too
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"server process {pid} outlived `jobline serve`")
