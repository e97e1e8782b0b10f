"""Users' API tokens: bearer credentials for the HTTP API that act as one user. A token is
shown once, when it is made; only its SHA-256 is stored. Managing them is the service's."""

from __future__ import annotations

from .. import auth
from ..auth import Principal
from ..db.store import Store
from ..job import check_name
from . import policy


class Tokens:
    def __init__(self, store: Store):
        self.store = store

    async def create(self, caller: Principal, user_id: str, name: str | None = None) -> tuple[dict, str]:
        """A new token for ``user_id``: its row (id, user, name, prefix, times) and the token."""
        policy.check_service(caller, "creating API tokens")
        check_name(user_id, "user id")
        if name is not None:
            check_name(name, "token name")
        token = auth.new_token()
        row = await self.store.api_token_insert(user_id=user_id, name=name, token_hash=auth.token_hash(token),
                                                prefix=auth.token_prefix(token))
        return row, token

    async def list(self, caller: Principal, user_id: str | None = None) -> list[dict]:
        """Tokens with their user, name, prefix, creation, last use and revocation (never the token)."""
        policy.check_service(caller, "listing API tokens")
        return await self.store.api_token_list(user_id)

    async def revoke(self, caller: Principal, token_id: int) -> dict:
        """Revoke a token: it is refused from now on."""
        policy.check_service(caller, "revoking API tokens")
        return await self.store.api_token_revoke(token_id)
