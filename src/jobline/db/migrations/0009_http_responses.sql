-- 0009_http_responses: the rest of pg_net's SQL interface, so that code reading pg_net's
-- responses ports by renaming the schema too: jobline.http_delete, the view
-- jobline._http_response, jobline._http_collect_response (and its older name
-- jobline.http_collect_response) with pg_net's types; and the argument rules pg_net has that
-- 0003 lacked (NULL params and headers; http_post's Content-Type).
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

-- http_queue, as in 0003 (released, so replaced here rather than edited), except that NULL
-- params and headers mean none, as in pg_net (whose http_get(url, NULL, NULL, 100) works).
CREATE OR REPLACE FUNCTION jobline.http_queue(caller text, method text, url text, body jsonb, params jsonb,
                                              headers jsonb, timeout_milliseconds integer)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  bad text;
  payload jsonb;
BEGIN
  params := coalesce(params, '{}');
  headers := coalesce(headers, '{}');
  -- A URL may also begin with a secret ({{secret:FUNCTIONS_URL}}/adapter-health), resolved by
  -- the worker at send time; the egress policy is applied there too, on the resolved address.
  IF url IS NULL OR url !~* '^\s*(https?://|\{\{secret:)' THEN
    RAISE EXCEPTION '%: url must be an http:// or https:// URL (or start with a {{secret:NAME}} reference), got %',
      caller, quote_nullable(left(url, 200))
      USING ERRCODE = '22023', HINT = 'e.g. url := ''https://example.com/hook''';
  END IF;
  IF jsonb_typeof(headers) <> 'object' THEN
    RAISE EXCEPTION '%: headers must be a JSON object of header names to strings, got %', caller,
      jsonb_typeof(headers)
      USING ERRCODE = '22023', HINT = 'e.g. headers := ''{"Authorization": "Bearer {{secret:api_token}}"}''';
  END IF;
  SELECT h.key INTO bad FROM jsonb_each(headers) h WHERE jsonb_typeof(h.value) <> 'string' LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION '%: headers: the value of % must be a string', caller, quote_literal(bad) USING ERRCODE = '22023';
  END IF;
  IF jsonb_typeof(params) <> 'object' THEN
    RAISE EXCEPTION '%: params must be a JSON object of query parameters, got %', caller,
      jsonb_typeof(params) USING ERRCODE = '22023';
  END IF;
  SELECT p.key INTO bad FROM jsonb_each(params) p
   WHERE jsonb_typeof(p.value) NOT IN ('string', 'number', 'boolean') LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION '%: params: the value of % must be a string, number or boolean', caller, quote_literal(bad)
      USING ERRCODE = '22023';
  END IF;
  IF timeout_milliseconds IS NULL OR timeout_milliseconds NOT BETWEEN 1 AND 600000 THEN
    RAISE EXCEPTION '%: timeout_milliseconds must be between 1 and 600000, got %', caller,
      coalesce(timeout_milliseconds::text, 'NULL') USING ERRCODE = '22023';
  END IF;

  payload := jsonb_build_object('method', method, 'url', btrim(url), 'headers', headers, 'params', params,
                                'timeout_ms', timeout_milliseconds);
  IF body IS NOT NULL THEN
    -- pg_net sends body::text. The http function sends a JSON string as its bare text, so a
    -- string body is stored as its JSON text ('"hi"'), which is then sent exactly as pg_net would.
    payload := payload || jsonb_build_object('body',
      CASE WHEN jsonb_typeof(body) = 'string' THEN to_jsonb(body::text) ELSE body END);
  END IF;
  -- 5 attempts: functions/http.py registers the `http` function with the same MAX_ATTEMPTS.
  RETURN jobline.enqueue('http', payload, max_attempts => 5);
END $$;

-- http_post's body is jsonb, sent as JSON, so like pg_net it adds `Content-Type:
-- application/json` when the headers name none and refuses any other type. pg_net accepts only
-- the exact text 'application/json'; a JSON type with parameters or a +json suffix
-- ('application/json; charset=utf-8', 'application/merge-patch+json') is accepted here too.
CREATE OR REPLACE FUNCTION jobline.http_post(
  url                  text,
  body                 jsonb   DEFAULT '{}',
  params               jsonb   DEFAULT '{}',
  headers              jsonb   DEFAULT '{"Content-Type": "application/json"}',
  timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  content_type text;
BEGIN
  headers := coalesce(headers, '{}');
  IF jsonb_typeof(headers) = 'object' THEN  -- anything else is http_queue's to refuse
    SELECT h.value INTO content_type FROM jsonb_each_text(headers) h
     WHERE lower(h.key) = 'content-type' LIMIT 1;
    IF content_type IS NULL THEN
      headers := headers || '{"Content-Type": "application/json"}';
    ELSIF lower(btrim(split_part(content_type, ';', 1))) !~ '^application/([a-z0-9.+-]+\+)?json$' THEN
      RAISE EXCEPTION 'jobline.http_post: Content-Type header must be "application/json", got %',
        quote_literal(left(content_type, 200))
        USING ERRCODE = '22023',
              HINT = 'http_post sends its jsonb body as JSON; to send other content, enqueue the http function: '
                     'jobline.enqueue(''http'', jsonb_build_object(''url'', ..., ''body'', ''text to send'', '
                     '''headers'', jsonb_build_object(''Content-Type'', ''text/csv'')))';
    END IF;
  END IF;
  RETURN jobline.http_queue('jobline.http_post', 'POST', url, body, params, headers, timeout_milliseconds);
END $$;

-- pg_net's signature: the body comes last, after the timeout, so that calls written before
-- pg_net added it keep their positions.
CREATE FUNCTION jobline.http_delete(
  url                  text,
  params               jsonb   DEFAULT '{}',
  headers              jsonb   DEFAULT '{}',
  timeout_milliseconds integer DEFAULT 5000,
  body                 jsonb   DEFAULT NULL
) RETURNS bigint LANGUAGE sql AS $$
  SELECT jobline.http_queue('jobline.http_delete', 'DELETE', url, body, params, headers, timeout_milliseconds)
$$;

-- pg_net's types, under the same names.
CREATE TYPE jobline.request_status AS ENUM ('PENDING', 'SUCCESS', 'ERROR');
CREATE TYPE jobline.http_response AS (status_code integer, headers jsonb, body text);
CREATE TYPE jobline.http_response_result AS (status jobline.request_status, message text,
                                             response jobline.http_response);

-- _http_response: pg_net's table of responses, as a view of the settled calls. A call is an
-- `http` job, and the row is derived from what its last attempt left in jobline.jobs (the
-- worker writes it with the job's completion, in the same statement), so there is no second
-- copy to keep in step, and a response goes when the job is pruned (JOBLINE_RETAIN_*_SECONDS,
-- where pg_net has pg_net.ttl).
-- A row appears once the call is settled: it succeeded; or its last attempt failed (5 by
-- default); or it failed without retry (an HTTP 4xx other than 429, a refused destination, a
-- malformed request); or a person cancelled it. While it is queued or being retried there is
-- no row, as in pg_net before its worker answers. (jobline.attempts has every attempt.)
-- Columns, as pg_net fills them:
--   status_code, headers, content_type, content: the last response, whatever its status (a
--     404 or a 503 is a response, and error_msg is then NULL); NULL when none came.
--   headers: every response header (up to 16 KiB) with its name as the server spelled it.
--   content: the body as text, as it came (decoded, scrubbed of secrets, at most
--     JOBLINE_HTTP_MAX_BODY_BYTES); NULL when empty or withheld (http-calls.md).
--   error_msg: why there is no response (a timeout in pg_net's words, `Timeout of 5000 ms
--     reached. ...`, a connection error, a refusal, a cancellation).
--   created: when the call was settled.
CREATE VIEW jobline._http_response AS
SELECT j.id,
       (r.result->>'status')::integer AS status_code,
       r.result->'headers'->>'content-type' AS content_type,
       (SELECT jsonb_object_agg(coalesce(r.result->'header_names'->>h.key, h.key), h.value)
          FROM jsonb_each(r.result->'headers') h) AS headers,
       nullif(CASE WHEN r.result ? 'text' THEN r.result->>'text'
                   WHEN jsonb_typeof(r.result->'body') = 'string' THEN r.result->>'body'
                   -- results written before 0009 keep no text: their JSON, written again
                   WHEN jsonb_typeof(r.result->'body') <> 'null' THEN (r.result->'body')::text
              END, '') AS content,
       coalesce((r.result->>'timed_out')::boolean, false) AS timed_out,
       CASE WHEN r.result ? 'status' THEN NULL
            ELSE coalesce(r.result->>'error', split_part(btrim(j.last_error), E'\n', 1), j.status) END AS error_msg,
       j.finished_at AS created
  FROM jobline.jobs j
  -- A cancelled call shows why it was cancelled, not a response an earlier attempt got.
  CROSS JOIN LATERAL (SELECT CASE WHEN j.status <> 'cancelled' THEN j.result END AS result) r
 WHERE j.function = 'http' AND j.status IN ('succeeded', 'failed', 'cancelled');

-- _http_collect_response: pg_net's reader of one response, with its result type:
-- ('SUCCESS', 'ok', (status_code, headers, content)) for a response of any status;
-- ('ERROR', error_msg, NULL) for a call settled without one; ('ERROR', 'request matching
-- request_id not found', NULL) for an id that is no call. pg_net also says "not found" for a
-- request still in flight (its PENDING is never returned); here such a call is ('PENDING',
-- what it is waiting for, NULL).
-- With async := false it waits for the call to settle, as pg_net does, but not forever: at
-- most the call's timeout_milliseconds plus 30 seconds (time for a worker to claim it and
-- make an attempt), checking every 50 ms; then it answers PENDING. It raises at once where
-- waiting cannot help: the call was queued by this very transaction, which no worker can see
-- until it commits, or the transaction's snapshot is fixed (REPEATABLE READ, SERIALIZABLE).
-- pg_net waits forever in both cases.
CREATE FUNCTION jobline._http_collect_response(request_id bigint, async boolean DEFAULT true)
RETURNS jobline.http_response_result LANGUAGE plpgsql AS $$
DECLARE
  rec jobline._http_response;
  call record;
  deadline timestamptz;
BEGIN
  SELECT j.status, j.attempts, j.max_attempts, j.run_at, j.last_error,
         CASE WHEN jsonb_typeof(j.payload->'timeout_ms') = 'number' THEN (j.payload->>'timeout_ms')::numeric
              ELSE 5000 END AS timeout_ms,
         -- xmin is 32 bits of the inserting transaction's id
         j.xmin::text::bigint = pg_current_xact_id_if_assigned()::text::bigint % 4294967296 AS ours
    INTO call FROM jobline.jobs j WHERE j.id = request_id AND j.function = 'http';
  IF NOT FOUND THEN
    RETURN ('ERROR', 'request matching request_id not found', NULL)::jobline.http_response_result;
  END IF;

  IF NOT async AND call.status IN ('waiting', 'pending', 'running') THEN
    IF call.ours THEN
      RAISE EXCEPTION 'jobline._http_collect_response: request % was queued by this transaction, which no worker '
                      'can see before it commits', request_id
        USING ERRCODE = '25000', HINT = 'commit the transaction that calls jobline.http_get/http_post first, '
                                        'then collect the response';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
      RAISE EXCEPTION 'jobline._http_collect_response: waiting for request % needs READ COMMITTED; this '
                      'transaction is %, whose snapshot never shows the response', request_id,
                      upper(current_setting('transaction_isolation'))
        USING ERRCODE = '25000', HINT = 'collect with async := true, or from a READ COMMITTED transaction';
    END IF;
    deadline := clock_timestamp() + make_interval(secs => call.timeout_ms / 1000 + 30);
    LOOP
      PERFORM pg_sleep(0.05);
      -- Each statement takes a new snapshot (READ COMMITTED), so the worker's commit shows.
      SELECT j.status, j.attempts, j.max_attempts, j.run_at, j.last_error INTO call.status, call.attempts,
             call.max_attempts, call.run_at, call.last_error
        FROM jobline.jobs j WHERE j.id = request_id;
      EXIT WHEN NOT FOUND OR call.status NOT IN ('waiting', 'pending', 'running') OR clock_timestamp() >= deadline;
    END LOOP;
  END IF;

  SELECT * INTO rec FROM jobline._http_response r WHERE r.id = request_id;
  IF NOT FOUND THEN
    IF call.status IS NULL OR call.status NOT IN ('waiting', 'pending', 'running') THEN  -- pruned meanwhile
      RETURN ('ERROR', 'request matching request_id not found', NULL)::jobline.http_response_result;
    END IF;
    RETURN ('PENDING',
            CASE WHEN call.status = 'running' THEN format('attempt %s of %s is being sent', call.attempts, call.max_attempts)
                 WHEN call.status = 'waiting' THEN 'waiting for the jobs it depends on'
                 WHEN call.attempts = 0 THEN 'queued, not sent yet'
                 ELSE format('attempt %s of %s failed (%s); the next is due at %s', call.attempts, call.max_attempts,
                             split_part(btrim(call.last_error), E'\n', 1), call.run_at) END,
            NULL)::jobline.http_response_result;
  END IF;
  IF rec.error_msg IS NOT NULL THEN
    RETURN ('ERROR', rec.error_msg, NULL)::jobline.http_response_result;
  END IF;
  RETURN ('SUCCESS', 'ok', (rec.status_code, rec.headers, rec.content)::jobline.http_response)::jobline.http_response_result;
END $$;

-- pg_net's older public name, for code that still calls it.
CREATE FUNCTION jobline.http_collect_response(request_id bigint, async boolean DEFAULT true)
RETURNS jobline.http_response_result LANGUAGE sql AS $$
  SELECT jobline._http_collect_response(request_id, async)
$$;
