"""The function gateway, GET|POST /functions/v1/<name>, against a running server: payloads,
verify_jwt on and off, the handler's signals and failures, timeouts, unknown and built-in names."""

from __future__ import annotations

import time

from api_support import SERVICE, as_user, assert_error, bearer, client, server, user_jwt  # noqa: F401


def test_post_invokes_with_the_json_body_and_answers_the_result(client):
    response = client.post("/functions/v1/echo", headers=SERVICE, json={"user": 7, "tags": ["a"]})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {"got": {"user": 7, "tags": ["a"]}}
    assert client.post("/functions/v1/echo", headers=SERVICE).json() == {"got": {}}  # empty body: {}
    assert client.post("/functions/v1/sync-echo", headers=as_user("alice"), json={"x": 1}).json() == {
        "got": {"x": 1}, "thread": True}


def test_get_invokes_with_the_query_parameters(client):
    response = client.get("/functions/v1/echo", headers=SERVICE, params=[("day", "2026-01-31"), ("id", "1"),
                                                                          ("id", "2")])
    assert response.json() == {"got": {"day": "2026-01-31", "id": ["1", "2"]}}


def test_a_nul_character_round_trips_because_nothing_is_stored(client):
    # PostgreSQL refuses NUL in jsonb, but an invocation's result is never stored.
    response = client.post("/functions/v1/echo", headers=SERVICE, json={"text": "a\x00b"})
    assert (response.status_code, response.json()) == (200, {"got": {"text": "a\x00b"}})
    assert client.get("/functions/v1/echo", headers=SERVICE, params={"q": "\x00"}).json() == {"got": {"q": "\x00"}}
    # A lone surrogate (a "\ud800" escape) has no UTF-8 form: it is answered escaped.
    echoed = client.post("/functions/v1/echo", headers={**SERVICE, "Content-Type": "application/json"},
                         content=b'{"s": "\\ud800"}')
    assert (echoed.status_code, echoed.json()) == (200, {"got": {"s": "\ud800"}})


def test_a_handler_without_a_result_answers_null_and_one_without_a_payload_is_fine(client):
    response = client.post("/functions/v1/nothing", headers=SERVICE)
    assert (response.status_code, response.content) == (200, b"null")


def test_a_handler_that_takes_a_context_gets_one_without_a_job(client, sql):
    response = client.post("/functions/v1/with-context", headers=as_user("alice"))
    assert response.json() == {"job_id": None, "attempt": 1, "owner": "alice", "function": "with-context", "db": 1}
    assert client.post("/functions/v1/with-context", headers=SERVICE).json()["owner"] is None
    assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]  # an invocation is not a job


def test_verify_jwt_is_on_by_default_and_off_where_the_function_says(client):
    assert_error(client.post("/functions/v1/echo"), 401, "unauthenticated")
    assert_error(client.get("/functions/v1/echo", headers=bearer(user_jwt(secret="w" * 40))), 401, "unauthenticated")
    assert_error(client.post("/functions/v1/echo", headers=bearer(user_jwt(role="anon"))), 403, "forbidden")
    assert client.post("/functions/v1/public", json={"hook": 1}).json() == {"public": True, "got": {"hook": 1}}
    assert client.get("/functions/v1/public", params={"a": "b"}).json() == {"public": True, "got": {"a": "b"}}
    # A public function ignores credentials entirely, even broken ones.
    assert client.post("/functions/v1/public", headers=bearer("garbage")).status_code == 200


def test_fail_and_cancel_are_400_with_the_reason_and_retry_in_is_503(client):
    assert assert_error(client.post("/functions/v1/refuse", headers=SERVICE), 400, "fail")["message"] == \
        "the order is already shipped"
    later = client.post("/functions/v1/later", headers=SERVICE)
    assert assert_error(later, 503, "retry")["message"] == "busy, come back later"
    assert later.headers["Retry-After"] == "8"


def test_other_handler_errors_are_502_with_the_first_line(client, caplog):
    response = client.post("/functions/v1/boom", headers=SERVICE)
    message = assert_error(response, 502, "function_failed")["message"]
    assert message == "'boom' failed: RuntimeError: kaput: the widget broke"
    assert "second line" in caplog.text  # the rest goes to the log
    not_json = client.post("/functions/v1/not-json", headers=SERVICE)
    assert "not JSON-serialisable" in assert_error(not_json, 502, "function_failed")["message"]


def test_a_handler_over_its_timeout_is_504(client):
    for name in ("slow", "slow-sync"):
        began = time.monotonic()
        response = client.post(f"/functions/v1/{name}", headers=SERVICE)
        assert assert_error(response, 504, "timeout")["message"] == f"{name!r} did not finish within 0.5 s"
        assert time.monotonic() - began < 1.5


def test_unknown_functions_and_the_built_ins_are_404(client):
    for name in ("nope", "sql", "http"):
        for method in ("GET", "POST"):
            response = client.request(method, f"/functions/v1/{name}", headers=SERVICE, json={"command": "SELECT 1"})
            assert_error(response, 404, "function_not_found")
    # Without a credential an unknown name is 401: functions cannot be enumerated.
    assert_error(client.post("/functions/v1/nope"), 401, "unauthenticated")


def test_a_payload_must_be_a_json_object(client):
    for raw in (b"[1, 2]", b'"text"', b"3"):
        response = client.post("/functions/v1/echo", headers={**SERVICE, "Content-Type": "application/json"},
                               content=raw)
        assert_error(response, 422, "invalid_input")
