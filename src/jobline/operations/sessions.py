"""Dashboard sessions: a browser signs in once with the same credentials as the API (the service
key, a user JWT or an API token) and is then known by a random session id in a cookie.

Stored server-side (jobline.dashboard_sessions), so sessions work across several `jobline serve`
processes and survive a restart. The table holds only the SHA-256 of a session id, the principal,
the expiry, a CSRF token and what the session is tied to:

- an API token's session holds the token's SHA-256 and ends when the token is revoked;
- a service-key or JWT session holds an HMAC of the server's key (JOBLINE_SERVICE_KEY or
  JOBLINE_JWT_SECRET): when the operator changes the key, every session made with the old one
  ends; a JWT's session also ends at the token's ``exp``;
- a session from `jobline dev`'s one-time link acts as the service until it expires.

Every session lasts at most JOBLINE_DASHBOARD_SESSION_SECONDS (8 hours by default); signing out
deletes it.

>>> session_id, session = await ops.sessions.sign_in(token)     # doctest: +SKIP
>>> (await ops.sessions.get(session_id)).caller                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets

from .. import auth
from ..auth import SERVICE, Principal
from ..db.store import Store
from ..errors import Unauthenticated
from ..settings import Settings
from . import policy

LINK_SECONDS = 120.0
_BINDING = b"jobline dashboard session"
_LINK = b"jobline dev sign-in link"


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: who it acts as, the token its forms must carry, when it ends."""

    caller: Principal
    csrf_token: str
    expires_at: dt.datetime


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class Sessions:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings

    async def sign_in(self, token: str) -> tuple[str, Session]:
        """Authenticate ``token`` as the API does (Unauthenticated or Forbidden otherwise) and open
        a session: its id (for the cookie only) and the Session."""
        caller = await auth.authenticate(token, self.settings, self.store.api_token_use)
        not_after = None
        if caller.via == "api_token":
            credential = auth.token_hash(token)
        else:
            credential = self._binding(caller.via)
            if caller.via == "jwt":
                not_after = _jwt_expiry(token)
        return await self._open(caller, credential, not_after)

    async def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, expired, signed out, its API token
        revoked, or the server's key changed since)."""
        if not session_id or len(session_id) > 200:
            return None
        row = await self.store.dashboard_session_get(digest(session_id))
        if row is None:
            return None
        if row["via"] != "api_token" and not hmac.compare_digest(bytes(row["credential"]), self._binding(row["via"])):
            return None
        return Session(Principal(user_id=row["user_id"], via=row["via"]), row["csrf_token"], row["expires_at"])

    async def sign_out(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 200:
            await self.store.dashboard_session_delete(digest(session_id))

    async def create_link(self, caller: Principal, seconds: float = LINK_SECONDS) -> str:
        """A one-time sign-in link's token, for the service (`jobline dev` prints it to its
        terminal): redeemable once, within ``seconds``."""
        policy.check_service(caller, "creating a sign-in link")
        token = secrets.token_urlsafe(32)
        await self.store.dashboard_link_insert(token_hash=digest(token), credential=self._binding("link"),
                                               seconds=seconds)
        return token

    async def redeem_link(self, token: str) -> tuple[str, Session]:
        """Open a service session with a link's token, once; Unauthenticated when it is unknown,
        used or expired."""
        credential = await self.store.dashboard_link_redeem(digest(token)) if 0 < len(token) <= 200 else None
        if credential is None or not hmac.compare_digest(credential, self._binding("link")):
            raise Unauthenticated("this sign-in link is unknown, already used or expired: run `jobline dev` again, "
                                  "or sign in with the service key")
        return await self._open(Principal(user_id=None, via="link"), credential, None)

    async def _open(self, caller: Principal, credential: bytes, not_after: dt.datetime | None) -> tuple[str, Session]:
        session_id, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires_at = await self.store.dashboard_session_insert(
            id_hash=digest(session_id), user_id=caller.user_id, via=caller.via, credential=credential,
            csrf_token=csrf_token, seconds=self.settings.dashboard_session_seconds, not_after=not_after)
        return session_id, Session(caller, csrf_token, expires_at)

    def _binding(self, via: str) -> bytes:
        """What a session made ``via`` a server key is tied to: an HMAC under that key, so it
        stops matching when the operator changes (or unsets) the key."""
        key = {"service_key": self.settings.service_key, "jwt": self.settings.jwt_secret}.get(via)
        if via == "link":
            return hmac.new(_LINK, _BINDING, hashlib.sha256).digest()
        return hmac.new((key or "").encode() or b"\0", _BINDING + b"/" + via.encode(), hashlib.sha256).digest()


def _jwt_expiry(token: str) -> dt.datetime | None:
    """The ``exp`` of a JWT that auth.authenticate has just verified."""
    import jwt  # loaded already by auth._from_jwt; kept out of module scope for the same reason

    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return dt.datetime.fromtimestamp(exp, dt.timezone.utc) if isinstance(exp, (int, float)) else None


__all__ = ["SERVICE", "Session", "Sessions"]
