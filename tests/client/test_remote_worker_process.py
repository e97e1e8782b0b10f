"""`jobline worker --remote URL --token TOKEN` as a real process, without a database URL, against
a real `jobline serve` (10 s remote leases) and PostgreSQL: tasks of its functions run to
success, failures are retried or final as the handler says, a killed worker's task is rescued
after its lease and finished by another, and SIGTERM stops it cleanly."""

from __future__ import annotations

import signal

from conftest import eventually, start_jobline
from jobline.auth import new_token, token_hash, token_prefix
from remote_support import SERVICE_KEY, server, user_jwt  # noqa: F401

REMOTE_APP = ["--app", "apps.remote:app"]


def enqueue(sql, function: str, payload: str = "{}", owner: str | None = None, **options) -> int:
    args = "".join(f", {k} => %({k})s" for k in options)
    return sql(f"SELECT jobline.enqueue(%(f)s, %(p)s::jsonb, owner => %(owner)s{args})",
               {"f": function, "p": payload, "owner": owner, **options})[0][0]


def row(sql, job_id: int) -> tuple:
    return sql("SELECT status, attempts, result, last_error FROM jobline.jobs WHERE id = %s", [job_id])[0]


def remote_worker(server, token: str, *args: str):
    """A remote worker process with no database: JOBLINE_DATABASE_URL is empty."""
    return start_jobline([*REMOTE_APP, "worker", "--remote", server.url, *args], "", JOBLINE_TOKEN=token,
                         JOBLINE_SERVICE_KEY="", JOBLINE_JWT_SECRET="")


def stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    return output


async def test_a_remote_worker_runs_its_functions_and_retries_as_the_handler_says(server, sql, processes):
    ids = {name: enqueue(sql, f"remote-{name}", payload, owner="alice") for name, payload in [
        ("echo", '{"n": 1}'), ("sync", "{}"), ("flaky", '{"succeed_on": 2}'), ("fail", "{}"), ("retry-in", "{}")]}
    bobs = enqueue(sql, "remote-echo", owner="bob")
    worker = remote_worker(server, user_jwt("alice"), "--concurrency", "4")
    processes.append(worker)
    await eventually(lambda: all(row(sql, i)[0] in ("succeeded", "failed") for i in ids.values()), timeout=30)
    assert row(sql, ids["echo"])[0:2] == ("succeeded", 1) and row(sql, ids["echo"])[2]["echo"] == {"n": 1}
    assert row(sql, ids["sync"])[0:2] == ("succeeded", 1)
    assert row(sql, ids["flaky"])[0:3] == ("succeeded", 2, {"attempt": 2})
    assert row(sql, ids["fail"]) == ("failed", 1, None, "bad input, do not retry")
    assert row(sql, ids["retry-in"])[0:3] == ("succeeded", 2, {"attempt": 2})
    assert row(sql, bobs)[0:2] == ("pending", 0)          # a user token runs only that user's tasks
    output = stop(worker)
    assert "worker.started" in output and "worker.stopped" in output and "job.succeeded" in output
    assert "client.fallback" not in output


async def test_a_killed_remote_workers_task_is_rescued_after_its_lease(server, sql, processes):
    slow = enqueue(sql, "remote-sleep", '{"seconds": 120, "slow_on": [1]}')
    first = remote_worker(server, SERVICE_KEY)
    processes.append(first)
    await eventually(lambda: row(sql, slow)[0] == "running", timeout=20)
    first.kill()
    first.communicate(timeout=10)
    second = remote_worker(server, SERVICE_KEY)
    processes.append(second)
    # The server's maintenance rescues the task when its 10 s lease expires; the second worker
    # then claims attempt 2, which does not sleep.
    await eventually(lambda: row(sql, slow)[0] == "succeeded", timeout=40)
    status, attempts, result, _ = row(sql, slow)
    assert (attempts, result["attempt"]) == (2, 2) and result["pid"] == second.pid
    stop(second)


async def test_heartbeats_keep_a_task_longer_than_its_lease_and_sigterm_lets_it_finish(server, sql, processes):
    long = enqueue(sql, "remote-sleep", '{"seconds": 13}')
    worker = remote_worker(server, SERVICE_KEY, "--grace", "30")
    processes.append(worker)
    await eventually(lambda: row(sql, long)[0] == "running", timeout=20)
    # Past the 10 s lease: only the heartbeats (every third of the lease, measured against the
    # server's Date header: about 2.7 s) keep the server from rescuing it.
    await eventually(lambda: sql("SELECT now() - started_at > interval '11 seconds' FROM jobline.jobs")[0][0],
                     timeout=20, interval=0.2)
    assert row(sql, long)[0:2] == ("running", 1)
    output = stop(worker)                                  # SIGTERM: the grace period lets it finish
    assert row(sql, long)[0:2] == ("succeeded", 1)
    assert "worker.stopping" in output and "jobs.abandoned" not in output


def test_remote_options_are_checked(server, processes):
    for args, message in [(["--queue", "q"], "--queue cannot be used with --remote"),
                          (["--lease", "60"], "--lease cannot be used with --remote")]:
        process = remote_worker(server, SERVICE_KEY, *args)
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 2 and message in output
    process = start_jobline([*REMOTE_APP, "worker", "--remote", server.url], "", JOBLINE_TOKEN="")
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 2 and "--remote needs --token" in output


def test_a_refused_token_stops_the_worker_at_once(server):
    process = remote_worker(server, "jl_not-a-token")
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 1 and "error: invalid credentials" in output


async def test_a_token_revoked_after_the_start_stops_the_worker_with_exit_1(server, sql, store, processes):
    token = new_token()
    created = await store.api_token_insert(user_id="alice", name="gpu-box", token_hash=token_hash(token),
                                       prefix=token_prefix(token))
    first = enqueue(sql, "remote-echo", owner="alice")
    worker = remote_worker(server, token)
    processes.append(worker)
    await eventually(lambda: row(sql, first)[0] == "succeeded", timeout=20)  # accepted, and working
    await store.api_token_revoke(created["id"])
    output = worker.communicate(timeout=30)[0]  # its next poll (within 2 s) is refused
    assert worker.returncode == 1, output
    assert "expired or been revoked" in output and "jobline tokens create" in output
    assert token not in output
