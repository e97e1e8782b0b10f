"""The vault on a real PostgreSQL: the secret_* queries, load(), rotation, and what the database
(and pg_dump, and the statement log) can see of a value: never the plaintext."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import pathlib
import urllib.parse

import psycopg
import pytest

import canary
from jobline import App, vault
from jobline.errors import ConfigError, Conflict, InvalidInput, SecretError, SecretNotFound
from jobline.operations.secrets import rotate
from jobline.vault import MasterKeys

OLD = vault.generate_key()
NEW = vault.generate_key()
STRAY = vault.generate_key()
CANARY = "canary-7f3a9c-Zebra!/+=&value"


def key_id(key: str) -> str:
    return MasterKeys.parse(key).current.key_id


@pytest.fixture
async def apps(settings):
    """apps(master_key) -> an open App with that JOBLINE_MASTER_KEY; all closed at the end."""
    opened: list[App] = []

    async def make(master_key: str | None) -> App:
        app = App(settings=dataclasses.replace(settings, master_key=master_key))
        await app.open_async()
        opened.append(app)
        return app

    yield make
    for app in opened:
        await app.close_async()


def assert_nowhere(blob: bytes, text: str = CANARY) -> None:
    canary.assert_nowhere(blob, text)


def test_the_search_for_encoded_plaintexts_finds_them():
    for shift in range(3):
        with pytest.raises(AssertionError):
            assert_nowhere(b"x" + base64.b64encode(b"p" * shift + b"user:" + CANARY.encode() + b"!") + b"y")
    with pytest.raises(AssertionError):
        assert_nowhere(b"\\x00" + CANARY.encode().hex().encode())
    with pytest.raises(AssertionError):
        assert_nowhere(urllib.parse.quote(CANARY, safe="").encode())


# -- set, list, delete ---------------------------------------------------------------------------


async def test_secret_upsert_replaces_the_value_keeping_created_at(apps, sql):
    app = await apps(NEW)
    first = await app.set_secret_async("api_token", "first-value")
    second = await app.set_secret_async("api_token", "second-value")
    assert (second.name, second.key_id) == ("api_token", key_id(NEW))
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert await canary.load_by_name(app.store, app.master_keys(), ["api_token"]) == {"api_token": "second-value"}
    assert sql("SELECT count(*) FROM jobline.secrets") == [(1,)]


async def test_secret_upsert_reports_whether_the_name_is_new(apps):
    app = await apps(NEW)
    keys = app.master_keys()
    assert (await app.store.secret_upsert("t", vault.seal(keys, "t", "value1"), max_per_owner=1))["created"] is True
    assert (await app.store.secret_upsert("t", vault.seal(keys, "t", "value2"), max_per_owner=1))["created"] is False


async def test_secret_list_never_returns_ciphertext_or_plaintext(apps):
    app = await apps(NEW)
    await app.set_secret_async("b_token", CANARY)
    await app.set_secret_async("a_token", "another-value")
    rows = await app.store.secret_list()
    assert [row["name"] for row in rows] == ["a_token", "b_token"]
    assert all(set(row) == {"name", "owner", "key_id", "created_at", "updated_at"} for row in rows)
    listed = await app.list_secrets_async()
    assert [s.to_dict()["key_id"] for s in listed] == [key_id(NEW)] * 2
    assert CANARY not in repr(listed) and "another-value" not in repr(listed)


async def test_listing_and_deleting_need_no_master_key(apps):
    await (await apps(NEW)).set_secret_async("token", "value")
    keyless = await apps(None)
    assert [s.name for s in await keyless.list_secrets_async()] == ["token"]
    await keyless.delete_secret_async("token")
    assert await keyless.list_secrets_async() == []
    with pytest.raises(SecretNotFound, match="no secret named 'token'"):
        await keyless.delete_secret_async("token")


async def test_the_table_refuses_names_the_vault_refuses(sql, apps):
    app = await apps(NEW)
    sealed = vault.seal(app.master_keys(), "fine", "value")
    with pytest.raises(InvalidInput, match="secrets_name_check"):
        await app.store.secret_upsert("bad name", sealed, max_per_owner=1)


# -- owners ------------------------------------------------------------------------------------


async def test_each_owner_has_its_own_namespace(apps, sql):
    app = await apps(NEW)
    await app.set_secret_async("token", "operator-value")
    await app.set_secret_async("token", "value-of-u1", owner="u1")
    await app.set_secret_async("token", "value-of-u2", owner="u2")
    await app.set_secret_async("token", "u1-replaced", owner="u1")
    assert sql("SELECT owner, count(*) FROM jobline.secrets GROUP BY owner ORDER BY owner NULLS FIRST") == [
        (None, 1), ("u1", 1), ("u2", 1)]
    keys = app.master_keys()
    assert await canary.load_by_name(app.store, keys, ["token"]) == {"token": "operator-value"}
    assert await canary.load_by_name(app.store, keys, ["token"], "u1") == {"token": "u1-replaced"}
    assert [(s.owner, s.name) for s in await app.list_secrets_async()] == [(None, "token")]
    assert [(s.owner, s.name) for s in await app.list_secrets_async(owner="u2")] == [("u2", "token")]
    assert [s.owner for s in await app.list_secrets_async(every_owner=True)] == [None, "u1", "u2"]
    await app.delete_secret_async("token", owner="u2")
    with pytest.raises(SecretNotFound, match="no secret named 'token' of user 'u2'"):
        await app.delete_secret_async("token", owner="u2")
    assert await canary.load_by_name(app.store, keys, ["token"]) == {"token": "operator-value"}


async def test_load_resolves_each_kind_of_reference_in_its_owners_namespace(apps):
    app = await apps(NEW)
    await app.set_secret_async("api_key", "operator-key")
    await app.set_secret_async("api_key", "users-key", owner="u1")
    keys = app.master_keys()
    refs = ["{{secret:api_key}}", "{{owner_secret:api_key}}"]
    assert await vault.load(app.store, keys, refs, "u1") == {
        "{{secret:api_key}}": "operator-key", "{{owner_secret:api_key}}": "users-key"}
    with pytest.raises(SecretNotFound, match=r"^user 'u2' has no secret 'api_key'; set it with "
                                             r"`jobline secrets set api_key --owner u2`$"):
        await vault.load(app.store, keys, refs, "u2")
    with pytest.raises(InvalidInput, match="this call has no owner"):
        await vault.load(app.store, keys, refs, None)


async def test_a_row_moved_to_another_owner_does_not_decrypt(apps, sql):
    app = await apps(NEW)
    await app.set_secret_async("token", "value-of-u1", owner="u1")
    await app.set_secret_async("token", "operator-value")
    sql("UPDATE jobline.secrets SET owner = 'u2' WHERE owner = 'u1'")
    with pytest.raises(SecretError, match="user 'u2''s secret 'token' cannot be decrypted") as caught:
        await canary.load_by_name(app.store, app.master_keys(), ["token"], "u2")
    assert "value-of-u1" not in str(caught.value)
    sql("DELETE FROM jobline.secrets WHERE owner IS NULL")
    sql("UPDATE jobline.secrets SET owner = NULL")  # a user's row passed off as the operator's
    with pytest.raises(SecretError, match="secret 'token' cannot be decrypted"):
        await canary.load_by_name(app.store, app.master_keys(), ["token"])


async def test_rotation_reseals_every_owners_secrets(apps, sql):
    old = await apps(OLD)
    await old.set_secret_async("token", "operator-value")
    await old.set_secret_async("token", "value-of-u1", owner="u1")
    await old.set_secret_async("other", "other-of-u1", owner="u1")
    rotated = await (await apps(f"{NEW},{OLD}")).rotate_secrets_async()
    assert (rotated.rotated, rotated.current) == (3, 0)
    new = await apps(NEW)
    assert await canary.load_by_name(new.store, new.master_keys(), ["token", "other"], "u1") == {
        "token": "value-of-u1", "other": "other-of-u1"}
    assert await canary.load_by_name(new.store, new.master_keys(), ["token"]) == {"token": "operator-value"}


async def test_a_user_holds_at_most_a_hundred_secrets_and_may_still_replace_them(apps, sql):
    app = await apps(NEW)
    keys = app.master_keys()
    for i in range(vault.MAX_PER_USER):
        await app.store.secret_upsert(f"s{i}", vault.seal(keys, f"s{i}", "value", "u1"), "u1", max_per_owner=100)
    with pytest.raises(Conflict, match="user 'u1' already has 100 secrets"):
        await app.set_secret_async("one_more", "value", owner="u1")
    await app.set_secret_async("s7", "replaced", owner="u1")  # a name it holds may be set again
    await app.set_secret_async("operator_has_no_cap", "value")
    await app.set_secret_async("one_more", "value", owner="u2")
    assert sql("SELECT owner, count(*) FROM jobline.secrets GROUP BY owner ORDER BY owner NULLS FIRST") == [
        (None, 1), ("u1", 100), ("u2", 1)]


async def test_a_secrets_owner_is_checked_like_any_owner(apps, sql):
    app = await apps(NEW)
    for bad in ("", " u1", "u\x001", "x" * 201, 7):
        with pytest.raises(InvalidInput, match="a secret's owner"):
            await app.set_secret_async("token", "value", owner=bad)
    assert sql("SELECT count(*) FROM jobline.secrets") == [(0,)]


# -- what the database sees ----------------------------------------------------------------------


async def test_the_plaintext_is_nowhere_in_the_tables_bytes(apps, sql):
    app = await apps(NEW)
    await app.set_secret_async("canary", CANARY)
    row = sql("SELECT convert_to(s::text, 'UTF8'), nonce, ciphertext FROM jobline.secrets s")[0]
    assert_nowhere(b"".join(bytes(part) for part in row))
    assert CANARY.encode() not in bytes(row[2])
    # Nor anywhere else in the database's jobline schema.
    everything = sql("SELECT string_agg(convert_to(t::text, 'UTF8'), '') FROM ("
                     "SELECT to_jsonb(j)::text AS t FROM jobline.jobs j UNION ALL "
                     "SELECT to_jsonb(a)::text FROM jobline.attempts a) x")[0][0] or b""
    assert_nowhere(bytes(everything))


async def test_pg_dump_of_the_database_holds_no_trace_of_a_plaintext(apps, db_url):
    app = await apps(NEW)
    await app.set_secret_async("canary", CANARY)
    await app.set_secret_async("other", "other-value-1234")
    dumped = canary.pg_dump(db_url)
    if dumped is None:
        pytest.skip("no pg_dump binary here that can dump this server")
    assert b"COPY jobline.secrets" in dumped and b"canary" in dumped  # the names are there
    assert_nowhere(dumped)
    assert_nowhere(dumped, "other-value-1234")


async def test_the_statement_log_shows_only_ciphertext(apps, sql, db_url):
    """With log_statement = 'all' PostgreSQL logs every statement and its parameters."""
    data_directory = pathlib.Path(sql("SHOW data_directory")[0][0])
    log_file = data_directory.parent / "log" / "postgresql.log"  # the embedded server's layout
    if not os.access(log_file, os.R_OK):
        pytest.skip("the server's log is not readable here (not the embedded server)")
    database = sql("SELECT current_database()")[0][0]
    sql(f"ALTER DATABASE {database} SET log_statement = 'all'")
    start = log_file.stat().st_size
    app = await apps(NEW)  # a new pool: its sessions take the setting
    await app.set_secret_async("logged_canary", CANARY)
    assert await canary.load_by_name(app.store, app.master_keys(), ["logged_canary"]) == {"logged_canary": CANARY}
    await app.close_async()
    with open(log_file, "rb") as handle:
        handle.seek(start)
        logged = handle.read()
    assert b"jobline.secrets" in logged and b"logged_canary" in logged  # the log did capture the statements
    assert_nowhere(logged)


# -- load ----------------------------------------------------------------------------------------


async def test_load_decrypts_the_named_secrets(apps):
    app = await apps(NEW)
    for name in ("a", "b", "c"):
        await app.set_secret_async(name, f"value-of-{name}")
    assert await canary.load_by_name(app.store, app.master_keys(), ["a", "c", "a"]) == {"a": "value-of-a", "c": "value-of-c"}
    assert await vault.load(None, app.master_keys(), []) == {}  # no reference, no query


async def test_load_names_every_missing_secret(apps):
    app = await apps(NEW)
    await app.set_secret_async("present", "value")
    with pytest.raises(SecretNotFound) as caught:
        await canary.load_by_name(app.store, app.master_keys(), ["present", "project_url", "api_key"])
    assert str(caught.value) == ("secrets 'api_key', 'project_url' do not exist; set each with "
                                 "`jobline secrets set NAME`")
    with pytest.raises(SecretNotFound, match=r"secret 'project_url' does not exist; set it with "
                                             r"`jobline secrets set project_url`"):
        await canary.load_by_name(app.store, app.master_keys(), ["project_url"])


async def test_load_refuses_a_row_copied_onto_another_name(apps, sql):
    app = await apps(NEW)
    await app.set_secret_async("prod_token", "prod-value")
    await app.set_secret_async("dev_token", "dev-value")
    sql("UPDATE jobline.secrets d SET nonce = p.nonce, ciphertext = p.ciphertext FROM jobline.secrets p "
        "WHERE d.name = 'dev_token' AND p.name = 'prod_token'")
    with pytest.raises(SecretError, match="'dev_token' cannot be decrypted") as caught:
        await canary.load_by_name(app.store, app.master_keys(), ["dev_token"])
    assert "prod-value" not in str(caught.value)


async def test_setting_a_secret_without_a_master_key_says_how_to_make_one(apps, sql):
    app = await apps(None)
    with pytest.raises(ConfigError, match="create one with `jobline secrets generate-key`"):
        await app.set_secret_async("token", "value")
    assert sql("SELECT count(*) FROM jobline.secrets") == [(0,)]


# -- rotation ------------------------------------------------------------------------------------


async def _values(app: App) -> dict[str, str]:
    names = [s.name for s in await app.list_secrets_async()]
    return await canary.load_by_name(app.store, app.master_keys(), names)


def _key_ids(sql) -> dict[str, str]:
    return dict(sql("SELECT name, key_id FROM jobline.secrets"))


async def test_rotation_reseals_everything_and_a_rerun_is_a_no_op(apps, sql):
    old = await apps(OLD)
    expected = {f"s{i}": f"value-number-{i}" for i in range(7)}
    for name, value in expected.items():
        await old.set_secret_async(name, value)
    before = dict(sql("SELECT name, updated_at FROM jobline.secrets"))
    rotating = await apps(f"{NEW},{OLD}")
    assert (await rotating.rotate_secrets_async()).to_dict() == {"key_id": key_id(NEW), "rotated": 7, "current": 0}
    assert set(_key_ids(sql).values()) == {key_id(NEW)}
    assert await _values(await apps(NEW)) == expected  # OLD can now be dropped
    assert dict(sql("SELECT name, updated_at FROM jobline.secrets")) == before  # values did not change
    again = await rotating.rotate_secrets_async()
    assert (again.rotated, again.current) == (0, 7)


async def test_a_rotation_cut_short_leaves_everything_readable_and_a_rerun_finishes_it(apps, sql):
    old = await apps(OLD)
    expected = {f"s{i}": f"value-number-{i}" for i in range(6)}
    for name, value in expected.items():
        await old.set_secret_async(name, value)
    rotating = await apps(f"{NEW},{OLD}")
    keys = rotating.master_keys()
    # What a crash after two rows leaves behind: those two re-sealed, the rest as they were.
    for row in await rotating.store.secret_get_many(["s1", "s4"]):
        old_sealed = vault.Sealed(row["key_id"], row["nonce"], row["ciphertext"])
        new_sealed = vault.seal(keys, row["name"], vault.open_sealed(keys, row["name"], old_sealed))
        assert await rotating.store.secret_reseal(row["name"], None, old_sealed, new_sealed)
    assert sorted(name for name, k in _key_ids(sql).items() if k == key_id(NEW)) == ["s1", "s4"]
    assert await _values(rotating) == expected
    result = await rotating.rotate_secrets_async()
    assert (result.rotated, result.current) == (4, 2)
    assert await _values(await apps(NEW)) == expected


async def test_secret_reseal_leaves_a_row_that_changed_since_it_was_read(apps, sql):
    old = await apps(OLD)
    await old.set_secret_async("token", "old-value")
    rotating = await apps(f"{NEW},{OLD}")
    keys = rotating.master_keys()
    row = (await rotating.store.secret_get_many(["token"]))[0]
    read = vault.Sealed(row["key_id"], row["nonce"], row["ciphertext"])
    await old.set_secret_async("token", "newer-value")  # e.g. a process still configured with OLD only
    assert not await rotating.store.secret_reseal("token", None, read, vault.seal(keys, "token", "old-value"))
    assert await _values(rotating) == {"token": "newer-value"}


async def test_two_rotations_at_once_reseal_each_row_exactly_once(apps, sql):
    old = await apps(OLD)
    expected = {f"s{i:03d}": f"value-number-{i}" for i in range(60)}
    for name, value in expected.items():
        await old.set_secret_async(name, value)
    first, second = await apps(f"{NEW},{OLD}"), await apps(f"{NEW},{OLD}")
    results = await asyncio.gather(rotate(first.store, first.master_keys(), batch_size=7),
                                   rotate(second.store, second.master_keys(), batch_size=7))
    assert sum(r.rotated for r in results) == 60
    assert await _values(await apps(NEW)) == expected


async def test_rows_under_an_unknown_key_are_reported_by_name_after_the_others_are_done(apps, sql):
    await (await apps(STRAY)).set_secret_async("orphan", "orphan-value")
    old = await apps(OLD)
    await old.set_secret_async("kept1", "kept-value-1")
    await old.set_secret_async("kept2", "kept-value-2")
    await (await apps(NEW)).set_secret_async("fresh", "fresh-value")
    rotating = await apps(f"{NEW},{OLD}")
    with pytest.raises(SecretError) as caught:
        await rotating.rotate_secrets_async()
    message = str(caught.value)
    assert message.startswith(f"rotated 2 secret(s) to master key {key_id(NEW)}, but not all")
    assert f"secret 'orphan' is encrypted under master key {key_id(STRAY)}" in message
    assert "JOBLINE_MASTER_KEY=NEW,OLD" in message
    assert "orphan-value" not in message and STRAY not in message
    assert _key_ids(sql) == {"orphan": key_id(STRAY), "kept1": key_id(NEW), "kept2": key_id(NEW),
                                   "fresh": key_id(NEW)}
    # With the stray key added as another old key, a re-run finishes.
    finished = await (await apps(f"{NEW},{OLD},{STRAY}")).rotate_secrets_async()
    assert (finished.rotated, finished.current) == (1, 3)


async def test_an_altered_row_is_reported_and_the_others_rotate(apps, sql):
    old = await apps(OLD)
    await old.set_secret_async("good", "good-value")
    await old.set_secret_async("bad", "bad-value")
    sql("UPDATE jobline.secrets SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) "
        "WHERE name = 'bad'")
    with pytest.raises(SecretError, match="'bad' cannot be decrypted .* set it again"):
        await (await apps(f"{NEW},{OLD}")).rotate_secrets_async()
    assert _key_ids(sql) == {"good": key_id(NEW), "bad": key_id(OLD)}


# -- Vault's names (seed 001 ports by renaming vault. to jobline.) --------------------------------


async def test_decrypted_secrets_shows_the_operators_references_never_values(apps, sql):
    app = await apps(NEW)
    await app.set_secret_async("project_url", CANARY)
    await app.set_secret_async("project_url", "users-own-value", owner="u1")
    rows = sql("SELECT name, decrypted_secret FROM jobline.decrypted_secrets")
    assert rows == [("project_url", "{{secret:project_url}}")]
    [(header,)] = sql("SELECT 'Bearer ' || (SELECT decrypted_secret FROM jobline.decrypted_secrets "
                      "WHERE name = 'project_url')")
    assert header == "Bearer {{secret:project_url}}"
    assert_nowhere(repr(sql("SELECT * FROM jobline.decrypted_secrets")).encode())


@pytest.mark.parametrize("call", ["SELECT jobline.create_secret('s3cr3t-value', 'api_key')",
                                  "SELECT jobline.create_secret('s3cr3t-value')",
                                  "SELECT jobline.update_secret(1, 's3cr3t-value')"])
def test_vaults_create_and_update_refuse_saying_how_to_set_a_secret(sql, call):
    with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
        sql(call)
    assert "`jobline secrets set" in str(caught.value) and "s3cr3t" not in str(caught.value)
    assert "rotate it" in caught.value.diag.message_hint
    assert sql("SELECT count(*) FROM jobline.secrets") == [(0,)]
