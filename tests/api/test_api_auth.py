"""Authentication against a running server: forged credentials (reliability.md S1) on every
authenticated route of the OpenAPI spec, valid credentials without a user, Supabase's
service-role JWT, API tokens, the runner secret (S10), and the per-address failure limit."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import httpx
import jwt
import pytest
from api_support import (JWT_SECRET, RUNNER_SECRET, SERVICE, SERVICE_KEY, Server, api_settings, as_user,
                         assert_error, bearer, client, enqueue, server, user_jwt)  # noqa: F401
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jobline import auth
from jobline.api.security import FailureLimiter

CLAIM = "/functions/v1/claim-next-task"
NOT_AUTHENTICATED = ("/healthz", "/readyz", "/openapi.json")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict, signature: str = "") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{signature}"


def tampered() -> str:
    header, _, signature = user_jwt("alice").split(".")
    claims = jwt.decode(user_jwt("alice"), options={"verify_signature": False})
    return f"{header}.{b64(json.dumps({**claims, 'sub': 'bob'}).encode())}.{signature}"


def forged_tokens() -> dict[str, str | None]:
    now = int(time.time())
    user = {"sub": "alice", "aud": "authenticated", "role": "authenticated", "exp": now + 3600}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    tokens: dict[str, str | None] = {
        "no header": None,
        "empty bearer": "",
        "not a JWT": "hello-there",
        "two segments": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9",
        "wrong secret": user_jwt("alice", secret="x" * 40),
        "tampered payload, original signature": tampered(),
        "expired": user_jwt("alice", exp=now - 120, iat=now - 3600),
        "no exp": jwt.encode({k: v for k, v in user.items() if k != "exp"}, JWT_SECRET, algorithm="HS256"),
        "nbf in the future": user_jwt("alice", nbf=now + 120),
        # RFC 7519's NumericDate is a JSON number: PyJWT would read these strings as numbers.
        "exp a string": user_jwt("alice", exp=str(now + 3600)),
        "nbf a string": user_jwt("alice", nbf=str(now - 60)),
        "iat a string": user_jwt("alice", iat=str(now)),
        "exp true": user_jwt("alice", exp=True),
        "aud anon": user_jwt("alice", aud="anon"),
        "HS512": user_jwt("alice", algorithm="HS512"),
        "RS256": jwt.encode(user, rsa_key, algorithm="RS256"),
        "ES256": jwt.encode(user, ec_key, algorithm="ES256"),
        "RS256 public key as HS256 secret": _hs256_with_key(user, rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
        "kid path traversal": jwt.encode(user, "y" * 40, algorithm="HS256", headers={"kid": "../../../../dev/null"}),
        "sub not a string": jwt.encode({**user, "sub": 42}, JWT_SECRET, algorithm="HS256"),
        "oversized": "a" * 10_000,
        "unknown API token": auth.new_token(),
        "API token prefix, wrong body": auth.TOKEN_PREFIX + "x" * 43,
        "service key with one more byte": SERVICE_KEY + "x",
        "service key minus its last byte": SERVICE_KEY[:-1],
    }
    for casing in ("none", "None", "NONE", "nOnE"):
        tokens[f"alg {casing}, empty signature"] = unsigned({"alg": casing, "typ": "JWT"}, user)
        tokens[f"alg {casing}, random signature"] = unsigned({"alg": casing, "typ": "JWT"}, user, b64(b"r" * 32))
    return tokens


def _hs256_with_key(claims: dict, key: bytes) -> str:
    import hashlib
    import hmac

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


def authenticated_operations(spec: dict) -> list[tuple[str, str]]:
    """Every (method, path) of the spec that needs a credential, with path parameters filled."""
    out = []
    for path, methods in spec["paths"].items():
        if path in NOT_AUTHENTICATED:
            continue
        for method in methods:
            out.append((method.upper(), path.replace("{id}", "1").replace("{name}", "echo")))
    return out


def headers_for(token: str | None) -> dict[str, str]:
    if token is None:
        return {}
    # An empty bearer is sent as "Bearer": HTTP/1.1 trims the space that would follow it.
    return {"Authorization": f"Bearer {token}" if token else "Bearer"}


@pytest.fixture
def unlimited(settings):
    """A server whose failure limit does not get in the way of a sweep of forgeries."""
    running = Server(api_settings(settings), auth_failure_limit=100_000).start()
    yield running
    running.stop()


def test_every_forged_credential_is_401_on_every_authenticated_route(unlimited, sql, caplog):
    enqueue(sql, "render", "alice")
    with httpx.Client(base_url=unlimited.url) as http:
        operations = authenticated_operations(http.get("/openapi.json").json())
        assert len(operations) >= 14
        bodies = set()
        for name, token in forged_tokens().items():
            for method, path in operations:
                response = http.request(method, path, headers=headers_for(token), json={"lease_token": "x"})
                assert response.status_code == 401, (name, method, path, response.text)
                assert response.headers["WWW-Authenticate"] == "Bearer", (name, path)
                assert_error(response, 401, "unauthenticated")
                if token:
                    assert token not in response.text
                    bodies.add(response.content)
        assert len(bodies) == 1  # one message whatever the reason: nothing learnt about which check failed
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]
    assert SERVICE_KEY not in caplog.text and JWT_SECRET not in caplog.text


def test_numeric_dates_may_have_a_fraction(client):
    now = time.time()
    token = user_jwt("alice", exp=now + 3600.5, nbf=now - 0.5, iat=now - 0.25)
    assert client.post(CLAIM, headers=bearer(token)).status_code == 204


def test_basic_auth_and_other_schemes_are_401(client):
    for header in (f"Basic {SERVICE_KEY}", SERVICE_KEY, f"Token {SERVICE_KEY}", "Bearer"):
        response = client.post(CLAIM, headers={"Authorization": header})
        assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("claims", [{"sub": None}, {"role": "anon"}, {"role": "anon", "aud": None}],
                         ids=["no sub", "role anon", "anon key"])
def test_a_valid_token_that_names_no_user_is_403(client, claims):
    token = user_jwt(**{"sub": "alice", **claims})
    response = client.post(CLAIM, headers=bearer(token))
    assert_error(response, 403, "forbidden")
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("claims", [{"role": "service_role"}, {"app_metadata": {"role": "supabase_admin"}}])
def test_supabases_service_role_jwt_is_service_access(client, sql, claims):
    now = int(time.time())
    token = jwt.encode({"iss": "supabase", "iat": now, "exp": now + 3600, **claims}, JWT_SECRET, algorithm="HS256")
    task_id = enqueue(sql, "render", "bob")
    response = client.post(CLAIM, headers=bearer(token))
    assert response.status_code == 200 and response.json()["task_id"] == task_id
    assert client.get("/metrics", headers=bearer(token)).status_code == 200


def test_a_users_credential_on_a_service_only_route_is_403(client):
    assert_error(client.get("/metrics", headers=as_user("alice")), 403, "forbidden")


async def test_api_tokens_work_until_revoked(server, sql, store):
    token = auth.new_token()
    row = await store.api_token_insert(user_id="alice", name="laptop", token_hash=auth.token_hash(token),
                                       prefix=auth.token_prefix(token))
    mine, theirs = enqueue(sql, "render", "alice"), enqueue(sql, "render", "bob")
    with httpx.Client(base_url=server.url) as http:
        response = http.post(CLAIM, headers=bearer(token))
        assert response.status_code == 200 and response.json()["task_id"] == mine
        assert http.post(CLAIM, headers=bearer(token)).status_code == 204  # bob's is not alice's
        await store.api_token_revoke(row["id"])
        assert_error(http.post(CLAIM, headers=bearer(token)), 401, "unauthenticated")
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", [theirs]) == [("pending",)]


# -- the runner endpoint (seed 001) ---------------------------------------------------------------


def test_the_runner_endpoint_refuses_missing_wrong_and_short_secrets(client, sql):
    enqueue(sql, "add", None, payload='{"a": 1, "b": 2}')
    for token in (None, "", "wrong-" + "x" * 40, RUNNER_SECRET[:16], RUNNER_SECRET[:-1],
                  RUNNER_SECRET[:-1] + chr(ord(RUNNER_SECRET[-1]) ^ 1), RUNNER_SECRET + "x"):
        response = client.post("/api/jobs/run", headers=headers_for(token))
        assert_error(response, 401, "unauthenticated")
        assert RUNNER_SECRET not in response.text and (not token or token not in response.text)
    assert_error(client.post("/api/jobs/run", headers=as_user("alice")), 403, "forbidden")
    assert sql("SELECT status FROM jobline.jobs") == [("pending",)]


def test_the_runner_secret_or_the_service_key_runs_due_jobs(client, sql):
    for _ in range(3):
        enqueue(sql, "add", None, payload='{"a": 1, "b": 2}')
    enqueue(sql, "explode", None, max_attempts=1)
    response = client.post("/api/jobs/run", headers=bearer(RUNNER_SECRET), json={"limit": 2})
    assert response.status_code == 200
    first = response.json()
    assert (first["status"], first["processed"], len(first["results"])) == ("ok", 2, 2)
    rest = client.post("/api/jobs/run", headers=SERVICE).json()
    assert (rest["processed"], rest["succeeded"], rest["failed"]) == (2, 1, 1)
    assert {r["error"] for r in rest["results"]} == {None, "ValueError: no good"}
    assert client.post("/api/jobs/run", headers=SERVICE, content=b"").json()["processed"] == 0
    assert sql("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'") == [(3,)]


# -- repeated failures from one address --------------------------------------------------------------


def test_more_than_30_failures_from_one_address_get_429_for_that_address_only(server, sql):
    enqueue(sql, "render", "alice")
    forged = bearer(user_jwt("alice", secret="z" * 40))
    with httpx.Client(base_url=server.url) as here, httpx.Client(
            base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as elsewhere:
        for _ in range(30):
            assert_error(here.post(CLAIM, headers=forged), 401, "unauthenticated")
        limited = here.post(CLAIM, headers=forged)
        assert_error(limited, 429, "rate_limited")
        assert limited.headers["Retry-After"] == "60"
        # While limited, this address gets 429 even with a valid credential (guessing cannot go on)...
        assert_error(here.post(CLAIM, headers=as_user("alice")), 429, "rate_limited")
        assert here.get("/healthz").status_code == 200  # ...but routes without a credential still answer
        assert here.get("/functions/v1/public").status_code == 200
        # Another address is unaffected, and its own failures are its own.
        assert elsewhere.post(CLAIM, headers=as_user("alice")).status_code == 200
        assert_error(elsewhere.post(CLAIM, headers=forged), 401, "unauthenticated")
        server.clock.advance(45)
        assert here.post(CLAIM, headers=as_user("alice")).headers["Retry-After"] == "15"
        server.clock.advance(15)  # the window has passed
        assert here.post(CLAIM, headers=as_user("alice")).status_code == 204
        assert_error(here.post(CLAIM, headers=forged), 401, "unauthenticated")
        metrics = here.get("/metrics", headers=SERVICE).text
    assert 'jobline_auth_failures_total{reason="rate_limited"} 3.0' in metrics
    assert 'jobline_auth_failures_total{reason="unauthenticated"} 32.0' in metrics


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def test_a_rotating_x_forwarded_for_does_not_escape_the_limit_by_default(server):
    forged = bearer(user_jwt("alice", secret="z" * 40))
    with httpx.Client(base_url=server.url) as http:
        for i in range(30):
            assert_error(http.post(CLAIM, headers={**forged, **forwarded(f"203.0.113.{i}")}), 401, "unauthenticated")
        # Without JOBLINE_FORWARDED_ALLOW_IPS the header is ignored: the peer (127.0.0.1) is limited.
        assert_error(http.post(CLAIM, headers={**as_user("alice"), **forwarded("198.51.100.1")}), 429, "rate_limited")


@pytest.fixture
def behind_proxy(settings):
    """A server that trusts X-Forwarded-For from its proxy at 127.0.0.1 (only)."""
    running = Server(dataclasses.replace(api_settings(settings), forwarded_allow_ips="127.0.0.1")).start()
    yield running
    running.stop()


def test_behind_a_configured_proxy_the_forwarded_address_is_limited(behind_proxy):
    forged = bearer(user_jwt("alice", secret="z" * 40))
    with httpx.Client(base_url=behind_proxy.url) as proxy, httpx.Client(
            base_url=behind_proxy.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as stranger:
        for _ in range(30):
            assert_error(proxy.post(CLAIM, headers={**forged, **forwarded("203.0.113.7")}), 401, "unauthenticated")
        assert_error(proxy.post(CLAIM, headers={**as_user("alice"), **forwarded("203.0.113.7")}), 429, "rate_limited")
        # The proxy appends the peer it saw: what the client wrote before it does not change who it is.
        chained = forwarded("198.51.100.1, 203.0.113.7")
        assert_error(proxy.post(CLAIM, headers={**as_user("alice"), **chained}), 429, "rate_limited")
        # Other clients of the same proxy are unaffected, and so is the proxy's own address.
        assert proxy.post(CLAIM, headers={**as_user("alice"), **forwarded("203.0.113.8")}).status_code == 204
        assert proxy.post(CLAIM, headers=as_user("alice")).status_code == 204
        # A peer that is not the proxy does not get to name its address.
        for i in range(30):
            assert_error(stranger.post(CLAIM, headers={**forged, **forwarded(f"198.51.100.{i}")}), 401,
                         "unauthenticated")
        assert_error(stranger.post(CLAIM, headers={**as_user("alice"), **forwarded("198.51.100.99")}), 429,
                     "rate_limited")


def test_the_failure_window_slides():
    clock = [0.0]
    limiter = FailureLimiter(limit=3, window=60, clock=lambda: clock[0])
    for t in (0, 10, 20):
        clock[0] = t
        assert limiter.retry_after("a") is None
        limiter.record("a")
    assert limiter.retry_after("a") == pytest.approx(40)
    assert limiter.retry_after("b") is None
    clock[0] = 60.5  # the failure at 0 left the window: 2 remain
    assert limiter.retry_after("a") is None
    limiter.record("a")
    assert limiter.retry_after("a") == pytest.approx(9.5)
    clock[0] = 200
    assert limiter.retry_after("a") is None and "a" not in limiter._failures


def test_the_limiter_bounds_its_memory():
    clock = [0.0]
    limiter = FailureLimiter(limit=2, window=60, clock=lambda: clock[0], max_addresses=100)
    for i in range(1000):
        clock[0] = i / 10
        limiter.record(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._failures) <= 100
