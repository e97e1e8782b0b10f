"""/api/jobs, /api/stats, /metrics, /readyz against a running server: owner rules, filters and
paging, steering, the BOLA sweep over every route with a path parameter (reliability.md S3)."""

from __future__ import annotations

import datetime as dt

import pytest
from api_support import SERVICE, as_user, assert_error, client, enqueue, server  # noqa: F401

ALICE, BOB = as_user("alice"), as_user("bob")


def post_job(client, headers, **body):
    return client.post("/api/jobs", headers=headers, json=body)


# -- enqueue ------------------------------------------------------------------------------------


def test_a_users_job_is_always_their_own(client, sql):
    mine = post_job(client, ALICE, function="render", payload={"frame": 1})
    assert mine.status_code == 201
    assert (mine.json()["owner"], mine.json()["payload"], mine.json()["status"]) == ("alice", {"frame": 1}, "pending")
    assert post_job(client, ALICE, function="render", owner="alice").json()["owner"] == "alice"
    assert_error(post_job(client, ALICE, function="render", owner="bob"), 403, "forbidden")
    assert sql("SELECT owner, count(*) FROM jobline.jobs GROUP BY owner") == [("alice", 2)]


def test_an_enqueue_through_the_api_is_traced_when_the_server_traces(spans, client, sql):
    """POST /api/jobs goes through the operations layer to the same store functions as App.enqueue:
    a "jobline.enqueue" span, and its context stored in the job (tests/runtime/test_tracing.py
    covers the worker's side)."""
    from otel_support import named  # after `spans`, which skips without OpenTelemetry

    job = post_job(client, ALICE, function="render", payload={"frame": 1}).json()
    [span] = named(spans, "jobline.enqueue render")
    assert span.attributes["jobline.job.id"] == job["id"] and "jobline.owner" not in span.attributes
    [(context,)] = sql("SELECT trace_context FROM jobline.jobs WHERE id = %s", [job["id"]])
    assert context["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"


def test_the_service_may_set_any_owner_or_none(client):
    assert post_job(client, SERVICE, function="render", owner="bob").json()["owner"] == "bob"
    assert post_job(client, SERVICE, function="render").json()["owner"] is None


def test_only_the_service_may_enqueue_the_built_in_sql_and_http_functions(client, sql):
    for function, payload in (("sql", {"command": "DROP SCHEMA jobline CASCADE"}),
                              ("http", {"url": "https://example.com/", "headers": {"X": "{{secret:stripe}}"}})):
        assert_error(post_job(client, ALICE, function=function, payload=payload), 403, "forbidden")
    assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]
    assert post_job(client, SERVICE, function="sql", payload={"command": "SELECT 1"}).status_code == 201


def test_options_and_the_functions_registered_defaults(client):
    job = post_job(client, SERVICE, function="explode", run_at="2030-01-01T00:00:00Z", queue="q1", priority=7,
                   unique_key="k1").json()
    assert (job["run_at"], job["queue"], job["priority"], job["max_attempts"]) == (
        "2030-01-01T00:00:00+00:00", "q1", 7, 1)  # max_attempts from @app.function("explode", max_attempts=1)
    again = post_job(client, SERVICE, function="explode", unique_key="k1").json()
    assert again["id"] == job["id"]
    delayed = post_job(client, SERVICE, function="render", delay=3600).json()
    assert dt.datetime.fromisoformat(delayed["run_at"]) > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=59)
    assert_error(post_job(client, SERVICE, function="render", delay=1, run_at="2030-01-01T00:00:00Z"), 422,
                 "invalid_input")
    assert_error(post_job(client, SERVICE, function="render", run_at="next tuesday"), 422, "invalid_input")


def test_a_user_may_depend_only_on_their_own_jobs_and_learns_nothing_of_others(client, sql):
    theirs = post_job(client, BOB, function="render").json()["id"]
    mine = post_job(client, ALICE, function="render").json()["id"]
    child = post_job(client, ALICE, function="render", depends_on=[mine])
    assert (child.status_code, child.json()["status"], child.json()["depends_on"]) == (201, "waiting", [mine])
    on_theirs = post_job(client, ALICE, function="render", depends_on=[theirs])
    on_nothing = post_job(client, ALICE, function="render", depends_on=[theirs + 1000])
    assert_error(on_theirs, 422, "invalid_input")
    assert on_theirs.json()["error"]["message"].replace(str(theirs), "N") == \
        on_nothing.json()["error"]["message"].replace(str(theirs + 1000), "N")
    assert sql("SELECT count(*) FROM jobline.jobs") == [(3,)]


# -- list, show, steer ----------------------------------------------------------------------------


def test_listing_is_scoped_filtered_and_paged(client, sql):
    ids = [enqueue(sql, "render", "alice") for _ in range(5)]
    other = enqueue(sql, "resize", "alice", queue="slow")
    enqueue(sql, "render", "bob")
    sql("UPDATE jobline.jobs SET status = 'failed' WHERE id = %s", [ids[0]])
    page = client.get("/api/jobs", headers=ALICE, params={"limit": 4}).json()
    assert [j["id"] for j in page["jobs"]] == [other, ids[4], ids[3], ids[2]]
    assert page["next_cursor"] == ids[2]
    rest = client.get("/api/jobs", headers=ALICE, params={"limit": 4, "before": page["next_cursor"]}).json()
    assert ([j["id"] for j in rest["jobs"]], rest["next_cursor"]) == ([ids[1], ids[0]], None)
    full = client.get("/api/jobs", headers=ALICE, params={"limit": 2, "before": ids[2]}).json()
    assert ([j["id"] for j in full["jobs"]], full["next_cursor"]) == ([ids[1], ids[0]], None)  # exactly full, last
    assert [j["id"] for j in client.get("/api/jobs", headers=ALICE, params={"status": ["failed", "running"]}).json()[
        "jobs"]] == [ids[0]]
    assert [j["id"] for j in client.get("/api/jobs", headers=ALICE, params={"queue": "slow"}).json()["jobs"]] == [other]
    assert len(client.get("/api/jobs", headers=ALICE, params={"function": "render"}).json()["jobs"]) == 5
    assert len(client.get("/api/jobs", headers=SERVICE).json()["jobs"]) == 7
    assert len(client.get("/api/jobs", headers=SERVICE, params={"owner": "bob"}).json()["jobs"]) == 1


def test_a_user_never_lists_another_users_jobs_whatever_the_filter(client, sql):
    enqueue(sql, "render", "alice")
    for params in ({"owner": "alice"}, {"owner": "alice", "status": "pending"}, {"function": "render"}, {}):
        assert client.get("/api/jobs", headers=BOB, params=params).json() == {"jobs": [], "next_cursor": None}


def test_listing_by_creation_time(client, sql):
    old = enqueue(sql, "render", None)
    sql("UPDATE jobline.jobs SET created_at = '2020-06-01T00:00:00Z' WHERE id = %s", [old])
    new = enqueue(sql, "render", None)
    after = client.get("/api/jobs", headers=SERVICE, params={"created_after": "2021-01-01T00:00:00Z"}).json()
    before = client.get("/api/jobs", headers=SERVICE, params={"created_before": "2021-01-01T00:00:00"}).json()
    assert ([j["id"] for j in after["jobs"]], [j["id"] for j in before["jobs"]]) == ([new], [old])
    assert_error(client.get("/api/jobs", headers=SERVICE, params={"created_after": "soon"}), 422, "invalid_input")


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"status": "lost"}, {"before": 0}])
def test_bad_listing_parameters_are_422(client, params):
    message = assert_error(client.get("/api/jobs", headers=SERVICE, params=params), 422, "invalid_input")["message"]
    assert f"query parameter {next(iter(params))}" in message


def test_show_has_the_finished_attempts_and_hides_a_remote_lease(client, sql):
    job_id = enqueue(sql, "render", "alice", max_attempts=3)
    task = client.post("/functions/v1/claim-next-task", headers=ALICE).json()
    running = client.get(f"/api/jobs/{job_id}", headers=ALICE).json()
    assert (running["status"], running["worker_id"], running["attempts"]) == ("running", "remote", [])
    assert task["lease_token"] not in str(running)
    client.post(f"/api/tasks/{job_id}/fail", headers=ALICE, json={"lease_token": task["lease_token"], "error": "oops"})
    shown = client.get(f"/api/jobs/{job_id}", headers=ALICE).json()
    [attempt] = shown["attempts"]
    assert (attempt["attempt"], attempt["outcome"], attempt["error"], attempt["worker_id"]) == (1, "failed", "oops",
                                                                                                 "remote")


def test_an_attempts_traceback_is_shown_to_the_service_only(client, sql):
    job_id = enqueue(sql, "render", "alice")
    sql("""INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback)
           VALUES (%s, 1, 'w1', now(), now(), 'failed', 'ValueError: no good',
                   'Traceback (most recent call last):\n  File "/srv/app/tasks.py", line 7')""", [job_id])
    [users] = client.get(f"/api/jobs/{job_id}", headers=ALICE).json()["attempts"]
    [services] = client.get(f"/api/jobs/{job_id}", headers=SERVICE).json()["attempts"]
    assert users["error"] == services["error"] == "ValueError: no good"
    assert "traceback" not in users and "/srv/app" not in str(users)
    assert services["traceback"].startswith("Traceback") and "/srv/app/tasks.py" in services["traceback"]


def test_steering_a_job(client, sql):
    job_id = enqueue(sql, "render", "alice", run_at="2030-01-01T00:00:00Z")
    now = client.post(f"/api/jobs/{job_id}/run-now", headers=ALICE).json()
    assert dt.datetime.fromisoformat(now["run_at"]) <= dt.datetime.now(dt.timezone.utc)
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=ALICE).json()["status"] == "cancelled"
    assert_error(client.post(f"/api/jobs/{job_id}/cancel", headers=ALICE), 409, "conflict")
    assert client.post(f"/api/jobs/{job_id}/archive", headers=ALICE).json()["archived_at"] is not None
    assert client.get("/api/jobs", headers=ALICE).json()["jobs"] == []
    assert len(client.get("/api/jobs", headers=ALICE, params={"archived": "true"}).json()["jobs"]) == 1
    retried = client.post(f"/api/jobs/{job_id}/retry", headers=ALICE).json()
    assert (retried["status"], retried["attempts"]) == ("pending", 0)


def test_bola_sweep_another_users_job_answers_exactly_as_a_missing_one(client, sql):
    """Every route with a path parameter in the spec: user B on user A's job gets the body of a
    job that does not exist, byte for byte, and nothing changes."""
    spec = client.get("/openapi.json").json()
    job_id = enqueue(sql, "render", "alice")
    sql("UPDATE jobline.jobs SET status = 'failed', attempts = 1 WHERE id = %s", [job_id])
    assert client.post("/api/schedules", headers=ALICE, json={"name": "alices", "expression": "@daily",
                                                               "function": "render"}).status_code == 201
    sql("INSERT INTO jobline.secrets (name, owner, key_id, nonce, ciphertext) "
        "VALUES ('alices', 'alice', repeat('0', 16), decode(repeat('00', 12), 'hex'), decode(repeat('00', 32), 'hex'))")
    sql("INSERT INTO jobline.pipelines (name, steps) VALUES ('p', '[{\"name\": \"s\", \"function\": \"render\"}]')")
    run_id = sql("SELECT jobline.start_pipeline('p', '{}', 'alice')")[0][0]
    sql("UPDATE jobline.jobs SET status = 'failed' WHERE pipeline_run_id = %s", [run_id])  # a failed run: retryable
    subscription = client.post("/api/notifications/subscriptions", headers=ALICE,
                               json={"url": "https://hooks.example.com/alice"})
    assert subscription.status_code == 201, subscription.text
    subscription_id = subscription.json()["id"]
    tables = ("jobs", "schedules", "secrets", "pipeline_runs", "notification_subscriptions")
    before = [sql(f"SELECT * FROM jobline.{table}") for table in tables]
    bodies = {"complete": {"lease_token": "remote:" + "0" * 32}, "fail": {"lease_token": "remote:" + "0" * 32,
                                                                          "error": "x"},
              "heartbeat": {"lease_token": "remote:" + "0" * 32},
              "snooze": {"lease_token": "remote:" + "0" * 32, "seconds": 1}}
    swept = []
    for path, methods in spec["paths"].items():
        if "{" not in path:
            continue
        if path == "/functions/v1/{name}":
            continue  # functions belong to no owner: see test_api_functions
        if path.startswith("/api/queues/"):
            continue  # queues belong to no owner, and only the service steers them: see test_api_queues
        if path.startswith("/api/limits/"):
            continue  # limits belong to no owner, and only the service changes them: see test_api_limits
        if path.startswith("/api/pipelines/"):
            continue  # a pipeline is the operator's; a run started of it is the caller's: test_api_pipelines
        if "{ref}" in path:  # a schedule, by name (by id: test_api_schedules)
            param, theirs_ref, missing_ref, code = "{ref}", "alices", "alicez", "schedule_not_found"
        elif path == "/api/secrets/{name}":  # each owner names their own: PUT sets the caller's (test_api_secrets)
            methods = [m for m in methods if m != "put"]
            param, theirs_ref, missing_ref, code = "{name}", "alices", "alicez", "secret_not_found"
        elif path == "/api/notifications/subscriptions/{id}":
            param, theirs_ref, missing_ref, code = "{id}", str(subscription_id), str(subscription_id + 10_000), "not_found"
        elif path.startswith("/api/pipeline-runs/"):
            param, theirs_ref, missing_ref, code = "{id}", str(run_id), str(run_id + 10_000), "pipeline_not_found"
        else:
            assert "{id}" in path, f"{path}: a new kind of path parameter needs its own BOLA check"
            param, theirs_ref, missing_ref, code = "{id}", str(job_id), str(job_id + 10_000), "job_not_found"
        for method in methods:
            body = bodies.get(path.rsplit("/", 1)[-1])
            theirs = client.request(method, path.replace(param, theirs_ref), headers=BOB, json=body)
            missing = client.request(method, path.replace(param, missing_ref), headers=BOB, json=body)
            assert theirs.status_code == 404, (method, path, theirs.text)
            # Byte for byte, but for the name the caller sent (a secret's 404 repeats it).
            assert theirs.content == missing.content.replace(missing_ref.encode(), theirs_ref.encode()), (method, path)
            assert_error(theirs, 404, code)
            swept.append((method, path))
    assert len(swept) == 20  # 9 job and task routes, 6 schedule routes, removing a secret, 3 pipeline-run routes,
    #                          removing a subscription
    assert [sql(f"SELECT * FROM jobline.{table}") for table in tables] == before
    assert client.post(f"/api/jobs/{job_id}/retry", headers=ALICE).status_code == 200  # the owner can


# -- stats, metrics, readiness ----------------------------------------------------------------------


def test_stats_count_by_status_and_function_with_recent_outcomes(client, sql):
    enqueue(sql, "render", "alice")
    enqueue(sql, "render", "alice", run_at="2030-01-01T00:00:00Z")
    done = [enqueue(sql, "resize", "alice") for _ in range(4)]
    enqueue(sql, "render", "bob")
    sql("UPDATE jobline.jobs SET status = 'succeeded', finished_at = now() - interval '2 minutes' WHERE id = ANY(%s)",
        [done[:3]])
    sql("UPDATE jobline.jobs SET status = 'failed', finished_at = now() - interval '10 seconds' WHERE id = %s",
        [done[3]])
    sql("UPDATE jobline.jobs SET run_at = now() - interval '90 seconds' WHERE status = 'pending' AND run_at < now()")
    mine = client.get("/api/stats", headers=ALICE).json()
    assert mine["owner"] == "alice"
    assert mine["by_status"] == {"waiting": 0, "pending": 2, "running": 0, "succeeded": 3, "failed": 1,
                                 "cancelled": 0}
    assert mine["by_function"]["resize"]["succeeded"] == 3 and mine["by_function"]["render"]["pending"] == 2
    assert mine["windows"]["1m"] == {"succeeded": 0, "failed": 1, "failure_rate": 1.0}
    assert mine["windows"]["5m"] == {"succeeded": 3, "failed": 1, "failure_rate": 0.25}
    assert 89 < mine["oldest_due_pending_seconds"] < 120
    everyone = client.get("/api/stats", headers=SERVICE).json()
    assert (everyone["owner"], everyone["by_status"]["pending"]) == (None, 3)
    nobody = client.get("/api/stats", headers=as_user("carol")).json()
    assert (sum(nobody["by_status"].values()), nobody["windows"]["1h"]["failure_rate"],
            nobody["oldest_due_pending_seconds"]) == (0, None, None)


def test_metrics_need_the_service_and_report_jobs_and_requests(client, sql):
    enqueue(sql, "render", "alice")
    client.get("/api/jobs/12345", headers=ALICE)
    assert_error(client.get("/metrics"), 401, "unauthenticated")
    response = client.get("/metrics", headers=SERVICE)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'jobline_jobs{function="render",status="pending"} 1.0' in text
    assert 'jobline_http_requests_total{method="GET",route="/api/jobs/{id}",status="404"} 1.0' in text
    assert 'jobline_http_request_duration_seconds_count{method="GET",route="/api/jobs/{id}"} 1.0' in text
    assert "jobline_oldest_due_pending_seconds" in text and 'jobline_auth_failures_total{reason="unauthenticated"}' in text


def test_readiness_needs_the_database_and_every_migration(client, sql):
    assert client.get("/readyz").json() == {"status": "ok"}
    sql("DELETE FROM jobline.schema_migrations WHERE version = 5")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "migrations pending: 0005_api (run `jobline db migrate`)"}
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.head("/healthz").status_code == 200 and client.head("/readyz").status_code == 503


def test_metrics_count_live_jobs_by_status_and_finished_ones_only_by_window(client, sql):
    """A scrape must not count every job (most are finished): those count through the windows."""
    enqueue(sql, "render", "alice")
    sql("INSERT INTO jobline.jobs (function, status, finished_at) VALUES ('render', 'succeeded', now())")
    text = client.get("/metrics", headers=SERVICE).text
    statuses = {line.split('status="')[1].split('"')[0] for line in text.splitlines() if line.startswith("jobline_jobs{")}
    assert statuses == {"waiting", "pending", "running"}
    assert 'jobline_jobs{function="render",status="pending"} 1.0' in text
    assert 'jobline_jobs_finished_recently{outcome="succeeded",window="1m"} 1.0' in text


def test_metrics_bound_the_series_of_user_chosen_function_names(client, sql):
    sql("INSERT INTO jobline.jobs (function) SELECT 'f' || lpad(i::text, 4, '0') FROM generate_series(1, 250) i")
    text = client.get("/metrics", headers=SERVICE).text
    series = [line for line in text.splitlines() if line.startswith('jobline_jobs{') and 'status="pending"' in line]
    assert len(series) == 201
    assert 'jobline_jobs{function="_other",status="pending"} 50.0' in text
