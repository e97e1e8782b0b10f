-- 0003_http: pg_net's jobline.http_post / jobline.http_get, but durable.
-- pg_net keeps queued requests in an UNLOGGED table, which PostgreSQL empties after a crash, and
-- never retries. Here a call is an ordinary `http` job in jobline.jobs (a logged table): it
-- commits with the caller's transaction, survives a crash-restart, and is retried on
-- timeouts, connection errors, 429 and 5xx (functions/http.py). The signatures and defaults
-- are pg_net's, so `net.http_post(url := ..., headers := ..., body := ...)` ports by changing
-- the schema name. Both return the job's id where pg_net returns its request id.

-- http_queue: the checks and the enqueue shared by http_post and http_get (internal; `caller`
-- is the public function's name, for the messages). SQLSTATE 22023 like jobline.enqueue.
CREATE FUNCTION jobline.http_queue(caller text, method text, url text, body jsonb, params jsonb,
                                   headers jsonb, timeout_milliseconds integer)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  bad text;
  payload jsonb;
BEGIN
  -- A URL may also begin with a secret ({{secret:FUNCTIONS_URL}}/adapter-health), resolved by
  -- the worker at send time; the egress policy is applied there too, on the resolved address.
  IF url IS NULL OR url !~* '^\s*(https?://|\{\{secret:)' THEN
    RAISE EXCEPTION '%: url must be an http:// or https:// URL (or start with a {{secret:NAME}} reference), got %',
      caller, quote_nullable(left(url, 200))
      USING ERRCODE = '22023', HINT = 'e.g. url := ''https://example.com/hook''';
  END IF;
  IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
    RAISE EXCEPTION '%: headers must be a JSON object of header names to strings, got %', caller,
      coalesce(jsonb_typeof(headers), 'NULL')
      USING ERRCODE = '22023', HINT = 'e.g. headers := ''{"Authorization": "Bearer {{secret:api_token}}"}''';
  END IF;
  SELECT h.key INTO bad FROM jsonb_each(headers) h WHERE jsonb_typeof(h.value) <> 'string' LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION '%: headers: the value of % must be a string', caller, quote_literal(bad) USING ERRCODE = '22023';
  END IF;
  IF params IS NULL OR jsonb_typeof(params) <> 'object' THEN
    RAISE EXCEPTION '%: params must be a JSON object of query parameters, got %', caller,
      coalesce(jsonb_typeof(params), 'NULL') USING ERRCODE = '22023';
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

CREATE FUNCTION jobline.http_post(
  url                  text,
  body                 jsonb   DEFAULT '{}',
  params               jsonb   DEFAULT '{}',
  headers              jsonb   DEFAULT '{"Content-Type": "application/json"}',
  timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE sql AS $$
  SELECT jobline.http_queue('jobline.http_post', 'POST', url, body, params, headers, timeout_milliseconds)
$$;

CREATE FUNCTION jobline.http_get(
  url                  text,
  params               jsonb   DEFAULT '{}',
  headers              jsonb   DEFAULT '{}',
  timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint LANGUAGE sql AS $$
  SELECT jobline.http_queue('jobline.http_get', 'GET', url, NULL, params, headers, timeout_milliseconds)
$$;
