"""pg_cron's role model: a role with USAGE ON SCHEMA jobline schedules, lists, alters and
unschedules its own jobs and sees no one else's (through jobline.job, jobline.job_run_details,
jobline._http_response and the tables behind them); a superuser, the schema's owner or a role
with the owner's privileges sees and manages all. Checked as plain roles connect: alice and bob
are LOGIN roles with nothing but USAGE on jobline."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from conftest import url_for
from receiver import Receiver, Reply
from role_support import roles_of

from jobline import App


@pytest.fixture
def roles(db_url):
    with roles_of(db_url) as made:
        yield made


@pytest.fixture
def alice(roles):
    return roles.make("alice")


@pytest.fixture
def bob(roles):
    return roles.make("bob")


def error_of(run, statement: str, params=None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        run(statement, params)
    return caught.value


def test_a_role_with_usage_schedules_lists_alters_and_unschedules_only_its_own(sql, roles, alice, bob):
    as_alice, as_bob = roles.sql(alice), roles.sql(bob)
    [(mine,)] = as_alice("SELECT jobline.schedule('nightly', '0 3 * * *', 'SELECT 1')")
    [(theirs,)] = as_bob("SELECT jobline.schedule('nightly', '0 4 * * *', 'SELECT 2')")
    assert mine != theirs  # names are per role, as pg_cron's (jobname, username)
    assert as_alice("SELECT jobid, jobname, schedule, command, username FROM jobline.job") == [
        (mine, "nightly", "0 3 * * *", "SELECT 1", alice)]
    assert as_alice("SELECT jobline.schedule('nightly', '0 5 * * *', 'SELECT 3')") == [(mine,)]  # her own, replaced
    assert as_alice("SELECT id FROM jobline.schedules") == [(mine,)]

    as_alice("SELECT jobline.alter_job(%s, active := false)", [mine])
    assert error_of(as_alice, "SELECT jobline.alter_job(%s, active := false)", [theirs]).diag.message_primary == (
        f"Job {theirs} does not exist or you don't own it")
    denied = error_of(as_alice, "SELECT jobline.unschedule(%s)", [theirs])
    assert (denied.sqlstate, denied.diag.message_primary) == ("42501", "permission denied for table job")
    assert error_of(as_alice, "SELECT jobline.unschedule(%s)", [theirs + 1000]).diag.message_primary == (
        f"could not find valid entry for job {theirs + 1000}")
    assert as_alice("SELECT jobline.unschedule('nightly')") == [(True,)]
    assert as_bob("SELECT jobid, active FROM jobline.job") == [(theirs, True)]
    # The operator sees and manages everyone's.
    assert sql("SELECT jobid, username FROM jobline.job") == [(theirs, bob)]
    assert sql("SELECT jobline.unschedule(%s)", [theirs]) == [(True,)]


async def test_runs_are_seen_and_deleted_by_their_own_role_only(app, store, sql, roles, alice, bob):
    as_alice, as_bob = roles.sql(alice), roles.sql(bob)
    [(a,)] = as_alice("SELECT jobline.schedule('a', '@daily', 'SELECT 1')")
    [(b,)] = as_bob("SELECT jobline.schedule('b', '@daily', 'SELECT 2')")
    for schedule_id in (a, a, b):
        await store.schedule_trigger(schedule_id)
    await app.process_async()
    assert as_alice("SELECT jobid, status, return_message, username FROM jobline.job_run_details") == [
        (a, "succeeded", "SELECT 1", alice)] * 2
    assert as_bob("SELECT count(*) FROM jobline.job_run_details") == [(1,)]
    assert sql("SELECT count(*) FROM jobline.job_run_details") == [(3,)]
    # pg_cron's clean-up, as pg_cron lets every role do it: only the role's own runs go.
    assert as_alice("DELETE FROM jobline.job_run_details WHERE end_time < now() + interval '1 day' RETURNING jobid") == [
        (a,), (a,)]
    assert sql("SELECT schedule_id FROM jobline.schedule_runs") == [(b,)]
    assert as_alice("SELECT count(*) FROM jobline.jobs") == [(2,)]  # its jobs stay, for their retention
    # Direct reads of the tables meet the same rule.
    assert as_bob("SELECT id FROM jobline.schedules") == [(b,)]
    assert {u for (u,) in as_bob("SELECT username FROM jobline.jobs")} == {bob}
    assert error_of(as_bob, "SELECT * FROM jobline.schedule_runs").sqlstate == "42501"


def test_a_role_s_own_filter_functions_never_see_other_rows(sql, roles, alice, bob):
    """The views are security barriers: a function in the caller's WHERE runs only on the rows
    the view lets the caller see, or it could print others' commands."""
    roles.sql(bob)("SELECT jobline.schedule('secret-plan', '@daily', 'SELECT ''bob''''s password''')")
    roles.sql(alice)("SELECT jobline.schedule('mine', '@daily', 'SELECT 1')")
    sql(f'CREATE SCHEMA AUTHORIZATION "{alice}"')
    seen = []
    with psycopg.connect(roles.url(alice), autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: seen.append(notice.message_primary))
        conn.execute(f"""CREATE FUNCTION "{alice}".peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
                         BEGIN RAISE NOTICE '%', $1; RETURN true; END $$""")
        for view in ("jobline.job", "jobline.job_run_details"):
            conn.execute(f'SELECT * FROM {view} WHERE "{alice}".peek(command)').fetchall()
        conn.execute(f'SELECT * FROM jobline.jobs WHERE "{alice}".peek(payload::text)').fetchall()
    assert not any("password" in message for message in seen)


async def test_a_plain_role_s_http_calls_never_get_the_operator_s_secrets_and_show_only_to_it(db_url, sql, roles,
                                                                                            alice, bob, settings):
    with Receiver(default=Reply(200, {"ok": True})) as receiver:
        url = receiver.url("/hook")
        [(plain,)] = roles.sql(alice)("SELECT jobline.http_post(%s)", [url])
        [(stealing,)] = roles.sql(alice)(
            """SELECT jobline.http_post(%s, headers := '{"Authorization": "Bearer {{secret:service_role_key}}"}')""",
            [url])
        app = App(settings=dataclasses.replace(settings, http_allow="127.0.0.1"))
        async with app:
            await app.process_async()
        assert len(receiver.requests) == 1 and "authorization" not in receiver.requests[0].headers
    [(status, error)] = sql("SELECT status, last_error FROM jobline.jobs WHERE id = %s", [stealing])
    assert status == "failed" and f"acts for database role '{alice}', which is not jobline's operator" in error
    assert roles.sql(alice)("SELECT id, status_code FROM jobline._http_response ORDER BY id") == [
        (plain, 200), (stealing, None)]
    assert roles.sql(bob)("SELECT count(*) FROM jobline._http_response") == [(0,)]
    assert roles.sql(bob)("SELECT (jobline._http_collect_response(%s)).message", [plain]) == [
        ("request matching request_id not found",)]


def test_another_role_is_named_only_by_a_superuser_or_the_owner(sql, roles, alice, bob):
    sql(f'GRANT EXECUTE ON FUNCTION jobline.schedule_in_database(text, text, text, text, text, boolean) TO "{alice}"')
    as_alice = roles.sql(alice)
    [(own,)] = as_alice("SELECT jobline.schedule_in_database('mine', '@daily', 'SELECT 1', current_database())")
    refused = error_of(as_alice, "SELECT jobline.schedule_in_database('x', '@daily', 'SELECT 1', current_database(), %s)",
                       [bob])
    assert (refused.sqlstate, refused.diag.message_primary) == ("42501",
                                                                "must be superuser to create a job for another role")
    assert error_of(as_alice, "SELECT jobline.alter_job(%s, username := %s)", [own, bob]).diag.message_primary == (
        "must be superuser to alter username")
    [(theirs,)] = sql("SELECT jobline.schedule_in_database('for bob', '@daily', 'SELECT 1', current_database(), %s)",
                      [bob])
    sql("SELECT jobline.alter_job(%s, username := %s)", [own, bob])
    assert roles.sql(bob)("SELECT jobid, jobname FROM jobline.job ORDER BY jobid") == [(own, "mine"), (theirs, "for bob")]
    assert as_alice("SELECT count(*) FROM jobline.job") == [(0,)]
    assert error_of(sql, "SELECT jobline.alter_job(%s, username := 'no_such_role_x')", [own]).diag.message_primary == (
        'role "no_such_role_x" does not exist')


def test_a_role_with_the_owner_s_privileges_sees_and_manages_all(sql, roles, alice):
    operator = roles.make("operator", usage=False)
    owner = sql("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'jobline'")[0][0]
    sql(f'GRANT {owner} TO "{operator}"')
    [(hers,)] = roles.sql(alice)("SELECT jobline.schedule('hers', '@daily', 'SELECT 1')")
    as_operator = roles.sql(operator)
    assert as_operator("SELECT jobid, username FROM jobline.job") == [(hers, alice)]
    as_operator("SELECT jobline.alter_job(%s, schedule := '@hourly')", [hers])
    assert as_operator("SELECT jobline.unschedule(%s)", [hers]) == [(True,)]


async def test_a_command_for_another_database_runs_there_as_its_role(app, store, sql, roles, alice, pg_server_url):
    other = f"{sql('SELECT current_database()')[0][0]}_other"
    sql(f"CREATE DATABASE {other}")  # as the test's database is dropped, so is this one, below
    try:
        with psycopg.connect(url_for(pg_server_url, other), autocommit=True) as conn:
            conn.execute(f'CREATE TABLE public.notes (who text); GRANT INSERT ON public.notes TO "{alice}"')
        sql(f'GRANT EXECUTE ON FUNCTION jobline.schedule_in_database(text, text, text, text, text, boolean) TO "{alice}"')
        [(jobid,)] = roles.sql(alice)(
            "SELECT jobline.schedule_in_database('there', '@daily', 'INSERT INTO public.notes VALUES (current_user)', %s)",
            [other])
        assert roles.sql(alice)("SELECT database FROM jobline.job") == [(other,)]
        await store.schedule_trigger(jobid)
        await app.process_async()
        assert roles.sql(alice)("SELECT status, return_message FROM jobline.job_run_details") == [
            ("succeeded", "INSERT 0 1")]
        with psycopg.connect(url_for(pg_server_url, other), autocommit=True) as conn:
            assert conn.execute("SELECT who FROM public.notes").fetchall() == [(alice,)]
            conn.execute(f'DROP OWNED BY "{alice}"')
        # Back home: the command runs in jobline's database again.
        sql("SELECT jobline.alter_job(%s, database := current_database())", [jobid])
        assert sql("SELECT payload FROM jobline.schedules") == [(
            {"command": "INSERT INTO public.notes VALUES (current_user)"},)]
    finally:
        sql(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")
