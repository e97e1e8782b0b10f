-- 0016_queue_pauses: pausing a queue (seed 001's "pause processing while leaving manual tools
-- available"). A paused queue's pending jobs stay pending and no worker claims them, in-process
-- or remote, until it is resumed; schedules keep creating jobs in it. A pause is a row, so it
-- survives restarts and holds for every worker on every machine.

CREATE TABLE jobline.queue_pauses (
  queue      text        PRIMARY KEY CHECK (jobline.is_valid_name(queue, 200)),
  paused_at  timestamptz NOT NULL DEFAULT now(),
  reason     text        CHECK (reason IS NULL OR (length(reason) <= 500 AND reason !~ '[[:cntrl:]]'))
);

-- The operator's "run now" of one job of a paused queue: a claim may take that job for that
-- attempt only (a retry of it waits for the queue again). Rows of jobs that moved on are pruned
-- by maintenance. A table of its own, written only by jobline, because plain roles may INSERT
-- into jobline.jobs (0011).
CREATE TABLE jobline.queue_pause_exemptions (
  job_id    bigint  NOT NULL,
  attempts  integer NOT NULL,   -- the job's attempts when it was exempted, before the claim counts one
  PRIMARY KEY (job_id, attempts)
);

-- jobline.claim_jobs skips paused queues from 0018 on.
