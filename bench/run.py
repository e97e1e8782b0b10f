"""jobline against PgQueuer, Procrastinate and a raw psycopg loop, in one run, on one server.

    bash bench/setup.sh                    # once: bench/.venv with jobline and the peers
    bench/.venv/bin/python bench/run.py    # full run (3 repetitions, medians), ~5-10 minutes
    bench/.venv/bin/python bench/run.py --quick
    bench/.venv/bin/python bench/run.py --memory   # only the worker RSS row (~1 minute per system)

Every cell gets a fresh database. See bench/README.md for what each workload measures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import psutil
import psycopg

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
from systems import SYSTEMS  # noqa: E402


def with_database(url: str, name: str) -> str:
    """The URL with another database name (URL form: asyncpg takes no other)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def database(server_url: str):
    """A context manager giving the URL of a fresh database, dropped afterwards."""
    import contextlib

    @contextlib.contextmanager
    def fresh():
        name = f"bench_{secrets.token_hex(4)}"
        admin = with_database(server_url, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            yield with_database(server_url, name)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return fresh()


def start_worker(system: str, url: str, mode: str, options: dict) -> tuple[subprocess.Popen, str]:
    out = tempfile.mktemp(prefix=f"bench-{system}-")
    process = subprocess.Popen([sys.executable, str(HERE / "systems.py"), "worker", system, url, mode, out,
                                json.dumps(options)], stderr=subprocess.PIPE, text=True)
    return process, out


def remaining(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def measure_drain(system: str, server_url: str, jobs: int, processes: int, options: dict, *,
                  analyze: bool = False, prepare=None, remaining_sql: str | None = None) -> dict:
    """Jobs per second and peak worker RSS; with ``analyze``, the planner gets fresh statistics
    of the full queue first (what autovacuum gives a production server), else those of an empty
    table. ``prepare(url)`` runs after the schema is installed, before the jobs are enqueued."""
    adapter = SYSTEMS[system]()
    with database(server_url) as url:
        asyncio.run(adapter.setup(url))
        if prepare is not None:
            prepare(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")  # the empty tables' statistics, whatever autovacuum does meanwhile
        asyncio.run(adapter.bulk(url, jobs))
        if analyze:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
        workers = [start_worker(system, url, "drain", options) for _ in range(processes)]
        peak_rss = 0
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                left = conn.execute(remaining_sql or adapter.remaining_sql).fetchone()[0]
                finished_at = time.time()
                for process, _ in workers:
                    try:
                        peak_rss = max(peak_rss, psutil.Process(process.pid).memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
                if left == 0:
                    break
                if all(p.poll() is not None for p, _ in workers):
                    errors = [p.stderr.read() for p, _ in workers]
                    raise RuntimeError(f"{system} workers exited with {left} jobs left: {errors}")
                time.sleep(0.005)
        firsts = []
        for process, out in workers:
            process.wait(timeout=120)
            lines = pathlib.Path(out).read_text().split("\n")
            firsts += [float(line.split()[1]) for line in lines if line.startswith("first ") and line != "first 0"]
            os.unlink(out)
    elapsed = finished_at - min(firsts)
    return {"jobs_per_s": jobs / elapsed, "rss_mb": peak_rss / 2**20}


def measure_enqueue(system: str, server_url: str, kind: str, jobs: int) -> float:
    adapter = SYSTEMS[system]()
    with database(server_url) as url:
        asyncio.run(adapter.setup(url))
        elapsed = asyncio.run(getattr(adapter, kind)(url, jobs))
    return jobs / elapsed


def measure_latency(system: str, server_url: str, jobs: int, options: dict) -> dict:
    adapter = SYSTEMS[system]()
    with database(server_url) as url:
        asyncio.run(adapter.setup(url))
        worker, out = start_worker(system, url, "serve", options)
        try:
            deadline = time.monotonic() + 30
            while not pathlib.Path(out).exists() or "ready" not in pathlib.Path(out).read_text():
                assert time.monotonic() < deadline, f"{system} worker did not start"
                time.sleep(0.05)
            time.sleep(1.5)  # connect, install listeners
            enqueued: list[float] = []
            asyncio.run(adapter.single(url, jobs, latency_log=enqueued, gap=0.02))
            deadline = time.monotonic() + 30
            while True:
                lines = [line.split() for line in pathlib.Path(out).read_text().splitlines()]
                started = {int(parts[0]): float(parts[1]) for parts in lines if len(parts) == 2 and parts[0] != "first"}
                if len(started) >= jobs or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            os.unlink(out)
    delays = sorted((started[i] - enqueued[i]) * 1000 for i in range(jobs) if i in started)
    return {"p50_ms": statistics.median(delays), "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
            "picked": len(delays)}


def median(values):
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--quick", action="store_true", help="one repetition, smaller counts (a smoke run)")
    parser.add_argument("--systems", default="raw,jobline,pgqueuer,procrastinate")
    parser.add_argument("--jobline-concurrency", type=int, default=1000)
    parser.add_argument("--jobline-batch", type=int, default=500)
    parser.add_argument("--memory", action="store_true",
                        help="only the peak RSS of one worker process draining (jobline also with its defaults)")
    args = parser.parse_args()

    reps = 1 if args.quick else 3
    bulk_n, single_n, drain_n, latency_n = (2000, 300, 4000, 50) if args.quick else (20000, 2000, 20000, 200)
    systems = args.systems.split(",")
    drain_options = {
        "raw": {"batch": args.jobline_batch},  # the ceiling at jobline's batch size
        "jobline": {"concurrency": args.jobline_concurrency, "batch": args.jobline_batch},
        "pgqueuer": {"managers": 2, "batch": 500},
        "procrastinate": {"concurrency": 50},
    }
    if args.memory:
        measure_memory(args, systems, reps, drain_n, drain_options)
        return
    results: dict = {s: {} for s in systems}
    for system in systems:
        print(f"-- {system}", flush=True)
        r = results[system]
        r["bulk"] = median([measure_enqueue(system, args.server_url, "bulk", bulk_n) for _ in range(reps)])
        r["single"] = median([measure_enqueue(system, args.server_url, "single", single_n) for _ in range(reps)])
        for procs in (1, 2):
            runs = [measure_drain(system, args.server_url, drain_n, procs, drain_options[system]) for _ in range(reps)]
            r[f"drain{procs}"] = median([x["jobs_per_s"] for x in runs])
            r[f"rss{procs}"] = median([x["rss_mb"] for x in runs])
        if system == "jobline":
            runs = [measure_drain(system, args.server_url, drain_n, 1, {}) for _ in range(reps)]
            r["drain1_default"] = median([x["jobs_per_s"] for x in runs])
        if system != "raw":
            runs = [measure_latency(system, args.server_url, latency_n, drain_options[system]) for _ in range(reps)]
            r["p50"] = median([x["p50_ms"] for x in runs])
            r["p99"] = median([x["p99_ms"] for x in runs])
        print(json.dumps(r), flush=True)

    (HERE / "results").mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"{stamp}.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print_table(results, drain_options)


def measure_memory(args, systems: list[str], reps: int, jobs: int, options: dict) -> None:
    """The table's worker RSS row alone, with every run shown: RSS varies little, so this is the
    quick check for a change that only moves memory."""
    results: dict = {}
    for system in systems:
        runs = [measure_drain(system, args.server_url, jobs, 1, options[system])["rss_mb"] for _ in range(reps)]
        results[system] = runs
        if system == "jobline":
            results["jobline, defaults"] = [measure_drain(system, args.server_url, jobs, 1, {})["rss_mb"]
                                            for _ in range(reps)]
    (HERE / "results").mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"memory-{stamp}.json").write_text(json.dumps({"args": vars(args), "rss_mb": results}, indent=2))
    print(f"| system | worker RSS while draining {jobs:,} jobs, 1 proc (MB), median | runs |")
    print("|---|---|---|")
    for name, runs in results.items():
        print(f"| {name} | {median(runs):.2f} | {', '.join(f'{r:.2f}' for r in runs)} |")
    print(f"settings: {json.dumps(options)}")


def print_table(results: dict, options: dict) -> None:
    systems = list(results)
    peers = [s for s in systems if s not in ("jobline", "raw")]
    rows = [("bulk enqueue 20k (jobs/s)", "bulk", True), ("single enqueue 2k (jobs/s)", "single", True),
            ("drain, 1 worker process (jobs/s)", "drain1", True), ("drain, 2 worker processes (jobs/s)", "drain2", True),
            ("pickup latency p50 (ms)", "p50", False), ("pickup latency p99 (ms)", "p99", False),
            ("worker RSS while draining, 1 proc (MB)", "rss1", False)]
    names = {"raw": "raw SQL", "jobline": "jobline", "pgqueuer": "PgQueuer", "procrastinate": "Procrastinate"}
    head = ["workload"] + [names[s] for s in systems]
    if "jobline" in systems:
        head += [f"jobline / {names[p]}" for p in peers] + (["jobline / raw"] if "raw" in systems else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, key, higher_better in rows:
        cells = [label] + [_fmt(results[s].get(key)) for s in systems]
        if "jobline" in systems:
            mine = results["jobline"].get(key)
            for other in peers + (["raw"] if "raw" in systems else []):
                theirs = results[other].get(key)
                cells.append(f"{mine / theirs:.2f}x" if mine and theirs else "")
        print("| " + " | ".join(cells) + " |")
    if "jobline" in systems and "drain1_default" in results["jobline"]:
        print(f"\njobline drain with its default settings: {_fmt(results['jobline']['drain1_default'])} jobs/s")
    print(f"settings: {json.dumps(options)}")


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


if __name__ == "__main__":
    main()
