"""The Pipelines screen through httpx against a real server: the list and a run's page (its step
graph as SVG, statuses, results, history), cancel (after a confirm step) and retry; a user sees
and steers only their own runs; names and results are text, never markup."""

from __future__ import annotations

import re

import httpx
import pytest
from dashboard_support import Server, dashboard_settings, post
from dashboard_support import service, alice, bob  # noqa: F401  (fixtures)

from apps.api import register
from jobline import Step


def with_pipelines(app):
    register(app)
    app.pipeline("publish", steps=[Step("draft", "echo"), Step("<b>title</b>", "echo", after=["draft"]),
                                   Step("tags", "echo", after=["draft"]),
                                   Step("assemble", "echo", after=["<b>title</b>", "tags"])])
    return app


@pytest.fixture
def server(settings):
    running = Server(dashboard_settings(settings), functions=with_pipelines).start()
    yield running
    running.stop()


def start(sql, owner: str | None) -> int:
    return sql("SELECT jobline.start_pipeline('publish', '{\"topic\": \"<script>x</script>\"}', %s)", [owner])[0][0]


def test_the_list_and_a_runs_page_with_its_graph(service, alice, sql):
    alices = start(sql, "alice")
    sql("UPDATE jobline.jobs SET status = 'running', attempts = 1 WHERE step = 'draft'")
    sql("UPDATE jobline.jobs SET status = 'succeeded', result = '{\"text\": \"<i>made</i>\"}' WHERE step = 'draft'")
    listing = alice.get("/pipelines")
    assert listing.status_code == 200 and "publish" in listing.text and f"/pipelines/runs/{alices}" in listing.text
    assert 'aria-current="page"' in listing.text and ">Pipelines</a>" in listing.text
    page = alice.get(f"/pipelines/runs/{alices}")
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert "<svg" in html and html.count("<rect") == 4 and html.count("marker-end") == 4  # 4 steps, 4 edges
    assert "&lt;b&gt;title&lt;/b&gt;" in html and "<b>title</b>" not in html          # names are text
    assert "&lt;i&gt;made&lt;/i&gt;" in html and "<i>made</i>" not in html            # results are text
    assert "&lt;script&gt;" in html and "<script>x" not in html
    assert "attempt 1 of 3" in html and "run started" in html                         # the history
    assert service.get(f"/pipelines/runs/{alices}").status_code == 200
    assert service.get("/pipelines?status=running").status_code == 200
    assert alice.get("/pipelines?status=bogus").status_code == 422


def test_a_user_sees_and_steers_only_their_own_runs(alice, bob, sql):
    alices = start(sql, "alice")
    assert bob.get(f"/pipelines/runs/{alices}").status_code == 404
    assert f"/pipelines/runs/{alices}" not in bob.get("/pipelines").text
    assert post(bob, f"/pipelines/runs/{alices}/cancel", confirm="yes").status_code == 404
    assert post(bob, f"/pipelines/runs/{alices}/retry").status_code == 404
    assert sql("SELECT status FROM jobline.pipeline_runs") == [("running",)]

    confirm = post(alice, f"/pipelines/runs/{alices}/cancel")
    assert confirm.status_code == 200 and "Yes, cancel" in confirm.text
    assert sql("SELECT status FROM jobline.pipeline_runs") == [("running",)]
    done = post(alice, f"/pipelines/runs/{alices}/cancel", confirm="yes")
    assert done.status_code == 303 and done.headers["location"] == f"/pipelines/runs/{alices}?done=cancel"
    assert sql("SELECT status FROM jobline.pipeline_runs") == [("cancelled",)]
    assert post(alice, f"/pipelines/runs/{alices}/retry").status_code == 303
    assert sql("SELECT status FROM jobline.pipeline_runs") == [("running",)]
    assert post(alice, f"/pipelines/runs/{alices}/retry").status_code == 409
    assert post(alice, f"/pipelines/runs/{alices}/explode").status_code == 404
    assert alice.get("/pipelines/runs/abc").status_code == 404


def test_actions_need_the_csrf_token_and_pages_a_session(server, alice, sql):
    alices = start(sql, "alice")
    assert alice.post(f"/pipelines/runs/{alices}/cancel", data={"confirm": "yes", "csrf": "x"}).status_code == 403
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(f"/pipelines/runs/{alices}").status_code == 303
    assert sql("SELECT status FROM jobline.pipeline_runs") == [("running",)]


def test_a_snoozed_attempt_shows_on_the_job_page_as_waiting_not_failing(alice, sql):
    job_id = sql("SELECT jobline.enqueue('echo', owner => 'alice')")[0][0]
    sql("INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome) "
        "VALUES (%s, 1, 'w1', now(), now(), 'snoozed')", [job_id])
    page = alice.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and "attempt 1 snoozed" in page.text
    assert re.search(r'<li class="pending"><time>[^<]*</time> attempt 1 snoozed', page.text), page.text[-3000:]
