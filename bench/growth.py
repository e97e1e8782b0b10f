"""Growth and retention: cycles of enqueue, drain and retention on one database, with the
server's autovacuum at PostgreSQL's defaults and with it off, on a PostgreSQL of the run's own.

    bash bench/setup.sh
    bench/.venv/bin/python bench/growth.py [--jobs 1000000] [--cycles 5] [--autovacuum on,off]

Each cycle enqueues --jobs no-op jobs, drains them with one worker process (concurrency 1000,
claims of 500), then runs what a worker's maintenance runs after the retention period: the
prune (retention 0) and the table upkeep (runtime/maintenance.py). With autovacuum on, the
cycle then waits (up to two minutes) for autovacuum to visit jobline.jobs, as time passes
between batches in production. Printed per cycle: the drain rate of the first and the last
100,000 jobs, the sizes of jobline.jobs and jobline.attempts (heap and indexes) and of
jobs_due_idx, and the buffers one claim of 10 reads at the start of the drain (EXPLAIN
(ANALYZE, BUFFERS) of the claim's statement, rolled back). Sizes should level off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import psycopg

from run import SYSTEMS, database, own_server, server_settings, start_worker

SEGMENT = 100_000
SIZES_SQL = """
SELECT pg_total_relation_size('jobline.jobs'), pg_total_relation_size('jobline.attempts'),
       pg_relation_size('jobline.jobs_due_idx')
"""


def claim_buffers(url: str) -> str:
    """The buffers one claim of 10 reads: jobline.claim_jobs as a worker calls it, its nested
    statements' plans logged by auto_explain to this session (rolled back)."""
    with psycopg.connect(url) as conn:
        logged: list[str] = []
        conn.add_notice_handler(lambda notice: logged.append(notice.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_analyze = on",
                        "log_buffers = on"):
            conn.execute(f"SET auto_explain.{setting}")
        conn.execute("SET client_min_messages = log")
        conn.execute("SELECT * FROM jobline.claim_jobs('bench', '{noop}', NULL, 10, 30)")
        conn.rollback()
    # The claim's own statement: the nested plan that updates jobline.jobs.
    plan = next(text for text in logged if "Update on jobs" in text).splitlines()
    top = next((line for line in plan if "Buffers:" in line), "")
    return f"{top.strip()} ; {plan[0].split(' plan:')[0]}"  # "duration: 0.512 ms"


def drain(url: str, jobs: int) -> tuple[float, float]:
    """Drain with one worker process (it exits once idle); jobs/s of the first and of the last
    SEGMENT jobs, from the attempts' own times (polling a count would load the server)."""
    worker, _ = start_worker("jobline", url, "drain", {"concurrency": 1000, "batch": 500})
    if worker.wait(timeout=3600) != 0:
        raise RuntimeError(f"the worker failed: {worker.stderr.read()}")
    with psycopg.connect(url) as conn:
        first, last = conn.execute("""
            WITH a AS (SELECT started_at, finished_at, row_number() OVER (ORDER BY finished_at) AS n,
                              count(*) OVER () AS total FROM jobline.attempts)
            SELECT SEGMENT / extract(epoch FROM (SELECT max(finished_at) FILTER (WHERE n <= SEGMENT) - min(started_at) FROM a)),
                   SEGMENT / extract(epoch FROM (SELECT max(finished_at) - max(finished_at) FILTER (WHERE n <= total - SEGMENT) FROM a))
            """.replace("SEGMENT", str(SEGMENT))).fetchone()
    return float(first), float(last)


async def retention(url: str) -> list[str]:
    from jobline.db.store import Store
    from jobline.runtime.maintenance import Maintenance
    from jobline.settings import Settings

    store = Store(url)
    await store.open()
    try:
        maintenance = Maintenance(store, Settings(database_url=url, retain_succeeded_seconds=0))
        maintenance.upkeep_every = 0
        await maintenance.prune()
        return await maintenance.upkeep()
    finally:
        await store.close()


def wait_for_autovacuum(url: str, since: float, timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.time() < deadline:
            seen = conn.execute("SELECT extract(epoch FROM last_autovacuum) FROM pg_stat_user_tables "
                                "WHERE schemaname = 'jobline' AND relname = 'jobs'").fetchone()[0]
            if seen is not None and float(seen) > since:
                return True
            time.sleep(1)
    return False


def cycles(server_url: str, autovacuum: str, jobs: int, count: int) -> list[dict]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET autovacuum = {autovacuum}")
        conn.execute("SELECT pg_reload_conf()")
    adapter = SYSTEMS["jobline"]()
    rows = []
    with database(server_url) as url:
        asyncio.run(adapter.setup(url))
        for cycle in range(1, count + 1):
            asyncio.run(adapter.bulk(url, jobs))
            buffers = claim_buffers(url)
            first, last = drain(url, jobs)
            pruned_at = time.time()
            steps = asyncio.run(retention(url))
            vacuumed = wait_for_autovacuum(url, pruned_at) if autovacuum == "on" else None
            with psycopg.connect(url) as conn:
                jobs_bytes, attempts_bytes, due_bytes = conn.execute(SIZES_SQL).fetchone()
            row = {"autovacuum": autovacuum, "cycle": cycle, "first_100k_per_s": round(first),
                   "last_100k_per_s": round(last), "last_over_first": round(last / first, 2),
                   "jobs_mb": round(jobs_bytes / 2**20, 1), "attempts_mb": round(attempts_bytes / 2**20, 1),
                   "jobs_due_idx_mb": round(due_bytes / 2**20, 2), "upkeep": steps,
                   "autovacuum_visited": vacuumed, "claim_at_start": buffers}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--autovacuum", default="on,off")
    args = parser.parse_args()
    if args.jobs < 2 * SEGMENT:
        parser.error(f"--jobs must be at least {2 * SEGMENT}")
    with own_server() as server_url:
        print("server: the run's own, " + ", ".join(f"{k}={v}" for k, v in server_settings(server_url).items()),
              flush=True)
        rows = [row for setting in args.autovacuum.split(",") for row in cycles(server_url, setting, args.jobs,
                                                                                 args.cycles)]
    print("\n| autovacuum | cycle | first 100k (jobs/s) | last 100k (jobs/s) | last / first | jobs (MB) "
          "| attempts (MB) | jobs_due_idx (MB) | upkeep |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['autovacuum']} | {r['cycle']} | {r['first_100k_per_s']:,} | {r['last_100k_per_s']:,} | "
              f"{r['last_over_first']:.2f}x | {r['jobs_mb']} | {r['attempts_mb']} | {r['jobs_due_idx_mb']} | "
              f"{', '.join(r['upkeep']) or '-'} |")


if __name__ == "__main__":
    main()
