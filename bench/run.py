"""jobline against PgQueuer, Procrastinate and a raw psycopg loop, in one run, on one server.

    bash bench/setup.sh                    # once: bench/.venv with jobline and the peers
    bench/.venv/bin/python bench/run.py    # full run (3 repetitions, medians), ~10-15 minutes
    bench/.venv/bin/python bench/run.py --quick
    bench/.venv/bin/python bench/run.py --memory   # only the worker RSS row (~1 minute per system)
    bench/.venv/bin/python bench/run.py --table bench/published/FILE.json   # a saved run's table

By default the run starts a PostgreSQL of its own (the embedded one, PostgreSQL's default
settings) and prints its settings; --server-url measures on a given server instead. Systems are
interleaved within each repetition, every cell gets a fresh database, and the per-repetition
figures are saved to bench/results/ (the README's table is printed from such a file). See
bench/README.md for what each workload measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import pathlib
import random
import secrets
import shutil
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


def _wait_ready(out: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while not pathlib.Path(out).exists() or "ready" not in pathlib.Path(out).read_text():
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.05)


def _stop(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def measure_latency(system: str, server_url: str, jobs: int, options: dict, *, backlog: int = 0) -> dict:
    """Pickup latency of one idle worker process: ``jobs`` jobs enqueued 20 ms apart, handler
    start minus the moment the enqueue call returned. With ``backlog``, another worker process
    of the same system drains that many jobs of another function meanwhile (the load), with the
    same options."""
    adapter = SYSTEMS[system]()
    helpers: list[tuple[subprocess.Popen, str]] = []
    with database(server_url) as url:
        asyncio.run(adapter.setup(url))
        if backlog:
            asyncio.run(adapter.bulk(url, backlog, function="other"))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
        worker, out = start_worker(system, url, "serve", options)
        try:
            _wait_ready(out, f"{system} worker")
            time.sleep(1.5)  # connect, install listeners
            if backlog:
                helpers.append(start_worker(system, url, "serve", {**options, "function": "other"}))
                _wait_ready(helpers[0][1], f"{system} loading worker")
                time.sleep(1.0)  # let the drain get going
            enqueued: list[float] = []
            asyncio.run(adapter.single(url, jobs, latency_log=enqueued, gap=0.02))
            if backlog:
                left = remaining(url, adapter.remaining_sql)
                assert left > 0, f"the {system} backlog of {backlog} drained before the last pickup: raise counts[\"backlog\"]"
            deadline = time.monotonic() + 30
            while True:
                lines = [line.split() for line in pathlib.Path(out).read_text().splitlines()]
                started = {int(parts[0]): float(parts[1]) for parts in lines if len(parts) == 2 and parts[0] != "first"}
                if len(started) >= jobs or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            for process, helper_out in [(worker, out), *helpers]:
                _stop(process)
                os.unlink(helper_out)
    delays = sorted((started[i] - enqueued[i]) * 1000 for i in range(jobs) if i in started)
    return {"p50_ms": statistics.median(delays), "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
            "picked": len(delays)}


# What the table reports, in order: (key, label, higher is better).
ROWS = [("bulk", "bulk enqueue (jobs/s)", True), ("single", "single enqueue (jobs/s)", True),
        ("drain1", "drain, 1 worker process (jobs/s)", True), ("drain2", "drain, 2 worker processes (jobs/s)", True),
        ("drain1_default", "drain, 1 process, the worker's defaults (jobs/s)", True),
        ("p50", "pickup latency p50 (ms)", False), ("p99", "pickup latency p99 (ms)", False),
        ("p50_loaded", "pickup p50 while another process drains (ms)", False),
        ("p99_loaded", "pickup p99 while another process drains (ms)", False),
        ("rss1", "worker RSS while draining, 1 proc (MB)", False)]
NAMES = {"raw": "raw SQL", "jobline": "jobline", "pgqueuer": "PgQueuer", "procrastinate": "Procrastinate"}
# The server settings printed with every run and kept in its result file.
SHOWN_SETTINGS = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_connections",
                  "work_mem", "autovacuum", "checkpoint_timeout", "max_wal_size", "jit")


def median(values):
    return statistics.median(values)


def server_settings(server_url: str) -> dict:
    with psycopg.connect(with_database(server_url, "postgres")) as conn:
        return {name: conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0] for name in SHOWN_SETTINGS}


def own_server():
    """A PostgreSQL of this run's own, with PostgreSQL's default settings (synchronous_commit on,
    autovacuum on; max_connections 200 for the worker pools): jobline's embedded server, in a
    temporary directory. A context manager giving its URL."""
    from jobline.db.embedded import EmbeddedPostgres

    @contextlib.contextmanager
    def running():
        parent = tempfile.mkdtemp(prefix="jobline-bench-")
        os.chmod(parent, 0o755)  # as root, PostgreSQL runs as `nobody`, which must reach it
        server = EmbeddedPostgres(os.path.join(parent, "data"))
        try:
            yield with_database(server.ensure_running(), "postgres")
        finally:
            server.stop()
            shutil.rmtree(parent, ignore_errors=True)

    return running()


def cells(system: str, options: dict):
    """The measurements of one system in one repetition: (key, a callable returning {key: value})."""
    yield "bulk", lambda url, n: {"bulk": measure_enqueue(system, url, "bulk", n["bulk"])}
    yield "single", lambda url, n: {"single": measure_enqueue(system, url, "single", n["single"])}
    for procs in (1, 2):
        yield f"drain{procs}", lambda url, n, procs=procs: _drain(system, url, n["drain"], procs, options)
    if system == "jobline":
        yield "drain1_default", lambda url, n: {"drain1_default": measure_drain(system, url, n["drain"], 1, {})["jobs_per_s"]}
    if system != "raw":
        yield "latency", lambda url, n: _latency(system, url, n["latency"], options)
    if system in ("jobline", "pgqueuer"):  # the adapters that serve one named function
        yield "latency_loaded", lambda url, n: _latency(system, url, n["latency"], options, n["backlog"], "_loaded")


def _drain(system, url, jobs, procs, options) -> dict:
    run = measure_drain(system, url, jobs, procs, options)
    return {f"drain{procs}": run["jobs_per_s"], f"rss{procs}": run["rss_mb"]}


def _latency(system, url, jobs, options, backlog=0, suffix="") -> dict:
    run = measure_latency(system, url, jobs, options, backlog=backlog)
    return {f"p50{suffix}": run["p50_ms"], f"p99{suffix}": run["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", help="measure on this server (default: start one of the run's own)")
    parser.add_argument("--quick", action="store_true", help="one repetition, smaller counts (a smoke run)")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--systems", default="raw,jobline,pgqueuer,procrastinate")
    parser.add_argument("--jobline-concurrency", type=int, default=1000)
    parser.add_argument("--jobline-batch", type=int, default=500)
    parser.add_argument("--memory", action="store_true",
                        help="only the peak RSS of one worker process draining (jobline also with its defaults)")
    parser.add_argument("--table", metavar="RESULT.json", help="print the table of a saved run and exit")
    args = parser.parse_args()
    if args.table:
        print_table(json.loads(pathlib.Path(args.table).read_text()))
        return

    reps = args.repeat or (1 if args.quick else 3)
    counts = ({"bulk": 2000, "single": 300, "drain": 4000, "latency": 50, "backlog": 100_000} if args.quick else
              {"bulk": 20000, "single": 2000, "drain": 20000, "latency": 200, "backlog": 300_000})
    systems = args.systems.split(",")
    drain_options = {
        "raw": {"batch": args.jobline_batch},  # the ceiling at jobline's batch size
        "jobline": {"concurrency": args.jobline_concurrency, "batch": args.jobline_batch},
        "pgqueuer": {"managers": 2, "batch": 500},
        "procrastinate": {"concurrency": 50},
    }
    with (contextlib.nullcontext(args.server_url) if args.server_url else own_server()) as server_url:
        settings = server_settings(server_url)
        print("server: " + ("given" if args.server_url else "the run's own (PostgreSQL's defaults)") + ", "
              + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)
        if args.memory:
            measure_memory(server_url, settings, args, systems, reps, counts["drain"], drain_options)
            return
        runs = run_interleaved(server_url, systems, reps, counts, drain_options)
    result = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "args": vars(args),
              "server": settings, "counts": counts, "options": drain_options, "runs": runs}
    (HERE / "results").mkdir(exist_ok=True)
    path = HERE / "results" / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nresult: {path}\n")
    print_table(result)


def run_interleaved(server_url: str, systems: list[str], reps: int, counts: dict, options: dict) -> dict:
    """Every repetition measures each workload for every system before the next workload, in a
    shuffled order of systems, so a change of load on the machine lands on all of them alike.
    Returns {system: {key: [value per repetition]}}."""
    runs: dict = {s: {} for s in systems}
    for rep in range(reps):
        workloads: dict[str, list] = {}
        for system in systems:
            for workload, measure in cells(system, options[system]):
                workloads.setdefault(workload, []).append((system, measure))
        for workload, measures in workloads.items():
            random.shuffle(measures)
            for system, measure in measures:
                figures = measure(server_url, counts)
                for key, value in figures.items():
                    runs[system].setdefault(key, []).append(value)
                print(json.dumps({"rep": rep, "system": system, **{k: round(v, 2) for k, v in figures.items()}}),
                      flush=True)
    return runs


def measure_memory(server_url: str, settings: dict, args, systems: list[str], reps: int, jobs: int,
                   options: dict) -> None:
    """The table's worker RSS row alone, with every run shown: RSS varies little, so this is the
    quick check for a change that only moves memory."""
    cells = [(s, options[s]) for s in systems] + ([("jobline, defaults", {})] if "jobline" in systems else [])
    results: dict = {name: [] for name, _ in cells}
    for _ in range(reps):
        for name, cell_options in cells:
            system = name.split(",")[0]
            results[name].append(measure_drain(system, server_url, jobs, 1, cell_options)["rss_mb"])
    (HERE / "results").mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"memory-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "server": settings, "rss_mb": results}, indent=2))
    print(f"| system | worker RSS while draining {jobs:,} jobs, 1 proc (MB), median | runs |")
    print("|---|---|---|")
    for name, runs in results.items():
        print(f"| {name} | {median(runs):.2f} | {', '.join(f'{r:.2f}' for r in runs)} |")
    print(f"settings: {json.dumps(options)}")


def print_table(result: dict) -> None:
    """The README's table from a result file: each cell is the median (lowest-highest); each
    ratio is the median of the per-repetition ratios (the cells of one repetition ran under the
    same load) with their range."""
    runs = result["runs"]
    systems = list(runs)
    others = [s for s in systems if s != "jobline"]
    head = ["workload"] + [NAMES[s] for s in systems]
    if "jobline" in systems:
        head += [f"jobline / {NAMES[o]}" for o in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for key, label, _ in ROWS:
        if not any(key in runs[s] for s in systems):
            continue
        cells = [label] + [_spread(runs[s].get(key)) for s in systems]
        if "jobline" in systems:
            mine = runs["jobline"].get(key)
            for other in others:
                theirs = runs[other].get(key)
                if mine and theirs and len(mine) == len(theirs):
                    ratios = [a / b for a, b in zip(mine, theirs)]
                    cells.append(f"{median(ratios):.2f}x" + (f" ({min(ratios):.2f}-{max(ratios):.2f})"
                                                             if len(ratios) > 1 else ""))
                else:
                    cells.append("")
        print("| " + " | ".join(cells) + " |")
    counts = result.get("counts", {})
    repetitions = max(len(values) for system in systems for values in runs[system].values())
    print(f"\n{result.get('when', '')}; repetitions: {repetitions}; counts: {json.dumps(counts)}")
    print("server: " + ", ".join(f"{k}={v}" for k, v in result.get("server", {}).items()))
    print(f"settings: {json.dumps(result.get('options', {}))}")


def _spread(values) -> str:
    if not values:
        return "n/a"
    text = _fmt(median(values))
    return text + (f" ({_fmt(min(values))}-{_fmt(max(values))})" if len(values) > 1 else "")


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


if __name__ == "__main__":
    main()
