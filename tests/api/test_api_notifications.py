"""/api/notifications and /api/notifications/subscriptions: a user reads their own events and
manages their own subscriptions only; the service reads and manages all. Hostile input is refused
with a message that names what was wrong. And /api/schedules takes max_consecutive_failures."""

from __future__ import annotations

import json

from api_support import SERVICE, as_user, assert_error, client, enqueue, server  # noqa: F401

HOOK = "https://hooks.example.com/jobline"


def record(sql, kind: str, owner: str | None, subject: str, **data) -> int:
    return sql("SELECT jobline.record_event(%s, %s, %s, %s::jsonb)",
               [kind, owner, subject, json.dumps(data)])[0][0]


def test_a_user_reads_only_their_own_events_and_the_service_reads_all(client, sql):
    mine = [record(sql, "job.failed", "alice", f"job {n}", job_id=n) for n in range(3)]
    theirs = record(sql, "job.failed", "bob", "job 9", job_id=9)
    operators = record(sql, "function.failing", None, "resize", failures=5)
    record(sql, "schedule.deactivated", "alice", "nightly", reason="3 runs in a row failed")

    alice = client.get("/api/notifications", headers=as_user("alice"), params={"kind": "job.failed", "limit": 2})
    assert alice.status_code == 200, alice.text
    page = alice.json()
    assert [n["id"] for n in page["notifications"]] == [mine[2], mine[1]]
    assert page["notifications"][0] == {**page["notifications"][0], "kind": "job.failed", "owner": "alice",
                                        "subject": "job 2", "data": {"job_id": 2}}
    rest = client.get("/api/notifications", headers=as_user("alice"),
                      params={"kind": "job.failed", "before": page["next_cursor"]}).json()
    assert [n["id"] for n in rest["notifications"]] == [mine[0]] and rest["next_cursor"] is None
    # Another owner's events, or the operators', are never a user's, even when asked for.
    assert client.get("/api/notifications", headers=as_user("alice"), params={"owner": "bob"}).json() == {
        "notifications": [], "next_cursor": None}
    assert client.get("/api/notifications", headers=as_user("carol")).json()["notifications"] == []

    everyone = client.get("/api/notifications", headers=SERVICE).json()["notifications"]
    assert {n["id"] for n in everyone} >= {theirs, operators, *mine}
    bobs = client.get("/api/notifications", headers=SERVICE, params={"owner": "bob"}).json()["notifications"]
    assert [n["id"] for n in bobs] == [theirs]
    later = client.get("/api/notifications", headers=SERVICE, params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["notifications"] == []


def test_a_user_manages_only_their_own_subscriptions(client, sql):
    made = client.post("/api/notifications/subscriptions", headers=as_user("alice"),
                       json={"url": HOOK, "events": ["job.failed"], "headers": {"X-Token": "{{owner_secret:hook}}"}})
    assert made.status_code == 201, made.text
    sub = made.json()
    assert sub["owner"] == "alice" and sub["events"] == ["job.failed"] and sub["url"] == HOOK
    bobs = client.post("/api/notifications/subscriptions", headers=as_user("bob"), json={"url": HOOK + "/bob"}).json()
    operator = client.post("/api/notifications/subscriptions", headers=SERVICE, json={"url": HOOK + "/ops"}).json()
    assert operator["owner"] is None and operator["events"] is None

    listed = client.get("/api/notifications/subscriptions", headers=as_user("alice")).json()["subscriptions"]
    assert [s["id"] for s in listed] == [sub["id"]]
    every = client.get("/api/notifications/subscriptions", headers=SERVICE).json()["subscriptions"]
    assert [s["id"] for s in every] == [sub["id"], bobs["id"], operator["id"]]

    # Bob's (and the operator's) answer alice as ones that do not exist.
    for other in (bobs["id"], operator["id"]):
        assert_error(client.delete(f"/api/notifications/subscriptions/{other}", headers=as_user("alice")),
                     404, "not_found")
    assert sql("SELECT count(*) FROM jobline.notification_subscriptions") == [(3,)]
    gone = client.delete(f"/api/notifications/subscriptions/{sub['id']}", headers=as_user("alice"))
    assert gone.status_code == 200 and gone.json()["id"] == sub["id"]
    assert client.delete(f"/api/notifications/subscriptions/{bobs['id']}", headers=SERVICE).status_code == 200
    assert [r[0] for r in sql("SELECT id FROM jobline.notification_subscriptions")] == [operator["id"]]

    # A user cannot make one for someone else.
    assert_error(client.post("/api/notifications/subscriptions", headers=as_user("alice"),
                             json={"url": HOOK, "owner": "bob"}), 403, "forbidden")


def test_hostile_subscriptions_are_refused_with_what_was_wrong(client, sql):
    cases = [
        ({"url": "ftp://files.example.com/x"}, 422, "http:// or https://"),
        ({"url": "javascript:alert(1)"}, 422, "http:// or https://"),
        # The egress policy of the http function, checked now for a URL written out.
        ({"url": "https://user:pw@hooks.example.com/"}, 422, "user:password@"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, 422, "169.254.169.254"),
        ({"url": "http://127.0.0.1:5432/"}, 422, "127.0.0.1"),
        # A secret in the path hides nothing of the host: it is checked all the same.
        ({"url": "http://169.254.169.254/latest/{{owner_secret:hook}}"}, 422, "169.254.169.254"),
        ({"url": HOOK + "\n/x"}, 422, "control character"),
        ({"url": "https://x.example.com/" + "a" * 2100}, 422, "url"),
        ({"url": HOOK, "events": ["job.exploded"]}, 422, "events"),
        ({"url": HOOK, "events": []}, 422, "events"),
        ({"url": HOOK, "events": ["job.failed", "job.failed"]}, 422, "twice"),
        ({"url": HOOK, "headers": {"Bad Name": "x"}}, 422, "not a valid header name"),
        ({"url": HOOK, "headers": {"X-A": "line\r\nInjected: yes"}}, 422, "line break"),
        ({"url": HOOK, "headers": {"X-A": "v" * 5000}}, 422, "headers"),
        ({"url": HOOK, "headers": {f"X-{n}": "v" for n in range(21)}}, 422, "headers"),
        ({"url": HOOK, "headers": {"Idempotency-Key": "mine"}}, 422, "set by the delivery itself"),
        ({"url": HOOK, "headers": {"X-A": 7}}, 422, "X-A"),
        # The other party's secret: a user may not name the operator's, the operator's has no owner.
        ({"url": HOOK, "headers": {"Authorization": "Bearer {{secret:stripe_key}}"}}, 403, "{{owner_secret:NAME}}"),
        ({"url": "{{secret:hook_url}}"}, 422, "{{owner_secret:NAME}}"),
        ({"url": HOOK + "?k={{secret:stripe_key}}"}, 403, "operator's secret"),
        ({"url": HOOK, "surprise": True}, 422, "surprise"),
    ]
    for body, status, message in cases:
        code = {422: "invalid_input", 403: "forbidden"}[status]
        if "@" in body["url"] or "169.254" in body["url"] or "127.0.0.1" in body["url"]:
            code = "destination_blocked"  # a kind of invalid input, with its own code
        error = assert_error(client.post("/api/notifications/subscriptions", headers=as_user("alice"), json=body),
                             status, code)
        assert message in error["message"], (body, error)
    operator_cases = [({"url": HOOK, "headers": {"X-T": "{{owner_secret:t}}"}}, "{{secret:NAME}}"),
                      ({"url": "{{owner_secret:hook}}"}, "{{secret:NAME}}")]
    for body, message in operator_cases:
        error = assert_error(client.post("/api/notifications/subscriptions", headers=SERVICE, json=body),
                             422, "invalid_input")
        assert message in error["message"], (body, error)
    assert sql("SELECT count(*) FROM jobline.notification_subscriptions") == [(0,)]
    # The operator's own secret is the operator's to use.
    ok = client.post("/api/notifications/subscriptions", headers=SERVICE,
                     json={"url": "{{secret:hook_url}}", "headers": {"Authorization": "Bearer {{secret:t}}"}})
    assert ok.status_code == 201, ok.text


def test_a_user_holds_at_most_twenty_subscriptions(client, sql):
    for n in range(20):
        assert client.post("/api/notifications/subscriptions", headers=as_user("alice"),
                           json={"url": f"{HOOK}/{n}"}).status_code == 201
    error = assert_error(client.post("/api/notifications/subscriptions", headers=as_user("alice"),
                                     json={"url": HOOK}), 422, "invalid_input")
    assert "20 subscriptions already" in error["message"]
    assert client.post("/api/notifications/subscriptions", headers=as_user("bob"), json={"url": HOOK}).status_code == 201


def test_notification_listing_refuses_bad_filters(client):
    assert_error(client.get("/api/notifications", headers=SERVICE, params={"kind": "job.exploded"}),
                 422, "invalid_input")
    assert_error(client.get("/api/notifications", headers=SERVICE, params={"since": "yesterday"}),
                 422, "invalid_input")
    assert_error(client.get("/api/notifications", headers=SERVICE, params={"limit": 0}), 422, "invalid_input")
    assert_error(client.get("/api/notifications"), 401, "unauthenticated")


def test_a_schedule_takes_max_consecutive_failures_and_shows_its_deactivation(client, sql):
    made = client.post("/api/schedules", headers=as_user("alice"),
                       json={"name": "nightly", "expression": "0 3 * * *", "function": "ping",
                             "max_consecutive_failures": 3})
    assert made.status_code == 201, made.text
    assert made.json()["max_consecutive_failures"] == 3 and made.json()["deactivated_at"] is None
    for bad in (0, 1001, "3"):
        assert_error(client.post("/api/schedules", headers=as_user("alice"),
                                 json={"name": "other", "expression": "0 3 * * *", "function": "ping",
                                       "max_consecutive_failures": bad}), 422, "invalid_input")
    sql("UPDATE jobline.schedules SET active = false, deactivated_at = now(), deactivated_reason = 'three failed'")
    shown = client.get("/api/schedules/nightly", headers=as_user("alice")).json()
    assert shown["active"] is False and shown["deactivated_reason"] == "three failed" and shown["deactivated_at"]
    resumed = client.post("/api/schedules/nightly/resume", headers=as_user("alice")).json()
    assert resumed["active"] is True and resumed["deactivated_at"] is None and resumed["deactivated_reason"] is None


def test_a_remote_workers_final_fail_notifies_the_tasks_owner(client, sql):
    enqueue(sql, "render", "alice")
    task = client.post("/functions/v1/claim-next-task", headers=as_user("alice"), json={}).json()
    failed = client.post(f"/api/tasks/{task['task_id']}/fail", headers=as_user("alice"),
                         json={"lease_token": task["lease_token"], "error": "GPU melted", "retryable": False})
    assert failed.json()["status"] == "failed"
    [event] = client.get("/api/notifications", headers=as_user("alice")).json()["notifications"]
    assert event["kind"] == "job.failed" and event["subject"] == f"job {task['task_id']}"
    assert event["data"]["function"] == "render" and "GPU melted" in event["data"]["error"]
    assert client.get("/api/notifications", headers=as_user("bob")).json()["notifications"] == []
