"""Remote tasks on a real database: claim order, owner scoping, remote-only task types,
dependencies, distinct claims under concurrency, and fenced reports."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from conftest import enqueue
from jobline.errors import InvalidInput, JobNotFound, LeaseLost
from jobline.auth import SERVICE, Principal
from jobline.operations.tasks import Tasks

ALICE, BOB = Principal(user_id="alice", via="api_token"), Principal(user_id="bob", via="api_token")


@pytest.fixture
def tasks(store) -> Tasks:
    return Tasks(store, lease_seconds=300)


async def test_a_user_claims_only_its_own_tasks_in_priority_then_run_at_then_creation_order(tasks, sql):
    late = enqueue(sql, "render", "alice")
    urgent = enqueue(sql, "render", "alice", priority=5)
    enqueue(sql, "render", "bob", priority=9)
    early = enqueue(sql, "render", "alice", run_at="2020-01-01T00:00:00Z")
    claimed = [await tasks.claim(ALICE) for _ in range(4)]
    assert [t.task_id if t else None for t in claimed] == [urgent, early, late, None]
    assert (claimed[0].task_type, claimed[0].project_id, claimed[0].attempt) == ("render", "alice", 1)
    assert sql("SELECT owner FROM jobline.jobs WHERE status = 'pending'") == [("bob",)]


async def test_the_service_claims_across_owners_and_only_remote_task_types_by_default(tasks, sql, store):
    await store.worker_register(id="w1", hostname="h", pid=1, functions=["python-only"], queues=None)
    enqueue(sql, "python-only", "alice")
    enqueue(sql, "sql", None)
    remote = enqueue(sql, "render", "bob")
    assert (await tasks.claim(SERVICE)).task_id == remote
    assert await tasks.claim(SERVICE) is None
    asked = await tasks.claim(SERVICE, ["python-only"])  # named explicitly, it can be claimed
    assert asked.task_type == "python-only"


async def test_dependencies_are_respected(tasks, sql):
    first = enqueue(sql, "step", "alice")
    second = sql("SELECT jobline.enqueue('step', owner => 'alice', depends_on => ARRAY[%s]::bigint[])", [first])[0][0]
    task = await tasks.claim(ALICE)
    assert task.task_id == first and await tasks.claim(ALICE) is None
    await tasks.complete(ALICE, task.task_id, task.lease_token, {"ok": True})
    assert (await tasks.claim(ALICE)).task_id == second


async def test_concurrent_claimers_get_distinct_tasks(store, sql):
    ids = [enqueue(sql, "render", "alice") for _ in range(40)]
    claimers = [Tasks(store, 300) for _ in range(8)]

    async def drain(t: Tasks) -> list[int]:
        got = []
        while (task := await t.claim(ALICE)) is not None:
            got.append(task.task_id)
        return got

    claimed = [i for batch in await asyncio.gather(*(drain(c) for c in claimers)) for i in batch]
    assert sorted(claimed) == ids


async def test_reports_are_fenced_on_the_lease_and_scoped_to_the_owner(tasks, sql, store):
    enqueue(sql, "render", "alice", max_attempts=2)
    task = await tasks.claim(ALICE)
    with pytest.raises(JobNotFound):  # another user's task answers as one that does not exist
        await tasks.complete(BOB, task.task_id, task.lease_token, {})
    with pytest.raises(LeaseLost):  # a lease token that is not the one held
        await tasks.complete(ALICE, task.task_id, "remote:" + "0" * 32, {})
    with pytest.raises(InvalidInput, match="lease_token must be"):
        await tasks.heartbeat(ALICE, task.task_id, "guess")
    assert await tasks.fail(ALICE, task.task_id, task.lease_token, "boom", retry_in=0) == "pending"
    with pytest.raises(LeaseLost):  # the first attempt's lease is spent
        await tasks.heartbeat(ALICE, task.task_id, task.lease_token)
    again = await tasks.claim(ALICE)
    assert (again.task_id, again.attempt) == (task.task_id, 2)
    assert await tasks.fail(ALICE, again.task_id, again.lease_token, "boom again") == "failed"  # attempts used up
    job = await store.job_get(task.task_id)
    assert (job.status, job.last_error) == ("failed", "boom again")
    assert [(a.attempt, a.outcome, a.error) for a in await store.attempt_list(task.task_id)] == [
        (1, "failed", "boom"), (2, "failed", "boom again")]


async def test_a_rescued_task_refuses_the_stale_report(tasks, sql, store):
    enqueue(sql, "render", "alice")
    stale = await tasks.claim(ALICE)
    sql("UPDATE jobline.jobs SET lease_until = now() - interval '1 second'")
    assert [row[:2] for row in await store.job_rescue_expired()] == [(stale.task_id, "pending")]
    fresh = await tasks.claim(ALICE)
    with pytest.raises(LeaseLost, match="no longer held under this lease"):
        await tasks.complete(ALICE, stale.task_id, stale.lease_token, {"from": "stale"})
    assert await tasks.complete(ALICE, fresh.task_id, fresh.lease_token, {"from": "fresh"}) == "succeeded"
    assert (await store.job_get(fresh.task_id)).result == {"from": "fresh"}


async def test_heartbeat_extends_the_lease_and_non_retryable_failures_are_final(tasks, sql):
    enqueue(sql, "render", None)
    task = await tasks.claim(SERVICE)
    sql("UPDATE jobline.jobs SET lease_until = now() + interval '5 seconds'")
    until = await tasks.heartbeat(SERVICE, task.task_id, task.lease_token)
    assert sql("SELECT lease_until = %s, lease_until > now() + interval '250 seconds' FROM jobline.jobs", [until]) == [
        (True, True)]
    assert await tasks.fail(SERVICE, task.task_id, task.lease_token, "bad input", retryable=False) == "failed"


@pytest.mark.parametrize("task_types, message", [([], "task_types must be a list"), ("render", "task_types must be"),
                                                 (["bad\nname"], "control character"), ([1], "must be a string")])
async def test_bad_task_types_are_refused(tasks, task_types, message):
    with pytest.raises(InvalidInput, match=message):
        await tasks.claim(SERVICE, task_types)


async def test_claim_many_never_double_claims_under_concurrency(store, sql):
    ids = [enqueue(sql, "render", "alice") for _ in range(300)]

    async def drain(t: Tasks) -> list[int]:
        got = []
        while batch := await t.claim_many(ALICE, None, 9):
            assert len({task.lease_token for task in batch}) == 1  # one claim, one lease
            got.extend(task.task_id for task in batch)
        return got

    claimed = await asyncio.gather(*(drain(Tasks(store, lease_seconds=300)) for _ in range(6)))
    counts = Counter(i for batch in claimed for i in batch)
    assert sorted(counts) == ids and set(counts.values()) == {1}


@pytest.mark.parametrize("limit", [0, 101, -3, True, 2.0, "4", None])
async def test_claim_many_refuses_a_limit_outside_1_to_100(tasks, sql, limit):
    enqueue(sql, "render", "alice")
    with pytest.raises(InvalidInput, match="limit must be a whole number of tasks from 1 to 100"):
        await tasks.claim_many(ALICE, None, limit)
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]


async def test_complete_many_refuses_an_empty_or_oversized_batch_and_a_bad_lease_token(tasks, sql):
    for reports, message in (([], "1 to 100 reports"), ([(1, "remote:" + "0" * 32, None)] * 101, "1 to 100 reports"),
                             ([(1, "not-a-token", None)], "lease_token must be")):
        with pytest.raises(InvalidInput, match=message):
            await tasks.complete_many(SERVICE, reports)
