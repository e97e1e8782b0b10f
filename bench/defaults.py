"""What a user meets: `jobline worker` with no flags against PgQueuer's defaults, draining 20,000
no-op jobs in one worker process, with the statistics of an empty table ("stale") and with fresh
ones ("fresh", ANALYZE after the enqueue, as autovacuum gives a production server). jobline's
tuned setting (concurrency 1000, claims of 500) runs beside them: the defaults should reach
0.6x of it.

    bash bench/setup.sh
    bench/.venv/bin/python bench/defaults.py [--repeat 5] [--server-url URL]

Repetitions are interleaved: every repetition runs every cell once, in a shuffled order, so a
change of load lands on all of them. Each cell gets a fresh database.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

from run import measure_drain

CELLS = {
    "jobline defaults": ("jobline", {}),
    "jobline tuned": ("jobline", {"concurrency": 1000, "batch": 500}),
    "PgQueuer defaults": ("pgqueuer", {}),
}
# With --sync: a plain `def` handler, which jobline runs in threads (20 by default); "tuned" is
# the best of the settings tried (bench/README.md).
SYNC_CELLS = {
    "jobline defaults, sync": ("jobline", {"sync": True}),
    "jobline tuned, sync": ("jobline", {"sync": True, "concurrency": 100, "batch": 100}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--sync", action="store_true", help="also sync handlers' defaults and tuned setting")
    args = parser.parse_args()
    cells = {**CELLS, **(SYNC_CELLS if args.sync else {})}
    rates: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.repeat):
        order = [(cell, stats) for cell in cells for stats in ("stale", "fresh")]
        random.shuffle(order)
        for cell, stats in order:
            system, options = cells[cell]
            rate = measure_drain(system, args.server_url, args.jobs, 1, options, analyze=stats == "fresh")["jobs_per_s"]
            rates.setdefault((cell, stats), []).append(rate)
            print(json.dumps({"rep": rep, "cell": cell, "statistics": stats, "jobs_per_s": round(rate)}), flush=True)

    def spread(values):
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    print("\n| statistics | jobline defaults | PgQueuer defaults | jobline tuned | defaults / PgQueuer | defaults / tuned |")
    print("|---|---|---|---|---|---|")
    for stats in ("stale", "fresh"):
        mine, peer, tuned = (rates[(c, stats)] for c in ("jobline defaults", "PgQueuer defaults", "jobline tuned"))
        # Ratios per repetition (the cells of one repetition ran under the same load), then their spread.
        versus_peer = [a / b for a, b in zip(mine, peer)]
        versus_tuned = [a / b for a, b in zip(mine, tuned)]
        print(f"| {stats} | {spread(mine)} | {spread(peer)} | {spread(tuned)} | "
              f"{statistics.median(versus_peer):.2f}x ({min(versus_peer):.2f}-{max(versus_peer):.2f}) | "
              f"{statistics.median(versus_tuned):.2f}x ({min(versus_tuned):.2f}-{max(versus_tuned):.2f}) |")
    if args.sync:
        print("\n| statistics | sync defaults | sync tuned | sync defaults / PgQueuer | sync defaults / sync tuned |")
        print("|---|---|---|---|---|")
        for stats in ("stale", "fresh"):
            mine, tuned, peer = (rates[(c, stats)] for c in ("jobline defaults, sync", "jobline tuned, sync",
                                                               "PgQueuer defaults"))
            versus_peer = [a / b for a, b in zip(mine, peer)]
            versus_tuned = [a / b for a, b in zip(mine, tuned)]
            print(f"| {stats} | {spread(mine)} | {spread(tuned)} | "
                  f"{statistics.median(versus_peer):.2f}x ({min(versus_peer):.2f}-{max(versus_peer):.2f}) | "
                  f"{statistics.median(versus_tuned):.2f}x ({min(versus_tuned):.2f}-{max(versus_tuned):.2f}) |")


if __name__ == "__main__":
    main()
