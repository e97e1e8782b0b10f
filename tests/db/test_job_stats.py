"""The queries the HTTP API reads through: job_stats (recent outcomes, oldest due job; the clock
moved with %(now)s) with job_count_unarchived and job_count_live (the counts), job_filter_owned, schema_migration_list, and attempt_list's owner
scoping."""

from __future__ import annotations

import datetime as dt

from jobline.db import migrate


def insert(sql, function: str, owner: str | None, status: str = "pending", **columns) -> int:
    names = ", ".join(["function", "owner", "status", *columns])
    marks = ", ".join(["%s"] * (3 + len(columns)))
    return sql(f"INSERT INTO jobline.jobs ({names}) VALUES ({marks}) RETURNING id",
               [function, owner, status, *columns.values()])[0][0]


async def test_job_stats_windows_oldest_due_job_and_counts_for_an_owner_or_everyone(store, sql):
    now = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.timezone.utc)
    minutes = lambda n: now - dt.timedelta(minutes=n)  # noqa: E731
    insert(sql, "a", "alice", "succeeded", finished_at=minutes(0.5))
    insert(sql, "a", "alice", "failed", finished_at=minutes(3))
    insert(sql, "a", "alice", "succeeded", finished_at=minutes(30))
    insert(sql, "a", "alice", "succeeded", finished_at=minutes(90))     # outside every window
    insert(sql, "b", "alice", "pending", run_at=minutes(10))
    insert(sql, "b", "alice", "pending", run_at=now + dt.timedelta(hours=1))  # not due yet
    insert(sql, "b", "alice", "cancelled", archived_at=minutes(1))     # archived: not counted
    insert(sql, "c", "bob", "pending", run_at=minutes(20))
    alice = await store.job_stats(owner="alice", now=now)
    assert await store.job_count_unarchived(owner="alice") == [("a", "failed", 1), ("a", "succeeded", 3),
                                                               ("b", "pending", 2)]
    assert await store.job_count_live(owner="alice") == [("b", "pending", 2)]
    assert [alice[k] for k in ("succeeded_1m", "failed_1m", "succeeded_5m", "failed_5m", "succeeded_1h",
                               "failed_1h")] == [1, 0, 1, 1, 2, 1]
    assert alice["oldest_due_seconds"] == 600
    everyone = await store.job_stats(now=now)
    assert ("c", "pending", 1) in await store.job_count_unarchived() and everyone["oldest_due_seconds"] == 1200
    nobody = await store.job_stats(owner="carol", now=now)
    assert (await store.job_count_unarchived(owner="carol"), nobody["succeeded_1h"],
            nobody["oldest_due_seconds"]) == ([], 0, None)


async def test_job_filter_owned_keeps_only_the_owners_existing_jobs(store, sql):
    mine, theirs = insert(sql, "a", "alice"), insert(sql, "a", "bob")
    assert await store.job_filter_owned([mine, theirs, theirs + 100], owner="alice") == {mine}


async def test_attempt_list_is_scoped_to_the_owner(store, sql):
    job = insert(sql, "a", "alice", "failed")
    sql("""INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
           VALUES (%s, 1, 'w', now(), now(), 'failed')""", [job])
    assert len(await store.attempt_list(job, owner="alice")) == 1
    assert await store.attempt_list(job, owner="bob") == []
    assert len(await store.attempt_list(job)) == 1


async def test_schema_migration_list_has_every_available_migration(store):
    assert await store.schema_migration_list() == [m.version for m in migrate.available()]
