"""The built-in `http` function, named HTTP functions and jobline.http_post / http_get, against
real local receivers (tests/receiver.py) and a real PostgreSQL.

Every test runs inside network_guard(): a connection to anything but loopback, or a lookup of an
external name, fails the test process's own socket call, and the recorded events let tests
assert that a refused destination was never connected to.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
import time
import urllib.parse

import psycopg
import pytest
from psycopg import errors as pg_errors

import canary
from conftest import eventually, running
from jobline import App, vault
from jobline.errors import InvalidInput
from jobline.settings import Settings
from receiver import Receiver, Reply, Seen, network_guard

pytestmark = pytest.mark.timeout(60)

LOCAL = "127.0.0.0/8"


@pytest.fixture(autouse=True)
def guard():
    with network_guard() as events:
        yield events


@pytest.fixture
def make_app(db_url):
    def make(**settings) -> App:
        options = {"database_url": db_url, "lease_seconds": 30, "poll_interval": 0.2, "http_allow": LOCAL,
                   **settings}
        return App(settings=Settings(**options))

    return make


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


async def finished(app: App, job_id: int, timeout: float = 15):
    async def check():
        job = await app.get_job_async(job_id)
        return job if job.status in ("succeeded", "failed", "cancelled") else None

    return await eventually(check, timeout=timeout)


# -- the call and its result -----------------------------------------------------------------------


async def test_result_holds_status_elapsed_every_header_and_json_body(make_app, receiver):
    receiver.default = Reply(201, {"id": 7, "ok": True}, {"X-Request-Id": "req-1", "ETag": '"v1"',
                                                          "X-Internal": "kept too"})
    app = make_app()
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url("/hooks?a=1"), "params": {"b": 2, "c": True},
                                               "body": {"event": "signup", "n": [1, 2]},
                                               "headers": {"X-Custom": "yes"}})
        await app.process_async()
        done = await app.get_job_async(job.id)
    [seen] = receiver.requests
    assert (seen.method, seen.path, seen.json()) == ("POST", "/hooks?a=1&b=2&c=true", {"event": "signup", "n": [1, 2]})
    assert seen.headers["content-type"] == "application/json" and seen.headers["x-custom"] == "yes"
    assert seen.headers["idempotency-key"] == f"jobline-{job.id}"
    assert seen.headers["user-agent"].startswith("jobline/")
    result = done.result
    assert done.status == "succeeded" and done.attempts == 1
    assert (result["status"], result["reason"], result["body"], result["truncated"]) == (201, "Created",
                                                                                        {"id": 7, "ok": True}, False)
    assert result["url"] == receiver.url("/hooks?a=1") and result["final_url"] == receiver.url("/hooks?a=1&b=2&c=true")
    assert 0 < result["elapsed_ms"] < 5000
    # Every header (names in lower case), and how the server spelled them.
    assert set(result["headers"]) == {"content-type", "content-length", "etag", "date", "x-request-id",
                                      "x-internal", "server"}
    assert result["headers"]["x-request-id"] == "req-1" and result["headers"]["x-internal"] == "kept too"
    assert result["header_names"]["x-request-id"] == "X-Request-Id" and "headers_truncated" not in result
    assert result["text"] == '{"id": 7, "ok": true}'  # the JSON body as it came, byte for byte


async def test_method_defaults_and_text_bodies(make_app, receiver):
    receiver.default = Reply(200, "plain text answer")
    app = make_app()
    async with app:
        get = await app.enqueue_async("http", {"url": receiver.url("/get")})
        text = await app.enqueue_async("http", {"url": receiver.url("/text"), "method": "put", "body": "raw body"})
        head = await app.enqueue_async("http", {"url": receiver.url("/head"), "method": "HEAD"})
        await app.process_async()
        results = {j.id: (await app.get_job_async(j.id)).result for j in (get, text, head)}
    seen = {s.path: s for s in receiver.requests}
    assert seen["/get"].method == "GET" and seen["/get"].body == b""
    assert (seen["/text"].method, seen["/text"].body) == ("PUT", b"raw body")
    assert seen["/text"].headers["content-type"] == "text/plain; charset=utf-8"
    assert results[get.id]["body"] == "plain text answer" and results[head.id]["body"] == ""


async def test_malformed_payloads_fail_at_once_naming_the_field(make_app, receiver):
    app = make_app()
    cases = {
        "url": {"body": {}},
        "timeout_ms": {"url": receiver.url(), "timeout_ms": "5000"},
        "method": {"url": receiver.url(), "method": "TRACE"},
        "headers": {"url": receiver.url(), "headers": {"X-Number": 5}},
        "params": {"url": receiver.url(), "params": {"q": {"nested": 1}}},
        "unknown field(s) timeout": {"url": receiver.url(), "timeout": 5},
    }
    async with app:
        jobs = {field: await app.enqueue_async("http", payload) for field, payload in cases.items()}
        await app.process_async()
        for field, job in jobs.items():
            done = await app.get_job_async(job.id)
            assert (done.status, done.attempts) == ("failed", 1), field
            assert field in done.last_error, done.last_error
    assert receiver.requests == []


# -- retries ------------------------------------------------------------------------------------


async def test_503_then_200_succeeds_on_the_second_attempt_with_the_same_idempotency_key(make_app, receiver):
    receiver.replies = [Reply(503, "busy, try later"), Reply(200, {"ok": True})]
    app = make_app()
    app.http_function("hook", url=receiver.url("/hook"), max_attempts=3, backoff_base=0.1, backoff_jitter=0)
    async with app, running(app):
        job = await app.enqueue_async("hook", {"user": 1})
        done = await finished(app, job.id)
        attempts = await app.store.attempt_list(job.id)
    assert (done.status, done.attempts, done.result["status"]) == ("succeeded", 2, 200)
    assert [a.outcome for a in attempts] == ["failed", "succeeded"]
    assert attempts[0].error.startswith("HttpCallFailed: HTTP 503 Service Unavailable after ")
    assert "busy, try later" in attempts[0].error
    keys = [s.headers["idempotency-key"] for s in receiver.requests]
    assert keys == [f"jobline-{job.id}"] * 2
    assert [s.json() for s in receiver.requests] == [{"user": 1}] * 2


async def test_builtin_http_retries_with_the_payloads_idempotency_key(make_app, receiver):
    receiver.replies = [Reply(502), Reply(200)]
    app = make_app()
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url("/x"), "idempotency_key": "order-42"})
        await app.process_async()
        waiting = await app.get_job_async(job.id)
        assert (waiting.status, waiting.attempts) == ("pending", 1)   # retried with the function's backoff
        assert (waiting.run_at - dt.datetime.now(dt.timezone.utc)).total_seconds() > 1
        await app.store.job_run_now(job.id)
        await app.process_async()
        done = await app.get_job_async(job.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert [s.headers["idempotency-key"] for s in receiver.requests] == ["order-42", "order-42"]


async def test_a_user_given_idempotency_key_header_wins(make_app, receiver):
    app = make_app()
    async with app:
        await app.enqueue_async("http", {"url": receiver.url(), "headers": {"idempotency-key": "mine"}})
        await app.process_async()
    assert receiver.requests[0].headers["idempotency-key"] == "mine"


async def test_a_hanging_receiver_times_out_and_is_retried(make_app, receiver):
    receiver.default = Reply(hang=True)
    app = make_app()
    app.http_function("slow", url=receiver.url("/slow"), timeout=0.3, max_attempts=2, backoff_base=0.1,
                      backoff_jitter=0)
    async with app, running(app):
        began = time.monotonic()
        job = await app.enqueue_async("slow", {})
        done = await finished(app, job.id)
        took = time.monotonic() - began
        attempts = await app.store.attempt_list(job.id)
    assert (done.status, done.attempts) == ("failed", 2)
    assert len(receiver.requests) == 2
    assert all("timed out after" in a.error and "(timeout_ms 300)" in a.error for a in attempts)
    assert all(a.duration_ms < 2000 for a in attempts)
    assert took < 5


async def test_429_with_retry_after_is_retried_no_earlier_than_it_says(make_app, receiver):
    receiver.replies = [Reply(429, "slow down", {"Retry-After": "7"}), Reply(200)]
    app = make_app()
    app.http_function("limited", url=receiver.url(), backoff_base=0.1)
    async with app:
        job = await app.enqueue_async("limited", {})
        await app.process_async()
        waiting = await app.get_job_async(job.id)
        [attempt] = await app.store.attempt_list(job.id)
        delay = (waiting.run_at - attempt.finished_at).total_seconds()
        assert waiting.status == "pending" and 6.9 <= delay <= 7.5, delay
        assert "HTTP 429 Too Many Requests" in attempt.error and "Retry-After: 7 s" in attempt.error
        await app.process_async()                        # not due yet: nothing is sent
        assert len(receiver.requests) == 1
        await app.store.job_run_now(job.id)
        await app.process_async()
        assert (await app.get_job_async(job.id)).status == "succeeded"


async def test_429_without_retry_after_uses_the_backoff(make_app, receiver):
    receiver.replies = [Reply(429)]
    app = make_app()
    app.http_function("limited", url=receiver.url(), backoff_base=30, backoff_jitter=0)
    async with app:
        job = await app.enqueue_async("limited", {})
        await app.process_async()
        waiting = await app.get_job_async(job.id)
    assert waiting.status == "pending"
    assert 28 < (waiting.run_at - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 30


async def test_404_fails_without_retry_with_the_status_in_last_error(make_app, receiver):
    receiver.default = Reply(404, {"error": "no such hook"})
    app = make_app()
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url("/missing"), "body": {}})
        await app.process_async()
        done = await app.get_job_async(job.id)
    assert (done.status, done.attempts) == ("failed", 1)
    assert done.last_error.startswith("HTTP 404 Not Found after ")
    assert '{"error": "no such hook"}' in done.last_error


async def test_connection_refused_is_retried(make_app):
    with Receiver() as closed:
        url = closed.url("/gone")
    app = make_app()
    async with app:
        job = await app.enqueue_async("http", {"url": url}, max_attempts=2)
        await app.process_async()
        waiting = await app.get_job_async(job.id)
    assert waiting.status == "pending" and "ConnectError" in waiting.last_error


# -- the egress policy ------------------------------------------------------------------------------


async def test_metadata_and_loopback_are_refused_without_any_connection(make_app, receiver, guard):
    app = make_app(http_allow=None)
    async with app:
        metadata = await app.enqueue_async("http", {"url": "http://169.254.169.254/latest/meta-data/"})
        local = await app.enqueue_async("http", {"url": receiver.url("/admin")})
        await app.process_async()
        jobs = [await app.get_job_async(j.id) for j in (metadata, local)]
    assert [(j.status, j.attempts) for j in jobs] == [("failed", 1), ("failed", 1)]
    assert jobs[0].last_error.startswith("DestinationBlocked: destination 169.254.169.254 blocked")
    assert "cloud metadata" in jobs[0].last_error and "JOBLINE_HTTP_ALLOW" in jobs[0].last_error
    assert "loopback" in jobs[1].last_error
    assert receiver.connections == 0
    assert [e for e in guard if e[0] == "connect"] == []


S9_DESTINATIONS = [
    "http://127.0.0.1:{port}/", "http://localhost:{port}/", "http://[::1]:{port}/", "http://0.0.0.0:{port}/",
    "http://127.1:{port}/", "http://2130706433:{port}/", "http://0x7f000001:{port}/", "http://0177.0.0.1:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://[64:ff9b::7f00:1]:{port}/", "http://[2002:7f00:1::]:{port}/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://metadata.google.internal/",
    "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/",
    "http://[example.com]/", "file:///etc/passwd", "gopher://example.com/", "ftp://example.com/",
    "dict://example.com:11211/", "http://user:pass@evil.example/",
]


async def test_every_s9_destination_is_refused_and_the_canary_sees_nothing(make_app, receiver, guard):
    app = make_app(http_allow=None)
    async with app:
        ids = [(await app.enqueue_async("http", {"url": url.format(port=receiver.port)})).id
               for url in S9_DESTINATIONS]
        await app.process_async()
        jobs = [await app.get_job_async(i) for i in ids]
    for url, job in zip(S9_DESTINATIONS, jobs):
        assert (job.status, job.attempts) == ("failed", 1), url
        assert job.last_error.startswith("DestinationBlocked: "), (url, job.last_error)
    assert receiver.connections == 0
    assert [e for e in guard if e[0] == "connect"] == []
    assert {e[1] for e in guard if e[0] == "resolve"} <= {"localhost"}  # no name went to DNS


async def test_a_redirect_to_a_refused_address_is_refused(make_app, receiver, guard):
    targets = {"/to-metadata": "http://169.254.169.254/latest/meta-data/", "/to-private": "http://10.0.0.1/admin",
               "/to-file": "file:///etc/passwd", "/to-creds": "http://user:pw@example.com/"}
    receiver.respond = lambda seen: Reply(302, headers={"Location": targets[seen.path]})
    app = make_app()
    async with app:
        ids = [(await app.enqueue_async("http", {"url": receiver.url(path)})).id for path in targets]
        await app.process_async()
        jobs = [await app.get_job_async(i) for i in ids]
    assert [(j.status, j.attempts) for j in jobs] == [("failed", 1)] * 4
    assert all(j.last_error.startswith("DestinationBlocked: ") for j in jobs)
    assert "cloud metadata" in jobs[0].last_error and "RFC 1918" in jobs[1].last_error
    assert {e[1] for e in guard if e[0] == "connect"} == {"127.0.0.1"}


def _hops(seen: Seen) -> Reply:
    left = int(seen.path.rsplit("/", 1)[1])
    if left == 0:
        return Reply(200, {"arrived": True})
    return Reply(307 if left % 2 else 302, headers={"Location": f"/hop/{left - 1}"})


async def test_redirects_are_followed_up_to_the_cap_and_no_further(make_app, receiver):
    receiver.respond = _hops
    app = make_app()
    async with app:
        within = await app.enqueue_async("http", {"url": receiver.url("/hop/5"), "body": {"x": 1}})
        await app.process_async()
        done = await app.get_job_async(within.id)
        assert (done.status, done.result["body"], done.result["final_url"]) == (
            "succeeded", {"arrived": True}, receiver.url("/hop/0"))
        receiver.requests.clear()
        beyond = await app.enqueue_async("http", {"url": receiver.url("/hop/6")})
        await app.process_async()
        failed = await app.get_job_async(beyond.id)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert "more than 5 redirects (JOBLINE_HTTP_MAX_REDIRECTS)" in failed.last_error
    assert len(receiver.requests) == 6


async def test_max_redirects_zero_refuses_any_redirect(make_app, receiver):
    receiver.respond = _hops
    app = make_app(http_max_redirects=0)
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url("/hop/1")})
        await app.process_async()
        assert "more than 0 redirects" in (await app.get_job_async(job.id)).last_error


async def test_a_large_body_is_cut_at_the_cap_and_marked_truncated(make_app, receiver):
    big = '{"data": "' + "x" * 200_000 + '"}'
    receiver.default = Reply(200, big, {"Content-Type": "application/json"})
    app = make_app()
    small = make_app(http_max_body_bytes=1000)
    async with app, small:
        job = await app.enqueue_async("http", {"url": receiver.url()})
        await app.process_async()
        capped = (await app.get_job_async(job.id)).result
        job = await small.enqueue_async("http", {"url": receiver.url()})
        await small.process_async()
        tiny = (await small.get_job_async(job.id)).result
    assert (capped["truncated"], len(capped["body"])) == (True, 65536)   # text: cut JSON is not parsed
    assert capped["body"] == big[:65536]
    assert (tiny["truncated"], len(tiny["body"])) == (True, 1000)


async def test_headers_are_kept_up_to_16_kib_leaving_out_those_that_do_not_fit(make_app, receiver):
    fillers = {f"X-Filler-{i:02}": "v" * 1000 for i in range(30)}
    receiver.default = Reply(200, "ok", {**fillers, "X-Huge": "h" * 20_000, "Retry-After": "5"})
    app = make_app()
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url()})
        await app.process_async()
        result = (await app.get_job_async(job.id)).result
    headers = result["headers"]
    kept = [name for name in headers if name.startswith("x-filler-")]
    assert result["headers_truncated"] is True and "x-huge" not in headers
    assert kept == [f"x-filler-{i:02}" for i in range(len(kept))] and 10 <= len(kept) < 30  # in order
    # Short headers after the cap was reached are still kept.
    assert (headers["retry-after"], headers["content-type"], headers["content-length"]) == (
        "5", "text/plain; charset=utf-8", "2")
    assert sum(len(k) + len(v) for k, v in headers.items()) <= 16 * 1024


def _certificates(folder) -> tuple[str, tuple[str, str]]:
    """A test CA, and a certificate it signed for the name `localhost` only (no IP address)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("jobline test CA")).issuer_name(name("jobline test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = {n: str(folder / n) for n in ("ca.pem", "server.pem", "server.key")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths["server.pem"], "wb") as f:
        f.write(leaf.public_bytes(pem))
    with open(paths["server.key"], "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths["ca.pem"], (paths["server.pem"], paths["server.key"])


async def test_tls_checks_the_urls_hostname_while_connecting_to_the_checked_address(make_app, tmp_path,
                                                                                    monkeypatch, guard):
    ca, chain = _certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", ca)  # the client trusts the test CA (read when it is created)
    with Receiver(tls=chain) as secure:
        app = make_app(http_allow="localhost,127.0.0.0/8")
        async with app:
            by_name = await app.enqueue_async("http", {"url": secure.url("/tls", host="localhost")})
            by_address = await app.enqueue_async("http", {"url": secure.url("/tls")}, max_attempts=1)
            await app.process_async()
            named, numbered = await app.get_job_async(by_name.id), await app.get_job_async(by_address.id)
    # The connection went to a resolved address, yet the certificate (valid for `localhost`
    # only) was verified against the URL's name: SNI and hostname checks are untouched.
    assert named.status == "succeeded" and named.result["final_url"] == secure.url("/tls", host="localhost")
    assert numbered.status == "failed" and "CERTIFICATE_VERIFY_FAILED" in numbered.last_error
    assert {e[1] for e in guard if e[0] == "connect"} <= {"127.0.0.1", "::1"}
    # The name was looked up once, by GuardedBackend; the connection was then made to an
    # address from that answer (any later lookup is of a numeric address), so no second DNS
    # answer (a rebinding) could have been used.
    assert [e for e in guard if e[0] == "resolve" and not e[1][0].isdigit() and ":" not in e[1]] == [
        ("resolve", "localhost")]


async def test_cookies_from_one_call_are_not_sent_with_another(make_app, receiver):
    receiver.replies = [Reply(200, headers={"Set-Cookie": "session=abc; Path=/"})]
    app = make_app()
    async with app:
        for _ in range(2):
            await app.enqueue_async("http", {"url": receiver.url()})
            await app.process_async()
    assert [s.headers.get("cookie") for s in receiver.requests] == [None, None]


# -- named HTTP functions ------------------------------------------------------------------------


async def test_named_http_function_sends_its_payload_as_json(make_app, receiver):
    app = make_app()
    app.http_function("adapter-health", url=receiver.url("/functions/v1/adapter-health"), method="put",
                      headers={"Authorization": "Bearer abc", "X-Source": "jobline"}, timeout=2)
    app.http_function("lookup", url=receiver.url("/lookup"), method="GET")
    async with app:
        job = await app.enqueue_async("adapter-health", {"adapters": ["a", "b"]})
        await app.enqueue_async("lookup", {"q": "x y", "page": 2})
        await app.process_async()
        done = await app.get_job_async(job.id)
    seen = {s.method: s for s in receiver.requests}
    put, get = seen["PUT"], seen["GET"]
    assert (put.method, put.path, put.json()) == ("PUT", "/functions/v1/adapter-health", {"adapters": ["a", "b"]})
    assert put.headers["authorization"] == "Bearer abc" and put.headers["x-source"] == "jobline"
    assert put.headers["idempotency-key"] == f"jobline-{job.id}"
    assert (get.method, get.path, get.body) == ("GET", "/lookup?q=x+y&page=2", b"")
    assert done.result["status"] == 200 and done.max_attempts == 3


def test_named_http_function_options_are_checked_when_declared(make_app):
    app = make_app()
    for bad in ({"url": "ftp://x"}, {"url": "http://x", "method": "BREW"}, {"url": "http://x", "timeout": 0},
                {"url": "http://x", "headers": {"X": 1}}):
        with pytest.raises(InvalidInput):
            app.http_function("bad", **bad)
    app.http_function("good", url="{{secret:base_url}}/hook")
    assert "good" in app.registry.names()


# -- SQL: jobline.http_post / jobline.http_get --------------------------------------------------------


# Seed 002's call, with only `net.` changed to `jobline.` (and its URL placeholder filled in).
SEED_002_CALL = """
  SELECT jobline.http_post(
    url:='{url}/adapter-health',
    headers:='{{"Content-Type": "application/json", "Authorization": "Bearer <YOUR_SUPABASE_SERVICE_ROLE_KEY>"}}', -- Securely call the function
    body:='{{}}'::jsonb
  );
"""


async def test_http_post_from_sql_with_pg_net_named_arguments_is_delivered(make_app, receiver, sql):
    [(seed_id,)] = sql(SEED_002_CALL.format(url=receiver.url("/functions/v1").rstrip("/")))
    [(named_id,)] = sql("SELECT jobline.http_post(url := %s, headers := '{\"X-Week\": \"5\"}', "
                        "body := '{\"week\": 5}'::jsonb, timeout_milliseconds := 2000)", [receiver.url("/named")])
    [(plain_id,)] = sql("SELECT jobline.http_post(%s)", [receiver.url("/plain")])
    [(get_id,)] = sql("SELECT jobline.http_get(%s, params := '{\"page\": 2, \"q\": \"a b\"}')", [receiver.url("/get")])
    [(text_id,)] = sql("SELECT jobline.http_post(%s, body := '\"hi\"')", [receiver.url("/text")])
    app = make_app()
    async with app:
        await app.process_async()
        jobs = {i: await app.get_job_async(i) for i in (seed_id, named_id, plain_id, get_id, text_id)}
    assert {j.status for j in jobs.values()} == {"succeeded"}
    assert {j.max_attempts for j in jobs.values()} == {5}
    seen = {s.path: s for s in receiver.requests}
    seed = seen["/functions/v1/adapter-health"]
    assert (seed.method, seed.json(), seed.headers["authorization"]) == (
        "POST", {}, "Bearer <YOUR_SUPABASE_SERVICE_ROLE_KEY>")
    assert seed.headers["content-type"] == "application/json"
    assert seed.headers["idempotency-key"] == f"jobline-{seed_id}"
    assert (seen["/named"].json(), seen["/named"].headers["x-week"]) == ({"week": 5}, "5")
    assert "content-type" not in seen["/named"].headers or seen["/named"].headers["content-type"] == "application/json"
    assert jobs[named_id].payload["timeout_ms"] == 2000 and jobs[plain_id].payload["timeout_ms"] == 5000
    assert (seen["/plain"].json(), seen["/plain"].headers["content-type"]) == ({}, "application/json")
    [get] = [s for s in receiver.requests if s.path.startswith("/get?")]
    assert (get.method, sorted(get.path[5:].split("&")), get.body) == ("GET", ["page=2", "q=a+b"], b"")
    assert seen["/text"].body == b'"hi"'  # as pg_net sends it: the JSON text


SEED_002_SCHEDULE = """
SELECT jobline.schedule(
  'weekly-adapter-check', -- Job name (must be unique)
  '0 3 * * SUN',          -- Cron schedule: At 03:00 on Sunday
  $$
  SELECT jobline.http_post(
    url:='{url}/adapter-health',
    headers:='{{"Content-Type": "application/json", "Authorization": "Bearer <YOUR_SUPABASE_SERVICE_ROLE_KEY>"}}', -- Securely call the function
    body:='{{}}'::jsonb
  );
  $$
);
"""


async def test_seed_002_weekly_adapter_check_schedules_a_durable_call(make_app, receiver, sql):
    [(schedule_id,)] = sql(SEED_002_SCHEDULE.format(url=receiver.url("/functions/v1").rstrip("/")))
    [(sql_job,)] = sql("SELECT jobline.trigger_schedule(%s)", [schedule_id])  # as if Sunday 03:00 came
    app = make_app()
    async with app:
        await app.process_async()   # the schedule's SQL runs and queues the call, which runs too
        ran = await app.get_job_async(sql_job)
        [(http_job,)] = sql("SELECT id FROM jobline.jobs WHERE function = 'http'")
        call = await app.get_job_async(http_job)
    assert (ran.status, call.status, call.result["status"]) == ("succeeded", "succeeded", 200)
    [seen] = receiver.requests
    assert (seen.method, seen.path, seen.json()) == ("POST", "/functions/v1/adapter-health", {})
    assert seen.headers["authorization"] == "Bearer <YOUR_SUPABASE_SERVICE_ROLE_KEY>"


async def test_http_post_commits_and_rolls_back_with_the_callers_transaction(db_url, sql, receiver):
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            conn.execute("SELECT jobline.http_post(%s)", [receiver.url("/kept")])
        with contextlib.suppress(RuntimeError), conn.transaction():
            conn.execute("SELECT jobline.http_post(%s)", [receiver.url("/dropped")])
            raise RuntimeError("roll back")
    assert sql("SELECT payload->>'url' FROM jobline.jobs WHERE function = 'http'") == [(receiver.url("/kept"),)]


BAD_SQL_CALLS = [
    ("jobline.http_post('ftp://example.com/')", "url"),
    ("jobline.http_post('<YOUR_SUPABASE_FUNCTIONS_URL>/adapter-health')", "url"),
    ("jobline.http_post(NULL)", "url"),
    ("jobline.http_post('https://example.com', headers := '[1]')", "headers must be a JSON object"),
    ("jobline.http_post('https://example.com', headers := '{\"X-N\": 1}')", "headers: the value of 'X-N'"),
    ("jobline.http_post('https://example.com', params := '\"q\"')", "params must be a JSON object"),
    ("jobline.http_get('https://example.com', params := '{\"q\": [1]}')", "params: the value of 'q'"),
    ("jobline.http_post('https://example.com', timeout_milliseconds := 0)", "timeout_milliseconds"),
    ("jobline.http_get('https://example.com', timeout_milliseconds := 600001)", "timeout_milliseconds"),
    ("jobline.http_delete('https://example.com', headers := '[1]')", "headers must be a JSON object"),
    ("jobline.http_post('https://example.com', headers := '{\"content-type\": \"text/plain\"}')",
     'Content-Type header must be "application/json"'),
    ("jobline.http_post('https://example.com', headers := '{\"Content-Type\": \"application/jsonp\"}')",
     'Content-Type header must be "application/json"'),
]


def test_http_functions_refuse_bad_arguments_naming_them(sql):
    for call, named in BAD_SQL_CALLS:
        with pytest.raises(pg_errors.InvalidParameterValue) as caught:
            sql(f"SELECT {call}")
        message = caught.value.diag.message_primary
        assert named in message and message.startswith(call.split("(")[0]), message
    assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]


def test_http_post_accepts_a_secret_reference_as_the_url_start(sql):
    [(job_id,)] = sql("SELECT jobline.http_post('{{secret:functions_url}}/adapter-health')")
    assert sql("SELECT function, payload->>'url' FROM jobline.jobs WHERE id = %s", [job_id]) == [
        ("http", "{{secret:functions_url}}/adapter-health")]


def test_http_post_takes_any_json_content_type_and_adds_one_when_there_is_none(sql):
    calls = {
        "'{\"content-type\": \"application/json; charset=utf-8\"}'": {"content-type": "application/json; charset=utf-8"},
        "'{\"Content-Type\": \"application/merge-patch+json\"}'": {"Content-Type": "application/merge-patch+json"},
        "'{\"X-Other\": \"1\"}'": {"X-Other": "1", "Content-Type": "application/json"},
        "NULL": {"Content-Type": "application/json"},  # as pg_net: NULL headers are none
    }
    for headers, stored in calls.items():
        [(job_id,)] = sql(f"SELECT jobline.http_post('https://example.com', headers := {headers})")
        assert sql("SELECT payload->'headers' FROM jobline.jobs WHERE id = %s", [job_id]) == [(stored,)], headers
    [(get_id,)] = sql("SELECT jobline.http_get('https://example.com', NULL, NULL, 100)")
    [(delete_id,)] = sql("SELECT jobline.http_delete('https://example.com', NULL, NULL, 100, '{\"k\": 1}')")
    assert sql("SELECT payload FROM jobline.jobs WHERE id IN (%s, %s) ORDER BY id", [get_id, delete_id]) == [
        ({"method": "GET", "url": "https://example.com", "params": {}, "headers": {}, "timeout_ms": 100},),
        ({"method": "DELETE", "url": "https://example.com", "params": {}, "headers": {}, "timeout_ms": 100,
          "body": {"k": 1}},)]


# -- SQL: pg_net's responses (jobline._http_response, jobline._http_collect_response) --------------------


def _collect(sql, job_id: int, function: str = "jobline._http_collect_response") -> tuple:
    [row] = sql(f"SELECT status::text, message, (response).status_code, (response).headers, (response).body "
                f"FROM {function}(%s)", [job_id])
    return row


def _sites(seen: Seen) -> Reply:
    if seen.path == "/ok":  # JSON as a server writes it, spacing and all
        return Reply(200, '{"b": 1,  "a": [1, 2]}\n', {"Content-Type": "application/json", "X-Mixed-Case": "v",
                                                        "set-cookie": "a=1"})
    if seen.path == "/missing":
        return Reply(404, "no such thing")
    if seen.path == "/empty":
        return Reply(204)
    return Reply(503, "busy")


async def test_http_response_shows_each_call_once_settled_with_pg_nets_columns(make_app, receiver, sql):
    receiver.respond = _sites
    ids = {path: sql("SELECT jobline.http_get(%s)", [receiver.url(path)])[0][0]
           for path in ("/ok", "/missing", "/empty", "/busy")}
    app = make_app()
    async with app:
        await app.process_async()
        # A call being retried has no row yet; collect says what it waits for.
        assert sql("SELECT id FROM jobline._http_response ORDER BY id") == [(ids["/ok"],), (ids["/missing"],),
                                                                            (ids["/empty"],)]
        status, message, *response = _collect(sql, ids["/busy"])
        assert (status, response) == ("PENDING", [None, None, None])
        assert message.startswith("attempt 1 of 5 failed (HttpCallFailed: HTTP 503 Service Unavailable after ")
        for _ in range(4):  # the retries, without waiting for their backoff
            await app.store.job_run_now(ids["/busy"])
            await app.process_async()
        busy = await app.get_job_async(ids["/busy"])
    rows = {r[0]: r[1:] for r in sql("SELECT id, status_code, content_type, headers, content, timed_out, error_msg, "
                                     "created FROM jobline._http_response")}
    status_code, content_type, headers, content, timed_out, error_msg, created = rows[ids["/ok"]]
    assert (status_code, content_type, content, timed_out, error_msg) == (
        200, "application/json", '{"b": 1,  "a": [1, 2]}\n', False, None)  # the body byte for byte
    assert {"Content-Type", "X-Mixed-Case", "set-cookie", "Content-Length", "Server", "Date"} <= set(headers)
    assert created == (await app.get_job_async(ids["/ok"])).finished_at
    # An HTTP error status is a response, as in pg_net: error_msg is NULL; so is an empty body's content.
    assert rows[ids["/missing"]][0:1] + rows[ids["/missing"]][3:6] == (404, "no such thing", False, None)
    assert rows[ids["/empty"]][0:1] + rows[ids["/empty"]][3:6] == (204, None, False, None)
    # The last attempt's response, once the attempts ran out.
    assert (busy.status, busy.attempts) == ("failed", 5)
    assert rows[ids["/busy"]][0:1] + rows[ids["/busy"]][3:6] == (503, "busy", False, None)
    assert _collect(sql, ids["/busy"]) == ("SUCCESS", "ok", 503, rows[ids["/busy"]][2], "busy")
    assert _collect(sql, ids["/ok"], "jobline.http_collect_response") == (
        "SUCCESS", "ok", 200, headers, '{"b": 1,  "a": [1, 2]}\n')  # pg_net's older name
    assert _collect(sql, 999) == ("ERROR", "request matching request_id not found", None, None, None)


async def test_http_response_error_rows_say_why_no_response_came(make_app, receiver, sql):
    receiver.default = Reply(hang=True)
    blocked = sql("SELECT jobline.http_get('http://169.254.169.254/latest/meta-data/')")[0][0]
    hanging = sql("SELECT jobline.http_get(%s, timeout_milliseconds := 200)", [receiver.url("/slow")])[0][0]
    cancelled = sql("SELECT jobline.http_get('https://example.com/later')")[0][0]
    app = make_app()  # loopback allowed, metadata not
    async with app:
        await app.store.job_cancel(cancelled)
        await app.process_async()
        for _ in range(4):
            await app.store.job_run_now(hanging)
            await app.process_async()
    rows = {r[0]: r[1:] for r in sql("SELECT id, status_code, content, timed_out, error_msg FROM jobline._http_response")}
    assert rows[blocked][:3] == (None, None, False)
    assert rows[blocked][3].startswith("DestinationBlocked: destination 169.254.169.254 blocked")
    assert rows[hanging][:3] == (None, None, True)
    assert re.fullmatch(r"Timeout of 200 ms reached\. Total time: [0-9.]+ ms \(DNS time: [0-9.]+ ms, TCP/SSL "
                        r"handshake time: [0-9.]+ ms, HTTP Request/Response time: [0-9.]+ ms\)", rows[hanging][3])
    assert rows[cancelled] == (None, None, False, "cancelled by a person")
    assert _collect(sql, hanging)[:2] == ("ERROR", rows[hanging][3])


async def test_http_collect_response_waits_for_a_worker_but_not_in_vain(make_app, receiver, db_url):
    app = make_app()
    async with app, running(app), await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        async def one(query: str, *params) -> tuple:
            return await (await conn.execute(query, params)).fetchone()

        [job_id] = await one("SELECT jobline.http_get(%s)", receiver.url("/ok"))
        assert await one("SELECT (r).status::text, ((r).response).status_code "
                         "FROM jobline._http_collect_response(%s, async := false) r", job_id) == ("SUCCESS", 200)
        # Queued by the very transaction that would wait: no worker can see it before it commits.
        with pytest.raises(pg_errors.InvalidTransactionState, match="queued by this transaction"):
            await conn.execute("SELECT jobline._http_collect_response(jobline.http_get(%s), false)",
                               [receiver.url("/never")])
        # A snapshot that never changes would never show the response either.
        [later] = await one("SELECT jobline.enqueue('http', jsonb_build_object('url', %s::text), now() + '1 hour')",
                            receiver.url("/later"))
        assert await one("SELECT status::text, message FROM jobline._http_collect_response(%s)", later) == (
            "PENDING", "queued, not sent yet")
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            with pytest.raises(pg_errors.InvalidTransactionState, match="needs READ COMMITTED"):
                await conn.execute("SELECT jobline._http_collect_response(%s, false)", [later])
            raise psycopg.Rollback()
    assert [s.path for s in receiver.requests] == ["/ok"]


# -- secrets ----------------------------------------------------------------------------------


SECRET = "tok-S3cr3t/value+42"


def _echo(seen: Seen) -> Reply:
    """Echo the request back: in the body, in a header and (on the first call) in an error."""
    echoed = {"authorization": seen.headers.get("authorization"), "path": seen.path,
              "body": seen.body.decode()}
    status = 500 if seen.path.startswith("/fail") else 200
    return Reply(status, echoed, {"X-Request-Id": seen.headers.get("authorization", "")})


async def test_secret_references_are_resolved_and_the_plaintext_is_stored_nowhere(make_app, receiver, caplog,
                                                                                    db_url, sql):
    caplog.set_level(logging.DEBUG)
    receiver.respond = _echo
    app = make_app(master_key=vault.generate_key())
    app.http_function("named", url=receiver.url("/named?key={{secret:hook_token}}"),
                      headers={"Authorization": "Bearer {{secret:hook_token}}"})
    payload = {"url": receiver.url("/ok/{{secret:hook_token}}"), "params": {"k": "{{secret:hook_token}}"},
               "headers": {"Authorization": "Bearer {{secret:hook_token}}"},
               "body": {"token": "{{secret:hook_token}}"}}
    async with app:
        await app.set_secret_async("hook_token", SECRET)
        ok = await app.enqueue_async("http", payload)
        failing = await app.enqueue_async("http", {**payload, "url": receiver.url("/fail")}, max_attempts=1)
        named = await app.enqueue_async("named", {"hello": "world"})
        await app.process_async()
        jobs = {j.id: await app.get_job_async(j.id) for j in (ok, failing, named)}
    # The receiver got the plaintext everywhere it was referenced...
    assert all(s.headers["authorization"] == f"Bearer {SECRET}" for s in receiver.requests)
    first = receiver.requests[0]
    assert SECRET.replace("/", "%2F").replace("+", "%2B") in first.path or SECRET in first.path
    assert json.loads(first.body) == {"token": SECRET}
    # ...and it is nowhere in the database, the results, the errors or the logs.
    assert [jobs[i].status for i in (ok.id, failing.id, named.id)] == ["succeeded", "failed", "succeeded"]
    result = jobs[ok.id].result
    assert result["url"] == payload["url"]
    assert result["headers"]["x-request-id"] == "Bearer {{secret:hook_token}}"
    assert result["body"]["authorization"] == "Bearer {{secret:hook_token}}"
    assert "{{secret:hook_token}}" in result["final_url"] and "{{secret:hook_token}}" in result["body"]["body"]
    # The body as it came, which jobline._http_response shows, is scrubbed the same way.
    assert json.loads(result["text"]) == result["body"]
    assert sql("SELECT content FROM jobline._http_response WHERE id = %s", [ok.id]) == [(result["text"],)]
    assert "HTTP 500" in jobs[failing.id].last_error and "{{secret:hook_token}}" in jobs[failing.id].last_error
    dump = sql("SELECT string_agg(row_to_json(j)::text, ' ') FROM jobline.jobs j")[0][0]
    dump += sql("SELECT coalesce(string_agg(row_to_json(a)::text, ' '), '') FROM jobline.attempts a")[0][0]
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for form in (SECRET, "S3cr3t", "S3cr3t%2Fvalue"):
        assert form not in dump
        assert form not in logged
    assert "{{secret:hook_token}}" in dump


async def test_a_missing_secret_fails_the_attempt_and_is_retried(make_app, receiver):
    app = make_app(master_key=vault.generate_key())
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url(), "headers": {"X-Key": "{{secret:not_set}}"}})
        await app.process_async()
        waiting = await app.get_job_async(job.id)
    assert waiting.status == "pending" and "not_set" in waiting.last_error
    assert receiver.requests == []


async def test_secrets_without_a_master_key_fail_the_attempt_saying_so(make_app, receiver):
    app = make_app()
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url(), "body": {"k": "{{secret:any}}"}})
        await app.process_async()
        waiting = await app.get_job_async(job.id)
    assert waiting.status == "pending" and "JOBLINE_MASTER_KEY" in waiting.last_error
    assert receiver.requests == []


async def test_secret_headers_are_not_forwarded_across_origins(make_app, receiver):
    with Receiver() as other:
        receiver.respond = lambda seen: Reply(307, headers={"Location": other.url("/elsewhere")})
        app = make_app(master_key=vault.generate_key())
        async with app:
            await app.set_secret_async("api_key", SECRET)
            await app.enqueue_async("http", {"url": receiver.url(), "headers": {"X-Api-Key": "{{secret:api_key}}",
                                                                                  "X-Plain": "kept"}})
            await app.process_async()
        [there] = other.requests
    assert receiver.requests[0].headers["x-api-key"] == SECRET
    assert "x-api-key" not in there.headers and there.headers["x-plain"] == "kept"


def test_settings_dataclass_holds_the_http_defaults():
    settings = Settings()
    assert (settings.http_allow, settings.http_allow_private, settings.http_max_redirects,
            settings.http_max_body_bytes) == (None, False, 5, 65536)
    assert dataclasses.replace(settings, http_allow=LOCAL).http_allow == LOCAL


# -- no part of a secret in results, errors or logs (a local receiver that echoes it) -------------


TOKEN = "LEAKCHECK-0123456789-abcdefghi"  # 30 characters
PIECES = ("LEAKCH", "0123456789", "abcdefghi")  # any part of TOKEN that could survive a cut


def _stored(sql) -> str:
    """Every job and attempt row as text: results, errors, payloads."""
    dump = sql("SELECT coalesce(string_agg(row_to_json(j)::text, ' '), '') FROM jobline.jobs j")[0][0]
    return dump + sql("SELECT coalesce(string_agg(row_to_json(a)::text, ' '), '') FROM jobline.attempts a")[0][0]


def _logged(caplog) -> str:
    return " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def _assert_nowhere(pieces, *texts: str) -> None:
    for text in texts:
        for piece in pieces:
            assert piece not in text, (piece, text[:2000])


async def test_a_body_cut_by_the_cap_inside_a_secret_keeps_no_part_of_it(make_app, receiver, caplog, sql):
    caplog.set_level(logging.DEBUG)
    # 50 bytes, then the token the request carried: a 70-byte cap cuts it after 20 characters.
    receiver.respond = lambda seen: Reply(500 if seen.path == "/fail" else 200,
                                          "x" * 50 + seen.headers["x-token"] + "y" * 50)
    app = make_app(master_key=vault.generate_key(), http_max_body_bytes=70)
    async with app:
        await app.set_secret_async("tok", TOKEN)
        ok = await app.enqueue_async("http", {"url": receiver.url("/ok"), "headers": {"X-Token": "{{secret:tok}}"}})
        failing = await app.enqueue_async("http", {"url": receiver.url("/fail"),
                                                   "headers": {"X-Token": "{{secret:tok}}"}}, max_attempts=1)
        await app.process_async()
        done, failed = await app.get_job_async(ok.id), await app.get_job_async(failing.id)
    assert receiver.requests[0].headers["x-token"] == TOKEN
    assert (done.status, done.result["truncated"]) == ("succeeded", True)
    assert done.result["body"] == "x" * 50 + "{{secret:tok}}"  # the value is replaced whole, then cut
    assert failed.status == "failed" and "x" * 50 + "{{secret:tok}}" in failed.last_error
    _assert_nowhere(PIECES, _stored(sql), _logged(caplog))


async def test_a_request_line_cut_inside_a_secret_keeps_no_part_of_it(make_app, receiver, caplog, sql):
    caplog.set_level(logging.DEBUG)
    receiver.default = Reply(hang=True)
    # The request line in errors is cut at 300 characters: here, inside the secret's value.
    padding = "p" * (300 - len(receiver.url("/")) - 1 - 15)
    url = receiver.url(f"/{padding}/{{{{secret:tok}}}}")
    app = make_app(master_key=vault.generate_key())
    async with app:
        await app.set_secret_async("tok", TOKEN)
        job = await app.enqueue_async("http", {"url": url, "timeout_ms": 300}, max_attempts=1)
        await app.process_async()
        done = await app.get_job_async(job.id)
    assert receiver.requests[0].path.endswith(TOKEN)
    assert done.status == "failed" and "timed out after" in done.last_error
    assert f"GET {receiver.url('/' + padding)}/{{{{secret:" in done.last_error
    _assert_nowhere(PIECES, _stored(sql), _logged(caplog))


WEIRD = "Qx\\Zq'\"Wv-LEAK9"  # a backslash and both quotes: repr() would escape them


async def test_a_blocked_url_quotes_the_secret_as_a_placeholder_never_escaped(make_app, receiver, caplog, sql, guard):
    caplog.set_level(logging.DEBUG)
    urls = ["gopher://example.com/{{secret:weird}}", "ftp://example.com/?k={{secret:weird}}",
            "http://example.com:99999/{{secret:weird}}", "http://169.254.169.254/{{secret:weird}}"]
    app = make_app(master_key=vault.generate_key(), http_allow=None)
    async with app:
        await app.set_secret_async("weird", WEIRD)
        ids = [(await app.enqueue_async("http", {"url": url})).id for url in urls]
        await app.process_async()
        jobs = [await app.get_job_async(i) for i in ids]
    for url, job in zip(urls, jobs):
        assert (job.status, job.attempts) == ("failed", 1), url
        assert job.last_error.startswith("DestinationBlocked: "), job.last_error
    for job in jobs[:3]:  # the URL is quoted as written
        assert "{{secret:weird}}" in job.last_error, job.last_error
    assert "gopher://" in jobs[0].last_error and "malformed" in jobs[2].last_error
    # A host written out in the URL is named, though a secret fills in its path.
    assert jobs[3].last_error.startswith("DestinationBlocked: destination 169.254.169.254 blocked: ")
    assert "cloud metadata" in jobs[3].last_error and "JOBLINE_HTTP_ALLOW" in jobs[3].last_error
    _assert_nowhere(("Qx", "Zq", "Wv", "LEAK9"), _stored(sql), _logged(caplog))
    assert [e for e in guard if e[0] == "connect"] == []


async def test_a_host_from_a_secret_is_not_named_when_it_is_blocked_or_does_not_resolve(make_app, receiver, caplog,
                                                                                        sql, guard):
    caplog.set_level(logging.DEBUG)
    secrets = {
        "private_url": "http://10.11.12.13:8080",            # refused before connecting: RFC 1918
        "meta_url": "http://Metadata.Google.Internal",       # refused by name, before any lookup
        "local_url": f"http://localhost:{receiver.port}",    # resolves to loopback, refused there
        "unresolvable_url": "https://nowhere-7c1d.invalid",  # does not resolve (the guard refuses it)
    }
    app = make_app(master_key=vault.generate_key(), http_allow=None)
    async with app:
        for name, value in secrets.items():
            await app.set_secret_async(name, value)
        jobs = {name: await app.enqueue_async("http", {"url": f"{{{{secret:{name}}}}}/hook"}, max_attempts=1)
                for name in secrets}
        await app.process_async()
        errors = {name: (await app.get_job_async(job.id)).last_error for name, job in jobs.items()}
    assert receiver.connections == 0 and [e for e in guard if e[0] == "connect"] == []
    for name, error in errors.items():
        assert f"{{{{secret:{name}}}}}/hook" in error, error
    assert "RFC 1918" in errors["private_url"] and "JOBLINE_HTTP_ALLOW_PRIVATE=on" in errors["private_url"]
    assert "cloud metadata host" in errors["meta_url"]
    assert "loopback" in errors["local_url"] and "to JOBLINE_HTTP_ALLOW" in errors["local_url"]
    assert "cannot resolve the host of" in errors["unresolvable_url"]
    pieces = ("10.11.12.13", "10.11.", "metadata.google", "Metadata.Google", "localhost", "127.0.0.1", "nowhere",
              "7c1d")
    _assert_nowhere(pieces, _stored(sql), _logged(caplog))
    _assert_nowhere((":8080", f":{receiver.port}", str(receiver.port)), *errors.values())


async def test_final_url_after_a_redirect_from_a_secret_url_shows_no_normalised_part_of_it(make_app, receiver,
                                                                                          caplog, sql):
    caplog.set_level(logging.DEBUG)
    base = f"http://LocalHost:{receiver.port}"  # httpx writes the host in lower case
    hidden = "".join(f"%{b:02X}" for b in TOKEN.encode())  # every byte encoded: not one of the scrubbed forms

    def respond(seen: Seen) -> Reply:
        if seen.path == "/start":
            return Reply(302, headers={"Location": "/done"})
        if seen.path == "/odd":
            return Reply(302, headers={"Location": f"/done?t={hidden}"})
        return Reply(200, {"self": f"http://localhost:{receiver.port}{seen.path}"})

    receiver.respond = respond
    app = make_app(master_key=vault.generate_key(), http_allow="localhost,127.0.0.0/8")
    async with app:
        await app.set_secret_async("base_url", base)
        await app.set_secret_async("tok", TOKEN)
        plain = await app.enqueue_async("http", {"url": "{{secret:base_url}}/start"})
        odd = await app.enqueue_async("http", {"url": "{{secret:base_url}}/odd",
                                               "headers": {"X-Token": "{{secret:tok}}"}})
        await app.process_async()
        plain, odd = await app.get_job_async(plain.id), await app.get_job_async(odd.id)
    assert sorted(s.path for s in receiver.requests) == sorted(["/start", "/done", "/odd", f"/done?t={hidden}"])
    assert plain.status == "succeeded" and plain.result["url"] == "{{secret:base_url}}/start"
    assert plain.result["final_url"] == "{{secret:base_url}}/done"
    assert plain.result["body"] == {"self": "{{secret:base_url}}/done"}
    assert odd.status == "succeeded"
    assert odd.result["final_url"].startswith("{{secret:base_url}}/odd (redirected 1 time(s); the final URL is "
                                              "not shown")
    _assert_nowhere(("localhost", "LocalHost", hidden[:12]) + PIECES, _stored(sql), _logged(caplog))
    _assert_nowhere((str(receiver.port),), json.dumps(plain.result), json.dumps(odd.result))


async def test_without_redirects_final_url_is_the_url_as_written_with_its_parameters(make_app, receiver):
    app = make_app(master_key=vault.generate_key())
    async with app:
        await app.set_secret_async("tok", TOKEN)
        job = await app.enqueue_async("http", {"url": receiver.url("/x/{{secret:tok}}?a=1"),
                                               "params": {"k": "{{secret:tok}}", "n": 2}})
        await app.process_async()
        done = await app.get_job_async(job.id)
    assert receiver.requests[0].path == f"/x/{TOKEN}?a=1&k={TOKEN}&n=2"
    assert done.result["final_url"] == receiver.url("/x/{{secret:tok}}?a=1&k={{secret:tok}}&n=2")


async def test_an_http_error_logs_status_and_timing_only_and_keeps_the_body_after_the_first_line(make_app, receiver,
                                                                                               caplog):
    caplog.set_level(logging.DEBUG)
    receiver.replies = [Reply(503, {"error": "warming up"})]
    app = make_app()
    async with app:
        job = await app.enqueue_async("http", {"url": receiver.url("/hook")})
        await app.process_async()
        [attempt] = await app.store.attempt_list(job.id)
    summary, rest = attempt.error.split("\n", 1)
    assert re.fullmatch(r"HttpCallFailed: HTTP 503 Service Unavailable after [0-9.]+ ms", summary), summary
    assert rest.startswith('{"error": "warming up"}')
    retrying = [r for r in caplog.records if r.getMessage() == "job.retrying"]
    assert retrying and all("warming" not in str(r.__dict__) for r in retrying)
    assert "warming" not in _logged(caplog)



# -- echoes in other encodings (issue 8, finding 2) -------------------------------------------------


def _encoded_echo(seen: Seen) -> Reply:
    """Echoes the request's X-Token the way the path asks: /utf-16?type=text/plain;charset=utf-16."""
    token = seen.headers.get("x-token", "no-token")
    path, _, query = seen.path.partition("?")
    content_type = urllib.parse.unquote(query.removeprefix("type=")) if query else "text/plain"
    text = f"your token was {token}, thanks"
    body = {
        "/utf-16": text.encode("utf-16"),                          # with a BOM
        "/utf-16le": text.encode("utf-16-le"),                     # no BOM
        "/utf-32": text.encode("utf-32"),
        "/latin-1": text.encode("latin-1"),
        "/json-utf-16": json.dumps({"echo": token}).encode("utf-16-le"),
        "/base64": base64.b64encode(text.encode()),
        "/hex": text.encode().hex().encode(),
        "/binary": b"\x89PNG\r\n\x1a\n\xff\xfe" + token.encode() + b"\x00\xff",
    }[path]
    return Reply(400 if "fail" in query else 200, body, {"Content-Type": content_type})


ENCODED_CASES = [  # (path, Content-Type, what the result's body must be: "scrubbed", "withheld" or "not shown")
    ("/utf-16", "text/plain", "scrubbed"),                             # the BOM says UTF-16
    ("/utf-16le", "text/plain; charset=utf-16-le", "scrubbed"),        # the charset says so
    ("/utf-32", "text/plain; charset=utf-8", "scrubbed"),              # a BOM wins over the header
    ("/latin-1", "text/plain; charset=ISO-8859-1", "scrubbed"),
    ("/json-utf-16", "application/json", "json"),                      # JSON detects its own encoding
    ("/utf-16le", "text/plain", "withheld"),                           # UTF-16 read as UTF-8: NULs
    ("/utf-16le", "text/plain; charset=iso-8859-1", "withheld"),       # a wrong charset: NULs too
    ("/binary", "image/png", "withheld"),                              # not UTF-8 at all
    ("/base64", "text/plain", "not shown"),
    ("/hex", "text/plain", "not shown"),
]


async def test_an_echo_in_any_declared_or_detected_encoding_is_scrubbed_or_withheld(make_app, receiver, caplog, sql):
    caplog.set_level(logging.DEBUG)
    receiver.respond = _encoded_echo
    app = make_app(master_key=vault.generate_key())
    async with app:
        await app.set_secret_async("tok", TOKEN)
        ids = [(await app.enqueue_async("http", {
            "url": receiver.url(f"{path}?type={urllib.parse.quote(content_type)}"),
            "headers": {"X-Token": "{{secret:tok}}"}})).id for path, content_type, _ in ENCODED_CASES]
        failing = await app.enqueue_async("http", {"url": receiver.url("/utf-16le?type=text/plain&fail=1"),
                                                   "headers": {"X-Token": "{{secret:tok}}"}}, max_attempts=1)
        await app.process_async()
        jobs = [await app.get_job_async(i) for i in ids]
        failed = await app.get_job_async(failing.id)
    assert all(seen.headers["x-token"] == TOKEN for seen in receiver.requests)
    for (path, content_type, expected), job in zip(ENCODED_CASES, jobs):
        case = (path, content_type, job.result)
        assert job.status == "succeeded", case
        body = job.result["body"]
        if expected == "scrubbed":
            assert body == "your token was {{secret:tok}}, thanks", case
        elif expected == "json":
            assert body == {"echo": "{{secret:tok}}"}, case
        elif expected == "not shown":
            assert body == "(not shown: it holds a secret's value)", case
        else:
            withheld = job.result["body_withheld"]
            assert body is None and "the call sent secrets" in withheld["reason"], case
            assert withheld["bytes"] > 0 and len(withheld["sha256"]) == 64, case
    assert failed.status == "failed" and "HTTP 400" in failed.last_error and "body withheld" in failed.last_error
    # No character run of the token anywhere, in any encoding the tests know of.
    _assert_nowhere(PIECES, _stored(sql), _logged(caplog))
    stored = _stored(sql)
    canary.assert_nowhere(stored.encode(), TOKEN)
    assert "\\u0000" not in stored and "L\\ufffdE\\ufffdA" not in stored


async def test_without_secrets_a_body_is_decoded_by_its_charset_and_bad_bytes_are_replaced(make_app, receiver):
    receiver.respond = _encoded_echo
    app = make_app()
    async with app:
        utf16 = await app.enqueue_async("http", {"url": receiver.url("/utf-16le?type=text/plain;charset=utf-16le")})
        binary = await app.enqueue_async("http", {"url": receiver.url("/binary?type=image/png")})
        await app.process_async()
        utf16, binary = await app.get_job_async(utf16.id), await app.get_job_async(binary.id)
    assert utf16.result["body"] == "your token was no-token, thanks"
    assert binary.result["body"].startswith("\ufffdPNG") and "body_withheld" not in binary.result
