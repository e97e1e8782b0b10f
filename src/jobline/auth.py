"""Who is calling: a bearer credential becomes a Principal, or is refused.

Three kinds of credential, tried in this order:

1. The service key (JOBLINE_SERVICE_KEY), compared in constant time: service access.
2. A JWT signed with JOBLINE_JWT_SECRET, as Supabase issues them: HS256 only (the token does
   not get to choose: ``alg: none`` and every other algorithm are refused), the signature
   checked, ``exp`` required, ``nbf`` honoured, 30 s of leeway for clock skew; ``exp``, ``nbf``
   and ``iat`` must be JSON numbers (RFC 7519's NumericDate), not strings that look like one. A ``role`` (or
   ``app_metadata.role``) of ``service_role`` or ``supabase_admin`` is service access, as
   Supabase's own service-role JWT is (it has no ``sub`` or ``aud``). A token of role ``anon``
   (Supabase's anon key) is valid but names no user: Forbidden. Any other token must be for
   audience ``authenticated``, as Supabase's user tokens are (a token signed with the same secret
   for another purpose is not a user's), and name its user in ``sub`` (else Forbidden).
3. A user API token from `jobline tokens create`: its SHA-256 is looked up; unknown or revoked
   tokens are refused.

Anything else is Unauthenticated (401), with one message whatever the reason, so a caller
learns nothing about which check failed.

This module does no I/O of its own: the API token lookup is passed in (Operations.authenticate
passes the store's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import Forbidden, InvalidInput, Unauthenticated
from .job import check_name
from .settings import Settings

NUMERIC_DATES = ("exp", "nbf", "iat")
SERVICE_ROLES = frozenset({"service_role", "supabase_admin"})
USER_AUDIENCE = "authenticated"
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 8192
TOKEN_PREFIX = "jl_"
INVALID = "invalid credentials: send `Authorization: Bearer <service key | user JWT | API token>`"
NO_USER = "this token is valid but names no user (no `sub`, or role anon): it cannot act on tasks"


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the service (every owner) or one user."""

    user_id: str | None   # None: the service
    via: str              # service_key | jwt | api_token

    @property
    def is_service(self) -> bool:
        return self.user_id is None

    @property
    def owner(self) -> str | None:
        """The owner every query made for this caller is scoped to (None: all owners)."""
        return self.user_id


SERVICE = Principal(user_id=None, via="service_key")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; Unauthenticated otherwise."""
    if not authorization:
        raise Unauthenticated("missing credentials: send `Authorization: Bearer <service key | user JWT | API token>`")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated(INVALID)
    return token


async def authenticate(token: str, settings: Settings,
                       token_user: Callable[[bytes], Awaitable[str | None]]) -> Principal:
    """The caller a bearer token stands for (see the module's docstring); ``token_user`` finds
    the user of a live API token by its SHA-256 (None: unknown or revoked)."""
    if settings.service_key and hmac.compare_digest(token.encode(), settings.service_key.encode()):
        return SERVICE
    if token.count(".") == 2 and not token.startswith(TOKEN_PREFIX):
        return _from_jwt(token, settings)
    user_id = await token_user(token_hash(token))
    if user_id is None:
        raise Unauthenticated(INVALID)
    return Principal(user_id=user_id, via="api_token")


def _from_jwt(token: str, settings: Settings) -> Principal:
    if not settings.jwt_secret:
        raise Unauthenticated(INVALID)
    import jwt  # PyJWT (and the cryptography it probes for) loads with the first JWT, not with jobline

    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"], leeway=LEEWAY_SECONDS,
                            # Audience is judged below: Supabase's service-role JWT has none.
                            options={"require": ["exp"], "verify_aud": False})
    except jwt.PyJWTError:
        raise Unauthenticated(INVALID) from None
    # PyJWT compares int(claim), so it would take "exp": "99999999999" for a date (and True for 1).
    if any(name in claims and not _is_number(claims[name]) for name in NUMERIC_DATES):
        raise Unauthenticated(INVALID)
    role = _role(claims)
    if role in SERVICE_ROLES:
        return Principal(user_id=None, via="jwt")
    if role == "anon":
        raise Forbidden(NO_USER)
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if USER_AUDIENCE not in audiences:
        raise Unauthenticated(INVALID)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _is_user_id(subject):
        raise Forbidden(NO_USER)
    return Principal(user_id=subject, via="jwt")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _role(claims: dict[str, Any]) -> str | None:
    metadata = claims.get("app_metadata")
    role = claims.get("role") or (metadata.get("role") if isinstance(metadata, dict) else None)
    return role if isinstance(role, str) else None


def _is_user_id(value: str) -> bool:
    try:
        check_name(value, "user id")
    except InvalidInput:
        return False
    return True


# -- API tokens --------------------------------------------------------------------------------


def new_token() -> str:
    """A new API token: shown once, stored only as its SHA-256."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_prefix(token: str) -> str:
    """What listings show of a token, to tell tokens apart without revealing them."""
    return token[: len(TOKEN_PREFIX) + 6]


def secret_matches(given: str | None, expected: str | None) -> bool:
    """A shared secret (the runner secret) compared in constant time; never matches when unset."""
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())
