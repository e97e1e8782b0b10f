"""/api/schedules against a running server: a user's schedules are their own and of their own
functions; the service sees and steers all; bad definitions are 422 naming the bad part."""

from __future__ import annotations

from api_support import SERVICE, as_user, assert_error, client, server  # noqa: F401

ALICE, BOB = as_user("alice"), as_user("bob")


def add(client, headers, **body):
    return client.post("/api/schedules", headers=headers, json={"expression": "0 3 * * SUN", **body})


def test_a_user_adds_lists_steers_and_removes_their_own_schedules(client, sql):
    made = add(client, ALICE, name="weekly", function="render", payload={"size": 2}, timezone="Europe/London")
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert (schedule["owner"], schedule["timezone"], schedule["source"]) == ("alice", "Europe/London", "runtime")
    assert schedule["next_run"] and schedule["last_run"] is None
    assert add(client, BOB, name="bobs", function="render").status_code == 201
    assert [s["name"] for s in client.get("/api/schedules", headers=ALICE).json()["schedules"]] == ["weekly"]
    assert len(client.get("/api/schedules", headers=SERVICE).json()["schedules"]) == 2

    assert client.post("/api/schedules/weekly/pause", headers=ALICE).json()["next_run"] is None
    assert client.post(f"/api/schedules/{schedule['id']}/resume", headers=ALICE).json()["active"] is True
    triggered = client.post("/api/schedules/weekly/trigger", headers=ALICE).json()
    assert sql("SELECT owner, payload FROM jobline.jobs WHERE id = %s", [triggered["job_id"]]) == [
        ("alice", {"size": 2})]
    runs = client.get("/api/schedules/weekly/runs", headers=ALICE).json()
    assert [(r["status"], r["job_id"], r["outcome"]) for r in runs["runs"]] == [
        ("triggered", triggered["job_id"], "pending")]
    assert client.get("/api/schedules/weekly", headers=ALICE).json()["last_run"] is None  # show: no lateral run
    assert client.delete("/api/schedules/weekly", headers=ALICE).json() == {
        "id": schedule["id"], "name": "weekly", "removed": True}
    assert sql("SELECT name FROM jobline.schedules") == [("bobs",)]


def test_a_user_cannot_schedule_for_others_nor_sql_nor_http(client, sql):
    assert_error(add(client, ALICE, name="x", function="render", owner="bob"), 403, "forbidden")
    assert_error(add(client, ALICE, name="x", sql="DELETE FROM users"), 403, "forbidden")
    assert_error(add(client, ALICE, name="x", function="http", payload={"url": "https://example.com"}), 403,
                 "forbidden")
    assert sql("SELECT count(*) FROM jobline.schedules") == [(0,)]
    assert add(client, SERVICE, name="rollup", sql="SELECT 1", owner="ops").status_code == 201


def test_another_users_schedule_by_id_answers_as_a_missing_one(client):
    theirs = add(client, ALICE, name="a", function="render").json()["id"]
    for method, path in (("GET", "/api/schedules/{}"), ("POST", "/api/schedules/{}/pause"),
                         ("DELETE", "/api/schedules/{}")):
        mine = client.request(method, path.format(theirs), headers=BOB)
        missing = client.request(method, path.format(theirs + 1000), headers=BOB)
        assert mine.status_code == 404 and mine.content == missing.content


def test_bad_definitions_are_refused_naming_the_bad_part_and_store_nothing(client, sql):
    cases = [({"name": "x", "function": "f", "expression": "0 3 * * FUNDAY"}, "day-of-week field 'FUNDAY'"),
             ({"name": "x", "function": "f", "timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
             ({"name": "x"}, "needs a target"),
             ({"name": "x", "function": "f", "overlap": "queue"}, "overlap"),
             ({"name": "x", "function": "f", "catch_up_max": 0}, "catch_up_max"),
             ({"name": "x", "function": "f", "colour": "red"}, "colour")]
    for body, message in cases:
        refused = client.post("/api/schedules", headers=SERVICE, json={"expression": "@daily", **body})
        assert message in assert_error(refused, 422, "invalid_input")["message"], (body, refused.text)
    add(client, SERVICE, name="kept", function="f")
    assert_error(add(client, SERVICE, name="kept", function="g"), 409, "conflict")
    assert add(client, SERVICE, name="kept", function="g", replace=True).json()["function"] == "g"
    assert sql("SELECT name, function FROM jobline.schedules") == [("kept", "g")]


def test_a_user_cannot_take_over_another_owners_schedule_by_name(client, sql):
    assert add(client, ALICE, name="nightly", function="render").status_code == 201
    assert add(client, SERVICE, name="svc-sql", sql="SELECT 1").status_code == 201
    before = sql("SELECT * FROM jobline.schedules ORDER BY id")
    for name in ("nightly", "svc-sql"):
        for replace in (False, True):
            taken = add(client, BOB, name=name, function="echo", replace=replace)
            message = assert_error(taken, 409, "conflict")["message"]
            assert message.startswith(f"the schedule name '{name}' is taken")
    assert sql("SELECT * FROM jobline.schedules ORDER BY id") == before
    assert add(client, ALICE, name="nightly", function="echo", replace=True).json()["function"] == "echo"
