"""The dashboard in a real headless Chromium: sign in, filter the job list, open a failed job,
retry it and watch it succeed live, cancel with the confirm step, pause and resume a schedule
and a queue, and the XSS and CSRF cases. One server, one database and one browser for the module; every
screen is kept as a screenshot in test-artifacts/screenshots/ (JOBLINE_SCREENSHOTS overrides).

Debian's `chromium` drives them, never a browser that `playwright install` downloads. Without
chromium they skip, saying how to install it; where JOBLINE_REQUIRE_BROWSER is set (.ci/run sets
it) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import secrets
import shutil
import threading

import psycopg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

import asgi_server
from conftest import _admin, url_for
from jobline import App
from jobline.settings import Settings

KEY = "svc_" + secrets.token_urlsafe(32)
SHOTS = pathlib.Path(os.environ.get("JOBLINE_SCREENSHOTS") or pathlib.Path(__file__).parents[2] / "test-artifacts"
                     / "screenshots")
def chromium_path() -> str:
    path = os.environ.get("JOBLINE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = ("the browser tests need Debian's chromium: `apt-get install -y --no-install-recommends chromium` "
                   "(or set JOBLINE_TEST_CHROMIUM to a Chromium binary)")
        if os.environ.get("JOBLINE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module, stopped with it: Playwright's sync API keeps an event loop
    running while it is open, which would break the asyncio tests that run after this module
    (so pytest-playwright's session-long fixtures are not used)."""
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium_path())
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


WAIT = 15_000  # ms: the longest any condition below may take (they are normally met in well under a second)


@pytest.fixture(scope="module")
def database(pg_server_url, pg_template):
    name = f"t_{secrets.token_hex(6)}"
    _admin(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield url_for(pg_server_url, name)
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sql(url, statement, params=None):
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def site(database):
    """The server (API and dashboard) and a worker serving `flaky`, in threads of this process."""
    settings = Settings(database_url=database, service_key=KEY, poll_interval=0.2)
    server = asgi_server.Server(settings, maintenance=False).start()
    worker_app = App(settings=settings)

    @worker_app.function("flaky", max_attempts=1)
    def flaky(payload):
        return {"ok": True}

    stop = threading.Event()

    def work():
        async def run():
            worker = await worker_app.worker_async()
            task = asyncio.create_task(worker.run(handle_signals=False))
            await asyncio.to_thread(stop.wait)
            worker.request_stop()
            await task
            await worker_app.close_async()
        asyncio.run(run())

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield server.url
    stop.set()
    thread.join(timeout=20)
    server.stop()


def failed(url, function="flaky", error="ConnectionError: the mail server hung up") -> int:
    # Due in an hour, so the worker does not claim it before it is made to look failed.
    job_id = sql(url, "SELECT jobline.enqueue(%s, run_at => now() + interval '1 hour')", (function,))[0][0]
    sql(url, "UPDATE jobline.jobs SET status = 'failed', attempts = 1, max_attempts = 1, finished_at = now(), "
             "last_error = %s WHERE id = %s", (error, job_id))
    sql(url, "INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error) "
             "VALUES (%s, 1, 'w1', now() - interval '2 seconds', now(), 'failed', %s)", (job_id, error))
    return job_id


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def signed_in(site, page: Page):
    page.set_default_timeout(WAIT)
    page.goto(f"{site}/")
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    page.get_by_label("Credential").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def test_sign_in_page(site, page: Page):
    page.goto(f"{site}/sign-in")
    page.get_by_label("Credential").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("These credentials were not accepted.")
    shoot(page, "sign-in")


def test_overview_and_every_screen(site, database, signed_in: Page):
    page = signed_in
    failed(database, function="send-email")
    sql(database, "SELECT jobline.enqueue('resize-image', queue => 'images') FROM generate_series(1, 4)")
    sql(database, "INSERT INTO jobline.schedules (name, expression, timezone, function) VALUES "
                  "('nightly-report', '0 3 * * *', 'Europe/Paris', 'report')")
    sql(database, "SELECT jobline.enqueue('http', '{\"url\": \"https://hooks.example/deploy\", \"method\": \"POST\"}')")
    sql(database, "UPDATE jobline.jobs SET status = 'succeeded', attempts = 1, finished_at = now(), result = "
                  "'{\"status\": 200, \"elapsed_ms\": 84.2, \"text\": \"{\\\"deployed\\\": true}\"}' WHERE function = 'http'")
    for path, name, heading in (("/", "overview", "Overview"), ("/jobs", "jobs", "Jobs"),
                                ("/schedules", "schedules", "Schedules"), ("/http", "http-calls", "HTTP calls"),
                                ("/queues", "queues", "Queues"), ("/workers", "workers", "Workers")):
        page.goto(f"{site}{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        shoot(page, name)
    page.goto(f"{site}/schedules")
    page.get_by_role("link", name="nightly-report").click()
    expect(page.get_by_text("every day at 03:00")).to_be_visible()
    expect(page.get_by_text("CET").or_(page.get_by_text("CEST")).first).to_be_visible()  # next runs in its zone
    shoot(page, "schedule")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{site}/")
    shoot(page, "overview-phone")


def test_filter_the_job_list(site, database, signed_in: Page):
    page = signed_in
    wanted = failed(database, function="charge-card")
    sql(database, "SELECT jobline.enqueue('charge-card') FROM generate_series(1, 3)")
    page.goto(f"{site}/jobs")
    page.get_by_label("failed", exact=True).check()
    page.get_by_label("Function").fill("charge-card")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed.*function=charge-card"))
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(str(wanted))


def test_retry_a_failed_job_and_watch_it_succeed_live(site, database, signed_in: Page):
    page = signed_in
    job_id = failed(database)
    page.goto(f"{site}/jobs?status=failed")
    page.get_by_role("link", name=str(job_id), exact=True).click()
    status = page.locator(".heading .status")
    expect(status).to_have_text("failed")
    expect(page.locator("#live-toggle")).to_be_visible()
    shoot(page, "job-failed")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text("retry")
    # No reload from here: the live stream brings the worker's result.
    expect(status).to_have_text("succeeded", timeout=WAIT)
    expect(page.get_by_text('"ok": true')).to_be_visible()
    shoot(page, "job-succeeded")


def test_live_updates_can_be_paused(site, database, signed_in: Page):
    page = signed_in
    job_id = sql(database, "SELECT jobline.enqueue('nobody-serves-this')")[0][0]
    page.goto(f"{site}/jobs/{job_id}")
    toggle = page.locator("#live-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    sql(database, "UPDATE jobline.jobs SET status = 'cancelled', finished_at = now() WHERE id = %s", (job_id,))
    sql(database, "SELECT pg_notify('jobline_jobs', '')")
    page.wait_for_timeout(1500)  # nothing to wait for: it must stay as it was while paused
    expect(page.locator(".heading .status")).to_have_text("pending")
    toggle.click()
    expect(page.locator(".heading .status")).to_have_text("cancelled")


def test_cancel_with_the_confirm_step(site, database, signed_in: Page):
    page = signed_in
    job_id = sql(database, "SELECT jobline.enqueue('nobody-serves-this')")[0][0]
    page.goto(f"{site}/jobs/{job_id}")
    page.get_by_role("button", name="Cancel").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Cancel job {job_id}?")
    shoot(page, "confirm-cancel")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    assert sql(database, "SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) == [("pending",)]
    page.get_by_role("button", name="Cancel").click()
    dialog.get_by_role("button", name="Yes").click()
    expect(page.locator(".heading .status")).to_have_text("cancelled")


def test_bulk_retry_with_the_confirm_step(site, database, signed_in: Page):
    page = signed_in
    ids = [failed(database, function="bulk-me") for _ in range(2)]
    page.goto(f"{site}/jobs?function=bulk-me")
    for job_id in ids:
        page.get_by_label(f"Select job {job_id}").check()
    page.get_by_role("button", name="Apply…").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Yes").click()
    expect(page.get_by_role("status")).to_contain_text("2 jobs done")


def test_pause_and_resume_a_schedule(site, database, signed_in: Page):
    page = signed_in
    schedule_id = sql(database, "INSERT INTO jobline.schedules (name, expression, function) VALUES "
                                "('every-five', '*/5 * * * *', 'report') RETURNING id")[0][0]
    page.goto(f"{site}/schedules/{schedule_id}")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".heading .status")).to_have_text("paused")
    assert sql(database, "SELECT active FROM jobline.schedules WHERE id = %s", (schedule_id,)) == [(False,)]
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".heading .status")).to_have_text("active")


def test_pause_and_resume_a_queue(site, database, signed_in: Page):
    page = signed_in
    sql(database, "SELECT jobline.enqueue('report', queue => 'exports')")
    page.goto(f"{site}/queues")
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="exports"))
    row.get_by_role("button", name="Pause queue exports").click()
    expect(page.get_by_role("status")).to_contain_text("pause")
    expect(row.locator(".badge")).to_have_text("paused")
    assert sql(database, "SELECT queue FROM jobline.queue_pauses") == [("exports",)]
    shoot(page, "queues-paused")
    row.get_by_role("button", name="Resume queue exports").click()
    expect(row.get_by_role("button", name="Pause queue exports")).to_be_visible()
    assert sql(database, "SELECT count(*) FROM jobline.queue_pauses") == [(0,)]


def test_a_payload_holding_script_renders_as_text(site, database, signed_in: Page):
    page = signed_in
    evil = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">"
    job_id = sql(database, "SELECT jobline.enqueue(%s, jsonb_build_object('note', %s::text))", (evil, evil))[0][0]
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for path in (f"/jobs/{job_id}", "/jobs", "/"):
        page.goto(f"{site}{path}")
        expect(page.get_by_text("<script>window.__xss = 1</script>", exact=False).first).to_be_visible()
        assert page.evaluate("window.__xss") is None
    assert dialogs == []


def test_a_form_from_another_site_changes_nothing(site, database, signed_in: Page):
    page = signed_in
    job_id = failed(database, function="csrf-target")
    page.set_content(f'<form method="post" action="{site}/jobs/{job_id}/retry"><input name="csrf" value="x">'
                     f'<button>go</button></form>')
    page.get_by_role("button", name="go").click()
    page.wait_for_load_state()
    assert sql(database, "SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) == [("failed",)]
