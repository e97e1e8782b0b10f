"""Claim cost against what else is in the table (issue 12, target 2).

    bench/.venv/bin/python bench/backlog.py [--repeat 3] [--unserved 200000] [--finished 1000000]

Drain: one `jobline worker` process with its defaults drains 20,000 no-op jobs, with no other
jobs in the table, with --unserved pending jobs of a function no worker serves ahead of them in
claim order, or (today's claim only) with --finished succeeded jobs in the table; fresh
statistics (ANALYZE) in every cell. "walk" is the claim before migration
0023 (one walk of jobs_due_idx, filtered by function), put back in the cell's database; "now" is
today's (0023: each served function's own range of jobs_function_due_idx). Every repetition runs
every cell once, in a shuffled order; each cell gets a fresh database on --server-url.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics

import psycopg

import run

MIGRATIONS = pathlib.Path(__file__).parent.parent / "src" / "jobline" / "db" / "migrations"


def claim_walk() -> str:
    """0021's claim_jobs_free: one walk of jobs_due_idx in claim order, filtered by function (the
    claim before migration 0023), put back in place of today's."""
    text = (MIGRATIONS / "0021_pipelines.sql").read_text()
    start = text.index("CREATE FUNCTION jobline.claim_jobs_free")
    return text[start:text.index("$$;", start) + 3].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


def drain(server_url: str, claim: str, unserved: int, finished: int, jobs: int) -> float:
    def prepare(url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            if claim == "walk":
                conn.execute(claim_walk())
            if unserved:
                conn.execute("INSERT INTO jobline.jobs (function, run_at) SELECT 'unserved', now() - interval '1 day' "
                             "FROM generate_series(1, %s)", [unserved])
            if finished:
                conn.execute("INSERT INTO jobline.jobs (function, status, attempts, started_at, finished_at) "
                             "SELECT 'noop', 'succeeded', 1, now(), now() FROM generate_series(1, %s)", [finished])
                conn.execute("VACUUM jobline.jobs")  # as autovacuum leaves a table of finished rows
    # Done when every served job has its attempt: a count over at most `jobs` rows in every cell,
    # not over the whole jobs table (a count of it read all 220,000 rows every 5 ms).
    return run.measure_drain("jobline", server_url, jobs, 1, {}, analyze=True, prepare=prepare,
                             remaining_sql=f"SELECT {jobs} - count(*) FROM jobline.attempts")["jobs_per_s"]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--unserved", type=int, default=200_000)
    parser.add_argument("--finished", type=int, default=1_000_000)
    args = parser.parse_args()
    cells = [(claim, unserved, 0) for claim in ("walk", "now") for unserved in (0, args.unserved)]
    cells.append(("now", 0, args.finished))
    rates: dict[tuple, list[float]] = {}
    for rep in range(args.repeat):
        random.shuffle(cells)
        for cell in cells:
            rate = drain(args.server_url, *cell, 20_000)
            rates.setdefault(cell, []).append(rate)
            print(json.dumps({"rep": rep, "cell": list(cell), "jobs_per_s": round(rate)}), flush=True)

    print("\n| claim | empty table (jobs/s) | ahead or present | drain (jobs/s) | ratio to empty |")
    print("|---|---|---|---|---|")
    for claim, unserved, finished in sorted(rates):
        if not unserved and not finished:
            continue
        empty, loaded = rates[(claim, 0, 0)], rates[(claim, unserved, finished)]
        ratios = [b / a for a, b in zip(empty, loaded)]
        what = f"{unserved:,} unserved pending" if unserved else f"{finished:,} succeeded"
        print(f"| {claim} | {spread(empty)} | {what} | {spread(loaded)} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
