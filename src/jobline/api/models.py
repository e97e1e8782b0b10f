"""Request bodies (strict: unknown fields and wrong types are refused with 422) and the shapes
of the answers, which document the OpenAPI spec. Answers are built from the core's own
``to_dict()`` methods, not validated through these models at run time; the tests check that
they match (schemathesis validates every answer against the spec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..job import MAX_ATTEMPTS_RANGE, MAX_DELAY_SECONDS, MAX_NAME_LENGTH, PRIORITY_RANGE
from ..schedule import CATCH_UP_MAX_RANGE, MAX_CONSECUTIVE_FAILURES_RANGE
from ..operations.notifications import EVENT_KINDS, MAX_HEADER_VALUE_LENGTH, MAX_HEADERS, MAX_URL_LENGTH
from ..operations.tasks import MAX_CLAIM_LIMIT, MAX_RETRY_IN, MAX_TASK_TYPES

MAX_ID = 2**63 - 1
MAX_DEPENDENCIES = 1000

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
JobId = Annotated[int, Field(ge=1, le=MAX_ID)]
Status = Literal["waiting", "pending", "running", "succeeded", "failed", "cancelled"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ClaimIn(Body):
    task_types: list[Name] | None = Field(
        None, min_length=1, max_length=MAX_TASK_TYPES,
        description="Only these functions; without it, only remote task types (functions no in-process worker serves)")
    limit: int | None = Field(
        None, ge=1, le=MAX_CLAIM_LIMIT,
        description='Claim up to this many tasks in one request; the answer is then {"tasks": [...]} (200, '
                    'possibly empty) instead of one task or 204')


class CompleteIn(Body):
    lease_token: str = Field(max_length=100, description="The lease_token that claim-next-task returned")
    result: Any = Field(None, description="Any JSON value, at most 1 MiB")


class CompleteReport(Body):
    task_id: JobId
    lease_token: str = Field(max_length=100, description="The lease_token that claim-next-task returned")
    result: Any = Field(None, description="Any JSON value, at most 1 MiB")


class CompleteManyIn(Body):
    reports: list[CompleteReport] = Field(min_length=1, max_length=MAX_CLAIM_LIMIT,
                                          description="Successes to record, each task at most once")


class FailIn(Body):
    lease_token: str = Field(max_length=100)
    error: str = Field(min_length=1, description="What went wrong (kept up to 64 KiB)")
    retryable: bool = Field(True, description="Retry while attempts remain (false: fail now)")
    retry_in: float | None = Field(None, ge=0, le=MAX_RETRY_IN,
                                   description="Seconds before the retry (default: the backoff)")


class HeartbeatIn(Body):
    lease_token: str = Field(max_length=100)


class SnoozeIn(Body):
    lease_token: str = Field(max_length=100)
    seconds: float = Field(ge=0, le=366 * 86400, description="Run the task again this many seconds from now")


class EnqueueIn(Body):
    function: Name
    payload: dict[str, Any] | None = Field(None, description="A JSON object, at most 1 MiB")
    run_at: str | None = Field(None, max_length=64, description="ISO 8601; a time without zone is UTC")
    delay: float | None = Field(None, ge=0, le=MAX_DELAY_SECONDS, description="Seconds from now (instead of run_at)")
    queue: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    priority: int | None = Field(None, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])
    owner: Name | None = Field(None, description="A user's job is always theirs; the service may name any owner")
    max_attempts: int | None = Field(None, ge=MAX_ATTEMPTS_RANGE[0], le=MAX_ATTEMPTS_RANGE[1])
    depends_on: list[JobId] | None = Field(None, max_length=MAX_DEPENDENCIES,
                                            description="Run only after these jobs succeed")
    unique_key: Name | None = Field(None, description="Return the live job with this key instead of adding another")
    concurrency_key: Name | None = Field(None, description="Flow control: limits declared per key count this job "
                                                           "under this key (e.g. one job per user at a time)")


class ScheduleIn(Body):
    name: Name
    expression: str = Field(min_length=1, max_length=200,
                            description="Five cron fields, a macro (@daily) or 'N seconds' (1 to 59)")
    function: Name | None = Field(None, description="Enqueue this function on each tick")
    payload: dict[str, Any] | None = Field(None, description="The function's payload, a JSON object")
    sql: str | None = Field(None, min_length=1, description="Run this SQL command on each tick (the service only)")
    pipeline: Name | None = Field(None, description="Start a run of this pipeline with `payload` on each tick")
    timezone: str = Field("UTC", min_length=1, max_length=100, description="IANA time zone of the expression")
    owner: Name | None = Field(None, description="A user's schedule is always theirs; the service may name any owner")
    queue: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    priority: int | None = Field(None, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])
    max_attempts: int | None = Field(None, ge=MAX_ATTEMPTS_RANGE[0], le=MAX_ATTEMPTS_RANGE[1])
    overlap: Literal["skip", "allow"] = "skip"
    catch_up: Literal["latest", "none", "all"] = "latest"
    catch_up_max: int = Field(10, ge=CATCH_UP_MAX_RANGE[0], le=CATCH_UP_MAX_RANGE[1])
    active: bool = True
    replace: bool = Field(False, description="Replace a schedule of the same name (else 409)")
    max_consecutive_failures: int | None = Field(
        None, ge=MAX_CONSECUTIVE_FAILURES_RANGE[0], le=MAX_CONSECUTIVE_FAILURES_RANGE[1],
        description="Pause the schedule after this many failed runs in a row (null: never)")


class RunIn(Body):
    limit: int = Field(100, ge=1, le=1000, description="Most jobs to run")


# -- answers ----------------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Out):
    code: str
    message: str


class ErrorOut(Out):
    error: ErrorDetail


class TaskOut(Out):
    task_id: int
    params: dict[str, Any]
    task_type: str
    project_id: str | None
    attempt: int
    max_attempts: int
    upstream: dict[str, Any] | None = Field(
        None, description="For a pipeline step: the results of the steps it runs after, by step name")
    lease_token: str
    lease_until: str


class TasksOut(Out):
    tasks: list[TaskOut] = Field(description="The claimed tasks in claim order, sharing one lease_token")


class ReportOut(Out):
    task_id: int
    status: Literal["succeeded", "pending", "failed"]


class ReportManyItem(Out):
    task_id: int
    status: Literal["succeeded", "lease_lost", "not_found"] = Field(
        description="lease_lost: as complete's 409; not_found: no such task, or not the caller's (404)")


class ReportManyOut(Out):
    reports: list[ReportManyItem] = Field(description="One per report, in the order sent")


class HeartbeatOut(Out):
    task_id: int
    lease_until: str


class JobOut(Out):
    id: int
    function: str
    payload: dict[str, Any]
    status: Status
    queue: str
    priority: int
    owner: str | None
    run_at: str
    attempts: int
    max_attempts: int
    depends_on: list[int] | None
    unique_key: str | None
    worker_id: str | None
    lease_until: str | None
    started_at: str | None
    finished_at: str | None
    result: Any
    last_error: str | None
    archived_at: str | None
    created_at: str
    concurrency_key: str | None = None


class AttemptOut(Out):
    job_id: int
    attempt: int
    worker_id: str
    started_at: str
    finished_at: str
    outcome: str
    error: str | None
    traceback: str | None = Field(None, description="Where the handler raised; shown to service credentials only")
    duration_ms: float


class JobDetailOut(JobOut):
    attempts: list[AttemptOut]  # type: ignore[assignment]  # the finished attempts, not their count


class JobListOut(Out):
    jobs: list[JobOut]
    next_cursor: int | None = Field(description="Pass as `before` for the next page; null on the last page")


class RunResultOut(Out):
    id: int
    function: str
    attempt: int
    status: str
    error: str | None


class RunOut(Out):
    status: Literal["ok"]
    processed: int
    succeeded: int
    retried: int
    failed: int
    cancelled: int
    by_function: dict[str, dict[str, int]]
    results: list[RunResultOut]


class WindowOut(Out):
    succeeded: int
    failed: int
    failure_rate: float | None = Field(description="failed / (succeeded + failed); null when both are 0")


class StatsOut(Out):
    owner: str | None = Field(description="Whose jobs these are (null: every owner)")
    by_status: dict[str, int]
    by_function: dict[str, dict[str, int]]
    windows: dict[str, WindowOut] = Field(description="Jobs that finished in the last 1m, 5m and 1h")
    oldest_due_pending_seconds: float | None


class StatusOut(Out):
    status: str
    reason: str | None = None


class ScheduleRunOut(Out):
    id: int
    schedule_id: int
    tick_at: str | None = Field(description="The tick; null for a manual trigger")
    status: Literal["created", "triggered", "skipped", "missed"]
    job_id: int | None
    message: str | None
    created_at: str
    job_status: Status | None
    started_at: str | None
    finished_at: str | None
    result: Any
    last_error: str | None
    outcome: str = Field(description="The job's status, or skipped / missed")


class ScheduleOut(Out):
    id: int
    name: str | None = Field(description="For a user, one of their own names (or the global name of a schedule "
                                         "the service made for them); for the service, the global name, which "
                                         "for a user's own schedule is '<owner>/<name>'")
    expression: str
    timezone: str
    function: str
    payload: dict[str, Any]
    owner: str | None
    queue: str
    priority: int
    max_attempts: int
    active: bool
    overlap: Literal["skip", "allow"]
    catch_up: Literal["latest", "none", "all"]
    catch_up_max: int
    source: Literal["runtime", "code"]
    next_run_at: str | None
    changed_at: str
    created_at: str
    next_run: str | None = Field(description="When it fires next (null when paused)")
    last_run: ScheduleRunOut | None
    max_consecutive_failures: int | None = Field(description="It pauses itself after this many failed runs in a "
                                                             "row (null: never)")
    deactivated_at: str | None = Field(description="When it paused itself after failed runs (null: it did not, "
                                                   "or it was resumed since)")
    deactivated_reason: str | None = Field(description="Why it paused itself")


class ScheduleListOut(Out):
    schedules: list[ScheduleOut]


class ScheduleRunListOut(Out):
    runs: list[ScheduleRunOut]
    next_cursor: int | None = Field(description="Pass as `before` for the next page; null on the last page")


class ScheduleTriggeredOut(Out):
    id: int
    name: str | None
    job_id: int


class ScheduleRemovedOut(Out):
    id: int
    name: str | None
    removed: Literal[True]


class SecretIn(Body):
    value: str = Field(min_length=1, description="The secret's value: UTF-8 text of at most 64 KiB, never shown again")


class SecretOut(Out):
    name: str
    owner: str | None = Field(description="The user it belongs to; null: the operator's")
    key_id: str = Field(description="The master key it is encrypted under (a fingerprint, not the key)")
    created_at: str
    updated_at: str


class SecretListOut(Out):
    secrets: list[SecretOut]


class SecretRemovedOut(Out):
    name: str
    owner: str | None
    removed: Literal[True]


class QueuePauseIn(Body):
    reason: str | None = Field(None, min_length=1, max_length=500, description="Why, shown in listings")


class QueueOut(Out):
    queue: str
    paused: bool
    paused_at: str | None = Field(None, description="Since when it is paused")
    pause_reason: str | None = None
    was_paused: bool | None = Field(None, description="On resume: whether it was paused")
    waiting: int | None = Field(None, description="Jobs waiting on dependencies (listings)")
    pending: int | None = None
    due: int | None = Field(None, description="Of the pending jobs, those due now")
    running: int | None = None
    succeeded: int | None = Field(None, description="Jobs that succeeded in the last hour")
    failed: int | None = Field(None, description="Jobs that failed for good in the last hour")
    failure_rate: float | None = None


class QueueListOut(Out):
    queues: list[QueueOut]


class LimitIn(Body):
    """A flow-control limit's settings (validated by jobline.limit.check_limit, the one rule)."""

    per_key: bool = Field(False, description="Apply the limit to each concurrency_key separately")
    concurrency: int | None = Field(None, description="At most this many running at once (1 to 100000)")
    rate_count: int | None = Field(None, description="At most this many starts per rate_seconds (1 to 1000000)")
    rate_seconds: float | None = Field(None, description="The rate's window, in seconds (0.001 to 86400)")


class LimitOut(Out):
    scope: Literal["function", "queue"]
    target: str
    per_key: bool
    concurrency: int | None
    rate_count: int | None
    rate_seconds: float | None
    source: Literal["code", "runtime"] = Field(description="code: declared in an App; runtime: set by an operator")
    updated_at: str | None


class LimitListOut(Out):
    limits: list[LimitOut]


# -- notifications ------------------------------------------------------------------------------

EventKind = Literal[EVENT_KINDS]  # type: ignore[valid-type]  (the one list, operations/notifications.py)


class SubscriptionIn(Body):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH,
                     description="Where events are POSTed: an http:// or https:// "
                     "URL; {{secret:NAME}} (the operator's) or {{owner_secret:NAME}} (a user's) may fill parts in")
    events: list[EventKind] | None = Field(None, min_length=1, max_length=len(EVENT_KINDS),
                                           description="Only these kinds (null: all)")
    headers: dict[str, Annotated[str, Field(max_length=MAX_HEADER_VALUE_LENGTH)]] | None = Field(
        None, max_length=MAX_HEADERS, description="Sent with each delivery; values may hold secret references")
    owner: Name | None = Field(None, description="A user's subscription is always theirs; the service may make one "
                                                 "for a user, or leave it out for the operator's (every event)")


class SubscriptionOut(Out):
    id: int
    owner: str | None = Field(description="Whose events it receives (null: the operator's, every event)")
    url: str
    events: list[str] | None
    headers: dict[str, str]
    created_at: str


class SubscriptionListOut(Out):
    subscriptions: list[SubscriptionOut]


class NotificationOut(Out):
    id: int
    kind: str
    owner: str | None = Field(description="The user it concerns (null: operators only)")
    subject: str | None
    data: dict[str, Any]
    created_at: str


class NotificationListOut(Out):
    notifications: list[NotificationOut]
    next_cursor: int | None = Field(description="Pass as `before` for the next page; null on the last page")


# -- pipelines -------------------------------------------------------------------------------------


class PipelineStartIn(Body):
    payload: dict[str, Any] | None = Field(None, description="The run's payload: a JSON object, at most 1 MiB")
    owner: Name | None = Field(None, description="The service: any owner; a user: only their own")


class PipelineCancelIn(Body):
    reason: str | None = Field(None, min_length=1, max_length=500, description="Kept as each cancelled step's error")


class PipelineStepOut(Out):
    name: str
    function: str
    after: list[str]
    delay: float | None = None
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    payload: dict[str, Any] | None = Field(None, description="The step's own payload (the service only)")


class PipelineOut(Out):
    name: str
    steps: list[PipelineStepOut]
    updated_at: str
    runs: int = Field(description="The caller's runs of it")
    last_run_id: int | None
    last_run_status: str | None
    last_run_at: str | None


class PipelineListOut(Out):
    pipelines: list[PipelineOut]


class PipelineRunBase(Out):
    id: int
    pipeline: str
    owner: str | None
    status: Literal["running", "succeeded", "failed", "cancelled"]
    payload: dict[str, Any]
    created_at: str
    finished_at: str | None


class PipelineRunSummaryOut(PipelineRunBase):
    steps: int
    succeeded: int = Field(description="How many of its steps succeeded")


class PipelineRunListOut(Out):
    runs: list[PipelineRunSummaryOut]
    next_cursor: int | None


class RunStepOut(Out):
    name: str
    function: str
    after: list[str]
    delay: float
    job_id: int | None = Field(description="The step's job (None once retention removed it)")
    status: str
    attempts: int | None
    max_attempts: int | None
    result: Any = None
    error: str | None
    run_at: str | None
    started_at: str | None
    finished_at: str | None


class PipelineEventOut(Out):
    id: int
    step: str | None = Field(description="None for an event of the run itself")
    job_id: int | None
    event: str
    message: str | None
    at: str


class PipelineRunOut(PipelineRunBase):
    steps: list[RunStepOut]
    history: list[PipelineEventOut]
