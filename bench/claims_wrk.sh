#!/usr/bin/env bash
# HTTP claim path under wrk (bench/README.md, "Remote-worker claims over HTTP"): `jobline serve`
# with --workers 1 and 2; modes: single claim + single complete ("1"), batch claim of 10 + single
# completes ("10"), batch claim of 10 + one batch complete ("10b"); 1/4/16/64 connections;
# repetitions interleaved. Then pgbench's one-row-update commit rate for reference.
#   bench/claims_wrk.sh [POSTGRES_SERVER_URL] [REPEAT] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${1:-postgresql://postgres@127.0.0.1:5432}
REPEAT=${2:-2}
SECONDS_PER_CELL=${3:-8}
DB=claims_wrk
URL="$SERVER/$DB"
PORT=${PORT:-8765}
export JOBLINE_SERVICE_KEY=bench-service-key-0123456789abcdef0123456789
JL=.venv/bin/jobline

psql "$SERVER/postgres" -qX -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
$JL --database-url "$URL" db migrate >/dev/null

refill() {  # drop finished rows (a steady table across cells), top pending up to $1
  psql "$URL" -qXAt -c "DELETE FROM jobline.attempts; DELETE FROM jobline.jobs WHERE status <> 'pending'" \
    -c "SELECT count(jobline.enqueue('bench-task')) FROM generate_series(1, greatest(0, $1 -
          (SELECT count(*) FROM jobline.jobs WHERE status = 'pending')))" -c "VACUUM ANALYZE jobline.jobs" >/dev/null
}

echo "repeat workers mode connections cycles_per_s claims empty errors p50_ms p99_ms load1"
for rep in $(seq "$REPEAT"); do
  for workers in 1 2; do
    $JL --database-url "$URL" --log-level warning serve --port "$PORT" --workers "$workers" &
    pid=$!
    until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
    refill 20000
    wrk -t 2 -c 16 -d 2s -s bench/claims.lua "http://127.0.0.1:$PORT" >/dev/null  # warm-up
    for mode in 1 10 10b; do
      limit=${mode%b}; [ "$limit" = 1 ] && limit=0
      batch=0; [ "${mode%b}" != "$mode" ] && batch=1
      for conns in 1 4 16 64; do
        refill 40000
        threads=$(( conns < 2 ? 1 : 2 ))
        line=$(LIMIT=$limit BATCH_COMPLETE=$batch wrk -t "$threads" -c "$conns" -d "${SECONDS_PER_CELL}s" -s bench/claims.lua \
               "http://127.0.0.1:$PORT" | grep '^RESULT')
        echo "$rep $workers $mode $conns $(echo "$line" | sed 's/RESULT //; s/[a-z0-9_]*=//g') $(cut -d' ' -f1 /proc/loadavg)"
      done
    done
    kill -TERM "$pid"; wait "$pid" || true
  done
done

# Reference: PostgreSQL's own one-row-update commit rate on this machine (pgbench, no HTTP, no Python).
psql "$SERVER/postgres" -qX -c "DROP DATABASE IF EXISTS ${DB}_pgbench" -c "CREATE DATABASE ${DB}_pgbench"
pgbench -q -i -s 1 "$SERVER/${DB}_pgbench" 2>/dev/null
printf '\\set aid random(1, 100000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n' \
  > /tmp/claims_wrk_update.sql
for clients in 1 16; do
  echo "pgbench one-row update, $clients clients: $(pgbench -n -c "$clients" -j 2 -T "$SECONDS_PER_CELL" \
    -f /tmp/claims_wrk_update.sql "$SERVER/${DB}_pgbench" 2>/dev/null | grep -o 'tps = [0-9.]*')"
done
psql "$SERVER/postgres" -qX -c "DROP DATABASE ${DB}_pgbench" -c "DROP DATABASE $DB"
