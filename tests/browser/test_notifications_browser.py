"""The Notifications screen in a real headless Chromium (the fixtures of test_dashboard_browser.py):
the events and subscriptions are listed, a deactivated schedule's event leads to its page, which
says when and why it paused itself; and the screen fits a phone's width."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from test_dashboard_browser import browser, database, page, shoot, signed_in, site, sql  # noqa: F401


def test_the_notifications_screen_and_a_deactivated_schedule(site, database, signed_in: Page):  # noqa: F811
    page = signed_in
    schedule_id = sql(database, """INSERT INTO jobline.schedules (name, expression, function, max_consecutive_failures,
                                       active, deactivated_at, deactivated_reason)
                                   VALUES ('nightly-export', '0 3 * * *', 'export', 3, false, now(),
                                           '3 runs in a row failed (max_consecutive_failures 3); the last, job 12: boom')
                                   RETURNING id""")[0][0]
    sql(database, "SELECT jobline.record_event('schedule.deactivated', 'alice', 'nightly-export', %s::jsonb)",
        ('{"schedule_id": %d, "reason": "3 runs in a row failed"}' % schedule_id,))
    sql(database, "SELECT jobline.record_event('function.failing', NULL, 'export', "
                  "'{\"failures\": 5, \"window_seconds\": 600}')")
    sql(database, "INSERT INTO jobline.notification_subscriptions (url, events) "
                  "VALUES ('https://hooks.example.com/ops', '{function.failing}')")
    page.goto(f"{site}/")
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    expect(page.get_by_text("5 failures within 10 min")).to_be_visible()
    expect(page.get_by_text("https://hooks.example.com/ops")).to_be_visible()
    shoot(page, "notifications")
    page.get_by_label("Kind").select_option("schedule.deactivated")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("5 failures within 10 min")).to_have_count(0)
    page.get_by_role("link", name="nightly-export").click()
    expect(page.get_by_text("the last, job 12: boom")).to_be_visible()
    expect(page.get_by_text("deactivated", exact=True)).to_be_visible()
    shoot(page, "schedule-deactivated")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{site}/notifications")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
