"""/api/pipelines and /api/pipeline-runs: a user starts runs that are theirs and sees and steers
only their own; the service sees and steers every run; bad input is a 4xx naming what was wrong."""

from __future__ import annotations

import pytest

from api_support import SERVICE, Server, api_settings, as_user, assert_error
from apps.api import register
from jobline import Step


def with_pipelines(app):
    register(app)
    app.pipeline("publish", steps=[
        Step("draft", "echo"),
        Step("post", "http", after=["draft"], payload={"url": "https://social.example/{{secret:path}}"}),
    ])
    app.pipeline("team/weekly", steps=[Step("only", "echo")])
    return app


@pytest.fixture
def client(settings):
    import httpx

    running = Server(api_settings(settings), functions=with_pipelines).start()
    with httpx.Client(base_url=running.url, timeout=30) as c:
        yield c
    running.stop()


def test_users_start_and_see_only_their_own_runs_the_service_sees_all(client, sql):
    listed = client.get("/api/pipelines", headers=as_user("alice"))
    assert listed.status_code == 200, listed.text
    publish = next(p for p in listed.json()["pipelines"] if p["name"] == "publish")
    assert [s["name"] for s in publish["steps"]] == ["draft", "post"]
    assert all("payload" not in s for s in publish["steps"])  # the operator's step payloads stay hidden
    service_view = client.get("/api/pipelines", headers=SERVICE).json()["pipelines"]
    assert next(p for p in service_view if p["name"] == "publish")["steps"][1]["payload"]["url"].startswith("https://")

    started = client.post("/api/pipelines/publish/runs", headers=as_user("alice"), json={"payload": {"topic": "a"}})
    assert started.status_code == 201, started.text
    alices = started.json()
    assert alices["owner"] == "alice" and alices["status"] == "running" and len(alices["steps"]) == 2
    assert sql("SELECT DISTINCT owner FROM jobline.jobs WHERE pipeline_run_id = %s", [alices["id"]]) == [("alice",)]
    bobs = client.post("/api/pipelines/team/weekly/runs", headers=as_user("bob")).json()
    services = client.post("/api/pipelines/publish/runs", headers=SERVICE, json={"owner": "carol"}).json()
    assert services["owner"] == "carol"

    mine = client.get("/api/pipeline-runs", headers=as_user("alice")).json()
    assert [r["id"] for r in mine["runs"]] == [alices["id"]] and mine["next_cursor"] is None
    assert client.get("/api/pipeline-runs?owner=bob", headers=as_user("alice")).json()["runs"] == []
    everyone = client.get("/api/pipeline-runs", headers=SERVICE).json()["runs"]
    assert [r["id"] for r in everyone] == [services["id"], bobs["id"], alices["id"]]
    page = client.get("/api/pipeline-runs?limit=1", headers=SERVICE).json()
    assert [r["id"] for r in page["runs"]] == [services["id"]] and page["next_cursor"] == services["id"]
    after = client.get(f"/api/pipeline-runs?limit=5&before={page['next_cursor']}", headers=SERVICE).json()
    assert [r["id"] for r in after["runs"]] == [bobs["id"], alices["id"]]
    filtered = client.get("/api/pipeline-runs?pipeline=team/weekly&status=running", headers=SERVICE).json()
    assert [r["id"] for r in filtered["runs"]] == [bobs["id"]]

    # Another user's run answers as one that does not exist, for reading and steering.
    for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        response = client.request(method, f"/api/pipeline-runs/{alices['id']}{path}", headers=as_user("bob"))
        assert_error(response, 404, "pipeline_not_found")
    assert client.get(f"/api/pipeline-runs/{alices['id']}", headers=as_user("alice")).json()["id"] == alices["id"]

    cancelled = client.post(f"/api/pipeline-runs/{alices['id']}/cancel", headers=as_user("alice"),
                            json={"reason": "not today"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert {s["error"] for s in cancelled.json()["steps"]} == {"not today"}
    assert_error(client.post(f"/api/pipeline-runs/{alices['id']}/cancel", headers=as_user("alice")), 409, "conflict")
    retried = client.post(f"/api/pipeline-runs/{alices['id']}/retry", headers=as_user("alice"))
    assert retried.status_code == 200 and retried.json()["status"] == "running"
    assert_error(client.post(f"/api/pipeline-runs/{alices['id']}/retry", headers=SERVICE), 409, "conflict")
    # The service steers anyone's run.
    assert client.post(f"/api/pipeline-runs/{bobs['id']}/cancel", headers=SERVICE).json()["status"] == "cancelled"


def test_bad_requests_are_4xx_naming_what_was_wrong(client, sql):
    cases = [
        (client.post("/api/pipelines/publish/runs", headers=as_user("alice"), json={"owner": "bob"}), 403, "forbidden"),
        (client.post("/api/pipelines/publish/runs", headers=SERVICE, json={"payload": [1]}), 422, "invalid_input"),
        (client.post("/api/pipelines/publish/runs", headers=SERVICE, json={"bogus": 1}), 422, "invalid_input"),
        (client.post("/api/pipelines/nope/runs", headers=SERVICE), 404, "pipeline_not_found"),
        (client.post("/api/pipelines/%20padded/runs", headers=SERVICE), 422, "invalid_input"),
        (client.get("/api/pipeline-runs?status=bogus", headers=SERVICE), 422, "invalid_input"),
        (client.get("/api/pipeline-runs?limit=0", headers=SERVICE), 422, "invalid_input"),
        (client.get("/api/pipeline-runs/0", headers=SERVICE), 422, "invalid_input"),
        (client.get("/api/pipeline-runs/99999", headers=SERVICE), 404, "pipeline_not_found"),
        (client.post("/api/pipeline-runs/1/cancel", headers=SERVICE, json={"reason": ""}), 422, "invalid_input"),
        (client.get("/api/pipeline-runs"), 401, "unauthenticated"),
        (client.post("/api/pipelines/publish/runs"), 401, "unauthenticated"),
    ]
    for response, status, code in cases:
        assert_error(response, status, code)
    assert sql("SELECT count(*) FROM jobline.pipeline_runs") == [(0,)]


def test_a_users_schedule_can_target_a_pipeline_and_its_ticks_are_theirs(client, sql):
    added = client.post("/api/schedules", headers=as_user("alice"), json={
        "name": "daily-post", "expression": "@daily", "pipeline": "publish", "payload": {"topic": "d"}})
    assert added.status_code == 201, added.text
    triggered = client.post("/api/schedules/daily-post/trigger", headers=as_user("alice"))
    assert triggered.status_code == 200, triggered.text
    assert sql("SELECT function, payload, owner FROM jobline.jobs") == [
        ("pipeline", {"pipeline": "publish", "payload": {"topic": "d"}}, "alice")]
    both = client.post("/api/schedules", headers=SERVICE, json={
        "name": "x", "expression": "@daily", "pipeline": "publish", "function": "echo"})
    assert "one of a function, a SQL command or a pipeline" in assert_error(both, 422, "invalid_input")["message"]
