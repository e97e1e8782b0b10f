"""Secrets as a caller acts on them: set, list, remove, and the master key's rotation.

A user keeps their own secrets (API keys, OAuth tokens), which the operator's calls made for
that user's jobs use as ``{{owner_secret:NAME}}``; the service acts on the operator's secrets,
or on a user's by naming them (policy.owner_of_new). Values are sealed here, in the process that
holds JOBLINE_MASTER_KEY, and never returned.
"""

from __future__ import annotations

import dataclasses
import logging

from .. import vault
from ..auth import Principal
from ..db.store import Store
from ..errors import SecretError
from ..job import check_name
from ..settings import Settings
from . import policy

log = logging.getLogger(__name__)


class Secrets:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings

    def master_keys(self) -> vault.MasterKeys:
        """The keys of JOBLINE_MASTER_KEY; ConfigError saying how to create one when unset."""
        return vault.MasterKeys.from_settings(self.settings)

    async def set(self, caller: Principal, name: str, value: str, *, owner: str | None = None) -> vault.SecretInfo:
        """Encrypt ``value`` and store it as the secret ``name`` of ``owner`` (a user's own for
        a user; for the service, None is the operator's), replacing any previous value."""
        whose = _owner(caller, owner)
        sealed = vault.seal(self.master_keys(), name, value, whose)  # validates before any I/O
        row = await self.store.secret_upsert(name, sealed, whose, max_per_owner=vault.MAX_PER_USER)
        return vault.SecretInfo.from_row(row)

    async def list(self, caller: Principal, *, owner: str | None = None,
                   every_owner: bool = False) -> list[vault.SecretInfo]:
        """Names, owners, key ids and times (never values; needs no master key)."""
        if every_owner:
            policy.check_service(caller, "listing every owner's secrets")
        rows = await self.store.secret_list(_owner(caller, owner), every_owner=every_owner)
        return [vault.SecretInfo.from_row(row) for row in rows]

    async def remove(self, caller: Principal, name: str, *, owner: str | None = None) -> str | None:
        """Remove a secret (SecretNotFound if there is none; needs no master key); returns whose
        it was (None: the operator's)."""
        whose = _owner(caller, owner)
        await self.store.secret_delete(vault.check_name(name), whose)
        return whose

    async def rotate(self, caller: Principal) -> Rotation:
        """Re-seal every secret under the first key of JOBLINE_MASTER_KEY="NEW,OLD"; safe to
        re-run after a crash (see :func:`rotate`)."""
        policy.check_service(caller, "rotating the master key")
        return await rotate(self.store, self.master_keys())


def _owner(caller: Principal, owner: str | None) -> str | None:
    if owner is not None:
        check_name(owner, "a secret's owner")
    return policy.owner_of_new(caller, owner, "secret")


@dataclasses.dataclass(frozen=True)
class Rotation:
    key_id: str   # the current key, which every secret is now sealed under
    rotated: int  # re-sealed by this run
    current: int  # already under the current key

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


async def rotate(store: Store, keys: vault.MasterKeys, *, batch_size: int = 500) -> Rotation:
    """Re-seal every secret not under the current key, one row per statement.

    Each write is fenced on the row's old key id and nonce (``secret_reseal``), so a crash
    midway leaves every row readable with ``NEW,OLD`` and a re-run finishes the job; a
    concurrent rotation or ``set`` wins over this one instead of being overwritten. Rows that
    cannot be opened (key not in ``keys``, or altered) are skipped, and reported by name in one
    SecretError once every other row is done.
    """
    target = keys.current.key_id
    listed = await store.secret_list(every_owner=True)
    stale: dict[str | None, list[str]] = {}  # owner -> names
    for row in listed:
        if row["key_id"] != target:
            stale.setdefault(row["owner"], []).append(row["name"])
    current, rotated = len(listed) - sum(map(len, stale.values())), 0
    unknown: dict[str, list[str]] = {}  # key id -> secrets, as messages name them
    broken: list[str] = []
    for owner, names in stale.items():
        for start in range(0, len(names), batch_size):
            for row in await store.secret_get_many(names[start:start + batch_size], owner=owner):
                name, old = row["name"], vault.sealed_from_row(row)
                if old.key_id == target:  # set again since we listed
                    current += 1
                    continue
                if keys.find(old.key_id) is None:
                    unknown.setdefault(old.key_id, []).append(vault.describe(name, owner))
                    continue
                try:
                    plaintext = vault.open_sealed(keys, name, old, owner)
                except SecretError:
                    broken.append(vault.describe(name, owner))
                    continue
                if await store.secret_reseal(name, owner, old, vault.seal(keys, name, plaintext, owner)):
                    rotated += 1
                    log.debug("secret.resealed", extra={"secret": name, "owner": owner, "from_key": old.key_id,
                                                        "to_key": target})
    log.info("vault.rotated", extra={"key_id": target, "rotated": rotated, "current": current,
                                     "failed": len(broken) + sum(map(len, unknown.values()))})
    if unknown or broken:
        raise SecretError(_rotation_failure(keys, rotated, unknown, broken))
    return Rotation(target, rotated, current)


def _rotation_failure(keys: vault.MasterKeys, rotated: int, unknown: dict[str, list[str]], broken: list[str]) -> str:
    parts = [f"rotated {rotated} secret(s) to master key {keys.current.key_id}, but not all"]
    for key_id, names in sorted(unknown.items()):
        parts.append(f"{', '.join(sorted(names))} {'is' if len(names) == 1 else 'are'} "
                     f"encrypted under master key {key_id}, "
                     f"which is not in {vault.VARIABLE}: put it after the new key ({vault.VARIABLE}=NEW,OLD) and run "
                     "`jobline secrets rotate-key` again, or set them again")
    if broken:
        parts.append(f"{', '.join(sorted(broken))} cannot be decrypted (the row was altered "
                     "or copied from another secret): set it again with `jobline secrets set NAME [--owner USER]`")
    return "; ".join(parts)
