"""`jobline demo`: seed 000's edge functions as jobline functions, on tables the demo creates,
then seeds 001 and 002's pg_cron + pg_net + Vault setup on a local endpoint.

daily-token-reset zeroes every user's AI token count; batch-ai-processor works through pending
personalization requests (its "AI provider" fails the first call, so the job retries);
streak-updater extends or resets streaks from yesterday's activity and grants XP, after the
token reset (a dependency); cleanup-expired-tokens deletes expired share links, and a second
run given a bad argument fails without retrying, which cancels the job waiting on it.

Then seed 003's content pipeline, generate -> post -> schedule, runs as a pipeline: each step
reads what the step before it made (ctx.upstream), the post fails once ("the platform answered
503") and is retried, and the run's history says so.

Then a schedule fires every 2 seconds; each tick runs the ported pg_net call, whose URL and
bearer token come from the vault, against a local stand-in for the `adapter-health` Edge
Function that answers 503 once (so the call is retried) and 200 after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click

from . import vault
from .app import App
from .db.store import Store
from .errors import Fail, JoblineError
from .pipeline import Step
from .runtime.context import JobContext
from .settings import Settings

app = App()

SETUP = """
DROP SCHEMA IF EXISTS jobline_demo CASCADE;
CREATE SCHEMA jobline_demo;
CREATE TABLE jobline_demo.users (id int PRIMARY KEY, name text, tokens_used int, streak int, xp int);
INSERT INTO jobline_demo.users VALUES
  (1, 'ada', 24000, 4, 120), (2, 'grace', 25000, 0, 40), (3, 'linus', 3100, 9, 610);
CREATE TABLE jobline_demo.activity (user_id int, day date);
INSERT INTO jobline_demo.activity VALUES (1, current_date - 1), (3, current_date - 1), (3, current_date - 2);
CREATE TABLE jobline_demo.personalization_requests (
  id int PRIMARY KEY, user_id int, prompt text, status text DEFAULT 'pending', suggestion text);
INSERT INTO jobline_demo.personalization_requests (id, user_id, prompt)
  SELECT n, 1 + n % 3, 'suggest a meal #' || n FROM generate_series(1, 7) n;
CREATE TABLE jobline_demo.share_links (token text PRIMARY KEY, expires_at timestamptz);
INSERT INTO jobline_demo.share_links
  SELECT md5(n::text), now() + (n - 4) * interval '1 day' FROM generate_series(1, 8) n;
"""


@app.function("daily-token-reset")
async def daily_token_reset(payload: dict, ctx: JobContext) -> dict:
    async with await ctx.connect_async() as conn:
        cur = await conn.execute("UPDATE jobline_demo.users SET tokens_used = 0 WHERE tokens_used > 0")
        return {"users_reset": cur.rowcount}


@app.function("batch-ai-processor", max_attempts=3, backoff_base=0.5)
async def batch_ai_processor(payload: dict, ctx: JobContext) -> dict:
    if ctx.attempt == 1:  # the provider is overloaded at first, as providers are
        raise ConnectionError("AI provider answered 503 Service Unavailable")
    batch_size = int(payload.get("batch_size", 5))
    async with await ctx.connect_async() as conn:
        cur = await conn.execute(
            """UPDATE jobline_demo.personalization_requests r
               SET status = 'done', suggestion = 'try a ' || (ARRAY['salad', 'curry', 'soup'])[1 + r.id %% 3]
               WHERE r.id IN (SELECT id FROM jobline_demo.personalization_requests
                              WHERE status = 'pending' ORDER BY id LIMIT %s)""", [batch_size])
        return {"processed": cur.rowcount}


@app.function("streak-updater")
def streak_updater(payload: dict, ctx: JobContext) -> dict:  # a sync handler: runs in a thread
    with ctx.connect() as conn:
        extended = conn.execute(
            """UPDATE jobline_demo.users u SET streak = streak + 1, xp = xp + 10 * (streak + 1)
               WHERE EXISTS (SELECT 1 FROM jobline_demo.activity a WHERE a.user_id = u.id
                             AND a.day = current_date - 1)""").rowcount
        reset = conn.execute(
            """UPDATE jobline_demo.users u SET streak = 0
               WHERE NOT EXISTS (SELECT 1 FROM jobline_demo.activity a WHERE a.user_id = u.id
                                 AND a.day = current_date - 1) AND streak > 0""").rowcount
        return {"extended": extended, "reset": reset}


@app.function("cleanup-expired-tokens")
async def cleanup_expired_tokens(payload: dict, ctx: JobContext) -> dict:
    grace_days = payload.get("grace_days", 0)
    if not isinstance(grace_days, int) or grace_days < 0:
        raise Fail(f"grace_days must be a whole number >= 0, got {grace_days!r}")  # no retry
    async with await ctx.connect_async() as conn:
        cur = await conn.execute("DELETE FROM jobline_demo.share_links WHERE expires_at < now() - %s * interval '1 day'",
                                 [grace_days])
        return {"links_deleted": cur.rowcount}


# Seed 003's pipeline: generate -> post -> schedule.
@app.function("generate-content")
def generate_content(payload: dict) -> dict:
    return {"text": f"3 tips for a {payload['streak']}-day streak", "provider": "stand-in"}


@app.function("post-to-platform", backoff_base=0.2, backoff_jitter=0)
def post_to_platform(payload: dict, ctx: JobContext) -> dict:
    if ctx.attempt == 1:
        raise ConnectionError("the platform answered 503 Service Unavailable")
    return {"post_id": f"{payload['platform']}-1", "text": ctx.upstream["generate"]["text"]}


@app.function("schedule-pipeline")
def schedule_pipeline(payload: dict, ctx: JobContext) -> dict:
    return {"posted": ctx.upstream["post"]["post_id"], "next_run_in_hours": 24}


app.pipeline("demo-publish-content", steps=[
    Step("generate", function="generate-content"),
    Step("post", function="post-to-platform", after=["generate"]),
    Step("schedule", function="schedule-pipeline", after=["post"]),
])


# Seeds 001 and 002's cron.schedule + net.http_post, with only the schema names changed and the
# vault lookups written as {{secret:NAME}}.
ADAPTER_CHECK = """
SELECT jobline.schedule('demo-adapter-check', '2 seconds', $$
  SELECT jobline.http_post(
    url := '{{secret:demo_functions_url}}/adapter-health',
    headers := jsonb_build_object('Content-Type', 'application/json',
                                  'Authorization', 'Bearer {{secret:demo_service_key}}'),
    body := '{"deep": true}'::jsonb)
$$)
"""


class DemoEndpoint:
    """A local stand-in for the `adapter-health` Edge Function: its first call answers 503 (a
    cold start), later ones 200. It records the headers it received."""

    def __init__(self) -> None:
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.append({"authorization": self.headers.get("Authorization"),
                              "idempotency_key": self.headers.get("Idempotency-Key")})
                status, reply = (503, b'{"error": "warming up"}') if len(calls) == 1 else (200, b'{"adapters_ok": 3}')
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:  # quiet: the demo prints its own summary
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="demo-endpoint", daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/functions/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def run(settings: Settings) -> None:
    endpoint = DemoEndpoint()
    # The demo's endpoint is on this machine, which the egress policy refuses unless allowed; and
    # without a master key of the user's, the demo's secrets use a key that lives only in memory.
    allowed = ",".join(filter(None, [settings.http_allow, "127.0.0.1"]))
    app.settings = dataclasses.replace(settings, http_allow=allowed,
                                       master_key=settings.master_key or vault.generate_key())
    try:
        await _run(app.settings, endpoint)
    finally:
        endpoint.close()


async def _run(settings: Settings, endpoint: DemoEndpoint) -> None:
    started = time.monotonic()
    async with app:
        click.echo(f"database: {_where(settings)}")
        store = app.store
        async with store.connection() as conn:
            await conn.execute(SETUP.encode())
            # Seed 000's SQL, with only the schema name changed:
            cur = await conn.execute("SELECT jobline.log_scheduled_task('daily-token-reset')")
            reset_id = (await cur.fetchone())[0]
        ai = await app.enqueue_async("batch-ai-processor", {"batch_size": 10})
        streaks = await app.enqueue_async("streak-updater", depends_on=reset_id)
        cleanup = await app.enqueue_async("cleanup-expired-tokens", {"grace_days": 1})
        bad_cleanup = await app.enqueue_async("cleanup-expired-tokens", {"grace_days": -3})
        report = await app.enqueue_async("sql", {"command": "SELECT count(*) FROM jobline_demo.share_links"},
                                         depends_on=bad_cleanup.id)
        ids = [reset_id, ai.id, streaks.id, cleanup.id, bad_cleanup.id, report.id]
        click.echo(f"enqueued {len(ids)} jobs; a worker with concurrency 4 runs them:\n")

        worker = await app.worker_async(concurrency=4, maintenance=False)
        running = asyncio.create_task(worker.run(handle_signals=False))
        try:
            jobs = await _until(lambda: _all_final(store, ids))
            _print_queue_part(jobs, started)
            await _print_users(store)
            await _pipeline_part()
            await _schedule_part(store, endpoint)
        finally:
            worker.request_stop()
            await running
        click.echo("\nnext: `jobline jobs list`, `jobline cron runs demo-adapter-check`, `jobline db stop`")


async def _pipeline_part() -> None:
    run = await app.start_pipeline_async("demo-publish-content", {"streak": 9, "platform": "linkedin"},
                                         owner="ada")
    click.echo(f"\npipeline demo-publish-content (generate -> post -> schedule), run {run['id']} for ada:")

    async def finished():
        found = await app.get_pipeline_run_async(run["id"])
        return found if found["status"] != "running" else None

    done = await _until(finished)
    for event in done["history"]:
        click.echo(f"  {event['step'] or 'run':<10}{event['event']:<11}{event['message'] or ''}")
    click.echo(f"run {done['id']} {done['status']}; the last step got: {json.dumps(done['steps'][-1]['result'])}")


async def _all_final(store: Store, ids: list[int]):
    jobs = [await store.job_get(i) for i in ids]
    return jobs if all(j.status in ("succeeded", "failed", "cancelled") for j in jobs) else None


async def _until(check, timeout: float = 60.0):
    """Poll ``check`` until it returns something; the demo never hangs on a broken setup."""
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        if time.monotonic() > deadline:
            raise JoblineError(f"the demo did not finish within {timeout:g} s; see the log above")
        await asyncio.sleep(0.1)
    return found


def _print_queue_part(jobs, started: float) -> None:

    click.echo(f"{'job':>4}  {'function':<24}{'status':<11}{'attempts':<10}result / error")
    for job in jobs:
        detail = json.dumps(job.result) if job.status == "succeeded" else (job.last_error or "").strip().split("\n")[0]
        click.echo(f"{job.id:>4}  {job.function:<24}{job.status:<11}{job.attempts}/{job.max_attempts:<8}{detail}")
    counts = {s: sum(j.status == s for j in jobs) for s in ("succeeded", "failed", "cancelled")}
    retried = sum(j.attempts - 1 for j in jobs if j.attempts > 1)
    click.echo(f"\nsummary: {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['cancelled']} "
               f"cancelled, {retried} retried, in {time.monotonic() - started:.1f} s")


async def _print_users(store: Store) -> None:
    async with store.connection() as conn:
        cur = await conn.execute("SELECT name, tokens_used, streak, xp FROM jobline_demo.users ORDER BY id")
        users = await cur.fetchall()
    click.echo("users after the run: " + ", ".join(f"{n} (tokens {t}, streak {s}, xp {x})" for n, t, s, x in users))


async def _schedule_part(store: Store, endpoint: DemoEndpoint) -> None:
    token = secrets.token_urlsafe(24)
    await app.set_secret_async("demo_functions_url", endpoint.url)
    await app.set_secret_async("demo_service_key", token)
    try:
        async with store.connection() as conn:
            # A schedule of an earlier demo goes first (with its runs); only this run's jobs count.
            await conn.execute("SELECT jobline.unschedule(jobid) FROM jobline.job WHERE jobname = 'demo-adapter-check'")
            baseline = (await (await conn.execute("SELECT coalesce(max(id), 0) FROM jobline.jobs")).fetchone())[0]
            await conn.execute(ADAPTER_CHECK)
        click.echo("\nschedule demo-adapter-check fires every 2 s; each tick runs seeds 001/002's ported SQL:"
                   + ADAPTER_CHECK.split("$$")[1].rstrip())
        await _until(lambda: _count(store, "SELECT count(*) FROM jobline.jobs WHERE function = 'http' "
                                           f"AND status = 'succeeded' AND id > {baseline}", at_least=2))
        async with store.connection() as conn:
            await conn.execute("SELECT jobline.alter_job(jobid, active := false) FROM jobline.job "
                               "WHERE jobname = 'demo-adapter-check'")
        await _until(lambda: _count(store, f"SELECT count(*) = 0 FROM jobline.jobs WHERE id > {baseline} "
                                           "AND status IN ('waiting', 'pending', 'running')", at_least=1))
        await _print_runs(store)
        await _print_calls(store, endpoint, token, baseline)
    finally:
        await app.delete_secret_async("demo_functions_url")
        await app.delete_secret_async("demo_service_key")


async def _count(store: Store, query: str, at_least: int):
    async with store.connection() as conn:
        value = (await (await conn.execute(query)).fetchone())[0]
    return value if value >= at_least else None


async def _print_runs(store: Store) -> None:
    async with store.connection() as conn:
        cur = await conn.execute("""SELECT d.runid, d.start_time, d.status, d.return_message
                                    FROM jobline.job_run_details d JOIN jobline.job j USING (jobid)
                                    WHERE j.jobname = 'demo-adapter-check' ORDER BY d.runid""")
        runs = await cur.fetchall()
    click.echo(f"\n{'run':>4}  {'tick (jobline.job_run_details)':<32}{'status':<11}return_message")
    for run_id, start, status, message in runs:
        click.echo(f"{run_id:>4}  {start.strftime('%H:%M:%S.%f')[:-3] + ' UTC':<32}{status:<11}{message}")


async def _print_calls(store: Store, endpoint: DemoEndpoint, token: str, baseline: int) -> None:
    async with store.connection() as conn:
        cur = await conn.execute(
            """SELECT j.id, j.status, j.attempts, j.max_attempts, j.result,
                      (SELECT string_agg(CASE WHEN a.error IS NULL THEN 'ok'
                                              ELSE split_part(split_part(a.error, ': ', 2), ' after', 1) END,
                                         ', ' ORDER BY a.attempt)
                         FROM jobline.attempts a WHERE a.job_id = j.id),
                      j.payload::text LIKE '%%{{secret:demo_service_key}}%%'
               FROM jobline.jobs j WHERE j.function = 'http' AND j.id > %s ORDER BY j.id""", [baseline])
        calls = await cur.fetchall()
    click.echo(f"\n{'job':>4}  {'http call':<24}{'status':<11}{'attempts':<10}attempts' outcomes / response")
    for job_id, status, attempts, max_attempts, result, outcomes, _ in calls:
        response = f"{result['status']} {json.dumps(result['body'])}" if result else ""
        click.echo(f"{job_id:>4}  {'POST adapter-health':<24}{status:<11}{attempts}/{max_attempts:<8}{outcomes} -> {response}")
    authorised = sum(c["authorization"] == f"Bearer {token}" for c in endpoint.calls)
    same_key = len({c["idempotency_key"] for c in endpoint.calls}) < len(endpoint.calls)
    placeholders = all(row[-1] for row in calls)
    click.echo(f"\nthe endpoint got {len(endpoint.calls)} calls, {authorised} with the vault's bearer token; the retry "
               f"{'repeated' if same_key else 'did not repeat'} its Idempotency-Key; the job rows hold "
               + ("only {{secret:demo_service_key}}" if placeholders else "the token (a bug!)"))


def _where(settings: Settings) -> str:
    return "JOBLINE_DATABASE_URL" if settings.database_url else "embedded PostgreSQL (stop it with `jobline db stop`)"
