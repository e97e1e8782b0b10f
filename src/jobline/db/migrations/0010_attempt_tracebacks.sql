-- 0010_attempt_tracebacks: an attempt keeps its error message and, apart from it, the traceback.
-- The message ("ValueError: no good") is what a job's last_error and every listing show, to
-- whoever may see the job; the traceback (with the server's file paths) is for operators, and
-- the HTTP API shows it to service credentials only. Before this, both were one text.
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

ALTER TABLE jobline.attempts ADD COLUMN traceback text;
