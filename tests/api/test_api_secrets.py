"""Secrets and users (issue 8, finding 1): a secret is resolved only where the party allowed to
use it wrote the reference. Every path by which a user's data reaches a request is tried with a
real server, a real receiver and the operator's canary secret: the receiver must get the
reference as text, never the value. Also /api/secrets, where users keep their own."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from api_support import RUNNER_SECRET, SERVICE, Server, api_settings, as_user, assert_error, bearer
from api_support import user_jwt
from apps.api import register

import canary
from jobline import App, Client, vault
from receiver import Receiver, Reply
from remote_support import closed_url

CANARY = "canary-9d2f-Operator-Only-Value"
ALICE, BOB, CAROL = as_user("alice"), as_user("bob"), as_user("carol")
REFERENCE = "{{secret:CANARY}}"


def echo(seen) -> Reply:
    """Answers with everything it got, so a leak would land in the job's stored result too."""
    return Reply(200, {"path": seen.path, "headers": seen.headers, "body": seen.body.decode(errors="replace")})


@pytest.fixture
def receiver():
    with Receiver(respond=echo) as r:
        yield r


@pytest.fixture
def served(settings, receiver, sql):
    """The API over an App with named HTTP functions, a master key, and the operator's canary."""

    def functions(app):
        register(app)
        app.http_function("hook", url=receiver.url("/hook"), max_attempts=1)
        app.http_function("lookup", url=receiver.url("/lookup"), method="GET", max_attempts=1)
        app.http_function("post-as-owner", url=receiver.url("/as-owner"), max_attempts=1,
                          headers={"Authorization": "Bearer {{owner_secret:linkedin}}", "X-Op": "{{secret:OPKEY}}"})
        return app

    served_settings = dataclasses.replace(api_settings(settings), master_key=vault.generate_key(),
                                          http_allow="127.0.0.0/8")
    with App(settings=served_settings) as operator:  # not the server's App: its pool is on the server's loop
        operator.set_secret("CANARY", CANARY)
        operator.set_secret("OPKEY", "operator-key-4b1e")
    running = Server(served_settings, functions=functions).start()
    with httpx.Client(base_url=running.url, timeout=30) as client:
        yield running, client
    running.stop()


def run_due(client) -> dict:
    answer = client.post("/api/jobs/run", headers=bearer(RUNNER_SECRET), json={"limit": 100})
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_canary_nowhere(receiver, sql, *answers: httpx.Response) -> None:
    """Not sent, not stored (jobs, attempts, schedule runs), not answered."""
    sent = b" ".join(s.path.encode() + json.dumps(s.headers).encode() + s.body for s in receiver.requests)
    canary.assert_nowhere(sent, CANARY)
    stored = sql("SELECT coalesce(string_agg(row_to_json(j)::text, ' '), '') FROM jobline.jobs j")[0][0]
    stored += sql("SELECT coalesce(string_agg(row_to_json(a)::text, ' '), '') FROM jobline.attempts a")[0][0]
    canary.assert_nowhere(stored.encode(), CANARY)
    for answer in answers:
        canary.assert_nowhere(answer.content, CANARY)


def test_a_users_payload_is_data_its_references_are_sent_as_written(served, receiver, sql):
    server, client = served
    posted = client.post("/api/jobs", headers=ALICE, json={"function": "hook", "payload": {"msg": REFERENCE}})
    looked = client.post("/api/jobs", headers=ALICE, json={"function": "lookup", "payload": {"q": REFERENCE}})
    assert posted.status_code == looked.status_code == 201
    assert run_due(client)["succeeded"] == 2
    by_path = {seen.path.split("?")[0]: seen for seen in receiver.requests}
    assert by_path["/hook"].json() == {"msg": REFERENCE}
    assert "q=%7B%7Bsecret%3ACANARY%7D%7D" in by_path["/lookup"].path
    shown = client.get(f"/api/jobs/{posted.json()['id']}", headers=ALICE)
    assert json.loads(shown.json()["result"]["body"]["body"]) == {"msg": REFERENCE}
    assert_canary_nowhere(receiver, sql, shown)


def test_the_services_payload_for_a_named_function_is_data_too(served, receiver, sql):
    # A service job may carry text a user typed (a trigger copying a row, say): same rule.
    server, client = served
    assert client.post("/api/jobs", headers=SERVICE, json={"function": "hook", "payload": {"m": REFERENCE},
                                                           "owner": "alice"}).status_code == 201
    run_due(client)
    assert receiver.requests[0].json() == {"m": REFERENCE}
    assert_canary_nowhere(receiver, sql)


def test_a_users_schedule_sends_its_payload_as_written(served, receiver, sql):
    server, client = served
    made = client.post("/api/schedules", headers=ALICE, json={
        "name": "nightly", "expression": "0 3 * * *", "function": "hook", "payload": {"msg": REFERENCE}})
    assert made.status_code == 201, made.text
    assert client.post("/api/schedules/nightly/trigger", headers=ALICE).status_code == 200
    run_due(client)
    assert receiver.requests[0].json() == {"msg": REFERENCE}
    runs = client.get("/api/schedules/nightly/runs", headers=ALICE)
    assert_canary_nowhere(receiver, sql, runs)


def test_the_function_gateway_sends_a_users_body_as_written(served, receiver, sql):
    server, client = served
    answer = client.post("/functions/v1/hook", headers=ALICE, json={"msg": REFERENCE})
    assert answer.status_code == 200, answer.text
    got = client.get("/functions/v1/lookup", headers=ALICE, params={"q": REFERENCE})
    assert got.status_code == 200, got.text
    assert receiver.requests[0].json() == {"msg": REFERENCE}
    assert_canary_nowhere(receiver, sql, answer, got)


async def test_the_clients_database_fallback_enqueues_data_too(served, receiver, sql, db_url):
    server, client = served
    settings = dataclasses.replace(server.app.settings, master_key=None)  # a client holds no vault key
    async with Client(closed_url(), user_jwt("alice"), db_url, settings=settings) as alice:
        job = await alice.enqueue_async("hook", {"msg": REFERENCE})
    assert alice.fallbacks >= 1 and job["owner"] == "alice"
    run_due(client)
    assert receiver.requests[0].json() == {"msg": REFERENCE}
    assert_canary_nowhere(receiver, sql)


def test_an_operators_call_uses_the_job_owners_own_secret(served, receiver, sql):
    server, client = served
    assert client.put("/api/secrets/linkedin", headers=ALICE, json={"value": "alice-oauth-token"}).status_code == 200
    assert client.put("/api/secrets/linkedin", headers=BOB, json={"value": "bob-oauth-token"}).status_code == 200
    jobs = {who: client.post("/api/jobs", headers=headers, json={"function": "post-as-owner"}).json()["id"]
            for who, headers in (("alice", ALICE), ("bob", BOB), ("carol", CAROL))}
    ownerless = client.post("/api/jobs", headers=SERVICE, json={"function": "post-as-owner"}).json()["id"]
    run_due(client)
    sent = {seen.headers["authorization"] for seen in receiver.requests}
    assert sent == {"Bearer alice-oauth-token", "Bearer bob-oauth-token"}
    assert {seen.headers["x-op"] for seen in receiver.requests} == {"operator-key-4b1e"}
    # What comes back (the echo) is stored with the references, not the values.
    alices = client.get(f"/api/jobs/{jobs['alice']}", headers=ALICE).json()
    assert alices["result"]["body"]["headers"]["authorization"] == "Bearer {{owner_secret:linkedin}}"
    assert alices["result"]["body"]["headers"]["x-op"] == "{{secret:OPKEY}}"
    carols = client.get(f"/api/jobs/{jobs['carol']}", headers=CAROL).json()
    assert carols["status"] == "failed"
    assert "user 'carol' has no secret 'linkedin'" in carols["last_error"]
    nobodys = client.get(f"/api/jobs/{ownerless}", headers=SERVICE).json()
    assert nobodys["status"] == "failed" and "this job has no owner" in nobodys["last_error"]
    dump = sql("SELECT string_agg(row_to_json(j)::text, ' ') FROM jobline.jobs j")[0][0]
    assert "alice-oauth-token" not in dump and "bob-oauth-token" not in dump and "operator-key-4b1e" not in dump


def test_each_gateway_call_of_a_named_http_function_has_its_own_idempotency_key(served, receiver):
    server, client = served
    for _ in range(2):
        assert client.post("/functions/v1/hook", headers=ALICE, json={}).status_code == 200
    keys = [seen.headers["idempotency-key"] for seen in receiver.requests]
    assert len(set(keys)) == 2 and all(key.startswith("jobline-call-") for key in keys), keys


def test_the_gateway_uses_the_callers_own_secret(served, receiver):
    server, client = served
    client.put("/api/secrets/linkedin", headers=BOB, json={"value": "bob-oauth-token"})
    assert client.post("/functions/v1/post-as-owner", headers=BOB, json={}).status_code == 200
    assert receiver.requests[0].headers["authorization"] == "Bearer bob-oauth-token"
    refused = client.post("/functions/v1/post-as-owner", headers=SERVICE, json={})
    assert_error(refused, 400, "fail")
    assert len(receiver.requests) == 1


# -- /api/secrets ---------------------------------------------------------------------------------


def test_users_see_and_steer_only_their_own_secrets(served, sql):
    server, client = served
    set_ = client.put("/api/secrets/token", headers=ALICE, json={"value": "alice-value"})
    assert set_.status_code == 200, set_.text
    assert set_.json()["name"] == "token" and set_.json()["owner"] == "alice" and "value" not in set_.json()
    assert client.put("/api/secrets/token", headers=BOB, json={"value": "bob-value"}).status_code == 200
    assert [s["name"] for s in client.get("/api/secrets", headers=ALICE).json()["secrets"]] == ["token"]
    assert [s["owner"] for s in client.get("/api/secrets", headers=BOB).json()["secrets"]] == ["bob"]
    assert_error(client.get("/api/secrets", headers=ALICE, params={"owner": "bob"}), 403, "forbidden")
    assert_error(client.put("/api/secrets/token", headers=ALICE, params={"owner": "bob"}, json={"value": "x"}),
                 403, "forbidden")
    assert_error(client.delete("/api/secrets/token", headers=ALICE, params={"owner": "bob"}), 403, "forbidden")
    # The service sees the operator's by default, a user's on request.
    assert {s["name"] for s in client.get("/api/secrets", headers=SERVICE).json()["secrets"]} == {"CANARY", "OPKEY"}
    assert [s["owner"] for s in client.get("/api/secrets", headers=SERVICE,
                                           params={"owner": "alice"}).json()["secrets"]] == ["alice"]
    removed = client.delete("/api/secrets/token", headers=ALICE)
    assert removed.json() == {"name": "token", "owner": "alice", "removed": True}
    assert_error(client.delete("/api/secrets/token", headers=ALICE), 404, "secret_not_found")
    assert "bob-value" not in sql("SELECT string_agg(encode(ciphertext, 'escape'), ' ') FROM jobline.secrets")[0][0]


def test_bad_secret_input_is_refused_naming_what_is_wrong(served, sql):
    server, client = served
    before = sql("SELECT count(*) FROM jobline.secrets")
    for name, body, field in (("bad name", {"value": "v"}, "name"), ("ok", {"value": ""}, "value"),
                              ("ok", {"value": 7}, "value"), ("ok", {"value": "x" * 65537}, "64 KiB"),
                              ("ok", {"value": "v", "extra": 1}, "extra"), ("x" * 201, {"value": "v"}, "name")):
        error = assert_error(client.put(f"/api/secrets/{name}", headers=ALICE, json=body), 422, "invalid_input")
        assert field in error["message"], (name, body, error)
        assert "x" * 100 not in error["message"]  # the value is never echoed
    assert sql("SELECT count(*) FROM jobline.secrets") == before
    assert_error(client.put("/api/secrets/ok", json={"value": "v"}), 401, "unauthenticated")


def test_setting_a_secret_on_a_server_without_a_master_key_says_so(settings):
    running = Server(api_settings(settings)).start()
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            error = assert_error(client.put("/api/secrets/token", headers=ALICE, json={"value": "v"}), 503,
                                 "vault_unavailable")
            assert "JOBLINE_MASTER_KEY" in error["message"]
            assert client.get("/api/secrets", headers=ALICE).json() == {"secrets": []}  # listing needs no key
    finally:
        running.stop()
