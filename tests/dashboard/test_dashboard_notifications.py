"""The dashboard's Notifications screen (a user sees only their own events and subscriptions) and
a deactivated schedule's page (when and why it paused itself)."""

from __future__ import annotations

from dashboard_support import server, service, alice  # noqa: F401  (fixtures)


def test_a_user_sees_only_their_own_notifications_and_subscriptions(service, alice, sql):
    sql("SELECT jobline.record_event('job.failed', 'alice', 'job 41', '{\"job_id\": 41, \"error\": \"<b>boom</b>\"}')")
    sql("SELECT jobline.record_event('job.failed', 'bob', 'job 42', '{\"job_id\": 42, \"error\": \"bob-only\"}')")
    sql("SELECT jobline.record_event('function.failing', NULL, 'resize', '{\"failures\": 5, \"window_seconds\": 600}')")
    sql("""INSERT INTO jobline.notification_subscriptions (owner, url) VALUES
           ('alice', 'https://alice.example.com/hook'), ('bob', 'https://bob.example.com/hook'),
           (NULL, 'https://ops.example.com/hook')""")
    mine = alice.get("/notifications")
    assert mine.status_code == 200, mine.text[:500]
    assert "job 41" in mine.text and "&lt;b&gt;boom&lt;/b&gt;" in mine.text and "<b>boom</b>" not in mine.text
    assert "job 42" not in mine.text and "bob-only" not in mine.text and "resize" not in mine.text
    assert "alice.example.com" in mine.text and "bob.example.com" not in mine.text and "ops.example.com" not in mine.text
    every = service.get("/notifications")
    assert all(text in every.text for text in ("job 41", "job 42", "resize", "5 failures within 10 min",
                                               "bob.example.com", "ops.example.com"))
    only = service.get("/notifications", params={"kind": "function.failing"})
    assert "resize" in only.text and "job 41" not in only.text
    assert service.get("/notifications", params={"kind": "nonsense", "before": "x"}).status_code == 200
    assert 'href="/notifications"' in alice.get("/").text  # in the navigation


def test_a_deactivated_schedule_shows_when_and_why(service, sql):
    schedule_id = sql("""INSERT INTO jobline.schedules (name, expression, function, max_consecutive_failures, active,
                                                       deactivated_at, deactivated_reason)
                         VALUES ('nightly', '0 3 * * *', 'report', 3, false, now(),
                                 '3 runs in a row failed (max_consecutive_failures 3)') RETURNING id""")[0][0]
    page = service.get(f"/schedules/{schedule_id}")
    assert page.status_code == 200
    assert "deactivated" in page.text and "3 runs in a row failed (max_consecutive_failures 3)" in page.text
    assert "3 failed runs in a row" in page.text
    assert "deactivated" in service.get("/schedules").text


def test_a_pipeline_runs_event_links_to_the_run_and_names_its_failed_steps(service, sql):
    sql("""SELECT jobline.record_event('pipeline.failed', NULL, 'publish-content #7',
                                       '{"run_id": 7, "failed_steps": ["post", "notify"]}')""")
    page = service.get("/notifications")
    assert 'href="/pipelines/runs/7">publish-content #7</a>' in page.text
    assert "failed: post, notify" in page.text
