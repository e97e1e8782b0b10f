"""The Pipelines screens in a real headless Chromium (the fixtures of test_dashboard_browser.py):
a run of a fan-out and fan-in pipeline whose middle step failed, its step graph, the cancelled
step that followed with its reason, and a retry from the failed step."""

from __future__ import annotations

import json
import threading

from playwright.sync_api import Page, expect

from jobline import App
from jobline.settings import Settings
from test_dashboard_browser import browser, database, page, shoot, signed_in, site, sql  # noqa: F401

STEPS = [{"name": "generate", "function": "generate-post", "after": []},
         {"name": "title", "function": "write-title", "after": ["generate"], "max_attempts": 1},
         {"name": "image", "function": "make-image", "after": ["generate"]},
         {"name": "post", "function": "post-to-platform", "after": ["title", "image"]}]


def test_a_failed_run_its_step_graph_and_a_retry(site, database, signed_in: Page):  # noqa: F811
    page = signed_in
    sql(database, "INSERT INTO jobline.pipelines (name, steps) VALUES ('publish-content', %s::jsonb)",
        (json.dumps(STEPS),))
    run_id = sql(database, "SELECT jobline.start_pipeline('publish-content', '{\"topic\": \"pg queues\"}', 'alice')")[0][0]
    # Run by a real worker: generate and image succeed, title fails (one attempt), post is cancelled.
    steps_app = App(settings=Settings(database_url=database, poll_interval=0.2))

    @steps_app.function("generate-post")
    def generate(payload):
        return {"text": "Why Postgres queues"}

    @steps_app.function("make-image")
    def image(payload):
        return {"url": "https://img.example.com/1.png"}

    @steps_app.function("write-title")
    def title(payload):
        raise RuntimeError("the model timed out")

    @steps_app.function("post-to-platform")
    def post(payload):
        return {"posted": True}

    def run_steps() -> None:  # in a thread of its own: Playwright's sync API holds this thread's event loop
        with steps_app:
            steps_app.process(maintenance=False)

    runner = threading.Thread(target=run_steps)
    runner.start()
    runner.join(timeout=120)
    assert sql(database, "SELECT step, status FROM jobline.jobs WHERE pipeline_run_id = %s ORDER BY id", (run_id,)) == [
        ("generate", "succeeded"), ("title", "failed"), ("image", "succeeded"), ("post", "cancelled")]
    page.goto(f"{site}/")
    page.get_by_role("link", name="Pipelines").click()
    expect(page.get_by_role("link", name="publish-content").first).to_be_visible()
    page.goto(f"{site}/pipelines/runs/{run_id}")
    graph = page.locator("svg")
    expect(graph.first).to_be_visible()
    for step in ("generate", "title", "image", "post"):
        expect(graph.first.get_by_text(step, exact=True)).to_be_visible()
    expect(page.get_by_text("RuntimeError: the model timed out").first).to_be_visible()
    shoot(page, "pipeline-run")
    page.get_by_role("button", name="Retry").first.click()
    page.wait_for_load_state()
    assert sql(database, "SELECT status FROM jobline.pipeline_runs WHERE id = %s", (run_id,)) == [("running",)]
    assert sql(database, "SELECT step, status FROM jobline.jobs WHERE pipeline_run_id = %s ORDER BY id",
               (run_id,)) == [("generate", "succeeded"), ("title", "pending"), ("image", "succeeded"),
                              ("post", "waiting")]
