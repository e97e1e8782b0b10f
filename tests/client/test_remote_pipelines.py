"""A pipeline whose steps are remote task types, run by `jobline worker --remote` as a real
process against a real `jobline serve`: each step gets its upstream results in the claim
response (`upstream`), and a Snooze is reported over POST /api/tasks/{id}/snooze without
spending an attempt."""

from __future__ import annotations

import json

import httpx

from conftest import eventually, start_jobline
from remote_support import SERVICE_KEY, server  # noqa: F401

STEPS = [{"name": "start", "function": "rp-start"},
         {"name": "left", "function": "rp-branch", "after": ["start"]},
         {"name": "right", "function": "rp-branch", "after": ["start"]},
         {"name": "join", "function": "rp-join", "after": ["left", "right"], "max_attempts": 1}]


async def test_a_remote_worker_gets_upstream_results_and_snoozes(server, sql, processes):
    sql("INSERT INTO jobline.pipelines (name, steps) VALUES ('remote-run', %s)", [json.dumps(STEPS)])
    run_id = sql("SELECT jobline.start_pipeline('remote-run', '{\"seed\": 21}', 'alice')")[0][0]
    worker = start_jobline(["--app", "apps.remote_pipeline:app", "worker", "--remote", server.url], "",
                           JOBLINE_TOKEN=SERVICE_KEY, JOBLINE_SERVICE_KEY="", JOBLINE_JWT_SECRET="")
    processes.append(worker)
    await eventually(lambda: sql("SELECT status FROM jobline.pipeline_runs WHERE id = %s", [run_id])[0][0]
                     != "running", timeout=60)
    results = dict(sql("SELECT step, result FROM jobline.jobs WHERE pipeline_run_id = %s", [run_id]))
    assert results["start"] == {"seed": 21, "upstream": {}}
    assert results["left"] == results["right"] == {"seen": 42}
    assert results["join"] == {"upstream": {"left": {"seen": 42}, "right": {"seen": 42}}, "attempt": 3}
    outcomes = sql("SELECT a.outcome FROM jobline.attempts a JOIN jobline.jobs j ON j.id = a.job_id "
                   "WHERE j.step = 'join' ORDER BY a.attempt")
    assert [o for (o,) in outcomes] == ["snoozed", "snoozed", "succeeded"]
    assert sql("SELECT status FROM jobline.pipeline_runs WHERE id = %s", [run_id]) == [("succeeded",)]


def test_the_claim_response_carries_upstream_and_snooze_checks_its_input(server, sql):
    sql("INSERT INTO jobline.pipelines (name, steps) VALUES ('two', %s)",
        [json.dumps([{"name": "a", "function": "t-a"}, {"name": "b", "function": "t-b", "after": ["a"]}])])
    sql("SELECT jobline.start_pipeline('two')")
    plain = sql("SELECT jobline.enqueue('t-plain')")[0][0]
    auth = {"Authorization": f"Bearer {SERVICE_KEY}"}
    claim = httpx.post(f"{server.url}/functions/v1/claim-next-task", json={"task_types": ["t-a"]}, headers=auth)
    task = claim.json()
    assert claim.status_code == 200 and task["upstream"] == {}
    bad = httpx.post(f"{server.url}/api/tasks/{task['task_id']}/snooze",
                     json={"lease_token": task["lease_token"], "seconds": -1}, headers=auth)
    assert bad.status_code == 422 and bad.json()["error"]["code"]
    done = httpx.post(f"{server.url}/api/tasks/{task['task_id']}/complete",
                      json={"lease_token": task["lease_token"], "result": {"made": "A"}}, headers=auth)
    assert done.status_code == 200
    second = httpx.post(f"{server.url}/functions/v1/claim-next-task", json={"task_types": ["t-b"]}, headers=auth)
    assert second.json()["upstream"] == {"a": {"made": "A"}}
    snoozed = httpx.post(f"{server.url}/api/tasks/{second.json()['task_id']}/snooze",
                         json={"lease_token": second.json()["lease_token"], "seconds": 3600}, headers=auth)
    assert snoozed.json() == {"task_id": second.json()["task_id"], "status": "pending"}
    assert sql("SELECT attempts, max_attempts, run_at > now() + interval '50 minutes' FROM jobline.jobs "
               "WHERE step = 'b'") == [(1, 4, True)]
    ordinary = httpx.post(f"{server.url}/functions/v1/claim-next-task", json={"task_types": ["t-plain"]}, headers=auth)
    assert ordinary.json()["task_id"] == plain and ordinary.json()["upstream"] is None
