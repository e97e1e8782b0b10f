"""pg_net judged by its own tests: the cases of supabase/pg_net's test/test_http_*.py, written
again for jobline, with `net.` renamed `jobline.`.

Each test here is named after the pg_net test it ports and checks the outputs that test expects.
pg_net's tests talk to an nginx on localhost:8080 (with the echo and ngx_pathological
modules); ``nginx()`` below answers the same routes from a local receiver (tests/receiver.py)
on a free port. A jobline worker runs in the background, as pg_net's background worker does,
and ``Net.collect_sync`` is pg_net's ``collect_response_sync``: ``_http_collect_response(id,
async := false)`` flattened.

How the port differs from the original, everywhere:
- jobline retries a call that timed out, found no server or got a malformed reply (5 attempts),
  and ``jobline._http_response`` shows a row once the call is settled, after its last attempt.
  The default backoff (about 2, 4, 8, 16 s) is cut out here: a background task makes every
  waiting retry due at once, as `jobline jobs run-now` would. The tests that reach an error row
  therefore see it after five quick attempts.
- Delays and timeouts are scaled down (pg_net waits with fixed sleeps of up to 7 s; these
  tests wait on the responses themselves), keeping each case's point: a delay longer than
  the timeout times out, a shorter one does not.
- Where pg_net reads its queue table (net.http_request_queue), the queued call is the job row.

pg_net's other test files (test_engine, test_privileges, test_stat_statements, test_user_db,
test_worker_behavior) are about its background worker, its GUCs and its roles, and are not
part of this port. Every test of test/test_http_*.py is either here or in NOT_PORTED; those here
whose outcome differs on purpose from pg_net's are in DIFFERENT, with the reason (also in
docs/howto/from-supabase.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import urllib.parse
from collections.abc import AsyncIterator

import psycopg
import pytest

from conftest import eventually, running
from jobline import App
from jobline.runtime.maintenance import Maintenance
from jobline.settings import Settings
from receiver import Receiver, Reply, Seen, network_guard

pytestmark = pytest.mark.timeout(120)

# Every test in pg_net's test/test_http_*.py (supabase/pg_net at 68ef0bf), by file.
PG_NET_TESTS = {
    "test_http_get_collect.py": [
        "test_http_get_returns_id", "test_http_get_works_with_ip", "test_http_get_collect_sync_success",
        "test_http_collect_response_async_does_not_exist", "test_http_get_responses_have_different_created_times",
        "test_http_get_collect_with_redirect", "test_http_get_ipv6", "test_http_get_null_headers"],
    "test_http_post_collect.py": [
        "test_http_post_returns_id", "test_http_post_special_chars_body", "test_http_post_collect_sync_success",
        "test_http_post_collect_non_empty_body", "test_http_post_wrong_header_exception",
        "test_http_post_no_content_type_coerce", "test_http_post_empty_body"],
    "test_http_delete.py": [
        "test_http_delete_returns_id", "test_http_delete_collect_sync_success", "test_http_delete_positional_args",
        "test_http_delete_with_body"],
    "test_http_errors.py": [
        "test_get_bad_url", "test_http_get_rejects_relative_url", "test_bad_post", "test_bad_get", "test_bad_delete",
        "test_bad_utils", "test_it_keeps_working_after_many_connection_refused",
        "test_it_keeps_working_after_server_returns_nothing"],
    "test_http_headers.py": ["test_http_headers_set"],
    "test_http_malformed_headers.py": [
        "test_http_header_missing_value", "test_http_header_injection", "test_http_header_spaces",
        "test_http_header_non_printable_chars"],
    "test_http_params.py": ["test_http_get_url_params_set", "test_http_post_url_params_set"],
    "test_http_timeout.py": [
        "test_http_get_timeout_reached", "test_http_detailed_timeout", "test_http_get_succeed_with_gt_timeout",
        "test_many_slow_mixed_with_fast"],
    "test_http_requests_deleted_after_ttl.py": [
        "test_http_responses_deleted_after_ttl", "test_http_responses_will_complete_deletion",
        "test_http_responses_will_delete_despite_restart"],
}

NOT_PORTED = {
    "test_bad_utils": "net._encode_url_with_params_array and net._urlencode_string are pg_net's private C "
                      "helpers (API: Private); jobline has none: the worker builds the URL.",
    "test_http_responses_will_complete_deletion": "about pg_net.batch_size, the number of expired responses its "
                                                  "worker deletes per wake; jobline's workers prune finished jobs "
                                                  "in batches of 5000 until none are due, with no setting.",
    "test_http_responses_will_delete_despite_restart": "about net.worker_restart(); there is no worker inside "
                                                       "PostgreSQL to restart: every jobline worker process prunes.",
}

DIFFERENT = {
    "test_get_bad_url": "refused at once as in pg_net (nothing is queued); the message is jobline's (`url must be "
                        "an http:// or https:// URL ...`, SQLSTATE 22023), not curl's `Unsupported URL scheme`.",
    "test_http_get_rejects_relative_url": "refused at once as in pg_net; jobline's message (`url must be an "
                                          "http:// or https:// URL`), not pg_net's `invalid URL \"...\"`.",
    "test_bad_post": "a NULL url is refused as in pg_net, with SQLSTATE 22023 and a message naming the argument, "
                     "not the NOT NULL violation (23502) of pg_net's queue table.",
    "test_bad_get": "as test_bad_post.",
    "test_bad_delete": "as test_bad_post.",
    "test_it_keeps_working_after_many_connection_refused": "each call is tried 5 times before its error row "
                                                           "appears; error_msg is httpx's (`ConnectError: ...`), "
                                                           "not curl's `Couldn't connect to server`.",
    "test_it_keeps_working_after_server_returns_nothing": "tried 5 times; error_msg is httpx's (`Server "
                                                          "disconnected without sending a response`), not curl's "
                                                          "`Server returned nothing (no headers, no data)`.",
    "test_http_header_injection": "an ERROR, as in pg_net, after 5 attempts; the message is httpx's (`illegal "
                                  "header line`), not curl's `Weird server reply`.",
    "test_http_header_spaces": "a header name with spaces is not a token (RFC 9110 5.1): jobline's HTTP client "
                               "refuses the response (a guard against response smuggling), so the call ends in an "
                               "ERROR after 5 attempts, where curl keeps the header.",
    "test_http_responses_deleted_after_ttl": "responses go with their jobs, after JOBLINE_RETAIN_SUCCEEDED_SECONDS "
                                             "(7 days) or _FAILED_SECONDS (30 days), pruned by every worker's "
                                             "maintenance loop; pg_net deletes after pg_net.ttl (6 hours).",
}


def test_every_pg_net_http_test_is_ported_or_listed_with_its_reason():
    pg_net = [name for names in PG_NET_TESTS.values() for name in names]
    assert len(pg_net) == len(set(pg_net)) == 41
    ported = {name for name in globals() if name.startswith("test_")} - {
        "test_every_pg_net_http_test_is_ported_or_listed_with_its_reason"}
    assert ported | set(NOT_PORTED) == set(pg_net) and not ported & set(NOT_PORTED)
    assert set(DIFFERENT) <= ported


# -- pg_net's nginx -----------------------------------------------------------------------------------


def nginx(seen: Seen) -> Reply:
    """The routes of pg_net's nix/nginx/conf/custom.conf: nginx's echo module, and
    ngx_pathological at /pathological (status, delay in seconds, disconnect, malformed-header)."""
    path, _, query = seen.path.partition("?")
    args = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    request_headers = "".join(f"{name}: {value}\r\n" for name, value in seen.raw_headers)
    text = "text/plain"
    if path == "/":
        return Reply(200, "Hello world\n", {"Content-Type": text})
    if path == "/echo-method":
        return Reply(200, f"{seen.method}\n", {"Content-Type": text})
    if path == "/anything":
        return Reply(200, f"{'?' if query else ''}{query}\n", {"Content-Type": text})
    if path == "/headers":
        return Reply(200, f"{seen.method} {seen.path} HTTP/1.1\r\n{request_headers}\r\n", {"Content-Type": text})
    if path == "/post":
        if seen.method != "POST":
            return Reply(405, "")
        if seen.headers.get("content-type") != "application/json":
            return Reply(406, "")
        return Reply(200, seen.body + b"\n", {"Content-Type": "application/json"})
    if path == "/delete":
        if seen.method != "DELETE":
            return Reply(405, "")
        if "content-type" in seen.headers:  # it takes no body
            return Reply(400, "")
        return Reply(200, f"{request_headers}{'?' if query else ''}{query}\n", {"Content-Type": text})
    if path == "/delete_w_body":
        if seen.method != "DELETE":
            return Reply(405, "")
        return Reply(200, seen.body + b"\n", {"Content-Type": text})
    if path == "/redirect_me":
        return Reply(301, "", {"Location": "/to_here"})
    if path == "/to_here":
        return Reply(200, "I got redirected\n", {"Content-Type": text})
    if path == "/pathological":
        if args.get("disconnect") == "true":
            return Reply(disconnect=True)
        malformed = {
            "spaces-in-header-name": ("Spaces In Header Name", "This header name contains spaces"),
            "header-injection": ("HeaderInjection\r\nInjected-Header", "This header contains an injection"),
            "non-printable-chars": ("NonPrintableChars", "NonPrintableChars\x01\x02"),
            "missing-value": ("MissingValue", ""),
        }
        headers = dict([malformed[args["malformed-header"]]]) if "malformed-header" in args else {}
        return Reply(int(args.get("status", 200)), b"", headers, delay=float(args.get("delay", 0)))
    return Reply(404, "")


# -- pg_net's test/common.py, for jobline ------------------------------------------------------------


@dataclasses.dataclass
class Net:
    conn: psycopg.AsyncConnection   # autocommit: each call commits, which wakes the worker
    server: Receiver

    def url(self, path: str = "") -> str:
        """A URL of the nginx stand-in, named as pg_net's tests name theirs: localhost."""
        return self.server.url(path, host="localhost")

    async def request(self, query: str, params=None) -> int:
        """common.http_request: the request id of a query returning one row of one column."""
        cur = await self.conn.execute(query, params)
        [(request_id,)] = await cur.fetchall()
        return request_id

    async def requests(self, query: str) -> int:
        """common.http_requests: the request id in the first row of a query queuing several."""
        cur = await self.conn.execute(query)
        return (await cur.fetchone())[0]

    async def collect_sync(self, request_id: int) -> dict:
        """common.collect_response_sync: wait for the response, flattened to a mapping."""
        return await self.row("""
            SELECT status::text AS status, message, (response).status_code, (response).headers, (response).body
              FROM jobline._http_collect_response(%s, async := false)""", [request_id])

    async def row(self, query: str, params=None) -> dict:
        cur = await self.conn.execute(query, params)
        row = await cur.fetchone()
        return None if row is None else dict(zip([c.name for c in cur.description], row))

    async def response_count(self) -> int:
        return (await self.row("SELECT count(*) AS n FROM jobline._http_response"))["n"]

    async def wait_for_response_count(self, expected: int) -> None:
        """common.wait_for_response_count."""
        async def reached() -> bool:
            return await self.response_count() == expected

        await eventually(reached, timeout=60)


async def _retry_now(db_url: str) -> None:
    """Make every http call that waits for a retry due now (and wake the workers)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while True:
            await conn.execute("""
                WITH due AS (
                  UPDATE jobline.jobs SET run_at = now()
                   WHERE function = 'http' AND status = 'pending' AND attempts > 0 AND run_at > now()
                  RETURNING id)
                SELECT pg_notify('jobline_jobs', '') FROM due""")
            await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def guard():
    with network_guard() as events:
        yield events


@pytest.fixture
def server():
    with Receiver(respond=nginx) as r:
        yield r


@pytest.fixture
async def app(db_url) -> AsyncIterator[App]:
    app = App(settings=Settings(database_url=db_url, lease_seconds=30, poll_interval=0.2, concurrency=50,
                                http_allow="localhost,127.0.0.0/8,::1"))
    async with app:
        yield app


@pytest.fixture
async def net(app, db_url, server) -> AsyncIterator[Net]:
    hurry = asyncio.create_task(_retry_now(db_url))
    try:
        async with running(app), await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            yield Net(conn, server)
    finally:
        hurry.cancel()
        await asyncio.gather(hurry, return_exceptions=True)


async def refused(net: Net, query: str) -> psycopg.Error:
    """The error a query raises; nothing may have been queued."""
    with pytest.raises(psycopg.Error) as caught:
        await net.conn.execute(query)
    assert (await net.row("SELECT count(*) AS n FROM jobline.jobs"))["n"] == 0
    return caught.value


# -- test_http_get_collect.py ------------------------------------------------------------------------


async def test_http_get_returns_id(net):
    request_id = await net.request(f"select jobline.http_get('{net.url()}')")
    assert request_id == 1


async def test_http_get_works_with_ip(net):
    request_id = await net.request(f"select jobline.http_get('{net.server.url('')}')")
    assert request_id == 1


async def test_http_get_collect_sync_success(net):
    request_id = await net.request(f"select jobline.http_get('{net.url()}')")
    response = await net.collect_sync(request_id)
    assert response is not None
    assert (response["status"], response["message"], response["status_code"]) == ("SUCCESS", "ok", 200)
    assert response["body"] is not None


async def test_http_collect_response_async_does_not_exist(net):
    cur = await net.conn.execute("select * from jobline._http_collect_response(1, async:=true)")
    response = await cur.fetchone()
    assert response[0] == "ERROR"
    assert "not found" in response[1]
    assert response[2] is None


async def test_http_get_responses_have_different_created_times(net):
    # pg_net sleeps a second between the calls; here each response is awaited before the next call.
    for _ in range(3):
        await net.collect_sync(await net.request(f"select jobline.http_get('{net.url('/echo-method')}')"))
    count = await net.row("select count(distinct created) as n from jobline._http_response")
    assert count["n"] == 3


async def test_http_get_collect_with_redirect(net):
    request_id = await net.request(f"select jobline.http_get('{net.url('/redirect_me')}')")
    response = await net.collect_sync(request_id)
    assert response["body"] == "I got redirected\n"


async def test_http_get_ipv6(net):
    # pg_net's second nginx listens on [::1]:8888 only. Here `localhost` may resolve to
    # 127.0.0.1 alone, so the IPv6-only server is named by its address.
    try:
        ipv6_only = Receiver(host="::1", default=Reply(200, "Hello ipv6 only\n"))
    except OSError as exc:
        pytest.skip(f"this machine has no IPv6 loopback: {exc}")
    with ipv6_only:
        request_id = await net.request(f"select jobline.http_get('{ipv6_only.url('/')}')")
        response = await net.collect_sync(request_id)
    assert response["body"] == "Hello ipv6 only\n"


async def test_http_get_null_headers(net):
    request_id = await net.request(f"select jobline.http_get('{net.url()}', null::jsonb, null::jsonb, 100)")
    response = await net.collect_sync(request_id)
    assert response["body"] == "Hello world\n"


# -- test_http_post_collect.py -----------------------------------------------------------------------


async def test_http_post_returns_id(net):
    request_id = await net.request(f"select jobline.http_post(url:='{net.url('/post')}', body:='{{}}'::jsonb)")
    assert request_id == 1


async def test_http_post_special_chars_body(net):
    request_id = await net.request(f"""
        select jobline.http_post(url:='{net.url('/post')}', body:=json_build_object('foo', 'ba"r')::jsonb)""")
    assert request_id == 1
    assert json.loads((await net.collect_sync(request_id))["body"]) == {"foo": 'ba"r'}  # and it arrived whole


async def test_http_post_collect_sync_success(net):
    request_id = await net.request(f"select jobline.http_post(url:='{net.url('/post')}')")
    response = await net.collect_sync(request_id)
    assert (response["status"], response["message"]) == ("SUCCESS", "ok")
    assert response["body"] is not None


async def test_http_post_collect_non_empty_body(net):
    request_id = await net.request(f"""
        select jobline.http_post(
            url:='{net.url('/post')}',
            body:='{{"hello": "world"}}'::jsonb,
            headers:='{{"Content-Type": "application/json", "accept": "application/json"}}'::jsonb)""")
    response = await net.collect_sync(request_id)
    assert (response["status"], response["message"]) == ("SUCCESS", "ok")
    assert json.loads(response["body"])["hello"] == "world"


async def test_http_post_wrong_header_exception(net):
    error = await refused(net, f"""
        select jobline.http_post(url:='{net.url('/post')}', headers:='{{"Content-Type": "application/text"}}'::jsonb)""")
    assert 'Content-Type header must be "application/json"' in str(error)  # pg_net's words


async def test_http_post_no_content_type_coerce(net):
    request_id = await net.request(
        f"""select jobline.http_post(url:='{net.url('/post')}', headers:='{{"other": "val"}}'::jsonb)""")
    # pg_net reads its queue table; the queued request is the job.
    headers = (await net.row("select payload->'headers' as headers from jobline.jobs where id = %s",
                             [request_id]))["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["other"] == "val"
    assert (await net.collect_sync(request_id))["status_code"] == 200  # /post answers 406 without it


async def test_http_post_empty_body(net):
    request_id = await net.request(f"select jobline.http_post(url:='{net.url('/echo-method')}', body:=null)")
    response = await net.collect_sync(request_id)
    assert response["body"] == "POST\n"


# -- test_http_delete.py ----------------------------------------------------------------------------


async def test_http_delete_returns_id(net):
    request_id = await net.request(f"select jobline.http_get(url:='{net.url('/delete')}')")  # sic: http_get
    assert request_id == 1


async def test_http_delete_collect_sync_success(net):
    request_id = await net.request(f"""
        select jobline.http_delete(
            url:='{net.url('/delete')}'
        ,   params:= '{{"param-foo": "bar"}}'
        ,   headers:= '{{"X-Baz": "foo"}}')""")
    response = await net.collect_sync(request_id)
    assert (response["status"], response["message"]) == ("SUCCESS", "ok")
    assert "X-Baz" in response["body"] and "param-foo" in response["body"]


async def test_http_delete_positional_args(net):
    for args in ("", ", '{\"param-foo\": \"bar\"}'", ", '{\"param-foo\": \"bar\"}', '{\"X-Baz\": \"foo\"}'",
                 ", '{\"param-foo\": \"bar\"}', '{\"X-Baz\": \"foo\"}', 5000"):
        request_id = await net.request(f"select jobline.http_delete('{net.url('/delete')}'{args})")
        response = await net.collect_sync(request_id)
        assert (response["status"], response["message"], response["status_code"]) == ("SUCCESS", "ok", 200), args


async def test_http_delete_with_body(net):
    request_id = await net.request(f"""
        select jobline.http_delete(url :='{net.url('/delete_w_body')}', body := '{{"key": "val"}}')""")
    response = await net.collect_sync(request_id)
    assert json.loads(response["body"])["key"] == "val"


# -- test_http_errors.py ------------------------------------------------------------------------------


async def test_get_bad_url(net):
    error = await refused(net, f"select jobline.http_get('localhost:{net.server.port}')")
    assert isinstance(error, psycopg.errors.InvalidParameterValue)
    assert "url must be an http:// or https:// URL" in str(error)


async def test_http_get_rejects_relative_url(net):
    error = await refused(net, "select jobline.http_get('/malformed_url')")
    assert "url must be an http:// or https:// URL" in str(error) and "'/malformed_url'" in str(error)


async def test_bad_post(net):
    error = await refused(net, "select jobline.http_post(null, '{\"hello\": \"world\"}')")
    assert "url must be" in str(error) and "got NULL" in str(error)


async def test_bad_get(net):
    error = await refused(net, "select jobline.http_get(null)")
    assert "url must be" in str(error) and "got NULL" in str(error)


async def test_bad_delete(net):
    error = await refused(net, "select jobline.http_delete(null)")
    assert "url must be" in str(error) and "got NULL" in str(error)


async def test_it_keeps_working_after_many_connection_refused(net):
    with Receiver() as gone:
        wrong_port = gone.port  # closed again at once: connections are refused
    request_id = await net.requests(
        f"select jobline.http_get('http://localhost:{wrong_port}') from generate_series(1,10) offset 9")
    response = await net.collect_sync(request_id)
    assert response["status"] == "ERROR"
    await net.wait_for_response_count(10)  # the other nine settle too
    groups = await (await net.conn.execute(
        "select error_msg, count(*) from jobline._http_response where status_code is null group by error_msg"
    )).fetchall()
    [(error_msg, count)] = groups
    assert error_msg.startswith(f"GET http://localhost:{wrong_port}: ConnectError: ")
    assert count == 10
    attempts = await net.row("select min(attempts) as least, max(attempts) as most from jobline.jobs")
    assert (attempts["least"], attempts["most"]) == (5, 5)  # the row came after the last attempt

    request_id = await net.request(f"select jobline.http_get('{net.url('/pathological?status=200')}')")
    response = await net.collect_sync(request_id)
    assert (response["status"], response["message"], response["status_code"]) == ("SUCCESS", "ok", 200)


async def test_it_keeps_working_after_server_returns_nothing(net):
    request_id = await net.requests(f"select jobline.http_get('{net.url('/pathological?disconnect=true')}') "
                                    "from generate_series(1,10) offset 9")
    response = await net.collect_sync(request_id)
    assert response["status"] == "ERROR"
    await net.wait_for_response_count(10)
    [(error_msg, count)] = await (await net.conn.execute(
        "select error_msg, count(*) from jobline._http_response where status_code is null group by error_msg"
    )).fetchall()
    assert error_msg.endswith("RemoteProtocolError: Server disconnected without sending a response.")
    assert count == 10

    request_id = await net.requests(f"select jobline.http_get('{net.url('/pathological?status=200')}') "
                                    "from generate_series(1,10) offset 9")
    response = await net.collect_sync(request_id)
    assert response["status"] == "SUCCESS"
    await net.wait_for_response_count(20)
    [(status_code, count)] = await (await net.conn.execute(
        "select status_code, count(*) from jobline._http_response where status_code = 200 group by status_code"
    )).fetchall()
    assert (status_code, count) == (200, 10)


# -- test_http_headers.py -----------------------------------------------------------------------------


async def test_http_headers_set(net):
    request_id = await net.request(f"""
        select jobline.http_get(
            url:='{net.url('/headers')}',
            headers:='{{"pytest-header": "pytest-header", "accept": "application/json"}}')""")
    response = await net.collect_sync(request_id)
    assert "pytest-header" in response["body"]


# -- test_http_malformed_headers.py -------------------------------------------------------------------


async def test_http_header_missing_value(net):
    request_id = await net.request(
        f"select jobline.http_get(url:='{net.url('/pathological?malformed-header=missing-value')}')")
    response = await net.collect_sync(request_id)
    assert response["status"] == "SUCCESS"
    assert "MissingValue" in response["headers"]


async def test_http_header_injection(net):
    request_id = await net.request(
        f"select jobline.http_get(url:='{net.url('/pathological?malformed-header=header-injection')}')")
    response = await net.collect_sync(request_id)
    assert response["status"] == "ERROR"
    assert "RemoteProtocolError: illegal header line" in response["message"]


async def test_http_header_spaces(net):
    request_id = await net.request(
        f"select jobline.http_get(url:='{net.url('/pathological?malformed-header=spaces-in-header-name')}')")
    response = await net.collect_sync(request_id)
    assert response["status"] == "ERROR"  # pg_net: SUCCESS, with the header
    assert "RemoteProtocolError: illegal header line" in response["message"]


async def test_http_header_non_printable_chars(net):
    request_id = await net.request(
        f"select jobline.http_get(url:='{net.url('/pathological?malformed-header=non-printable-chars')}')")
    response = await net.collect_sync(request_id)
    assert response["status"] == "SUCCESS"
    assert response["headers"]["NonPrintableChars"] == "NonPrintableChars\x01\x02"


# -- test_http_params.py ------------------------------------------------------------------------------


async def test_http_get_url_params_set(net):
    request_id = await net.request(
        f"""select jobline.http_get(url:='{net.url('/anything')}', params:='{{"hello": "world"}}'::jsonb)""")
    response = await net.collect_sync(request_id)
    assert response["status"] == "SUCCESS"
    assert "?hello=world" in response["body"]


async def test_http_post_url_params_set(net):
    request_id = await net.request(
        f"""select jobline.http_post(url:='{net.url('/anything')}', params:='{{"hello": "world"}}'::jsonb)""")
    response = await net.collect_sync(request_id)
    assert response["status"] == "SUCCESS"
    assert "?hello=world" in response["body"]


# -- test_http_timeout.py -----------------------------------------------------------------------------

# pg_net's message for a timeout, which jobline writes in _http_response.error_msg as well.
DETAILED_TIMEOUT = re.compile(r"""
    Total\stime:\s*(?P<A>[0-9]*\.?[0-9]+)\s*ms
    \s*\(DNS\stime:\s*(?P<B>[0-9]*\.?[0-9]+)\s*ms,\s*
    TCP/SSL\shandshake\stime:\s*(?P<C>[0-9]*\.?[0-9]+)\s*ms,\s*
    HTTP\sRequest/Response\stime:\s*(?P<D>[0-9]*\.?[0-9]+)\s*ms\)
""", re.VERBOSE)


async def test_http_get_timeout_reached(net):
    # pg_net: a 6 s reply against the default 5000 ms timeout, read after sleeping 7 s.
    request_id = await net.request(
        f"select jobline.http_get(url := '{net.url('/pathological?status=200&delay=2')}', "
        "timeout_milliseconds := 500)")
    await net.collect_sync(request_id)
    response = await net.row("select content_type, content, error_msg, timed_out from jobline._http_response "
                             "where id = %s", [request_id])
    assert response["content_type"] is None and response["content"] is None
    assert response["timed_out"] is True
    assert response["error_msg"].startswith("Timeout of 500 ms reached")


async def test_http_detailed_timeout(net):
    request_id = await net.request(
        f"select jobline.http_get(url := '{net.url('/pathological?delay=2')}', timeout_milliseconds := 300)")
    await net.collect_sync(request_id)
    response = await net.row("select content_type, content, error_msg, timed_out from jobline._http_response "
                             "where id = %s", [request_id])
    match = DETAILED_TIMEOUT.search(response["error_msg"])
    assert match, response["error_msg"]
    total, dns, handshake, http = (float(match.group(g)) for g in "ABCD")
    assert response["content_type"] is None and response["content"] is None and response["timed_out"] is True
    assert total > 0 and dns > 0 and handshake > 0 and http > 0
    assert total >= 300 and abs(total - dns - handshake - http) < 0.01


async def test_http_get_succeed_with_gt_timeout(net):
    # pg_net: a 3 s reply within 3500 ms; here half a second within three.
    request_id = await net.request(
        f"select jobline.http_get(url := '{net.url('/pathological?status=200&delay=0.5')}', "
        "timeout_milliseconds := 3000)")
    await net.collect_sync(request_id)
    response = await net.row("select status_code from jobline._http_response where id = %s", [request_id])
    assert response["status_code"] == 200


async def test_many_slow_mixed_with_fast(net):
    await net.conn.execute(f"""
      select
        jobline.http_get(url := '{net.url('/pathological?status=200')}')
      , jobline.http_get(url := '{net.url('/pathological?status=200&delay=1')}', timeout_milliseconds := 200)
      , jobline.http_get(url := '{net.url('/pathological?status=200')}')
      , jobline.http_get(url := '{net.url('/pathological?status=200&delay=1')}', timeout_milliseconds := 200)
      from generate_series(1,25) _""")
    await net.wait_for_response_count(100)
    counts = await net.row("""
      select
        count(*) filter (where error_msg is null and status_code = 200) as request_successes,
        count(*) filter (where error_msg is not null and error_msg like 'Timeout of 200 ms reached%')
          as request_timeouts
      from jobline._http_response""")
    assert (counts["request_successes"], counts["request_timeouts"]) == (50, 50)


# -- test_http_requests_deleted_after_ttl.py -----------------------------------------------------------


async def test_http_responses_deleted_after_ttl(net, app):
    request_id = await net.request(f"select jobline.http_get('{net.url('/anything')}')")
    response = await net.collect_sync(request_id)
    assert response["status"] == "SUCCESS"
    # pg_net sets pg_net.ttl to 1 second and sleeps past it. jobline's retention for a settled
    # call is its job's (JOBLINE_RETAIN_SUCCEEDED_SECONDS, 7 days): the response is made older.
    await net.conn.execute("update jobline.jobs set finished_at = finished_at - interval '8 days' where id = %s",
                           [request_id])
    assert await net.response_count() == 1
    await Maintenance(app.store, app.settings).prune()  # what every worker does each minute
    assert await net.response_count() == 0
