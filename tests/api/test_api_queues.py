"""/api/queues: anyone lists the queues of their own jobs with their pause state; only the
service pauses and resumes one, for every worker."""

from __future__ import annotations

from api_support import SERVICE, as_user, assert_error, client, enqueue, server  # noqa: F401


def test_the_service_pauses_and_resumes_a_queue_and_a_user_sees_it_paused(client, sql):
    enqueue(sql, "ping", "alice", queue="emails")
    enqueue(sql, "ping", "bob", queue="reports")
    paused = client.post("/api/queues/emails/pause", headers=SERVICE, json={"reason": "provider outage"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["pause_reason"] == "provider outage"
    assert sql("SELECT queue, reason FROM jobline.queue_pauses") == [("emails", "provider outage")]

    client.post("/api/queues/tenant-bob-only/pause", headers=SERVICE)  # no job of alice's: she never sees it
    listed = client.get("/api/queues", headers=as_user("alice")).json()["queues"]
    assert [(q["queue"], q["paused"], q["pending"]) for q in listed] == [("emails", True, 1)]
    client.post("/api/queues/tenant-bob-only/resume", headers=SERVICE)
    everyone = client.get("/api/queues", headers=SERVICE).json()["queues"]
    assert [(q["queue"], q["paused"]) for q in everyone] == [("emails", True), ("reports", False)]

    resumed = client.post("/api/queues/emails/resume", headers=SERVICE)
    assert resumed.json() == {"queue": "emails", "paused": False, "was_paused": True}
    assert sql("SELECT count(*) FROM jobline.queue_pauses") == [(0,)]


def test_a_queue_name_with_a_slash_or_unicode_is_the_rest_of_the_path(client, sql):
    assert client.post("/api/queues/tenant/42 émails/pause", headers=SERVICE).status_code == 200
    assert sql("SELECT queue FROM jobline.queue_pauses") == [("tenant/42 émails",)]
    assert client.post("/api/queues/tenant%2F42%20%C3%A9mails/resume", headers=SERVICE).json()["was_paused"] is True


def test_a_user_cannot_pause_or_resume_a_queue(client, sql):
    for action in ("pause", "resume"):
        assert_error(client.post(f"/api/queues/default/{action}", headers=as_user("alice")), 403, "forbidden")
    assert sql("SELECT count(*) FROM jobline.queue_pauses") == [(0,)]


def test_a_malformed_pause_is_refused_with_what_was_wrong(client, sql):
    cases = [("/api/queues/" + "q" * 101 + "/pause", None, "queue must be 1 to 100 characters"),
             ("/api/queues/%20padded/pause", None, "leading or trailing spaces"),
             ("/api/queues/two%0Alines/pause", None, "contains a control character"),
             ("/api/queues/emails/pause", {"reason": "r" * 501}, "reason"),
             ("/api/queues/emails/pause", {"reason": 7}, "reason"),
             ("/api/queues/emails/pause", {"why": "x"}, "why")]
    for path, body, message in cases:
        error = assert_error(client.post(path, headers=SERVICE, json=body), 422, "invalid_input")
        assert message in error["message"], (path, error)
    assert_error(client.post("/api/queues/emails/pause"), 401, "unauthenticated")
    assert sql("SELECT count(*) FROM jobline.queue_pauses") == [(0,)]
