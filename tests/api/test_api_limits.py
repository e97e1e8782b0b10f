"""/api/limits: anyone reads the flow-control limits; only the service sets or removes one
(a limit holds back every owner's jobs). Bodies are validated by the one rule (jobline.limit)."""

from __future__ import annotations

from api_support import SERVICE, as_user, assert_error, client, enqueue, server  # noqa: F401


def test_the_service_sets_replaces_and_removes_a_limit_and_a_user_reads_it(client, sql):
    put = client.put("/api/limits/function/post", headers=SERVICE,
                     json={"per_key": True, "concurrency": 1, "rate_count": 30, "rate_seconds": 60})
    assert put.status_code == 200, put.text
    assert {k: v for k, v in put.json().items() if k != "updated_at"} == {
        "scope": "function", "target": "post", "per_key": True, "concurrency": 1, "rate_count": 30,
        "rate_seconds": 60.0, "source": "runtime"}
    replaced = client.put("/api/limits/function/post", headers=SERVICE, json={"per_key": True, "concurrency": 2})
    assert replaced.json()["concurrency"] == 2 and replaced.json()["rate_count"] is None
    assert client.put("/api/limits/queue/tenant/42 social", headers=SERVICE, json={"concurrency": 5}).status_code == 200
    client.put("/api/limits/queue/bobs-only", headers=SERVICE, json={"concurrency": 1})
    enqueue(sql, "post", "alice")
    enqueue(sql, "render", "alice", queue="tenant/42 social")
    enqueue(sql, "post", "bob", queue="bobs-only")
    listed = client.get("/api/limits", headers=as_user("alice"))
    assert listed.status_code == 200
    # Alice sees the limits on her jobs' function and queue, never bob's queue's name.
    assert [(row["scope"], row["target"], row["concurrency"]) for row in listed.json()["limits"]] == [
        ("function", "post", 2), ("queue", "tenant/42 social", 5)]
    assert len(client.get("/api/limits", headers=SERVICE).json()["limits"]) == 3
    client.delete("/api/limits/queue/bobs-only", headers=SERVICE)

    assert_error(client.delete("/api/limits/function/post", headers=SERVICE), 404, "not_found")  # not per key
    removed = client.delete("/api/limits/function/post?per_key=true", headers=SERVICE)
    assert removed.status_code == 200 and removed.json()["concurrency"] == 2
    assert sql("SELECT scope, target FROM jobline.limits") == [("queue", "tenant/42 social")]


def test_a_user_cannot_set_or_remove_a_limit(client, sql):
    client.put("/api/limits/queue/social", headers=SERVICE, json={"concurrency": 5})
    alice = as_user("alice")
    assert_error(client.put("/api/limits/queue/social", headers=alice, json={"concurrency": 500}), 403, "forbidden")
    assert_error(client.put("/api/limits/function/mine", headers=alice, json={"concurrency": 1}), 403, "forbidden")
    assert_error(client.delete("/api/limits/queue/social", headers=alice), 403, "forbidden")
    assert_error(client.get("/api/limits"), 401, "unauthenticated")
    assert sql("SELECT target, concurrency FROM jobline.limits") == [("social", 5)]


def test_a_malformed_limit_is_refused_with_what_was_wrong(client, sql):
    cases = [("/api/limits/table/post", {"concurrency": 1}, "scope must be 'function' or 'queue'"),
             ("/api/limits/function/post", {}, "needs a concurrency, a rate, or both"),
             ("/api/limits/function/post", {"concurrency": 0}, "concurrency must be between 1 and 100000"),
             ("/api/limits/function/post", {"concurrency": "3"}, "concurrency"),
             ("/api/limits/function/post", {"rate_count": 5}, "needs both a count and a period"),
             ("/api/limits/function/post", {"rate_count": 5, "rate_seconds": -1}, "period must be between"),
             ("/api/limits/function/post", {"concurrency": 1, "burst": 3}, "burst"),
             ("/api/limits/function/%20padded", {"concurrency": 1}, "leading or trailing spaces"),
             ("/api/limits/queue/" + "q" * 101, {"concurrency": 1}, "queue must be 1 to 100 characters")]
    for path, body, message in cases:
        error = assert_error(client.put(path, headers=SERVICE, json=body), 422, "invalid_input")
        assert message in error["message"], (path, error)
    assert sql("SELECT count(*) FROM jobline.limits") == [(0,)]


def test_a_job_enqueued_over_http_carries_its_concurrency_key(client, sql):
    made = client.post("/api/jobs", headers=SERVICE, json={"function": "ping", "owner": "alice",
                                                           "concurrency_key": "acct-7"})
    assert made.status_code == 201, made.text
    assert made.json()["concurrency_key"] == "acct-7"
    assert sql("SELECT concurrency_key FROM jobline.jobs") == [("acct-7",)]
    # A key is shared by every owner's jobs: a user who could name one could hold another's slot.
    refused = client.post("/api/jobs", headers=as_user("bob"), json={"function": "ping", "concurrency_key": "acct-7"})
    assert "setting a concurrency_key needs the service key" in assert_error(refused, 403, "forbidden")["message"]
    assert sql("SELECT count(*) FROM jobline.jobs") == [(1,)]
    bad = client.post("/api/jobs", headers=SERVICE, json={"function": "ping", "concurrency_key": ""})
    assert "concurrency_key" in assert_error(bad, 422, "invalid_input")["message"]


def test_claim_next_task_honours_a_limit_per_key(client, sql):
    """The remote claim counts against the same limits as in-process workers (0019)."""
    client.put("/api/limits/function/render", headers=SERVICE, json={"per_key": True, "concurrency": 1})
    ids = [enqueue(sql, "render", "alice", concurrency_key=key) for key in ("scene-1", "scene-1", "scene-2")]
    claimed = [client.post("/functions/v1/claim-next-task", headers=as_user("alice")) for _ in range(3)]
    assert [r.status_code for r in claimed] == [200, 200, 204]
    assert [r.json()["task_id"] for r in claimed[:2]] == [ids[0], ids[2]]
    assert sql("SELECT attempts FROM jobline.jobs WHERE id = %s", [ids[1]]) == [(0,)]
    done = client.post(f"/api/tasks/{ids[0]}/complete", headers=as_user("alice"),
                       json={"lease_token": claimed[0].json()["lease_token"], "result": {}})
    assert done.status_code == 200, done.text
    assert client.post("/functions/v1/claim-next-task", headers=as_user("alice")).json()["task_id"] == ids[1]
