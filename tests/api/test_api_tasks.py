"""claim-next-task (seed 004's test matrix) and the reports of remote workers, against a real
server on 127.0.0.1 and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from api_support import SERVICE, as_user, assert_error, client, enqueue, server  # noqa: F401

CLAIM = "/functions/v1/claim-next-task"


def claim(client, headers, **body) -> httpx.Response:
    return client.post(CLAIM, headers=headers, json=body or None)


# -- seed 004's matrix ------------------------------------------------------------------------


def test_no_tasks_is_204_with_no_body(client):
    response = claim(client, as_user("alice"))
    assert (response.status_code, response.content) == (204, b"")


def test_a_user_claims_their_own_task_and_it_is_claimed(client, sql):
    task_id = enqueue(sql, "render", "alice", payload='{"frame": 7}')
    response = claim(client, as_user("alice"))
    assert response.status_code == 200
    task = response.json()
    assert set(task) == {"task_id", "params", "task_type", "project_id", "attempt", "max_attempts", "lease_token",
                         "lease_until", "upstream"}
    assert (task["task_id"], task["params"], task["task_type"], task["project_id"], task["attempt"]) == (
        task_id, {"frame": 7}, "render", "alice", 1)
    assert sql("SELECT status, worker_id = %s, lease_until > now() + interval '250 seconds' FROM jobline.jobs",
               [task["lease_token"]]) == [("running", True, True)]
    assert claim(client, as_user("alice")).status_code == 204


def test_another_users_task_is_not_claimable(client, sql):
    enqueue(sql, "render", "bob")
    assert claim(client, as_user("alice")).status_code == 204
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]


def test_the_service_key_claims_the_oldest_overall_by_priority_then_run_at_then_creation(client, sql):
    newest = enqueue(sql, "render", "carol")
    earliest = enqueue(sql, "render", "bob", run_at="2020-01-01T00:00:00Z")
    urgent = enqueue(sql, "render", "alice", priority=5)
    unowned = enqueue(sql, "render", None, run_at="2021-01-01T00:00:00Z")
    order = [claim(client, SERVICE).json()["task_id"] for _ in range(4)]
    assert order == [urgent, earliest, unowned, newest]
    assert claim(client, SERVICE).status_code == 204


async def test_two_concurrent_claimers_each_get_a_distinct_task(server, sql):
    ids = [enqueue(sql, "render", "alice") for _ in range(20)]

    async def drain(http: httpx.AsyncClient) -> list[int]:
        got = []
        while (response := await http.post(CLAIM, headers=as_user("alice"))).status_code == 200:
            got.append(response.json()["task_id"])
        assert response.status_code == 204
        return got

    async with httpx.AsyncClient(base_url=server.url) as one, httpx.AsyncClient(base_url=server.url) as two:
        first, second = await asyncio.gather(drain(one), drain(two))
    assert not set(first) & set(second)
    assert sorted(first + second) == ids
    assert first and second  # both really took part


# -- the request body ---------------------------------------------------------------------------


def test_the_body_may_be_empty_an_empty_object_or_name_task_types(client, sql):
    render, resize = enqueue(sql, "render", "alice"), enqueue(sql, "resize", "alice")
    extra = enqueue(sql, "render", "alice")
    assert client.post(CLAIM, headers=as_user("alice"), json={"task_types": ["resize"]}).json()["task_id"] == resize
    assert client.post(CLAIM, headers=as_user("alice"), content=b"").json()["task_id"] == render
    assert client.post(CLAIM, headers={**as_user("alice"), "Content-Type": "application/json"},
                       content=b"{}").json()["task_id"] == extra


def test_without_task_types_only_remote_task_types_are_handed_out(client, sql):
    enqueue(sql, "sql", None, payload='{"command": "SELECT 1"}')
    assert claim(client, SERVICE).status_code == 204
    assert client.post(CLAIM, headers=SERVICE, json={"task_types": ["sql"]}).json()["task_type"] == "sql"


def test_a_body_naming_another_owner_is_refused_and_claims_nothing(client, sql):
    enqueue(sql, "render", "bob")
    assert_error(client.post(CLAIM, headers=as_user("alice"), json={"owner": "bob"}), 422, "invalid_input")
    assert_error(client.post(CLAIM, headers=as_user("alice"), json={"task_types": []}), 422, "invalid_input")
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]


# -- batch claims (limit) -----------------------------------------------------------------------


def test_a_batch_claim_answers_tasks_in_claim_order_under_one_lease(client, sql):
    late = enqueue(sql, "render", "alice", run_at="2021-01-01T00:00:00Z")
    urgent = enqueue(sql, "render", "alice", priority=5)
    early = enqueue(sql, "render", "alice", run_at="2020-01-01T00:00:00Z")
    left = enqueue(sql, "render", "alice")
    response = claim(client, as_user("alice"), limit=3)
    assert response.status_code == 200, response.text
    tasks = response.json()["tasks"]
    assert [t["task_id"] for t in tasks] == [urgent, early, late]
    assert set(tasks[0]) == {"task_id", "params", "task_type", "project_id", "attempt", "max_attempts",
                             "lease_token", "lease_until", "upstream"}
    assert len({t["lease_token"] for t in tasks}) == 1
    assert sql("SELECT id FROM jobline.jobs WHERE status = 'pending'") == [(left,)]
    # Each task is reported on its own, with the shared token.
    done = client.post(f"/api/tasks/{early}/complete", headers=as_user("alice"),
                       json={"lease_token": tasks[1]["lease_token"], "result": 1})
    assert done.json() == {"task_id": early, "status": "succeeded"}
    assert [t["task_id"] for t in claim(client, as_user("alice"), limit=100).json()["tasks"]] == [left]


def test_a_batch_claim_with_nothing_claimable_is_200_with_an_empty_list(client, sql):
    response = claim(client, SERVICE, limit=10)
    assert (response.status_code, response.json()) == (200, {"tasks": []})


def test_a_users_batch_holds_only_their_own_tasks(client, sql):
    mine = [enqueue(sql, "render", "alice") for _ in range(3)]
    theirs = [enqueue(sql, "render", "bob") for _ in range(3)]
    assert [t["task_id"] for t in claim(client, as_user("alice"), limit=10).json()["tasks"]] == mine
    assert sql("SELECT id FROM jobline.jobs WHERE status = 'pending' ORDER BY id") == [(i,) for i in theirs]
    # The service's batch spans owners.
    assert [t["task_id"] for t in claim(client, SERVICE, limit=10).json()["tasks"]] == theirs


def test_a_batch_claim_skips_paused_queues_and_respects_task_types(client, sql):
    paused = [enqueue(sql, "render", "alice", queue="gpu") for _ in range(2)]
    free = enqueue(sql, "render", "alice")
    other = enqueue(sql, "resize", "alice")
    enqueue(sql, "sql", None, payload='{"command": "SELECT 1"}')  # built-in: never without task_types
    assert client.post("/api/queues/gpu/pause", headers=SERVICE).status_code == 200
    got = claim(client, SERVICE, limit=10, task_types=["render"]).json()["tasks"]
    assert [t["task_id"] for t in got] == [free]
    assert [t["task_id"] for t in claim(client, SERVICE, limit=10).json()["tasks"]] == [other]
    assert sql("SELECT id FROM jobline.jobs WHERE status = 'pending' AND queue = 'gpu' ORDER BY id") == [
        (i,) for i in paused]


@pytest.mark.parametrize("limit", [0, 101, -1, "5", 2.5, True, [3]])
def test_a_limit_outside_1_to_100_or_not_a_whole_number_is_422_and_claims_nothing(client, sql, limit):
    enqueue(sql, "render", "alice")
    response = claim(client, as_user("alice"), limit=limit)
    assert_error(response, 422, "invalid_input")
    assert "body field limit" in response.json()["error"]["message"]
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]


def test_a_null_limit_is_todays_single_claim(client, sql):
    task_id = enqueue(sql, "render", "alice")
    response = client.post(CLAIM, headers=as_user("alice"), json={"limit": None})
    assert response.json()["task_id"] == task_id
    assert client.post(CLAIM, headers=as_user("alice"), json={"limit": None}).status_code == 204


async def test_concurrent_batch_claims_never_hand_out_a_task_twice(server, sql):
    ids = [enqueue(sql, "render", "alice") for _ in range(200)]

    async def drain(http: httpx.AsyncClient) -> list[int]:
        got = []
        while tasks := (await http.post(CLAIM, headers=as_user("alice"), json={"limit": 7})).json()["tasks"]:
            got.extend(t["task_id"] for t in tasks)
        return got

    clients = [httpx.AsyncClient(base_url=server.url) for _ in range(4)]
    try:
        claimed = await asyncio.gather(*(drain(http) for http in clients))
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))
    counts = Counter(i for batch in claimed for i in batch)
    assert sorted(counts) == ids and set(counts.values()) == {1}


# -- reports ------------------------------------------------------------------------------------


def test_complete_fail_and_heartbeat(client, sql):
    enqueue(sql, "render", "alice", max_attempts=2)
    task = claim(client, as_user("alice")).json()
    token, url = task["lease_token"], f"/api/tasks/{task['task_id']}"
    beat = client.post(f"{url}/heartbeat", headers=as_user("alice"), json={"lease_token": token})
    assert beat.status_code == 200 and beat.json()["task_id"] == task["task_id"]
    assert beat.json()["lease_until"] >= task["lease_until"]
    failed = client.post(f"{url}/fail", headers=as_user("alice"), json={"lease_token": token, "error": "GPU busy",
                                                                         "retry_in": 0})
    assert failed.json() == {"task_id": task["task_id"], "status": "pending"}
    again = claim(client, as_user("alice")).json()
    assert again["attempt"] == 2
    done = client.post(f"{url}/complete", headers=as_user("alice"),
                       json={"lease_token": again["lease_token"], "result": {"frames": 12}})
    assert done.json() == {"task_id": task["task_id"], "status": "succeeded"}
    assert sql("SELECT status, result FROM jobline.jobs") == [("succeeded", {"frames": 12})]


def test_a_non_retryable_failure_is_final(client, sql):
    enqueue(sql, "render", None)
    task = claim(client, SERVICE).json()
    response = client.post(f"/api/tasks/{task['task_id']}/fail", headers=SERVICE,
                           json={"lease_token": task["lease_token"], "error": "bad input", "retryable": False})
    assert response.json() == {"task_id": task["task_id"], "status": "failed"}


def test_a_user_reporting_on_another_users_task_gets_404_like_a_missing_task(client, sql):
    enqueue(sql, "render", "alice")
    task = claim(client, as_user("alice")).json()
    body = {"lease_token": task["lease_token"], "result": "stolen"}
    theirs = client.post(f"/api/tasks/{task['task_id']}/complete", headers=as_user("bob"), json=body)
    missing = client.post("/api/tasks/999999/complete", headers=as_user("bob"), json=body)
    assert_error(theirs, 404, "job_not_found")
    assert theirs.content == missing.content
    for action, extra in (("fail", {"error": "x"}), ("heartbeat", {})):
        response = client.post(f"/api/tasks/{task['task_id']}/{action}", headers=as_user("bob"),
                               json={"lease_token": task["lease_token"], **extra})
        assert (response.status_code, response.content) == (404, missing.content)
    assert sql("SELECT status, result FROM jobline.jobs") == [("running", None)]


def test_a_stale_lease_is_409_and_changes_nothing(client, sql):
    enqueue(sql, "render", "alice")
    stale = claim(client, as_user("alice")).json()
    # The lease expired and the task was rescued (the state the maintenance role leaves).
    sql("UPDATE jobline.jobs SET status = 'pending', worker_id = NULL, lease_until = NULL")
    fresh = claim(client, as_user("alice")).json()
    url = f"/api/tasks/{stale['task_id']}"
    for action, extra in (("complete", {"result": 1}), ("fail", {"error": "late"}), ("heartbeat", {})):
        response = client.post(f"{url}/{action}", headers=as_user("alice"), json={"lease_token": stale["lease_token"],
                                                                                  **extra})
        assert "no longer held" in assert_error(response, 409, "lease_lost")["message"]
    assert client.post(f"{url}/complete", headers=as_user("alice"),
                       json={"lease_token": fresh["lease_token"], "result": "fresh"}).json()["status"] == "succeeded"
    assert sql("SELECT result FROM jobline.jobs WHERE id = %s", [stale["task_id"]]) == [("fresh",)]


def test_a_malformed_lease_token_is_422(client, sql):
    enqueue(sql, "render", "alice")
    task = claim(client, as_user("alice")).json()
    response = client.post(f"/api/tasks/{task['task_id']}/complete", headers=as_user("alice"),
                           json={"lease_token": "guess"})
    assert "lease_token must be" in assert_error(response, 422, "invalid_input")["message"]


async def test_the_server_rescues_expired_remote_leases_itself(server, sql):
    from conftest import eventually

    enqueue(sql, "render", "alice")
    with httpx.Client(base_url=server.url) as http:
        task = http.post(CLAIM, headers=as_user("alice")).json()
    sql("UPDATE jobline.jobs SET lease_until = now() - interval '1 second'")
    await eventually(lambda: sql("SELECT status FROM jobline.jobs") == [("pending",)], timeout=15)
    assert sql("SELECT outcome FROM jobline.attempts") == [("lost",)]
    with httpx.Client(base_url=server.url) as http:
        late = http.post(f"/api/tasks/{task['task_id']}/complete", headers=as_user("alice"),
                         json={"lease_token": task["lease_token"]})
    assert_error(late, 409, "lease_lost")


# -- batch reports ------------------------------------------------------------------------------


def test_a_batch_complete_records_each_task_and_reports_lost_and_foreign_ones(client, sql):
    ids = [enqueue(sql, "render", "alice") for _ in range(3)]
    foreign = enqueue(sql, "render", "bob")
    tasks = claim(client, as_user("alice"), limit=3).json()["tasks"]
    bobs = claim(client, as_user("bob")).json()
    sql("UPDATE jobline.jobs SET status = 'pending', worker_id = NULL WHERE id = %s", [ids[2]])  # rescued
    reports = [{"task_id": t["task_id"], "lease_token": t["lease_token"], "result": {"n": n}}
               for n, t in enumerate(tasks)]
    reports.append({"task_id": foreign, "lease_token": bobs["lease_token"]})
    response = client.post("/api/tasks/complete", headers=as_user("alice"), json={"reports": reports})
    assert response.status_code == 200, response.text
    assert response.json() == {"reports": [{"task_id": ids[0], "status": "succeeded"},
                                           {"task_id": ids[1], "status": "succeeded"},
                                           {"task_id": ids[2], "status": "lease_lost"},
                                           {"task_id": foreign, "status": "not_found"}]}
    assert sql("SELECT id, status, result FROM jobline.jobs ORDER BY id") == [
        (ids[0], "succeeded", {"n": 0}), (ids[1], "succeeded", {"n": 1}), (ids[2], "pending", None),
        (foreign, "running", None)]
    assert sql("SELECT job_id, outcome FROM jobline.attempts ORDER BY job_id") == [(ids[0], "succeeded"),
                                                                                  (ids[1], "succeeded")]
    # Sent again, nothing changes: the leases are spent.
    again = client.post("/api/tasks/complete", headers=as_user("alice"), json={"reports": reports[:2]}).json()
    assert [r["status"] for r in again["reports"]] == ["lease_lost", "lease_lost"]


@pytest.mark.parametrize("body", [{"reports": []}, {"reports": [{"task_id": 1, "lease_token": "x"}] * 101},
                                  {"reports": [{"task_id": 0, "lease_token": "x"}]}, {"reports": "all"}, {}])
def test_a_malformed_batch_complete_is_422(client, body):
    assert_error(client.post("/api/tasks/complete", headers=SERVICE, json=body), 422, "invalid_input")


def test_a_batch_complete_naming_a_task_twice_is_422_and_records_nothing(client, sql):
    task_id = enqueue(sql, "render", "alice")
    task = claim(client, SERVICE).json()
    report = {"task_id": task_id, "lease_token": task["lease_token"]}
    response = client.post("/api/tasks/complete", headers=SERVICE, json={"reports": [report, report]})
    assert_error(response, 422, "invalid_input")
    assert "more than once" in response.json()["error"]["message"]
    assert sql("SELECT status FROM jobline.jobs") == [("running",)]
