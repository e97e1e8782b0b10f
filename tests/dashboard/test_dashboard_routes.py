"""The dashboard's routes through httpx against a real server: every screen and action, as the
service, as two users (each sees and steers only their own work: another user's job or schedule
answers exactly as a missing one), as a read-only viewer, and against CSRF and XSS."""

from __future__ import annotations

import re

import httpx
from dashboard_support import SERVICE_KEY, Server, csrf_of, dashboard_settings, post, sign_in
from dashboard_support import server, service, alice, bob  # noqa: F401  (fixtures)

from conftest import enqueue

from jobline import auth

SCREENS = ["/", "/jobs", "/schedules", "/http", "/queues", "/workers", "/pipelines", "/limits", "/notifications"]


def failed_job(sql, owner, function="send-email", error="ValueError: no such address") -> int:
    job_id = enqueue(sql, function, owner)
    sql("UPDATE jobline.jobs SET status = 'failed', attempts = 3, finished_at = now(), last_error = %s WHERE id = %s",
        (error, job_id))
    sql("INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback)"
        " VALUES (%s, 1, 'w1', now(), now(), 'failed', %s, 'Traceback: File \"/srv/app/secret_path.py\", line 3')",
        (job_id, error))
    return job_id


def schedule_of(sql, name, owner) -> int:
    return sql("INSERT INTO jobline.schedules (name, expression, function, owner) VALUES (%s, '*/5 * * * *', "
               "'report', %s) RETURNING id", (name, owner))[0][0]


def test_pages_need_a_session_and_say_where_to_sign_in(server):
    with httpx.Client(base_url=server.url) as anonymous:
        for path in [*SCREENS, "/jobs/1", "/schedules/1"]:
            answer = anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in?next="), path
        assert anonymous.get("/events?path=/").status_code == 401
        assert anonymous.post("/jobs/1/retry", data={"csrf": "x"}).status_code == 401


def test_every_screen_renders_for_the_service_and_a_user(service, alice, sql):
    failed_job(sql, "alice")
    schedule_id = schedule_of(sql, "nightly", None)
    for client in (service, alice):
        for path in SCREENS:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text[:500])
            assert "<title>" in answer.text
    assert service.get(f"/schedules/{schedule_id}").status_code == 200


def test_pages_carry_the_security_headers(service, server):
    with httpx.Client(base_url=server.url) as anonymous:
        for answer in (service.get("/"), service.get("/jobs"), anonymous.get("/sign-in")):
            headers = answer.headers
            assert "script-src 'self'" in headers["content-security-policy"]
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "unsafe-inline" not in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY"
            assert headers["cache-control"] == "no-store"
            assert headers["referrer-policy"] == "same-origin"
            assert "<script>" not in answer.text  # the only script is a static file
    cookie = service.cookies.jar
    session = next(c for c in cookie if c.name == "jobline_session")
    assert session.has_nonstandard_attr("HttpOnly") and session.get_nonstandard_attr("SameSite") == "strict"


def test_sign_in_refuses_a_bad_credential_and_counts_it_toward_the_api_limit(server):
    with httpx.Client(base_url=server.url, headers={"Origin": server.url}) as browser:
        token = re.search(r'name="sign_in_token" value="([^"]+)"', browser.get("/sign-in").text)[1]
        for _ in range(30):
            answer = browser.post("/sign-in", data={"sign_in_token": token, "credential": "wrong"})
            assert answer.status_code == 401 and "not accepted" in answer.text
        assert "jobline_session" not in browser.cookies
        limited = browser.post("/sign-in", data={"sign_in_token": token, "credential": SERVICE_KEY})
        assert limited.status_code == 429
        # The API shares the limit: the same address is refused there too.
        assert browser.get("/api/stats", headers={"Authorization": f"Bearer {SERVICE_KEY}"}).status_code == 429
        server.clock.advance(61)
        assert browser.post("/sign-in", data={"sign_in_token": token, "credential": SERVICE_KEY}).status_code == 303


def test_sign_in_form_needs_its_own_token(server):
    """Login CSRF: another site cannot sign a browser in with the attacker's credential."""
    with httpx.Client(base_url=server.url) as browser:
        browser.get("/sign-in")
        forged = browser.post("/sign-in", data={"sign_in_token": "guess", "credential": SERVICE_KEY})
        assert forged.status_code == 403 and "jobline_session" not in browser.cookies


def test_sign_in_with_an_api_token_ends_when_the_token_is_revoked(server, sql):
    token = auth.new_token()
    sql("INSERT INTO jobline.api_tokens (user_id, token_hash, prefix) VALUES ('carol', %s, 'jl_')",
        (auth.token_hash(token),))
    carol = sign_in(server.url, token)
    assert carol.get("/jobs").status_code == 200
    sql("UPDATE jobline.api_tokens SET revoked_at = now() WHERE user_id = 'carol'")
    assert carol.get("/jobs").status_code == 303


def test_sign_out_ends_the_session_everywhere(server, alice):
    session_id = alice.cookies["jobline_session"]
    assert post(alice, "/sign-out").status_code == 303
    with httpx.Client(base_url=server.url, cookies={"jobline_session": session_id}) as stolen:
        assert stolen.get("/").status_code == 303


def test_an_expired_session_stops_working(alice, sql):
    sql("UPDATE jobline.dashboard_sessions SET expires_at = now() - interval '1 second'")
    assert alice.get("/").status_code == 303


def test_sessions_survive_a_restart_and_work_on_another_server(settings, server, alice):
    other = Server(dashboard_settings(settings)).start()
    try:
        with httpx.Client(base_url=other.url, cookies={"jobline_session": alice.cookies["jobline_session"]}) as same:
            assert same.get("/jobs").status_code == 200
    finally:
        other.stop()


def test_sessions_store_only_a_hash(alice, sql):
    session_id = alice.cookies["jobline_session"]
    stored = sql("SELECT id_hash, user_id, via FROM jobline.dashboard_sessions")
    assert [(r[1], r[2]) for r in stored] == [("alice", "jwt")]
    assert session_id.encode() not in bytes(stored[0][0])


def test_a_user_sees_only_their_own_jobs_schedules_and_calls(alice, bob, sql):
    mine = failed_job(sql, "alice", error="alice-error")
    theirs = failed_job(sql, "bob", function="bob-only-function", error="bob-error")
    sql("SELECT jobline.enqueue('http', '{\"url\": \"https://bob.example/hook\"}'::jsonb, owner => 'bob')")
    bobs_schedule = schedule_of(sql, "bob/nightly", "bob")
    for path in SCREENS + ["/jobs?status=failed", "/jobs?error=error"]:
        page = alice.get(path).text
        assert "bob" not in page.lower(), path
    assert f'/jobs/{mine}"' in alice.get("/jobs").text
    # Another user's job and schedule answer exactly as missing ones do.
    missing = alice.get("/jobs/999999")
    other = alice.get(f"/jobs/{theirs}")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    assert alice.get(f"/schedules/{bobs_schedule}").text == alice.get("/schedules/999999").text
    # Nor can they act on them: the same 404, and nothing changes.
    for action in ("retry", "cancel", "archive", "run-now"):
        assert post(alice, f"/jobs/{theirs}/{action}", confirm="yes").text == \
            post(alice, f"/jobs/999999/{action}", confirm="yes").text
    for action in ("pause", "resume", "trigger"):
        assert post(alice, f"/schedules/{bobs_schedule}/{action}").status_code == 404
    bulk = post(alice, "/jobs", bulk_action="retry", id=[str(theirs)], confirm="yes")
    assert bulk.status_code == 303 and "retry:0:1" in bulk.headers["location"]
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", (theirs,)) == [("failed",)]
    assert sql("SELECT active FROM jobline.schedules WHERE id = %s", (bobs_schedule,)) == [(True,)]
    # Bob sees his own; a user's owner filter cannot widen the listing.
    assert f'/jobs/{theirs}"' in bob.get("/jobs").text
    assert f'/jobs/{theirs}"' not in alice.get("/jobs?owner=bob").text


def test_a_user_never_sees_tracebacks_or_workers(alice, service, sql):
    job_id = failed_job(sql, "alice")
    assert "secret_path.py" not in alice.get(f"/jobs/{job_id}").text
    assert "secret_path.py" in service.get(f"/jobs/{job_id}").text
    sql("INSERT INTO jobline.workers (id, hostname, pid, functions, queues) VALUES ('w-9', 'db-host-7', 42, "
        "'{send-email}', '{}')")
    for path, shown in (("/", "w-9"), ("/workers", "db-host-7")):
        assert shown not in alice.get(path).text
        assert shown in service.get(path).text


def test_retry_cancel_run_now_and_archive_a_job(service, sql):
    job_id = failed_job(sql, None)
    assert post(service, f"/jobs/{job_id}/retry").headers["location"] == f"/jobs/{job_id}?done=retry"
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) == [("pending",)]
    sql("UPDATE jobline.jobs SET run_at = now() + interval '1 hour' WHERE id = %s", (job_id,))
    assert post(service, f"/jobs/{job_id}/run-now").status_code == 303
    assert sql("SELECT run_at <= now() FROM jobline.jobs WHERE id = %s", (job_id,)) == [(True,)]
    # Cancel asks first (the confirm step); only a confirmed post cancels.
    asked = post(service, f"/jobs/{job_id}/cancel")
    assert asked.status_code == 200 and "Yes, cancel" in asked.text
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) == [("pending",)]
    assert post(service, f"/jobs/{job_id}/cancel", confirm="yes").status_code == 303
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) == [("cancelled",)]
    assert post(service, f"/jobs/{job_id}/archive", confirm="yes").status_code == 303
    assert sql("SELECT archived_at IS NOT NULL FROM jobline.jobs WHERE id = %s", (job_id,)) == [(True,)]
    conflict = post(service, f"/jobs/{job_id}/run-now")
    assert conflict.status_code == 409 and "cancelled" in conflict.text


def test_bulk_actions_confirm_then_act(service, sql):
    ids = [failed_job(sql, None) for _ in range(3)]
    asked = post(service, "/jobs", bulk_action="retry", id=[str(i) for i in ids])
    assert asked.status_code == 200 and "Retry 3 jobs?" in asked.text
    assert sql("SELECT count(*) FROM jobline.jobs WHERE status = 'failed'") == [(3,)]
    done = post(service, "/jobs", bulk_action="retry", id=[str(i) for i in ids], confirm="yes", back="/jobs")
    assert done.headers["location"] == "/jobs?done=retry:3:0"
    assert sql("SELECT count(*) FROM jobline.jobs WHERE status = 'pending'") == [(3,)]
    post(service, "/jobs", bulk_action="cancel", id=[str(i) for i in ids], confirm="yes")
    post(service, "/jobs", bulk_action="archive", id=[str(i) for i in ids], confirm="yes")
    assert sql("SELECT count(*) FROM jobline.jobs WHERE archived_at IS NOT NULL") == [(3,)]


def test_job_list_filters(service, sql):
    failed_job(sql, "alice", function="send-email", error="SMTP timeout")
    failed_job(sql, "bob", function="resize", error="bad image")
    enqueue(sql, "resize", "bob", queue="images")
    def ids(query):
        return re.findall(r'href="/jobs/(\d+)"', service.get(f"/jobs?{query}").text)
    assert len(ids("")) == 3
    assert len(ids("status=failed")) == 2
    assert len(ids("function=resize")) == 2
    assert len(ids("queue=images")) == 1
    assert len(ids("owner=alice")) == 1
    assert len(ids("error=smtp")) == 1
    assert len(ids("from=2000-01-01T00:00&to=2999-01-01T00:00")) == 3
    assert len(ids("to=2000-01-01T00:00")) == 0
    assert service.get("/jobs?from=yesterday").status_code == 422


def test_job_list_pages_by_keyset(service, sql):
    sql("SELECT jobline.enqueue('page-me') FROM generate_series(1, 120)")
    first = service.get("/jobs").text
    older = re.search(r'href="(/jobs\?[^"]*before=\d+)"', first)[1].replace("&amp;", "&")
    second = service.get(older).text
    one, two = (set(re.findall(r'href="/jobs/(\d+)"', p)) for p in (first, second))
    assert len(one) == len(two) == 50 and not one & two


def test_job_detail_shows_dependencies_both_ways(service, sql):
    first = enqueue(sql, "step-one", None)
    second = sql("SELECT jobline.enqueue('step-two', depends_on => ARRAY[%s]::bigint[])", (first,))[0][0]
    page = service.get(f"/jobs/{first}").text
    assert f'href="/jobs/{second}"' in page
    assert f'href="/jobs/{first}"' in service.get(f"/jobs/{second}").text


def test_schedules_pause_resume_and_trigger(service, sql):
    schedule_id = schedule_of(sql, "nightly", None)
    page = service.get(f"/schedules/{schedule_id}").text
    assert "every 5 minutes" in page
    assert post(service, f"/schedules/{schedule_id}/pause").status_code == 303
    assert sql("SELECT active FROM jobline.schedules WHERE id = %s", (schedule_id,)) == [(False,)]
    assert post(service, f"/schedules/{schedule_id}/resume", back="list").headers["location"] == \
        "/schedules?done=resume"
    assert sql("SELECT active FROM jobline.schedules WHERE id = %s", (schedule_id,)) == [(True,)]
    assert post(service, f"/schedules/{schedule_id}/trigger").status_code == 303
    assert "manual trigger" in service.get(f"/schedules/{schedule_id}").text


def test_queues_pause_and_resume_for_the_service_only(service, alice, sql):
    enqueue(sql, "send-email", "alice", queue="emails")
    assert "Pause queue emails" in service.get("/queues").text
    assert "Pause queue" not in alice.get("/queues").text  # a user sees the state, not the buttons
    assert post(service, "/queues/pause", queue="emails").headers["location"] == "/queues?done=pause"
    assert sql("SELECT queue FROM jobline.queue_pauses") == [("emails",)]
    page = alice.get("/queues").text
    assert ">paused</span>" in page and "Resume queue" not in page
    refused = post(alice, "/queues/resume", queue="emails")
    assert refused.status_code == 403 and "needs the service key" in refused.text
    malformed = post(service, "/queues/pause", queue=" padded")
    assert malformed.status_code == 422 and "leading or trailing spaces" in malformed.text
    assert post(service, "/queues/resume", queue="emails").status_code == 303
    assert sql("SELECT count(*) FROM jobline.queue_pauses") == [(0,)]
    assert post(service, "/queues/drop", queue="emails").status_code == 404


def test_http_calls_show_status_latency_and_an_excerpt(service, sql):
    job_id = sql("SELECT jobline.enqueue('http', '{\"url\": \"https://api.example/hook\", \"method\": \"POST\", "
                 "\"headers\": {\"Authorization\": \"Bearer {{secret:HOOK_TOKEN}}\"}}'::jsonb)")[0][0]
    sql("UPDATE jobline.jobs SET status = 'succeeded', attempts = 2, finished_at = now(), result = "
        "'{\"status\": 201, \"elapsed_ms\": 42.5, \"text\": \"created order 7\"}' WHERE id = %s", (job_id,))
    page = service.get("/http").text
    assert "https://api.example/hook" in page and "201" in page and "created order 7" in page and "2/3" in page
    assert "{{secret:HOOK_TOKEN}}" in service.get(f"/jobs/{job_id}").text


def test_stored_fields_render_as_text(service, sql):
    """A payload, error or name holding markup is shown as text (XSS)."""
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    job_id = sql("SELECT jobline.enqueue(%s, jsonb_build_object('x', %s::text), queue => %s)",
                 (evil, evil, "q<b>"))[0][0]
    sql("UPDATE jobline.jobs SET status = 'failed', last_error = %s, finished_at = now() WHERE id = %s", (evil, job_id))
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/jobs?error=%3Cscript"):
        page = service.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_actions_need_the_sessions_csrf_token(service, sql, server):
    job_id = failed_job(sql, None)
    session = service.cookies["jobline_session"]
    with httpx.Client(base_url=server.url, cookies={"jobline_session": session}) as forged:
        assert forged.post(f"/jobs/{job_id}/retry").status_code == 403
        assert forged.post(f"/jobs/{job_id}/retry", data={"csrf": "guess"}).status_code == 403
        # The right token from another site's page is refused too (Origin and Sec-Fetch-Site).
        token = csrf_of(service)
        assert forged.post(f"/jobs/{job_id}/retry", data={"csrf": token},
                           headers={"Origin": "https://evil.example"}).status_code == 403
        assert forged.post(f"/jobs/{job_id}/retry", data={"csrf": token},
                           headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) == [("failed",)]
    # Another session's token does not fit this session.
    assert post(service, f"/jobs/{job_id}/retry").status_code == 303


def test_read_only_offers_no_action_and_refuses_every_post(settings, sql):
    viewer_server = Server(dashboard_settings(settings, dashboard_read_only=True)).start()
    try:
        job_id = failed_job(sql, None)
        schedule_id = schedule_of(sql, "nightly", None)
        if True:
            viewer = sign_in(viewer_server.url, SERVICE_KEY)
            for path in [*SCREENS, f"/jobs/{job_id}", f"/schedules/{schedule_id}"]:
                page = viewer.get(path).text
                forms = re.findall(r'<form method="post" action="([^"]+)"', page)
                assert forms == ["/sign-out"] or forms == [], (path, forms)
            for path in (f"/jobs/{job_id}/retry", f"/schedules/{schedule_id}/pause", "/queues/pause"):
                refused = post(viewer, path, confirm="yes")
                assert refused.status_code == 403 and "read-only" in refused.text
            assert post(viewer, "/jobs", bulk_action="retry", id=[str(job_id)], confirm="yes").status_code == 403
        assert sql("SELECT status FROM jobline.jobs WHERE id = %s", (job_id,)) == [("failed",)]
        assert sql("SELECT count(*) FROM jobline.queue_pauses") == [(0,)]
    finally:
        viewer_server.stop()


def test_next_never_leaves_the_site(server):
    with httpx.Client(base_url=server.url, headers={"Origin": server.url}) as browser:
        token = re.search(r'name="sign_in_token" value="([^"]+)"', browser.get("/sign-in").text)[1]
        answer = browser.post("/sign-in", data={"sign_in_token": token, "credential": SERVICE_KEY,
                                                "next": "//evil.example/"})
        assert answer.headers["location"] == "/"


def test_the_live_stream_sends_a_page_again_when_it_changes(service, sql):
    """GET /events: the page's live parts when the viewer's page differs from what it has."""
    job_id = failed_job(sql, None)
    with service.stream("GET", f"/events?path=/jobs/{job_id}&digest=stale") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("data: {\"regions\""):
                assert "failed" in line
                break
        sql("UPDATE jobline.jobs SET status = 'pending', finished_at = NULL WHERE id = %s", (job_id,))
        sql("SELECT pg_notify('jobline_jobs', '')")
        for line in lines:
            if line.startswith("data: {\"regions\"") and "pending" in line:
                break
        else:
            raise AssertionError("no update came")


def test_the_live_stream_is_only_for_dashboard_pages(service, alice, sql):
    theirs = failed_job(sql, "bob")
    # Every screen with a live part streams it, whichever module serves the page.
    for path in ("/notifications", "/pipelines", "/queues"):
        with service.stream("GET", f"/events?path={path}&digest=stale") as stream:
            assert stream.status_code == 200, path
            assert next(line for line in stream.iter_lines() if line.startswith("data: ")).startswith(
                'data: {"regions"'), path
    assert service.get("/events?path=/api/stats").status_code == 404
    assert service.get("/events?path=//evil.example/").status_code == 404
    assert alice.get(f"/events?path=/jobs/{theirs}").status_code == 404


def test_ids_that_only_look_like_digits_are_refused_not_a_server_error(service):
    # "²" passes str.isdigit() and then fails int(): a 404 or an ignored cursor, never a 500.
    assert service.get("/jobs/%C2%B2").status_code == 404
    assert service.get("/pipelines/runs/%C2%B2").status_code == 404
    for page in ("/jobs", "/http", "/notifications", "/pipelines"):
        assert service.get(page, params={"before": "²"}).status_code == 200, page
