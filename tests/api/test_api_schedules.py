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
    assert sql("SELECT name FROM jobline.schedules") == [("bob/bobs",)]


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


def test_a_users_schedule_names_are_their_own_so_another_owners_names_are_neither_revealed_nor_taken(client, sql):
    assert add(client, ALICE, name="nightly", function="render").status_code == 201
    assert add(client, SERVICE, name="svc-sql", sql="SELECT 1").status_code == 201
    before = sql("SELECT * FROM jobline.schedules ORDER BY id")
    # Bob learns nothing from the names alice and the service hold: his own are simply added...
    for name in ("nightly", "svc-sql"):
        for replace in (False, True):
            made = add(client, BOB, name=name, function="echo", replace=replace)
            assert made.status_code == 201, made.text
            assert (made.json()["name"], made.json()["owner"]) == (name, "bob")
    # ...and alice's and the service's schedules are untouched.
    assert sql("SELECT * FROM jobline.schedules WHERE owner IS DISTINCT FROM 'bob' ORDER BY id") == before
    assert [s["name"] for s in client.get("/api/schedules", headers=BOB).json()["schedules"]] == ["nightly", "svc-sql"]
    # Within one owner a name is still unique: 409 without replace, replaced with it.
    assert "you already have a schedule named 'nightly'" in assert_error(
        add(client, ALICE, name="nightly", function="echo"), 409, "conflict")["message"]
    assert add(client, ALICE, name="nightly", function="echo", replace=True).json()["function"] == "echo"
    assert sql("SELECT function FROM jobline.schedules WHERE owner = 'bob' AND name = 'bob/nightly'") == [("echo",)]


def test_a_user_cannot_squat_a_name_that_the_service_or_sql_takes_later(client, sql):
    assert add(client, BOB, name="nightly-rollup", function="render").status_code == 201
    made = add(client, SERVICE, name="nightly-rollup", sql="SELECT 1")  # the operator's deploy
    assert made.status_code == 201, made.text
    sql("SELECT jobline.schedule('vacuum', '@daily', 'VACUUM')")
    assert add(client, BOB, name="vacuum", function="render").status_code == 201
    sql("SELECT jobline.schedule('vacuum', '@hourly', 'VACUUM')")  # pg_cron's replace, by global name
    # In SQL (and the CLI) names stay global, pg_cron's: a user's are qualified by their owner.
    assert sql("SELECT jobname, schedule FROM jobline.job ORDER BY jobname") == [
        ("bob/nightly-rollup", "0 3 * * SUN"), ("bob/vacuum", "0 3 * * SUN"),
        ("nightly-rollup", "0 3 * * SUN"), ("vacuum", "@hourly")]
    sql("SELECT jobline.unschedule('bob/vacuum')")
    assert [s["name"] for s in client.get("/api/schedules", headers=BOB).json()["schedules"]] == ["nightly-rollup"]


def test_a_name_resolves_in_the_callers_own_namespace(client, sql):
    mine = add(client, ALICE, name="report", function="render").json()
    theirs = add(client, SERVICE, name="report", function="render").json()
    for_her = add(client, SERVICE, name="weekly", function="render", owner="alice").json()
    assert (mine["name"], theirs["name"], for_her["name"]) == ("report", "report", "weekly")
    assert client.get("/api/schedules/report", headers=ALICE).json()["id"] == mine["id"]
    assert client.get("/api/schedules/report", headers=SERVICE).json()["id"] == theirs["id"]
    # A schedule the service made for her keeps its global name, and she reaches it by that name.
    assert client.get("/api/schedules/weekly", headers=ALICE).json()["id"] == for_her["id"]
    # The service sees global names, as SQL and the CLI do, and reaches a user's schedule by id.
    listed = {s["id"]: s["name"] for s in client.get("/api/schedules", headers=SERVICE).json()["schedules"]}
    assert listed == {mine["id"]: "alice/report", theirs["id"]: "report", for_her["id"]: "weekly"}
    shown = client.get(f"/api/schedules/{mine['id']}", headers=SERVICE).json()
    assert (shown["name"], shown["owner"]) == ("alice/report", "alice")
    assert client.get("/api/schedules/alice%2Freport", headers=SERVICE).status_code == 404  # no path holds a '/'
    assert client.post("/api/schedules/report/trigger", headers=ALICE).json()["name"] == "report"
    assert client.delete("/api/schedules/report", headers=ALICE).json() == {
        "id": mine["id"], "name": "report", "removed": True}
    assert sql("SELECT name FROM jobline.schedules ORDER BY id") == [("report",), ("weekly",)]


def test_a_users_schedule_name_cannot_contain_a_slash(client, sql):
    # It could not be addressed in a path, and it keeps `<owner>/<name>` unambiguous.
    refused = add(client, ALICE, name="reports/daily", function="render")
    assert "'/'" in assert_error(refused, 422, "invalid_input")["message"]
    assert add(client, SERVICE, name="reports/daily", function="render").status_code == 201
    assert sql("SELECT name, owner FROM jobline.schedules") == [("reports/daily", None)]
