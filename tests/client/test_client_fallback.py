"""jobline.Client's database fallback, with the endpoint unreachable (a closed port, a 503, a
hanging server) and a real PostgreSQL: the same operations, the same owner scoping, counted
and logged once per outage; refused when the token cannot be verified locally."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import time

import pytest

from conftest import enqueue
from jobline import Client, Forbidden, InvalidInput, JobNotFound, LeaseLost, Task, Unauthenticated, Unavailable
from jobline.auth import token_hash, token_prefix
from jobline.client import RateLimited
from jobline.settings import Settings
from receiver import Receiver, Reply
from remote_support import JWT_SECRET, SERVICE_KEY, auth_settings, clients, closed_url, user_jwt  # noqa: F401


@pytest.fixture
def offline(clients, db_url, auth_settings):
    """A Client whose endpoint refuses connections, falling back to the test database."""

    def make(token: str, **options) -> Client:
        client = Client(closed_url(), token, db_url, settings=auth_settings, **options)
        clients.append(client)
        return client

    return make


def fallback_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("jobline.client")]


async def test_a_user_token_claims_and_reports_only_its_own_tasks_in_the_database(offline, sql, caplog):
    caplog.set_level(logging.INFO, logger="jobline.client")
    first = enqueue(sql, "render", "alice")
    second = enqueue(sql, "render", "alice", priority=5)
    bobs = enqueue(sql, "render", "bob", priority=9)
    alice = offline(user_jwt("alice"))

    claimed = [await alice.claim_next_task_async() for _ in range(3)]
    assert [t.task_id if t else None for t in claimed] == [second, first, None]
    task = claimed[0]
    assert isinstance(task, Task) and (task.task_type, task.project_id, task.attempt) == ("render", "alice", 1)
    assert task.lease_until > dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=250)  # 300 s remote lease
    assert task.lease_seconds == 300                               # known exactly: this process's setting

    assert await alice.heartbeat_async(task) >= task.lease_until
    assert await alice.complete_async(task, {"frames": 3}) == "succeeded"
    assert await alice.fail_async(claimed[1], "bad scene", retryable=False) == "failed"
    with pytest.raises(LeaseLost):
        await alice.heartbeat_async(task)  # reported: the lease is spent

    service = offline(SERVICE_KEY)
    theirs = await service.claim_next_task_async()
    assert (theirs.task_id, theirs.project_id) == (bobs, "bob")
    with pytest.raises(JobNotFound):  # another user's task answers as one that does not exist
        await alice.complete_async(theirs, {})
    assert await service.fail_async(theirs, "try later", retry_in=0) == "pending"

    assert sql("SELECT id, status, result, last_error FROM jobline.jobs ORDER BY id") == [
        (first, "failed", None, "bad scene"), (second, "succeeded", {"frames": 3}, None), (bobs, "pending", None, "try later")]
    assert (alice.fallbacks, service.fallbacks) == (8, 2)
    warnings = [r for r in fallback_records(caplog) if r.getMessage() == "client.fallback"]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)  # once per client's outage
    assert "ConnectError" in warnings[0].reason and warnings[0].operation == "claim"


async def test_task_types_are_honoured_and_validated(offline, sql):
    enqueue(sql, "render", "alice")
    wanted = enqueue(sql, "transcode", "alice")
    alice = offline(user_jwt("alice"))
    assert (await alice.claim_next_task_async(["transcode"])).task_id == wanted
    with pytest.raises(InvalidInput, match="task_types must be"):
        await alice.claim_next_task_async([])
    assert alice.fallbacks == 1  # refused before anything was sent


async def test_api_tokens_are_looked_up_in_the_database(offline, sql, store):
    token = "jl_" + "x" * 40
    await store.api_token_insert(user_id="carol", name="laptop", token_hash=token_hash(token), prefix=token_prefix(token))
    enqueue(sql, "render", "alice")
    mine = enqueue(sql, "render", "carol")
    carol = offline(token)
    assert (await carol.claim_next_task_async()).task_id == mine
    assert await carol.claim_next_task_async() is None


async def test_enqueue_in_the_database_belongs_to_the_token_owner(offline, sql):
    alice = offline(user_jwt("alice"))
    job = await alice.enqueue_async("render", {"scene": 1}, priority=3, unique_key="scene-1")
    assert (job["function"], job["owner"], job["priority"], job["status"]) == ("render", "alice", 3, "pending")
    assert (await alice.enqueue_async("render", {"scene": 1}, unique_key="scene-1"))["id"] == job["id"]
    with pytest.raises(Forbidden, match="belongs to that user"):
        await alice.enqueue_async("render", owner="bob")
    with pytest.raises(InvalidInput, match="unknown enqueue option"):
        await alice.enqueue_async("render", colour="red")
    with pytest.raises(Forbidden, match="only the service may enqueue the built-in 'sql'"):
        await alice.enqueue_async("sql", {"command": "DROP TABLE jobline.jobs"})
    bobs = enqueue(sql, "render", "bob")
    with pytest.raises(InvalidInput, match=rf"depends_on names jobs that do not exist: \[{bobs}\]"):
        await alice.enqueue_async("render", depends_on=bobs)
    after = await alice.enqueue_async("render", depends_on=[job["id"]])
    assert (after["status"], after["depends_on"]) == ("waiting", [job["id"]])
    service = offline(SERVICE_KEY)
    assert (await service.enqueue_async("render", owner="bob", delay=60))["owner"] == "bob"
    assert sql("SELECT owner, count(*) FROM jobline.jobs GROUP BY owner ORDER BY owner") == [("alice", 2), ("bob", 2)]


async def test_the_fallback_reads_settings_from_the_environment_and_refuses_tokens_it_cannot_verify(
        clients, db_url, sql, monkeypatch):
    enqueue(sql, "render", "bob")
    monkeypatch.setenv("JOBLINE_SERVICE_KEY", SERVICE_KEY)
    monkeypatch.delenv("JOBLINE_JWT_SECRET", raising=False)
    service = Client(closed_url(), SERVICE_KEY, db_url)
    clients.append(service)
    assert (await service.claim_next_task_async()).project_id == "bob"

    unverifiable = Client(closed_url(), user_jwt("alice"), db_url)  # no JOBLINE_JWT_SECRET here
    clients.append(unverifiable)
    with pytest.raises(Unauthenticated, match="database fallback cannot verify this token.*JOBLINE_JWT_SECRET"):
        await unverifiable.claim_next_task_async()
    forged = Client(closed_url(), user_jwt("alice", secret="f" * 40), db_url, settings=Settings(
        database_url=db_url, jwt_secret=JWT_SECRET))
    clients.append(forged)
    with pytest.raises(Unauthenticated):
        await forged.claim_next_task_async()
    nobody = Client(closed_url(), user_jwt("x", role="anon"), db_url, settings=Settings(
        database_url=db_url, jwt_secret=JWT_SECRET))
    clients.append(nobody)
    with pytest.raises(Forbidden):
        await nobody.claim_next_task_async()
    assert sql("SELECT status FROM jobline.jobs") == [("running",)]  # only the service claimed


async def test_without_a_database_url_an_unreachable_endpoint_is_unavailable(clients):
    client = Client(closed_url(), SERVICE_KEY)
    clients.append(client)
    with pytest.raises(Unavailable, match="no database_url to fall back on"):
        await client.claim_next_task_async()
    assert client.fallbacks == 0


async def test_a_5xx_answer_falls_back_and_the_endpoint_is_retried_after_a_pause(clients, db_url, auth_settings,
                                                                                sql, caplog):
    caplog.set_level(logging.INFO, logger="jobline.client")
    enqueue(sql, "render", None)
    enqueue(sql, "render", None)
    with Receiver(default=Reply(503, {"error": {"code": "internal", "message": "upstream down"}})) as proxy:
        client = Client(proxy.url().rstrip("/"), SERVICE_KEY, db_url, settings=auth_settings,
                        retry_endpoint_after=0.3)
        clients.append(client)
        assert (await client.claim_next_task_async()) is not None
        assert (await client.claim_next_task_async()) is not None   # within the pause: straight to the database
        assert len(proxy.requests) == 1
        assert proxy.requests[0].path == "/functions/v1/claim-next-task"
        assert proxy.requests[0].headers["authorization"] == f"Bearer {SERVICE_KEY}"
        await asyncio.sleep(0.35)
        assert await client.claim_next_task_async() is None
        assert len(proxy.requests) == 2 and client.fallbacks == 3
    [warning] = [r for r in fallback_records(caplog) if r.getMessage() == "client.fallback"]
    assert warning.reason == "HTTP 503"


async def test_a_timeout_falls_back(clients, db_url, auth_settings, sql):
    enqueue(sql, "render", None)
    with Receiver(default=Reply(hang=True)) as stuck:
        client = Client(stuck.url().rstrip("/"), SERVICE_KEY, db_url, settings=auth_settings, timeout=0.3)
        clients.append(client)
        task = await client.claim_next_task_async()
        assert task is not None and client.outage.startswith("ReadTimeout")


def test_the_sync_forms_run_the_same_operations(db_url, auth_settings, sql):
    mine = enqueue(sql, "render", "alice")
    with Client(closed_url(), user_jwt("alice"), db_url, settings=auth_settings) as alice:
        task = alice.claim_next_task()
        assert task.task_id == mine
        assert alice.heartbeat(task) >= task.lease_until
        assert alice.fail(task, "flaky network", retry_in=0) == "pending"
        again = alice.claim_next_task()
        assert again.attempt == 2 and alice.complete(again, [1, 2]) == "succeeded"
        assert alice.enqueue("render", {"n": 2})["owner"] == "alice"
        assert alice.fallbacks == 6
    assert sql("SELECT status, result FROM jobline.jobs WHERE id = %s", [mine]) == [("succeeded", [1, 2])]


async def test_the_sync_forms_refuse_to_run_inside_an_event_loop(offline):
    client = offline(SERVICE_KEY)
    with pytest.raises(Exception, match="call claim_next_task_async instead"):
        client.claim_next_task()


def test_constructor_checks_its_arguments():
    with pytest.raises(InvalidInput, match="http:// or https://"):
        Client("jobs.example.com", "t")
    with pytest.raises(InvalidInput, match="token must be"):
        Client("http://127.0.0.1:1", " ")
    with pytest.raises(InvalidInput, match="timeout"):
        Client("http://127.0.0.1:1", "t", timeout=0)
    assert "t0ken" not in repr(Client("http://127.0.0.1:1", "t0ken"))


async def test_a_429_is_rate_limited_with_its_retry_after_and_never_falls_back(offline, clients, db_url,
                                                                             auth_settings, sql):
    enqueue(sql, "render", None)
    limited = {"error": {"code": "rate_limited", "message": "too many failed authentications from this address"}}
    in_half_a_minute = email.utils.formatdate(time.time() + 30, usegmt=True)
    with Receiver(Reply(429, limited, {"Retry-After": "7"}), Reply(429, limited, {"Retry-After": in_half_a_minute}),
                  Reply(429, limited)) as server:
        client = Client(server.url(), SERVICE_KEY, db_url, settings=auth_settings)
        clients.append(client)
        waits = []
        for _ in range(3):
            with pytest.raises(RateLimited, match="too many failed authentications") as caught:
                await client.claim_next_task_async()
            assert isinstance(caught.value, Unavailable)
            waits.append(caught.value.retry_after)
    assert waits[0] == 7 and 28 <= waits[1] <= 31 and waits[2] is None  # seconds, an HTTP date, none
    assert client.fallbacks == 0 and client.outage is None
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]  # the server is up: not claimed here
