"""jobline.Client against a real `jobline serve` process and PostgreSQL: the operations over
HTTP (sync and async), owner scoping, error mapping, no fallback on a 4xx, and the fallback to
the database while the server is down, then back."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import re

import pytest

from conftest import enqueue
from jobline import Client, Forbidden, InvalidInput, JobNotFound, LeaseLost, Unauthenticated
from remote_support import SERVICE_KEY, auth_settings, clients, server, user_jwt  # noqa: F401


async def test_claim_heartbeat_complete_and_fail_over_http_scoped_to_the_user(server, clients, sql):
    mine = enqueue(sql, "render", "alice")
    other = enqueue(sql, "render", "alice", max_attempts=1)
    bobs = enqueue(sql, "render", "bob", priority=9)
    alice = Client(server.url, user_jwt("alice"))
    service = Client(server.url, SERVICE_KEY)
    clients += [alice, service]

    first, second = await alice.claim_next_task_async(), await alice.claim_next_task_async()
    assert (first.task_id, second.task_id) == (mine, other)
    assert await alice.claim_next_task_async() is None           # bob's task is not hers: 204
    assert (first.task_type, first.project_id, first.attempt, first.max_attempts) == ("render", "alice", 1, 3)
    # The 10 s lease as measured against the server's Date header (less 2 s for its resolution).
    assert 7 <= first.lease_seconds <= 10.5
    assert await alice.heartbeat_async(first) >= first.lease_until
    assert await alice.complete_async(first, {"frames": [1, 2]}) == "succeeded"
    assert await alice.fail_async(second, "corrupt input") == "failed"   # no attempts left
    with pytest.raises(LeaseLost, match="no longer held"):
        await alice.complete_async(first, {})

    theirs = await service.claim_next_task_async()
    assert (theirs.task_id, theirs.project_id) == (bobs, "bob")
    with pytest.raises(JobNotFound):                             # 404, as if it did not exist
        await alice.heartbeat_async(theirs)
    assert await service.fail_async(theirs, "later", retry_in=30) == "pending"
    assert sql("SELECT id, status, attempts, result, last_error FROM jobline.jobs ORDER BY id") == [
        (mine, "succeeded", 1, {"frames": [1, 2]}, None), (other, "failed", 1, None, "corrupt input"),
        (bobs, "pending", 1, None, "later")]
    assert sql("SELECT run_at > now() + interval '25 seconds' FROM jobline.jobs WHERE id = %s", [bobs]) == [(True,)]
    assert alice.fallbacks == service.fallbacks == 0


async def test_enqueue_over_http_and_errors_carry_the_servers_message(server, clients):
    alice = Client(server.url, user_jwt("alice"))
    clients.append(alice)
    job = await alice.enqueue_async("render", {"scene": 7}, priority=2, delay=60)
    assert (job["function"], job["owner"], job["priority"], job["status"], job["payload"]) == (
        "render", "alice", 2, "pending", {"scene": 7})
    with pytest.raises(Forbidden, match="belongs to that user"):
        await alice.enqueue_async("render", owner="bob")
    with pytest.raises(InvalidInput, match="depends_on names jobs that do not exist"):
        await alice.enqueue_async("render", depends_on=[10**9])
    waiting = await alice.enqueue_async("render", depends_on=job["id"])
    assert waiting["status"] == "waiting" and waiting["depends_on"] == [job["id"]]


async def test_a_refused_token_never_falls_back(server, clients, db_url, auth_settings, sql, caplog):
    caplog.set_level(logging.INFO, logger="jobline.client")
    enqueue(sql, "render", None)
    forged = Client(server.url, user_jwt("alice", secret="x" * 40), db_url, settings=auth_settings)
    clients.append(forged)
    with pytest.raises(Unauthenticated):
        await forged.claim_next_task_async()
    nobody = Client(server.url, user_jwt("x", role="anon"), db_url, settings=auth_settings)
    clients.append(nobody)
    with pytest.raises(Forbidden):
        await nobody.claim_next_task_async()
    assert forged.fallbacks == nobody.fallbacks == 0 and forged.outage is None
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]
    assert not [r for r in caplog.records if r.getMessage() == "client.fallback"]


async def test_while_the_server_is_down_the_client_works_in_the_database_then_returns(server, clients, db_url,
                                                                                    auth_settings, sql, caplog):
    caplog.set_level(logging.INFO, logger="jobline.client")
    ids = [enqueue(sql, "render", "alice") for _ in range(3)]
    bobs = enqueue(sql, "render", "bob", priority=9)
    alice = Client(server.url, user_jwt("alice"), db_url, settings=auth_settings, retry_endpoint_after=0.2)
    clients.append(alice)
    over_http = await alice.claim_next_task_async()
    assert over_http.task_id == ids[0] and alice.fallbacks == 0

    server.stop()
    assert await alice.complete_async(over_http, {"via": "database"}) == "succeeded"  # claimed over HTTP
    in_db = await alice.claim_next_task_async()
    assert in_db.task_id == ids[1]                               # still only hers (bob's is first overall)
    assert await alice.heartbeat_async(in_db) >= in_db.lease_until
    assert alice.fallbacks == 3 and alice.outage.startswith("ConnectError")

    server.start()
    await asyncio.sleep(0.25)                                    # past retry_endpoint_after
    assert await alice.complete_async(in_db, {"via": "http"}) == "succeeded"   # claimed in the database
    assert alice.outage is None and alice.fallbacks == 3
    assert (await alice.claim_next_task_async()).task_id == ids[2]
    messages = [(r.getMessage(), r.levelno) for r in caplog.records if r.name.startswith("jobline.client")]
    assert messages == [("client.fallback", logging.WARNING), ("client.recovered", logging.INFO)]
    assert sql("SELECT id, result FROM jobline.jobs WHERE status = 'succeeded' ORDER BY id") == [
        (ids[0], {"via": "database"}), (ids[1], {"via": "http"})]
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", [bobs]) == [("pending",)]


def test_the_sync_forms_over_http(server, sql):
    mine = enqueue(sql, "render", None)
    with Client(server.url, SERVICE_KEY) as client:
        task = client.claim_next_task(["render"])
        assert task.task_id == mine and client.claim_next_task(["render"]) is None
        assert client.heartbeat(task) >= task.lease_until
        assert client.fail(task, "again", retry_in=0) == "pending"
        again = client.claim_next_task()
        assert again.attempt == 2 and client.complete(again) == "succeeded"
        assert client.enqueue("render", {"x": 1}, owner="carol")["owner"] == "carol"
        assert client.fallbacks == 0


def test_the_readme_snippet_runs_against_a_server(server, sql):
    text = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text[text.index("## Remote workers"):], re.S).group(1)
    scene = enqueue(sql, "render", "alice")
    sql("UPDATE jobline.jobs SET payload = '{\"scenes\": [1, 2, 3]}' WHERE id = %s", [scene])
    exec(compile(snippet, "README.md", "exec"), {"url": server.url, "token": user_jwt("alice")})
    assert sql("SELECT status, result FROM jobline.jobs") == [("succeeded", {"frames": 3})]
