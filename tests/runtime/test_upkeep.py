"""Table upkeep (Maintenance.upkeep, migration 0022): vacuum where autovacuum does not, rebuild
a partial index left bloated by a drained backlog, drop what an interrupted rebuild leaves, one
process per round."""

from __future__ import annotations

import psycopg
import pytest

from conftest import eventually
from jobline.runtime import maintenance as maintenance_module
from jobline.runtime.maintenance import Maintenance

pytestmark = pytest.mark.timeout(120)


def _fill(sql, count: int, status: str = "pending") -> None:
    sql("INSERT INTO jobline.jobs (function, status) SELECT 'f', %s FROM generate_series(1, %s)", [status, count])


def _dead_rows(sql) -> int:
    return sql("SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = 'jobline' AND relname = 'jobs'")[0][0]


def _vacuumed(sql) -> bool:
    return sql("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables "
               "WHERE schemaname = 'jobline' AND relname = 'jobs'")[0][0]


async def test_the_jobs_table_is_vacuumed_where_autovacuum_is_off(store, settings, sql):
    sql("ALTER TABLE jobline.jobs SET (autovacuum_enabled = false)")
    _fill(sql, 5000, "succeeded")
    sql("DELETE FROM jobline.jobs")  # as retention does
    await eventually(lambda: _dead_rows(sql) >= 5000)
    assert "vacuum jobs" in await Maintenance(store, settings).upkeep()
    assert _vacuumed(sql)
    await eventually(lambda: _dead_rows(sql) < 1000)


async def test_autovacuum_is_left_to_its_work_where_it_runs(store, settings, sql):
    autovacuum = sql("SHOW autovacuum")[0][0] == "on"
    _fill(sql, 5000, "succeeded")
    sql("DELETE FROM jobline.jobs")
    await eventually(lambda: _dead_rows(sql) >= 5000 or _vacuumed(sql))
    done = await Maintenance(store, settings).upkeep()
    assert ("vacuum jobs" in done) is not autovacuum


async def test_a_partial_index_left_bloated_by_a_drained_backlog_is_rebuilt(store, settings, sql, monkeypatch):
    monkeypatch.setattr(maintenance_module, "REBUILD_MIN_BYTES", 0)  # a test-sized backlog
    _fill(sql, 20000)
    sql("UPDATE jobline.jobs SET status = 'succeeded'")  # the backlog drained
    sql("VACUUM (ANALYZE) jobline.jobs")  # the index's entries are gone, its pages are not
    before = sql("SELECT pg_relation_filenode('jobline.jobs_due_idx'), pg_relation_size('jobline.jobs_due_idx')")[0]
    assert "rebuild jobs_due_idx" in await Maintenance(store, settings).upkeep()
    filenode, size = sql("SELECT pg_relation_filenode('jobline.jobs_due_idx'), "
                         "pg_relation_size('jobline.jobs_due_idx')")[0]
    assert filenode != before[0] and size < before[1] / 4
    assert sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'jobline.jobs_due_idx'::regclass")[0][0]
    # The rebuilt index still serves claims.
    _fill(sql, 3)
    assert len(await store.job_claim_many(worker_id="w", functions=["f"], queues=None, limit=10, lease_seconds=30)) == 3


async def test_an_index_in_use_by_a_backlog_is_not_rebuilt(store, settings, sql, monkeypatch):
    monkeypatch.setattr(maintenance_module, "REBUILD_MIN_BYTES", 0)
    _fill(sql, 20000)
    sql("VACUUM (ANALYZE) jobline.jobs")
    assert not any(step.startswith("rebuild") for step in await Maintenance(store, settings).upkeep())


async def test_what_an_interrupted_rebuild_left_is_dropped(store, settings, sql):
    _fill(sql, 2)
    # A concurrent build that fails leaves an invalid index, as an interrupted REINDEX
    # CONCURRENTLY leaves its *_ccnew.
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql("CREATE UNIQUE INDEX CONCURRENTLY jobs_due_idx_ccnew ON jobline.jobs (function)")
    assert sql("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'jobline.jobs_due_idx_ccnew'::regclass")[0][0]
    assert "drop jobs_due_idx_ccnew" in await Maintenance(store, settings).upkeep()
    assert not sql("SELECT 1 FROM pg_class WHERE relname = 'jobs_due_idx_ccnew'")


async def test_one_process_takes_each_round(store, settings, sql):
    first, second = Maintenance(store, settings), Maintenance(store, settings)
    sql("ALTER TABLE jobline.jobs SET (autovacuum_enabled = false)")
    _fill(sql, 5000, "succeeded")
    sql("DELETE FROM jobline.jobs")
    await eventually(lambda: _dead_rows(sql) >= 5000)
    assert await first.upkeep() == ["vacuum jobs"]
    assert await second.upkeep() == []  # within the round: nothing, whatever is dead
    assert sql("SELECT ran_at > now() - interval '1 minute' FROM jobline.upkeep")[0][0]
