-- 0015_dashboard: the dashboard's sign-in sessions and one-time sign-in links, and the indexes
-- its screens read at a million jobs.

-- A signed-in browser. The cookie holds a random session id; only its SHA-256 is stored, so a
-- copy of this table signs nobody in. `credential` ties the session to what it was made with:
-- for an API token, the token's SHA-256 (the session ends when the token is revoked: see
-- dashboard_session_get); for the service key or a JWT, an HMAC of the server's key or JWT
-- secret (the session ends when the operator changes it). A JWT's session also ends at the
-- token's `exp`. The CSRF token is the one every form of the session must send back.
CREATE TABLE jobline.dashboard_sessions (
  id_hash      bytea       PRIMARY KEY,
  user_id      text,                    -- NULL: the service
  via          text        NOT NULL,    -- service_key | jwt | api_token | link
  credential   bytea       NOT NULL,
  csrf_token   text        NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expiry_idx ON jobline.dashboard_sessions (expires_at);

-- `jobline dev`'s one-time sign-in link: the SHA-256 of its token, used once (the row is
-- deleted as it is redeemed), within a minute or two.
CREATE TABLE jobline.dashboard_links (
  token_hash   bytea       PRIMARY KEY,
  credential   bytea       NOT NULL,
  expires_at   timestamptz NOT NULL
);

-- The jobs list filtered by error text walks only the jobs that have one (a few per cent).
CREATE INDEX jobs_error_idx ON jobline.jobs (id DESC) WHERE last_error IS NOT NULL;
-- The HTTP calls screen: the built-in `http` function's jobs, newest first.
CREATE INDEX jobs_http_idx ON jobline.jobs (id DESC) WHERE function = 'http';
-- The same for one user: without it a user's screen walked every owner's calls to find theirs.
CREATE INDEX jobs_http_owner_idx ON jobline.jobs (owner, id DESC) WHERE function = 'http' AND owner IS NOT NULL;
-- A job's dependants, in any state (jobs_waiting_deps_idx holds only the waiting ones).
CREATE INDEX jobs_dependants_idx ON jobline.jobs USING gin (depends_on) WHERE depends_on IS NOT NULL;
