"""0020_notifications.sql in SQL: jobline.record_event's checks and fan-out, the failed-job trigger
on the paths that do not go through a worker's batch (the rescue of a lost lease), deactivation
counted over a schedule's latest finished runs, and jobline.set_max_consecutive_failures."""

from __future__ import annotations

import json

import psycopg
import pytest

from jobline.operations.notifications import EVENT_KINDS
from role_support import roles_of


def refused(sql, statement: str, params=None) -> str:
    with pytest.raises(psycopg.Error) as caught:
        sql(statement, params)
    return caught.value.diag.message_primary


def test_the_event_kinds_of_python_and_sql_agree(sql):
    assert tuple(sql("SELECT jobline.event_kinds()")[0][0]) == EVENT_KINDS


def test_record_event_refuses_bad_input_with_what_was_wrong(sql):
    call = "SELECT jobline.record_event(%s, %s, %s, %s::jsonb)"
    assert refused(sql, call, ["job.exploded", None, "x", "{}"]).startswith(
        "jobline.record_event: unknown event kind 'job.exploded'; known: job.failed, ")
    assert refused(sql, call, ["job.failed", " padded ", "x", "{}"]) == (
        "jobline.record_event: owner ' padded ' is not a valid name")
    assert refused(sql, call, ["job.failed", None, "s" * 501, "{}"]).startswith("jobline.record_event: subject")
    assert refused(sql, call, ["job.failed", None, "x", "[1]"]) == "jobline.record_event: data must be a JSON object"
    assert refused(sql, call, ["job.failed", None, "x", json.dumps({"a": "b" * 70000})]) == (
        "jobline.record_event: data is larger than 64 KiB")
    assert sql("SELECT count(*) FROM jobline.notifications") == [(0,)]


def test_record_event_queues_one_delivery_per_matching_subscription(sql):
    sql("""INSERT INTO jobline.notification_subscriptions (owner, url, events, headers) VALUES
           (NULL, 'https://ops.example.com/all', NULL, '{"Authorization": "Bearer {{secret:t}}"}'),
           (NULL, 'https://ops.example.com/alerts', '{function.failing}', '{}'),
           ('alice', 'https://alice.example.com/', '{job.failed}', '{"X": "{{owner_secret:t}}"}'),
           ('bob', 'https://bob.example.com/', NULL, '{}'),
           -- written past the checks: a user's subscription naming an operator's secret
           ('alice', 'https://alice.example.com/{{secret:t}}', NULL, '{}')""")
    event = sql("SELECT jobline.record_event('job.failed', 'alice', 'job 7', '{\"job_id\": 7}')")[0][0]
    deliveries = sql("""SELECT owner, payload->>'url', unique_key, payload->'literal_body', payload->'body'
                          FROM jobline.jobs WHERE function = 'http' ORDER BY id""")
    subs = dict(sql("SELECT url, id FROM jobline.notification_subscriptions"))
    assert [(owner, url) for owner, url, *_ in deliveries] == [(None, "https://ops.example.com/all"),
                                                             ("alice", "https://alice.example.com/")]
    owner, url, key, literal, body = deliveries[1]
    assert key == f"jobline-notification-{event}-{subs[url]}" and literal is True
    # A user reads their delivery's job: it keeps only the answer's status (0026); the operator's all.
    assert sql("SELECT owner, payload->'keep_response' FROM jobline.jobs WHERE function = 'http' ORDER BY id") == [
        (None, True), ("alice", False)]
    assert {k: body[k] for k in ("id", "kind", "owner", "subject", "data")} == {
        "id": event, "kind": "job.failed", "owner": "alice", "subject": "job 7", "data": {"job_id": 7}}
    # Operators only: the operator's subscriptions, no user's.
    sql("SELECT jobline.record_event('function.failing', NULL, 'resize', '{}')")
    assert sql("SELECT payload->>'url' FROM jobline.jobs WHERE function = 'http' ORDER BY id")[2:] == [
        ("https://ops.example.com/all",), ("https://ops.example.com/alerts",)]


async def test_a_lost_lease_that_ends_a_job_counts_for_deactivation_and_notifies(sql, store):
    """Not every failure is a worker's report: the rescue of an expired lease fails a job whose
    attempts are used up, and that goes through the same trigger."""
    schedule = sql("SELECT jobline.schedule('cleanup', '0 3 * * *', 'SELECT 1')")[0][0]
    sql("SELECT jobline.set_max_consecutive_failures(%s, 2)", [schedule])
    assert sql("SELECT max_consecutive_failures FROM jobline.schedules") == [(2,)]

    async def lose_one() -> int:
        job_id = sql("SELECT jobline.trigger_schedule(%s)", [schedule])[0][0]
        sql("""UPDATE jobline.jobs SET status = 'running', attempts = max_attempts, worker_id = 'w-gone',
                      started_at = now() - interval '2 minutes', lease_until = now() - interval '1 minute'
                WHERE id = %s""", [job_id])
        await store.job_rescue_expired()
        return job_id

    first = await lose_one()
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", [first]) == [("failed",)]
    assert sql("SELECT active FROM jobline.schedules") == [(True,)]
    second = await lose_one()
    active, reason = sql("SELECT active, deactivated_reason FROM jobline.schedules")[0]
    assert not active and reason.startswith(f"2 runs in a row failed (max_consecutive_failures 2); the last, job "
                                            f"{second}: attempt ")
    assert "was lost" in reason
    kinds = sql("SELECT kind, owner, subject FROM jobline.notifications ORDER BY id")
    assert kinds == [("job.failed", None, f"job {first}"), ("job.failed", None, f"job {second}"),
                     ("schedule.deactivated", None, "cleanup")]
    # Shown by pg_cron's view as any pause is; resuming through alter_job clears it.
    assert sql("SELECT active FROM jobline.job") == [(False,)]
    sql("SELECT jobline.alter_job(%s, active := true)", [schedule])
    assert sql("SELECT active, deactivated_at, deactivated_reason FROM jobline.schedules") == [(True, None, None)]


def test_a_run_whose_queued_job_fails_before_the_run_itself_finishes_counts_as_failed(sql):
    """A schedule's command queues a job that fails while the command's own job is still running
    (its outcome not yet written): the run has failed all the same, and the schedule pauses at
    once rather than never (0026)."""
    schedule = sql("SELECT jobline.schedule('fan-out', '0 3 * * *', 'SELECT 1')")[0][0]
    sql("SELECT jobline.set_max_consecutive_failures(%s, 1)", [schedule])
    parent = sql("SELECT jobline.trigger_schedule(%s)", [schedule])[0][0]
    sql("UPDATE jobline.jobs SET status = 'running', attempts = 1, worker_id = 'w' WHERE id = %s", [parent])
    child = sql("INSERT INTO jobline.jobs (function, parent_id, status, attempts, worker_id) "
                "VALUES ('http', %s, 'running', 1, 'w') RETURNING id", [parent])[0][0]
    sql("UPDATE jobline.jobs SET status = 'failed', last_error = 'HTTP 404', finished_at = now() WHERE id = %s",
        [child])
    active, reason = sql("SELECT active, deactivated_reason FROM jobline.schedules")[0]
    assert not active and reason.startswith(f"1 runs in a row failed (max_consecutive_failures 1); the last, job {parent}")
    sql("UPDATE jobline.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s", [parent])
    assert sql("SELECT active FROM jobline.schedules") == [(False,)]


def test_set_max_consecutive_failures_sets_and_clears_it_and_alter_job_keeps_pg_crons_signature(sql):
    schedule = sql("SELECT jobline.schedule('cleanup', '0 3 * * *', 'SELECT 1')")[0][0]
    sql("SELECT jobline.set_max_consecutive_failures(%s, 5)", [schedule])
    assert sql("SELECT max_consecutive_failures FROM jobline.schedules") == [(5,)]
    sql("SELECT jobline.alter_job(%s, schedule := '0 4 * * *')", [schedule])
    assert sql("SELECT max_consecutive_failures FROM jobline.schedules") == [(5,)]
    sql("SELECT jobline.set_max_consecutive_failures(%s, NULL)", [schedule])  # never
    assert sql("SELECT max_consecutive_failures FROM jobline.schedules") == [(None,)]
    for bad in (0, 1001):
        assert refused(sql, "SELECT jobline.set_max_consecutive_failures(%s, %s)", [schedule, bad]) == (
            "jobline.set_max_consecutive_failures: max_consecutive_failures must be between 1 and 1000, or NULL "
            f"for never; got {bad}")
    assert refused(sql, "SELECT jobline.set_max_consecutive_failures(999, 3)") == (
        "Job 999 does not exist or you don't own it")
    # pg_cron's alter_job is untouched: scripts name its signature in GRANT and REVOKE.
    sql("GRANT EXECUTE ON FUNCTION jobline.alter_job(bigint,text,text,text,text,boolean) TO public")


def test_a_plain_role_sets_it_only_on_its_own_schedules(db_url, sql):
    with roles_of(db_url) as roles:
        alice, bob = roles.make("alice"), roles.make("bob")
        mine = roles.sql(alice)("SELECT jobline.schedule('mine', '0 3 * * *', 'SELECT 1')")[0][0]
        roles.sql(alice)("SELECT jobline.set_max_consecutive_failures(%s, 3)", [mine])
        assert refused(roles.sql(bob), "SELECT jobline.set_max_consecutive_failures(%s, 1)", [mine]) == (
            f"Job {mine} does not exist or you don't own it")
    assert sql("SELECT max_consecutive_failures FROM jobline.schedules") == [(3,)]


def test_a_plain_role_can_neither_record_events_nor_read_them(db_url, sql):
    with roles_of(db_url) as roles:
        mallory = roles.make("mallory")
        as_mallory = roles.sql(mallory)
        assert "permission denied" in refused(
            as_mallory, "SELECT jobline.record_event('job.failed', 'alice', 'job 1', '{}')")
        for table in ("notifications", "notification_subscriptions"):
            assert "permission denied" in refused(as_mallory, f"SELECT * FROM jobline.{table}")
        assert "permission denied" in refused(
            as_mallory, "INSERT INTO jobline.notification_subscriptions (url) VALUES ('https://evil.example.com/')")


def test_a_plain_role_can_neither_hold_a_deliverys_key_nor_join_a_pipeline_run(db_url, sql):
    """A plain role's own http job may not take a unique key of jobline's own: holding
    `jobline-notification-<event>-<subscription>` before the event would keep its delivery from
    being queued. Nor may it add a step to someone's pipeline run (0021's policy)."""
    sql("INSERT INTO jobline.notification_subscriptions (url) VALUES ('https://ops.example.com/hook')")
    sql("INSERT INTO jobline.pipelines (name, steps) VALUES ('p', '[{\"name\": \"s\", \"function\": \"render\"}]')")
    run_id = sql("SELECT jobline.start_pipeline('p', '{}', 'alice')")[0][0]
    with roles_of(db_url) as roles:
        as_mallory = roles.sql(roles.make("mallory"))
        next_event = sql("SELECT coalesce(max(id), 0) + 1 FROM jobline.notifications")[0][0]
        assert "row-level security" in refused(
            as_mallory, "SELECT jobline.enqueue('http', '{\"url\": \"https://evil.example.com/\"}', "
                        "unique_key => %s)", [f"jobline-notification-{next_event}-1"])
        for column, value in (("pipeline_run_id", run_id), ("step", "s")):
            assert "row-level security" in refused(
                as_mallory, f"INSERT INTO jobline.jobs (function, payload, username, {column}) "
                            f"VALUES ('sql', '{{\"command\": \"SELECT 1\"}}', current_user, %s)", [value])
    event = sql("SELECT jobline.record_event('function.failing', NULL, 'render', '{}')")[0][0]
    assert sql("SELECT count(*) FROM jobline.jobs WHERE unique_key = %s",
               [f"jobline-notification-{event}-1"]) == [(1,)]
    assert sql("SELECT count(*) FROM jobline.jobs WHERE pipeline_run_id = %s", [run_id]) == [(1,)]
