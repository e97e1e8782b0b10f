"""pg_cron, judged by its own regression suite: every statement of pg_cron's
test/sql/pg_cron-test.sql (citusdata/pg_cron), with `cron.` renamed to `jobline.`, run in order
against jobline, each compared with what pg_cron's test/expected/pg_cron-test.out says it gives.

The cases and pg_cron's expected outputs are transcribed here as data (this test cannot fetch
pg_cron's files, and copies none of them). Each case is one statement and its expected outcome:
rows, an error (pg_cron's message and hint, and the SQLSTATE pg_cron raises it with, from its
source), or a statement that prints nothing (CREATE DATABASE, GRANT ...).

How they are compared:
- Rows must be equal. An error matches when its message and hint are pg_cron's; jobline may add a
  DETAIL with its own reason (pg_cron prints none in these cases). Where jobline raises the same
  message with another SQLSTATE (pg_cron's elog() calls give XX000, internal_error; jobline gives
  a code that says what happened), the case still matches, and `SQLSTATES` lists the difference.
- Job ids are compared by what they refer to, not by number: pg_cron's ids come from its
  sequence, which the failed calls of its test also consume, so its third job is id 6. A case
  that creates a job records which of jobline's ids is pg_cron's `{6}`, and later cases use
  `{6}` for it, in statements and in expected rows.
- The statements that install, upgrade or drop the extension are not compared. pg_cron's test
  drops and re-creates the extension twice, which deletes every job; jobline's equivalent is a
  freshly migrated database, so each part of the test between them runs in one. Before the
  last part the test creates a type and cast that would run code if an install script used
  `current_setting('...')` unqualified; there `jobline db migrate` runs where CREATE EXTENSION
  was, and the check that follows (public.test stays empty) is compared.
- Role and database names get a random suffix (roles are cluster-wide and the server is
  shared), in statements and expected outputs alike; the case-sensitivity check keeps its
  `"CaseOwner"` / `caseowner` pair.
- `DELIBERATE` lists the cases whose outcome differs on purpose, with the reason; every other
  compared case must match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
from typing import Any

import psycopg
import pytest
from conftest import url_for

from jobline.db import migrate

pytestmark = pytest.mark.timeout(120)

HINT = "Use cron format (e.g. 5 4 * * *), or interval format '[1-59] seconds'"


@dataclasses.dataclass(frozen=True)
class Rows:
    rows: list[tuple]


@dataclasses.dataclass(frozen=True)
class NewJob:
    """One row holding the id of a new job, pg_cron's id `number`."""
    number: int


@dataclasses.dataclass(frozen=True)
class Job:
    """In expected rows: the id of pg_cron's job `number`."""
    number: int


@dataclasses.dataclass(frozen=True)
class Error:
    message: str
    sqlstate: str               # pg_cron's, from its source (elog: XX000)
    hint: str | None = None


@dataclasses.dataclass(frozen=True)
class Silent:
    """A statement that returns no rows (psql prints only its tag)."""


@dataclasses.dataclass(frozen=True)
class Extension:
    """Installs, upgrades or drops pg_cron: not compared. `fresh` starts a new part in a freshly
    migrated database; `migrate` migrates the current one (where the install was)."""
    fresh: bool = False
    migrate: bool = False


VOID = Rows([(None,)])  # psql prints a void result as one empty row
SILENT = Silent()


def invalid(schedule: str) -> Error:
    return Error(f"invalid schedule: {schedule}", "22023", HINT)


# pg_cron's test/sql/pg_cron-test.sql, one case per statement, in order, `cron.` still written
# as pg_cron has it (the test renames it), with pg_cron's expected output.
CASES: list[tuple[str, Any]] = [
    ("CREATE EXTENSION pg_cron VERSION '1.0'", Extension(fresh=True)),
    ("SELECT extversion FROM pg_extension WHERE extname='pg_cron'", Rows([("1.0",)])),
    ("ALTER EXTENSION pg_cron UPDATE TO '1.3'", Extension()),
    ("SELECT cron.schedule('test', '* * * * *', 'SELECT 1')", NewJob(1)),
    ("SELECT cron.unschedule('test')", Rows([(True,)])),
    ("ALTER EXTENSION pg_cron UPDATE TO '1.4'", Extension()),
    ("SELECT cron.unschedule(job_name := 'no_such_job')", Error("could not find valid entry for job 'no_such_job'", "XX000")),
    ("SELECT cron.schedule('testjob', '* * * * *', 'SELECT 1')", NewJob(2)),
    ("SELECT cron.unschedule('testjob')", Rows([(True,)])),
    ("DROP EXTENSION pg_cron", Extension()),
    ("CREATE EXTENSION pg_cron VERSION '1.4'", Extension(fresh=True)),
    ("ALTER EXTENSION pg_cron UPDATE", Extension()),
    ("SELECT cron.schedule('0 10 * * *', 'VACUUM')", NewJob(1)),
    ("SELECT cron.unschedule({1})", Rows([(True,)])),
    ("SELECT cron.schedule(repeat('a', 1000), '')", invalid("a" * 1000)),
    ("SELECT cron.schedule('* * * *', 'SELECT 1')", invalid("* * * *")),
    ("SELECT cron.schedule('5 secondc', 'SELECT 1')", invalid("5 secondc")),
    ("SELECT cron.schedule('50 seconds c', 'SELECT 1')", invalid("50 seconds c")),
    ("SELECT cron.schedule('*/0 10 * * *', 'SELECT 1')", invalid("*/0 10 * * *")),
    ("SELECT cron.schedule('-1 * * * *', 'SELECT 1')", invalid("-1 * * * *")),
    ("SELECT cron.schedule('*/-1 10 * * *', 'SELECT 1')", invalid("*/-1 10 * * *")),
    ("SELECT cron.schedule('*/60 10 * * *', 'SELECT 1')", invalid("*/60 10 * * *")),
    ("SELECT cron.schedule('* * * 13 *', 'SELECT 1')", invalid("* * * 13 *")),
    ("SELECT cron.schedule('* * * 0 *', 'SELECT 1')", invalid("* * * 0 *")),
    ("SELECT cron.schedule('*/5000000000 10 * * *', 'SELECT 1')", invalid("*/5000000000 10 * * *")),
    ("SELECT cron.schedule('-1 seconds', 'SELECT 1')", invalid("-1 seconds")),
    ("SELECT cron.schedule('0 seconds', 'SELECT 1')", invalid("0 seconds")),
    ("SELECT cron.schedule('60 seconds', 'SELECT 1')", invalid("60 seconds")),
    ("SELECT cron.schedule('10000000000 seconds', 'SELECT 1')", invalid("10000000000 seconds")),
    ("SELECT cron.schedule('@restar', 'ALTER EXTENSION pg_cron UPDATE')", invalid("@restar")),
    ("SELECT cron.schedule('@restart', 'ALTER EXTENSION pg_cron UPDATE')", NewJob(2)),
    ("SELECT cron.schedule('myvacuum', '0 10 * * *', 'VACUUM')", NewJob(3)),
    ("SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid",
     Rows([(Job(2), None, "@restart", "ALTER EXTENSION pg_cron UPDATE"), (Job(3), "myvacuum", "0 10 * * *", "VACUUM")])),
    ("SELECT cron.schedule('myvacuum', '0 11 * * *', 'VACUUM')", Rows([(Job(3),)])),
    ("SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid",
     Rows([(Job(2), None, "@restart", "ALTER EXTENSION pg_cron UPDATE"), (Job(3), "myvacuum", "0 11 * * *", "VACUUM")])),
    ("SELECT cron.schedule('myvacuum', '0 11 * * *', 'VACUUM FULL')", Rows([(Job(3),)])),
    ("SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid",
     Rows([(Job(2), None, "@restart", "ALTER EXTENSION pg_cron UPDATE"),
           (Job(3), "myvacuum", "0 11 * * *", "VACUUM FULL")])),
    ("SELECT cron.unschedule('myvacuum')", Rows([(True,)])),
    ("SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid",
     Rows([(Job(2), None, "@restart", "ALTER EXTENSION pg_cron UPDATE")])),
    ("SELECT cron.alter_job({2})", Error("no updates specified", "XX000",
                                         "You must specify at least one job attribute to change when calling alter_job")),
    ("select cron.alter_job(job_id:={2},database:='hopedoesnotexist')",
     Error('database "hopedoesnotexist" does not exist', "3D000")),
    ("create database pgcron_dbno", SILENT),
    ("revoke connect on database pgcron_dbno from public", SILENT),
    ("create user pgcron_cront with password 'pwd'", SILENT),
    ("GRANT USAGE ON SCHEMA cron TO pgcron_cront", SILENT),
    ("SELECT cron.schedule_in_database(job_name:='can not connect', schedule:='0 11 * * *', command:='VACUUM',"
     "database:='pgcron_dbno',username:='pgcron_cront')",
     Error("User pgcron_cront does not have CONNECT privilege on pgcron_dbno", "XX000")),
    ("create database pgcron_dbyes", SILENT),
    ("SELECT cron.schedule_in_database(job_name:='user does not exist', schedule:='0 11 * * *', command:='VACUUM',"
     "database:='pgcron_dbyes',username:='pgcron_useraqwxszedc')",
     Error('role "pgcron_useraqwxszedc" does not exist', "XX000")),
    ("SELECT cron.alter_job(job_id:={2},database:='pgcron_dbno',username:='pgcron_cront')",
     Error("User pgcron_cront does not have CONNECT privilege on pgcron_dbno", "XX000")),
    ("GRANT EXECUTE ON FUNCTION cron.alter_job(bigint,text,text,text,text,boolean) TO public", SILENT),
    ("SET SESSION AUTHORIZATION pgcron_cront", SILENT),
    ("SELECT cron.schedule('My vacuum', '0 11 * * *', 'VACUUM')", NewJob(6)),
    ("SELECT cron.schedule_in_database(job_name:='his vacuum', schedule:='0 11 * * *', command:='VACUUM',"
     "database:=current_database(),username:='anotheruser')",
     Error("permission denied for function schedule_in_database", "42501")),
    ("select cron.alter_job(job_id:={6},username:='anotheruser')", Error("must be superuser to alter username", "XX000")),
    ("select cron.alter_job(job_id:={2},database:='pgcron_dbyes')",
     Error("Job {2} does not exist or you don't own it", "XX000")),
    ("select cron.alter_job(job_id:={6},database:='pgcron_dbyes')", VOID),
    ("SELECT database FROM cron.job", Rows([("pgcron_dbyes",)])),
    ("select cron.alter_job(job_id:={6},database:='pgcron_dbno')",
     Error("User pgcron_cront does not have CONNECT privilege on pgcron_dbno", "XX000")),
    ("SELECT database FROM cron.job", Rows([("pgcron_dbyes",)])),
    ("RESET SESSION AUTHORIZATION", SILENT),
    ("select cron.alter_job(job_id:={2},username:='pgcron_cront')", VOID),
    ("SELECT username FROM cron.job where jobid={2}", Rows([("pgcron_cront",)])),
    ("SELECT cron.schedule_in_database(job_name:='his vacuum', schedule:='0 11 * * *', command:='VACUUM',"
     "database:=current_database(), username:='pgcron_cront')", NewJob(7)),
    ("SELECT username FROM cron.job where jobid={7}", Rows([("pgcron_cront",)])),
    ('CREATE USER "CaseOwner"', SILENT),
    ("CREATE USER caseowner", SILENT),
    ('GRANT USAGE ON SCHEMA cron TO "CaseOwner", caseowner', SILENT),
    ("SELECT cron.schedule_in_database(job_name:='mixed case owner', schedule:='0 11 * * *', command:='VACUUM',"
     "database:=current_database(), username:='CaseOwner')", NewJob(8)),
    ("SET SESSION AUTHORIZATION caseowner", SILENT),
    ("SELECT cron.unschedule({8})", Error("permission denied for table job", "42501")),
    ("RESET SESSION AUTHORIZATION", SILENT),
    ("DROP EXTENSION IF EXISTS pg_cron cascade", Extension(fresh=True)),
    ("CREATE TABLE test (data text)", SILENT),
    ("DROP TYPE IF EXISTS current_setting cascade", SILENT),
    ("CREATE TYPE current_setting AS ENUM ('cron.database_name')", SILENT),
    ("CREATE OR REPLACE FUNCTION public.func1(text, current_setting) RETURNS text\n"
     "    LANGUAGE sql volatile AS 'INSERT INTO test(data) VALUES (current_user); SELECT current_database()::text;'",
     SILENT),
    ("CREATE OR REPLACE FUNCTION public.func1(current_setting) RETURNS text\n"
     "    LANGUAGE sql volatile AS 'INSERT INTO test(data) VALUES (current_user); SELECT current_database()::text;'",
     SILENT),
    ("CREATE CAST (current_setting AS text) WITH FUNCTION public.func1(current_setting) AS IMPLICIT", SILENT),
    ("CREATE EXTENSION pg_cron", Extension(migrate=True)),
    ("select * from public.test", Rows([])),
    ("SELECT cron.schedule('1 second', 'SELECT 1')", NewJob(1)),
    ("SELECT cron.schedule(' 30 sEcOnDs ', 'SELECT 1')", NewJob(2)),
    ("SELECT cron.schedule('59 seconds', 'SELECT 1')", NewJob(3)),
    ("SELECT cron.schedule('17  seconds ', 'SELECT 1')", NewJob(4)),
    ("SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid",
     Rows([(Job(1), None, "1 second", "SELECT 1"), (Job(2), None, " 30 sEcOnDs ", "SELECT 1"),
           (Job(3), None, "59 seconds", "SELECT 1"), (Job(4), None, "17  seconds ", "SELECT 1")])),
    ("SELECT cron.schedule('last-day-of-month-job1', '0 11 $ * *', 'SELECT 1')", NewJob(5)),
    ("SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid",
     Rows([(Job(1), None, "1 second", "SELECT 1"), (Job(2), None, " 30 sEcOnDs ", "SELECT 1"),
           (Job(3), None, "59 seconds", "SELECT 1"), (Job(4), None, "17  seconds ", "SELECT 1"),
           (Job(5), "last-day-of-month-job1", "0 11 $ * *", "SELECT 1")])),
    ("SELECT cron.schedule('bad-last-dom-job1', '0 11 $foo * *', 'VACUUM FULL')", invalid("0 11 $foo * *")),
    ("DROP EXTENSION pg_cron", Extension()),
    ("drop user pgcron_cront", SILENT),
    ('drop user "CaseOwner"', SILENT),
    ("drop user caseowner", SILENT),
    ("drop database pgcron_dbno", SILENT),
    ("drop database pgcron_dbyes", SILENT),
]

# Cases whose outcome differs on purpose (by the statement), with the reason.
DELIBERATE = {
    "SELECT extversion FROM pg_extension WHERE extname='pg_cron'":
        "jobline is installed by `jobline db migrate`, not as an extension, so pg_extension has no row for it; "
        "`jobline db status` (jobline.schema_migrations) lists the applied migrations",
}

# Messages jobline raises as pg_cron does, but with a SQLSTATE that says what happened where
# pg_cron's elog() gives XX000 (internal_error): pg_cron's -> jobline's.
SQLSTATES = {
    "could not find valid entry for job 'no_such_job'": ("XX000", "P0002"),
    "no updates specified": ("XX000", "22023"),
    "User pgcron_cront does not have CONNECT privilege on pgcron_dbno": ("XX000", "42501"),
    'role "pgcron_useraqwxszedc" does not exist': ("XX000", "42704"),
    "must be superuser to alter username": ("XX000", "42501"),
    "Job {2} does not exist or you don't own it": ("XX000", "P0002"),
}


@dataclasses.dataclass
class Outcome:
    rows: list[tuple] | None = None
    error: psycopg.Error | None = None


class Names:
    """pg_cron's role and database names, suffixed for this run."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.map = {"pgcron_cront": f"pgcron_cront_{tag}", "pgcron_dbno": f"pgcron_dbno_{tag}",
                    "pgcron_dbyes": f"pgcron_dbyes_{tag}", "CaseOwner": f"CaseOwner_{tag}",
                    "caseowner": f"caseowner_{tag}"}

    def __call__(self, text: str) -> str:
        return re.sub("|".join(map(re.escape, self.map)), lambda m: self.map[m[0]], text)

    @property
    def roles(self) -> list[str]:
        return [self.map[n] for n in ("pgcron_cront", "CaseOwner", "caseowner")]

    @property
    def databases(self) -> list[str]:
        return [self.map["pgcron_dbno"], self.map["pgcron_dbyes"]]


def renamed(statement: str) -> str:
    return re.sub(r"\bcron\.", "jobline.", statement).replace("SCHEMA cron ", "SCHEMA jobline ")


def resolve(template: str, ids: dict[int, int]) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: str(ids[int(m[1])]), template)


def expected_rows(rows: list[tuple], ids: dict[int, int], names: Names) -> list[tuple]:
    def value(v):
        if isinstance(v, Job):
            return ids[v.number]
        return names(v) if isinstance(v, str) else v
    return [tuple(value(v) for v in row) for row in rows]


def judge(expected: Any, got: Outcome, ids: dict[int, int], names: Names) -> str | None:
    """None when ``got`` is pg_cron's output, else what differs."""
    if isinstance(expected, Error):
        if got.error is None:
            return f"no error, rows {got.rows}"
        diag = got.error.diag
        message = resolve(names(expected.message), ids)
        if diag.message_primary != message:
            return f"error {diag.message_primary!r} ({got.error.sqlstate}), pg_cron's {message!r}"
        if expected.hint is not None and diag.message_hint != expected.hint:
            return f"hint {diag.message_hint!r}, pg_cron's {expected.hint!r}"
        return None
    if got.error is not None:
        return f"error {got.error.diag.message_primary!r} ({got.error.sqlstate})"
    if isinstance(expected, Silent):
        return None if not got.rows else f"rows {got.rows}"
    if isinstance(expected, NewJob):
        if len(got.rows) != 1 or not isinstance(got.rows[0][0], int):
            return f"rows {got.rows}, not one job id"
        ids[expected.number] = got.rows[0][0]
        return None
    want = expected_rows(expected.rows, ids, names)
    rows = [tuple(None if v == "" else v for v in row) for row in got.rows]  # void prints empty
    return None if rows == want else f"rows {got.rows}, pg_cron's {want}"


@contextlib.contextmanager
def part_database(pg_server_url: str, template: str | None):
    """A database for one part of the test: a clone of the migrated template, or empty."""
    name = f"t_cron_{secrets.token_hex(5)}"
    with psycopg.connect(url_for(pg_server_url, "postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield url_for(pg_server_url, name)
    finally:
        with psycopg.connect(url_for(pg_server_url, "postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(pg_server_url: str, pg_template: str) -> list[tuple[str, Any, str | None, Outcome]]:
    """Every case, in order: (statement as run, expected, difference or None, outcome);
    expected is None for the statements not compared."""
    names, ids, results = Names(), {}, []
    parts: list[list[tuple[str, Any]]] = []
    for statement, expected in CASES:
        if isinstance(expected, Extension) and expected.fresh or not parts:
            parts.append([])
        parts[-1].append((statement, expected))
    try:
        for number, part in enumerate(parts):
            # The last part begins with no jobline at all: its overrides come first, then the install.
            with part_database(pg_server_url, None if number == len(parts) - 1 else pg_template) as url:
                ids.clear()
                with psycopg.connect(url, autocommit=True) as conn:
                    for statement, expected in part:
                        if isinstance(expected, Extension):
                            if expected.migrate:
                                migrate.migrate(url)
                            results.append((statement, None, None, Outcome()))
                            continue
                        sql = resolve(names(renamed(statement)), ids)
                        got = Outcome()
                        try:
                            cur = conn.execute(sql)
                            got.rows = cur.fetchall() if cur.description else []
                        except psycopg.Error as exc:
                            got.error = exc
                        results.append((sql, expected, judge(expected, got, ids, names), got))
                    conn.execute("RESET SESSION AUTHORIZATION")
    finally:
        with psycopg.connect(url_for(pg_server_url, "postgres"), autocommit=True) as admin:
            for database in names.databases:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in names.roles:
                with contextlib.suppress(psycopg.Error):
                    admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    return results


def test_pg_cron_regression_suite_gives_pg_cron_s_output(pg_server_url, pg_template):
    results = run(pg_server_url, pg_template)
    compared = [(sql, expected, difference) for sql, expected, difference, _ in results if expected is not None]
    unexplained = [(sql, difference) for sql, _, difference in compared
                   if difference is not None and not any(sql.startswith(k) for k in DELIBERATE)]
    assert unexplained == []
    different = [sql for sql, _, difference in compared if difference is not None]
    assert len(different) == len(DELIBERATE), f"a deliberate difference no longer differs: {different}"
    # The counts the documentation gives (docs/howto/from-supabase.md).
    assert (len(CASES), len(CASES) - len(compared), len(compared), len(compared) - len(different)) == (94, 9, 85, 84)


def test_pg_cron_s_error_codes_where_jobline_says_more(pg_server_url, pg_template):
    """Where jobline raises pg_cron's message with another SQLSTATE, it is the one SQLSTATES
    lists; everywhere else an error has pg_cron's SQLSTATE."""
    results = run(pg_server_url, pg_template)
    codes = {}
    for _, expected, _, got in results:
        if isinstance(expected, Error) and got.error is not None:
            codes[expected.message] = (expected.sqlstate, got.error.sqlstate)
    assert {message: pair for message, pair in codes.items() if pair[0] != pair[1]} == SQLSTATES
