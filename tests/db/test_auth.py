"""Credentials to principals (auth.py): the service key, Supabase-style JWTs, API tokens; every
forgery refused with the same message; a valid credential without a user is Forbidden."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time

import jwt
import pytest

from jobline import auth
from jobline.errors import Forbidden, Unauthenticated

SERVICE_KEY = "service-" + "k" * 40
JWT_SECRET = "jwt-secret-" + "s" * 40


@pytest.fixture
def api_settings(settings):
    return dataclasses.replace(settings, service_key=SERVICE_KEY, jwt_secret=JWT_SECRET)


def signed(claims: dict, secret: str = JWT_SECRET, algorithm: str = "HS256", **headers) -> str:
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers or None)


def user_claims(**overrides) -> dict:
    return {"sub": "user-1", "aud": "authenticated", "role": "authenticated", "exp": int(time.time()) + 3600,
            **overrides}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def principal(token: str, settings, store):
    return await auth.authenticate(token, settings, store.api_token_use)


async def test_the_service_key_and_supabase_service_role_jwts_are_the_service(api_settings, store):
    assert (await principal(SERVICE_KEY, api_settings, store)).is_service
    service_role = signed({"role": "service_role", "iss": "supabase", "exp": int(time.time()) + 60})
    assert (await principal(service_role, api_settings, store)).is_service
    admin = signed({"app_metadata": {"role": "supabase_admin"}, "exp": int(time.time()) + 60})
    assert (await principal(admin, api_settings, store)).is_service


async def test_a_user_jwt_is_that_user(api_settings, store):
    assert await principal(signed(user_claims()), api_settings, store) == auth.Principal("user-1", "jwt")
    assert (await principal(signed(user_claims(aud=["authenticated", "x"])), api_settings, store)).owner == "user-1"


@pytest.mark.parametrize("make", [
    lambda: "not-a-jwt",
    lambda: "a.b",
    lambda: "a.b.c",
    lambda: signed(user_claims(), secret="wrong-secret-" + "w" * 40),
    lambda: signed(user_claims(exp=int(time.time()) - 31)),
    lambda: signed({"sub": "user-1", "aud": "authenticated"}),                      # no exp
    lambda: signed(user_claims(nbf=int(time.time()) + 120)),
    lambda: signed(user_claims(aud="anon")),
    lambda: signed({"sub": "user-1", "exp": int(time.time()) + 60}),                # no audience
    lambda: signed(user_claims(aud=None)),
    lambda: signed(user_claims(), algorithm="HS512"),
    *[lambda alg=alg: b64({"alg": alg, "typ": "JWT"}) + "." + b64(user_claims()) + "." for alg in ("none", "None", "NONE", "nOnE")],
    lambda: b64({"alg": "none", "typ": "JWT"}) + "." + b64(user_claims()) + ".c2lnbmF0dXJl",
    lambda: (lambda t: t.split(".")[0] + "." + b64(user_claims(sub="user-2")) + "." + t.split(".")[2])(signed(user_claims())),
    lambda: signed(user_claims(), crit=["exp-unknown"]),
    lambda: "jl_" + "x" * 43,                                                      # unknown API token
])
async def test_forgeries_are_unauthenticated_with_one_message(api_settings, store, make):
    with pytest.raises(Unauthenticated) as refused:
        await principal(make(), api_settings, store)
    assert str(refused.value) == auth.INVALID


@pytest.mark.parametrize("make", [lambda: user_claims(sub=None), lambda: user_claims(sub=""),
                                  lambda: user_claims(sub="x" * 300),
                                  lambda: {"role": "anon", "iss": "supabase", "exp": int(time.time()) + 60},
                                  lambda: user_claims(role="anon", aud="anon")])
async def test_a_valid_token_without_a_user_is_forbidden(api_settings, store, make):
    claims = {k: v for k, v in make().items() if v is not None}
    with pytest.raises(Forbidden):
        await principal(signed(claims), api_settings, store)


@pytest.mark.parametrize("role", [["service_role"], {"x": 1}, 7])
async def test_a_role_that_is_not_a_string_is_no_role(api_settings, store, role):
    assert await principal(signed(user_claims(role=role)), api_settings, store) == auth.Principal("user-1", "jwt")
    with pytest.raises(Forbidden):
        await principal(signed({"app_metadata": {"role": role}, "aud": "authenticated",
                                "exp": int(time.time()) + 60}), api_settings, store)


async def test_without_a_jwt_secret_no_jwt_is_accepted(settings, store):
    with pytest.raises(Unauthenticated):
        await principal(signed(user_claims()), dataclasses.replace(settings, service_key=SERVICE_KEY), store)


async def test_api_tokens_are_stored_hashed_work_until_revoked_and_record_their_use(api_settings, store, sql):
    token = auth.new_token()
    row = await store.api_token_insert(user_id="user-7", name="ci", token_hash=auth.token_hash(token),
                                       prefix=auth.token_prefix(token))
    assert await principal(token, api_settings, store) == auth.Principal("user-7", "api_token")
    assert sql("SELECT last_used_at IS NOT NULL, position(%s::bytea in token_hash) FROM jobline.api_tokens",
               [token.encode()]) == [(True, 0)]
    await store.api_token_revoke(row["id"])
    with pytest.raises(Unauthenticated):
        await principal(token, api_settings, store)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   ", "Bearer " + "x" * 9000])
def test_malformed_authorization_headers_are_unauthenticated(header):
    with pytest.raises(Unauthenticated):
        auth.bearer_token(header)


def test_the_runner_secret_matches_in_constant_time_and_never_when_unset():
    assert auth.secret_matches("s" * 32, "s" * 32)
    assert not auth.secret_matches("s" * 31 + "t", "s" * 32)
    assert not auth.secret_matches(None, None) and not auth.secret_matches("", "")


def test_tokens_cli_creates_shows_once_lists_and_revokes(db_url, sql):
    env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning"}

    def jobline(*args):
        return subprocess.run([sys.executable, "-m", "jobline", "tokens", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    made = jobline("create", "--user", "user-9", "--name", "laptop", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["token"].startswith("jl_") and created["user_id"] == "user-9"
    listed = jobline("ls")
    assert "user-9" in listed.stdout and created["token"] not in listed.stdout and created["prefix"] in listed.stdout
    assert jobline("revoke", str(created["id"])).stdout.strip() == "token 1 of user 'user-9' is revoked"
    assert json.loads(jobline("ls", "--json").stdout)[0]["revoked_at"] is not None
    missing = jobline("revoke", "99")
    assert (missing.returncode, missing.stderr.strip()) == (3, "error: no API token with id 99; `jobline tokens ls` lists them")
    bad = jobline("create", "--user", " spaced ")
    assert bad.returncode == 2 and bad.stderr.startswith("error: user id")
