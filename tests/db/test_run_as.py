"""A command runs as the role that scheduled (or queued) it, never with the worker's privileges.

The worker here connects as a superuser. A low-privileged role, mallory, that cannot drop
postgres's table `public.victim`, tries every way we know to make a schedule drop it: directly,
by changing role back (RESET ROLE, set_config('role', ...), SET SESSION AUTHORIZATION, in a DO
block, in a security-definer function of its own), by ending the transaction, and by leaving
code to run at COMMIT (a deferred constraint trigger, one that defers itself again while it is
fired, a cursor WITH HOLD). The victim must survive each, and the job must fail with the error
(or, for the cursor, never run its query). A control shows the same command does drop the
table when the operator schedules it, so the attacks are aimed at something real.

Also: what a plain role could use instead of a schedule (jobline.enqueue, INSERT into
jobline.jobs or jobline.schedules, alter_job on someone else's job, naming another role), the
session the command ran in is thrown away, the worker's own commands still run directly
(VACUUM), and a worker that may not act as the role fails the job saying what to grant.
"""

from __future__ import annotations

import psycopg
import pytest
from role_support import Roles, roles_of

from jobline import App
from jobline.settings import Settings


@pytest.fixture
def roles(db_url):
    with roles_of(db_url) as made:
        yield made


@pytest.fixture
def victim(sql):
    sql("CREATE TABLE public.victim (a int); INSERT INTO public.victim VALUES (1)")

    def alive() -> bool:
        return sql("SELECT to_regclass('public.victim') IS NOT NULL")[0][0]

    return alive


@pytest.fixture
def mallory(roles: Roles, sql) -> str:
    """A plain role: USAGE on jobline, a schema of its own, nothing on public.victim."""
    name = roles.make("mallory")
    sql(f'CREATE SCHEMA AUTHORIZATION "{name}"')
    return name


async def run_schedule_of(role_sql, app: App, store, sql, command: str) -> tuple[str, str | None]:
    """``command`` scheduled by the role, triggered once by the operator and run by a worker:
    the job's final status and error."""
    [(jobid,)] = role_sql("SELECT jobline.schedule('attempt', '@daily', %s)", [command])
    sql("UPDATE jobline.schedules SET max_attempts = 1 WHERE id = %s", [jobid])
    job_id = await store.schedule_trigger(jobid)
    await app.process_async()
    [(status, error, username)] = sql("SELECT status, last_error, username FROM jobline.jobs WHERE id = %s", [job_id])
    assert username == role_sql("SELECT current_user")[0][0]
    return status, error


ATTACKS = {
    "plain": ("DROP TABLE public.victim", "must be owner of table victim"),
    "reset role": ("RESET ROLE; DROP TABLE public.victim", 'cannot set parameter "role" within security-definer function'),
    "set role": ("SET ROLE postgres; DROP TABLE public.victim", 'cannot set parameter "role"'),
    "set local role none": ("SET LOCAL ROLE NONE; DROP TABLE public.victim", 'cannot set parameter "role"'),
    "set_config role": ("SELECT set_config('role', 'postgres', false); DROP TABLE public.victim",
                        'cannot set parameter "role" within security-definer function'),
    "set_config role none, local": ("SELECT pg_catalog.set_config('role', 'none', true); DROP TABLE public.victim",
                                    'cannot set parameter "role"'),
    "session authorization": ("SET SESSION AUTHORIZATION postgres; DROP TABLE public.victim",
                              'cannot set parameter "session_authorization" within security-definer function'),
    "reset session authorization": ("RESET SESSION AUTHORIZATION; DROP TABLE public.victim",
                                    'cannot set parameter "session_authorization"'),
    "reset all": ("RESET ALL; DROP TABLE public.victim", "must be owner of table victim"),
    "do block": ("DO $$ BEGIN PERFORM set_config('role', 'none', false); EXECUTE 'DROP TABLE public.victim'; END $$",
                 'cannot set parameter "role"'),
    "own security definer function": (
        """CREATE FUNCTION pg_temp.escape() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
           BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'DROP TABLE public.victim'; END $f$;
           SELECT pg_temp.escape()""", 'cannot set parameter "role"'),
    "commit first": ("COMMIT; RESET ROLE; DROP TABLE public.victim", "transaction"),
    "rollback first": ("ROLLBACK; RESET ROLE; DROP TABLE public.victim", "transaction"),
    "procedure that commits": (
        """CREATE PROCEDURE {schema}.p() LANGUAGE plpgsql AS $p$
           BEGIN COMMIT; PERFORM set_config('role', 'none', false); DROP TABLE public.victim; END $p$;
           CALL {schema}.p()""", "invalid transaction termination"),
    # PostgreSQL 16 reworded these refusals; either version's text is the refusal.
    "become superuser": ("ALTER ROLE CURRENT_USER SUPERUSER", ("must be superuser", "permission denied to alter role")),
    "grant itself postgres": ("GRANT postgres TO CURRENT_USER",
                              ("must be superuser", 'permission denied to grant role "postgres"')),
    "replica mode": ("SET session_replication_role = replica", 'permission denied to set parameter'),
    "server program": ("COPY (SELECT 1) TO PROGRAM 'true'",
                       ("pg_execute_server_program", "permission denied to COPY to or from an external program")),
    "deferred trigger": (
        # Set up beforehand, in the role's own schema: a trigger deferred to COMMIT, when the
        # command's function has returned and the role could be changed back.
        """INSERT INTO {schema}.armed VALUES (1)""", 'cannot set parameter "role" within security-restricted operation'),
    "trigger that defers itself again": (
        """INSERT INTO {schema}.rearmed VALUES (1)""", "cannot fire deferred trigger within security-restricted operation"),
}

# Made by the role itself, outside jobline, before it schedules anything.
ARMING = """
CREATE FUNCTION {schema}.escape() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM set_config('role', 'none', false);
  DROP TABLE public.victim;
  RETURN NULL;
END $f$;
CREATE TABLE {schema}.armed (a int);
CREATE CONSTRAINT TRIGGER escape AFTER INSERT ON {schema}.armed
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {schema}.escape();
CREATE FUNCTION {schema}.rearm() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF NEW.a = 1 THEN  -- fired while the worker flushes deferred triggers: defer a second one
    SET CONSTRAINTS ALL DEFERRED;
    INSERT INTO {schema}.rearmed VALUES (2);
  ELSE               -- ... hoping it fires at COMMIT, outside any restriction
    PERFORM set_config('role', 'none', false);
    DROP TABLE public.victim;
  END IF;
  RETURN NULL;
END $f$;
CREATE TABLE {schema}.rearmed (a int);
CREATE CONSTRAINT TRIGGER rearm AFTER INSERT ON {schema}.rearmed
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {schema}.rearm();
"""


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
async def test_a_schedule_never_does_what_its_role_may_not(app, store, sql, roles, mallory, victim, attack):
    mallory_sql = roles.sql(mallory)
    schema = f'"{mallory}"'
    mallory_sql(ARMING.format(schema=schema))
    command, error = ATTACKS[attack]
    status, last_error = await run_schedule_of(mallory_sql, app, store, sql, command.format(schema=schema))
    assert victim()
    assert status == "failed"
    assert any(text in last_error for text in ((error,) if isinstance(error, str) else error)), last_error


async def test_a_cursor_with_hold_is_closed_before_its_query_could_run_at_commit(app, store, sql, roles, mallory,
                                                                                 victim):
    mallory_sql = roles.sql(mallory)
    mallory_sql(f"""CREATE FUNCTION "{mallory}".escape() RETURNS int LANGUAGE plpgsql AS $f$
                    BEGIN PERFORM set_config('role', 'none', false); DROP TABLE public.victim; RETURN 1; END $f$""")
    status, error = await run_schedule_of(mallory_sql, app, store, sql,
                                          f'DECLARE c CURSOR WITH HOLD FOR SELECT "{mallory}".escape()')
    assert victim() and status == "succeeded" and error is None


async def test_the_same_command_scheduled_by_the_operator_does_drop_the_table(app, store, sql, victim):
    """The control: the attacks above aim at something the worker's own role can do."""
    status, error = await run_schedule_of(sql, app, store, sql, "DROP TABLE public.victim")
    assert (status, error) == ("succeeded", None)
    assert not victim()


async def test_a_plain_role_s_command_runs_as_itself_and_reports_its_last_statement(app, store, sql, roles,
                                                                                    mallory):
    mallory_sql = roles.sql(mallory)
    mallory_sql(f'CREATE TABLE "{mallory}".notes (who text, via text)')
    command = (f"""INSERT INTO "{mallory}".notes VALUES (current_user, current_setting('role'));
                   SELECT 1 FROM "{mallory}".notes""")
    [(jobid,)] = mallory_sql("SELECT jobline.schedule('notes', '@daily', %s)", [command])
    job_id = await store.schedule_trigger(jobid)
    await app.process_async()
    assert mallory_sql(f'SELECT who, via FROM "{mallory}".notes') == [(mallory, mallory)]
    [(status, result)] = sql("SELECT status, result FROM jobline.jobs WHERE id = %s", [job_id])
    assert status == "succeeded" and result["status"] == "SELECT 1"
    assert mallory_sql("SELECT status, return_message FROM jobline.job_run_details") == [("succeeded", "SELECT 1")]


async def test_what_the_command_leaves_in_its_session_goes_with_it(app, store, sql, roles, mallory):
    mallory_sql = roles.sql(mallory)
    status, error = await run_schedule_of(mallory_sql, app, store, sql, """
        SELECT pg_advisory_lock(424242);
        SELECT set_config('search_path', 'nowhere', false);
        LISTEN somewhere;
        CREATE TEMP TABLE jobs (id int);""")
    assert (status, error) == ("succeeded", None)
    assert sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242") == [(0,)]
    # The worker's own next command, on its own connection, is as it was.
    assert await store.sql_run("SELECT current_setting('search_path')") == {
        "status": "SELECT 1", "rowcount": 1, "rows": [['"$user", public']]}


@pytest.mark.parametrize("route", [
    "SELECT jobline.enqueue('sql', jsonb_build_object('command', 'DROP TABLE public.victim'))",
    "INSERT INTO jobline.jobs (function, payload) VALUES ('sql', '{\"command\": \"DROP TABLE public.victim\"}')",
    "INSERT INTO jobline.schedules (name, expression, function, payload) "
    "VALUES ('direct', '@daily', 'sql', '{\"command\": \"DROP TABLE public.victim\"}')",
])
async def test_queueing_sql_another_way_still_runs_it_as_the_role(app, store, sql, roles, mallory, victim, route):
    roles.sql(mallory)(route)
    for (schedule_id,) in sql("SELECT id FROM jobline.schedules"):
        await store.schedule_trigger(schedule_id)
    await app.process_async()
    [(status, error, username)] = sql("SELECT status, last_error, username FROM jobline.jobs")
    assert victim() and username == mallory
    assert status in ("failed", "pending") and "must be owner of table victim" in error


@pytest.mark.parametrize("statement, error", [
    ("SELECT jobline.enqueue('sql', '{\"command\": \"SELECT 1\"}', username => 'postgres')",
     "may queue only its own sql and http jobs"),
    ("SELECT jobline.enqueue('report', '{}')", "may queue only its own sql and http jobs"),
    ("SELECT jobline.enqueue('http', '{\"url\": \"https://example.com\"}', owner => 'alice')",
     "may queue only its own sql and http jobs"),
    ("INSERT INTO jobline.jobs (function, payload, username) VALUES ('sql', '{\"command\": \"SELECT 1\"}', 'postgres')",
     "row-level security"),
    ("INSERT INTO jobline.jobs (function, payload, status) VALUES ('sql', '{\"command\": \"SELECT 1\"}', 'succeeded')",
     "row-level security"),
    ("INSERT INTO jobline.schedules (expression, function, payload, username) "
     "VALUES ('@daily', 'sql', '{\"command\": \"SELECT 1\"}', 'postgres')", "row-level security"),
    ("INSERT INTO jobline.schedules (expression, function, payload) VALUES ('@daily', 'http', '{\"url\": \"https://x\"}')",
     "row-level security"),
    ("UPDATE jobline.jobs SET status = 'succeeded'", "permission denied"),
    ("SELECT jobline.schedule_in_database('x', '@daily', 'SELECT 1', current_database(), 'postgres')",
     "permission denied for function schedule_in_database"),
    ("SELECT jobline.fire_schedule(1, NULL, now(), ARRAY[now()], NULL, NULL, now())",
     "permission denied for function fire_schedule"),
    ("SELECT * FROM jobline.secrets", "permission denied"),
    ("SELECT * FROM jobline.decrypted_secrets", "permission denied"),
])
def test_a_plain_role_cannot_act_for_another_or_write_what_workers_write(roles, mallory, statement, error):
    with pytest.raises(psycopg.Error) as caught:
        roles.sql(mallory)(statement)
    assert error in str(caught.value)


async def test_another_role_s_job_cannot_be_changed_to_run_something_else(app, store, sql, roles, mallory, victim):
    [(theirs,)] = sql("SELECT jobline.schedule('theirs', '@daily', 'SELECT 1')")
    mallory_sql = roles.sql(mallory)
    with pytest.raises(psycopg.Error, match=f"Job {theirs} does not exist or you don't own it"):
        mallory_sql("SELECT jobline.alter_job(%s, command := 'DROP TABLE public.victim')", [theirs])
    assert mallory_sql("UPDATE jobline.schedules SET payload = '{\"command\": \"DROP TABLE public.victim\"}' "
                       "RETURNING id") == []
    [(mine,)] = mallory_sql("SELECT jobline.schedule('mine', '@daily', 'SELECT 1')")
    with pytest.raises(psycopg.Error, match="row-level security"):
        mallory_sql("UPDATE jobline.schedules SET username = 'postgres' WHERE id = %s", [mine])
    with pytest.raises(psycopg.Error, match="must be superuser to alter username"):
        mallory_sql("SELECT jobline.alter_job(%s, username := 'postgres')", [mine])
    await store.schedule_trigger(theirs)
    await app.process_async()
    assert sql("SELECT payload->>'command', status FROM jobline.jobs") == [("SELECT 1", "succeeded")]


async def test_the_worker_s_own_commands_still_run_directly(app, store, sql):
    """VACUUM cannot run in a function or a transaction block: the operator's runs as before."""
    [(jobid,)] = sql("SELECT jobline.schedule('vacuum', '@daily', 'VACUUM jobline.schedules')")
    job_id = await store.schedule_trigger(jobid)
    await app.process_async()
    assert sql("SELECT status, result->>'status' FROM jobline.jobs WHERE id = %s", [job_id]) == [
        ("succeeded", "VACUUM")]


async def test_a_plain_role_s_vacuum_fails_with_postgresql_s_own_error(app, store, sql, roles, mallory):
    status, error = await run_schedule_of(roles.sql(mallory), app, store, sql, "VACUUM")
    assert status == "failed" and "VACUUM cannot" in error


async def test_a_worker_that_may_not_act_as_the_role_fails_the_job_saying_what_to_grant(db_url, sql, roles,
                                                                                       mallory, victim):
    """The worker connects as a role with the owner's privileges (a member of the schema's owner),
    not a superuser and not a member of mallory."""
    worker = roles.make("worker", usage=False)
    owner = sql("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'jobline'")[0][0]
    sql(f'GRANT {owner} TO "{worker}"')
    mallory_sql = roles.sql(mallory)
    [(jobid,)] = mallory_sql("SELECT jobline.schedule('attempt', '@daily', 'SELECT 1')")
    sql("UPDATE jobline.schedules SET max_attempts = 1")
    app = App(settings=Settings(database_url=roles.url(worker), lease_seconds=30, poll_interval=0.2))
    async with app:
        job_id = await app.store.schedule_trigger(jobid)
        await app.process_async()
    [(status, error)] = sql("SELECT status, last_error FROM jobline.jobs WHERE id = %s", [job_id])
    assert status == "failed"
    assert f'cannot act as role "{mallory}": run `GRANT "{mallory}" TO "{worker}"`' in error


async def test_a_role_without_temporary_fails_the_job_saying_what_to_grant(app, store, sql, roles, mallory,
                                                                          pg_server_url):
    database = sql("SELECT current_database()")[0][0]
    sql(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
    status, error = await run_schedule_of(roles.sql(mallory), app, store, sql, "SELECT 1")
    assert status == "failed"
    assert f'`GRANT TEMPORARY ON DATABASE "{database}" TO "{mallory}"`' in error


async def test_a_job_whose_role_was_dropped_fails_saying_so(app, store, sql, roles, mallory):
    [(jobid,)] = roles.sql(mallory)("SELECT jobline.schedule('orphan', '@daily', 'SELECT 1')")
    sql("UPDATE jobline.schedules SET max_attempts = 1")
    sql(f'DROP OWNED BY "{mallory}"; DROP ROLE "{mallory}"')
    job_id = await store.schedule_trigger(jobid)
    await app.process_async()
    [(status, error)] = sql("SELECT status, last_error FROM jobline.jobs WHERE id = %s", [job_id])
    assert status == "failed" and f'role "{mallory}" does not exist' in error


async def test_the_worker_s_own_command_leaves_no_setting_in_its_pooled_session(db_url, sql):
    """Its timeout and parent are the session's while it runs (VACUUM needs it outside a
    transaction block), and are reset after, whether it succeeded or failed."""
    from jobline.db.store import Store
    from jobline.errors import DatabaseError

    store = Store(db_url, max_size=1)  # one connection: the next command gets the same session
    await store.open()
    try:
        [(job_id,)] = sql("SELECT jobline.enqueue('sql', '{\"command\": \"SELECT 1\"}')")
        with pytest.raises(DatabaseError, match="statement timeout"):
            await store.sql_run("SELECT pg_sleep(1)", job_id=job_id, timeout=0.05)
        assert (await store.sql_run("BEGIN; SELECT 1", job_id=job_id))["status"] == "SELECT 1"
        shown = await store.sql_run("SELECT current_setting('statement_timeout'), "
                                    "coalesce(current_setting('jobline.parent_job', true), ''), "
                                    "pg_current_xact_id_if_assigned() IS NULL")
        assert shown["rows"] == [["0", "", True]]
    finally:
        await store.close()
