"""Bad input against a running server: malformed JSON, wrong types, unknown fields, oversized
bodies, unknown ids, odd text. Always 4xx with the error shape, never 500, never a traceback;
and what really is a server failure is a 500/503 that says nothing of the server."""

from __future__ import annotations

import json

import httpx
import pytest
from api_support import SERVICE, Server, api_settings, as_user, assert_error, client, enqueue, server  # noqa: F401

from jobline.api.guard import MAX_BODY_BYTES

ROUTES_WITH_BODIES = ["/api/jobs", "/functions/v1/claim-next-task", "/api/tasks/1/complete", "/api/tasks/1/fail",
                      "/api/tasks/1/heartbeat", "/api/jobs/run", "/functions/v1/echo"]


@pytest.mark.parametrize("raw", [b"{", b"{bad json}", b'{"function": "x",}', b"\xff\xfe", b"[1, 2", b"nul"])
def test_malformed_json_is_400_invalid_json(client, raw):
    for path in ROUTES_WITH_BODIES:
        response = client.post(path, headers={**SERVICE, "Content-Type": "application/json"}, content=raw)
        assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("body, field", [
    ({"function": 42}, "body field function"),
    ({"function": "f", "payload": [1, 2]}, "body field payload"),
    ({"function": "f", "priority": "high"}, "body field priority"),
    ({"function": "f", "priority": "5"}, "body field priority"),          # no silent coercion
    ({"function": "f", "priority": 10**6}, "body field priority"),
    ({"function": "f", "max_attempts": 0}, "body field max_attempts"),
    ({"function": "f", "delay": -1}, "body field delay"),
    ({"function": "f", "depends_on": ["1"]}, "body field depends_on[0]"),
    ({"function": "f", "depends_on": [0]}, "body field depends_on[0]"),
    ({"function": ""}, "body field function"),
    ({"function": "f", "status": "succeeded"}, "body field status"),    # mass assignment: refused
    ({"function": "f", "id": 1}, "body field id"),
    ({"payload": {}}, "body field function"),
    ([{"function": "f"}], "body"),
    ("f", "body"),
])
def test_wrong_types_unknown_fields_and_out_of_range_values_are_422_naming_the_field(client, body, field, sql):
    message = assert_error(client.post("/api/jobs", headers=SERVICE, json=body), 422, "invalid_input")["message"]
    assert field in message
    assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]


@pytest.mark.parametrize("path, body", [
    ("/api/tasks/1/complete", {}),
    ("/api/tasks/1/complete", {"lease_token": 5}),
    ("/api/tasks/1/fail", {"lease_token": "t"}),
    ("/api/tasks/1/fail", {"lease_token": "t", "error": "e", "retryable": "yes"}),
    ("/api/tasks/1/fail", {"lease_token": "t", "error": "e", "retry_in": -1}),
    ("/api/tasks/1/heartbeat", {"lease_token": "t", "extend": 60}),
    ("/functions/v1/claim-next-task", {"task_types": "render"}),
    ("/functions/v1/claim-next-task", {"task_types": [""]}),
    ("/functions/v1/claim-next-task", {"project_id": "bob"}),
    ("/api/jobs/run", {"limit": 0}),
    ("/api/jobs/run", {"limit": 1001}),
    ("/api/jobs/run", {"limit": 10, "queue": "x"}),
])
def test_bad_report_claim_and_run_bodies_are_422(client, path, body):
    assert_error(client.post(path, headers=SERVICE, json=body), 422, "invalid_input")


@pytest.mark.parametrize("path", ["/api/jobs/0", "/api/jobs/-1", "/api/jobs/abc", f"/api/jobs/{2**63}",
                                  "/api/jobs/1.5", "/api/jobs/0/retry", "/api/tasks/abc/heartbeat"])
def test_ids_that_cannot_be_ids_are_422(client, path):
    method = "GET" if path.count("/") == 3 else "POST"
    assert_error(client.request(method, path, headers=SERVICE, json={"lease_token": "t"}), 422, "invalid_input")


def test_unknown_ids_are_404(client):
    for method, path in (("GET", "/api/jobs/424242"), ("POST", "/api/jobs/424242/retry"),
                         ("POST", "/api/jobs/424242/cancel"), ("POST", "/api/jobs/424242/run-now"),
                         ("POST", "/api/jobs/424242/archive")):
        assert_error(client.request(method, path, headers=SERVICE), 404, "job_not_found")
    response = client.post("/api/tasks/424242/complete", headers=SERVICE, json={"lease_token": "remote:" + "a" * 32})
    assert_error(response, 404, "job_not_found")


def test_unknown_routes_are_404_and_wrong_methods_405(client):
    assert_error(client.get("/api/nothing-here", headers=SERVICE), 404, "not_found")
    assert_error(client.get("/nothing-here"), 404, "not_found")
    assert client.get("/", follow_redirects=False).status_code == 303  # the dashboard asks to sign in
    response = client.delete("/api/jobs/1", headers=SERVICE)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"
    assert_error(client.put("/functions/v1/claim-next-task", headers=SERVICE), 405, "method_not_allowed")


def test_a_wrong_method_is_405_naming_every_method_of_the_path(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert sum(len(operations) > 1 for operations in paths.values()) >= 4
    for path, operations in paths.items():
        url = path.replace("{id}", "1").replace("{name}", "echo").replace("{ref}", "nightly")
        methods = {method.upper() for method in operations}
        if path in ("/healthz", "/readyz"):
            methods.add("HEAD")  # served for load balancers, not listed in the spec
        for wrong in {"PUT", "PATCH", "DELETE", "GET", "POST"} - methods:
            response = client.request(wrong, url, headers=SERVICE)
            message = assert_error(response, 405, "method_not_allowed")["message"]
            allowed = response.headers["Allow"]
            assert allowed == ", ".join(sorted(methods)), (wrong, path, allowed)
            assert message == f"{wrong} is not allowed here; allowed: {allowed}"


def test_a_literal_path_is_not_taken_by_a_template_for_another_method(client):
    # /api/jobs/run is POST only: GET must not fall through to GET /api/jobs/{id} (a 422 for id "run").
    for method, path in (("GET", "/api/jobs/run"), ("DELETE", "/api/jobs/run"),
                         ("GET", "/functions/v1/claim-next-task")):
        for headers in (SERVICE, {}):
            response = client.request(method, path, headers=headers)
            assert_error(response, 405, "method_not_allowed")
            assert response.headers["Allow"] == "POST", (method, path)
    # A template still answers for what is not a literal path: a bad id is 422, a missing one 404.
    assert "path parameter id" in assert_error(client.get("/api/jobs/abc", headers=SERVICE), 422,
                                               "invalid_input")["message"]
    assert_error(client.get("/api/jobs/runs", headers=SERVICE), 422, "invalid_input")
    assert_error(client.get("/api/jobs/424242", headers=SERVICE), 404, "job_not_found")
    assert client.post("/api/jobs/run", headers=SERVICE).status_code == 200


def test_a_body_over_the_limit_is_413_by_content_length_and_by_what_is_streamed(client, sql):
    big = json.dumps({"function": "f", "payload": {"blob": "x" * MAX_BODY_BYTES}}).encode()
    assert_error(client.post("/api/jobs", headers={**SERVICE, "Content-Type": "application/json"}, content=big), 413,
                 "payload_too_large")

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    for path in ("/api/jobs", "/functions/v1/echo"):
        response = client.post(path, headers={**SERVICE, "Content-Type": "application/json"}, content=chunks())
        assert_error(response, 413, "payload_too_large")
    assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]


def test_a_payload_of_1_mib_fits(client):
    blob = "x" * (1024 * 1024 - 20)
    response = client.post("/api/jobs", headers=SERVICE, json={"function": "f", "payload": {"blob": blob}})
    assert response.status_code == 201
    too_big = client.post("/api/jobs", headers=SERVICE, json={"function": "f", "payload": {"blob": blob + "x" * 40}})
    assert "1 MiB" in assert_error(too_big, 422, "invalid_input")["message"]


def test_a_body_that_is_not_json_is_415(client):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = client.post("/api/jobs", headers={**SERVICE, "Content-Type": content_type},
                               content=b'{"function": "f"}')
        assert_error(response, 415, "unsupported_media_type")
    no_type = client.post("/api/jobs", headers=SERVICE, content=b'{"function": "f"}')  # no Content-Type: JSON
    assert no_type.status_code == 201
    assert client.post("/api/jobs", headers={**SERVICE, "Content-Type": "application/vnd.api+json"},
                       content=b'{"function": "f"}').status_code == 201


@pytest.mark.parametrize("body", [
    '{"function": "\\ud800"}', '{"function": "f", "payload": {"k": "\\udfff"}}', '{"function": "f\\u0000"}',
    '{"function": "f", "payload": {"k": "a\\u0000b"}}', '{"function": "f", "payload": {"n": NaN}}',
    '{"function": "f", "payload": {"n": Infinity}}', '{"function": " f"}', '{"function": "f", "queue": "q\\n"}',
    '{"function": "f", "owner": "\\ud83d"}', '{"function": "f", "run_at": "2026-02-30T00:00:00Z"}',
    '{"function": "f", "run_at": "99999-01-01"}',
])
def test_odd_text_and_numbers_are_422(client, body, sql):
    response = client.post("/api/jobs", headers={**SERVICE, "Content-Type": "application/json"}, content=body.encode())
    assert_error(response, 422, "invalid_input")
    assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]


def test_deeply_nested_json_is_refused_or_stored_but_never_a_server_error(client):
    for depth in (50, 500, 5000, 100_000):
        raw = '{"function": "f", "payload": {"k": ' + "[" * depth + "]" * depth + "}}"
        response = client.post("/api/jobs", headers={**SERVICE, "Content-Type": "application/json"},
                               content=raw.encode())
        assert response.status_code in (201, 400, 422), (depth, response.status_code, response.text)
        if response.status_code != 201:
            assert_error(response, response.status_code, response.json()["error"]["code"])


def test_big_integers_in_a_payload_are_kept(client):
    job = client.post("/api/jobs", headers=SERVICE, json={"function": "f", "payload": {"n": 10**30}}).json()
    assert job["payload"] == {"n": 10**30}


def test_user_input_in_every_route_never_causes_a_500(client, sql):
    """Odd values in path and query parameters (the fuzz test goes further)."""
    for path in ("/api/jobs?limit=1e3", "/api/jobs?before=9223372036854775808", "/api/jobs?status=",
                 "/api/jobs?created_after=9999999999999", "/api/jobs?owner=%00", "/api/jobs?function=%F0%9F",
                 "/functions/v1/%00", "/functions/v1/" + "n" * 300, "/api/jobs?queue=" + "q" * 500):
        response = client.get(path, headers=as_user("alice"))
        assert response.status_code < 500, (path, response.text)
        if response.status_code >= 400:
            assert_error(response, response.status_code, response.json()["error"]["code"])


def test_an_unexpected_failure_is_a_500_that_says_nothing_and_logs_the_traceback(settings, caplog):
    server = Server(api_settings(settings))

    async def crash():
        raise RuntimeError("secret detail: postgres://admin:hunter2@db")

    server.asgi.add_api_route("/test/crash", crash)
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            response = http.get("/test/crash")
    finally:
        server.stop()
    assert assert_error(response, 500, "internal")["message"].startswith("internal error")
    assert "hunter2" not in response.text
    assert "hunter2" in caplog.text and "Traceback" in caplog.text


def test_a_database_failure_is_a_503_that_says_nothing_of_the_database(client, sql):
    job_id = enqueue(sql, "render", None)
    sql("ALTER TABLE jobline.attempts RENAME TO attempts_elsewhere")
    try:
        response = client.get(f"/api/jobs/{job_id}", headers=SERVICE)
    finally:
        sql("ALTER TABLE jobline.attempts_elsewhere RENAME TO attempts")
    assert_error(response, 503, "database")
    assert "attempts" not in response.text and "relation" not in response.text
