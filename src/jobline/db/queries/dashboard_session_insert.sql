-- dashboard_session_insert: a signed-in browser's session, by the SHA-256 of its id
-- (%(id_hash)s), for %(user_id)s (NULL: the service) signed in %(via)s, tied to %(credential)s
-- (see 0015_dashboard.sql), with its CSRF token; it lasts %(seconds)s, or until %(not_after)s
-- when sooner (a JWT's exp). Expired sessions are deleted on the way (dashboard_sessions_expiry_idx),
-- so the table holds only live ones. Returns when the new one expires.
WITH pruned AS (
  DELETE FROM jobline.dashboard_sessions WHERE expires_at < coalesce(%(now)s::timestamptz, now())
)
INSERT INTO jobline.dashboard_sessions (id_hash, user_id, via, credential, csrf_token, created_at, expires_at)
VALUES (%(id_hash)s, %(user_id)s, %(via)s, %(credential)s, %(csrf_token)s, coalesce(%(now)s::timestamptz, now()),
        least(coalesce(%(now)s::timestamptz, now()) + make_interval(secs => %(seconds)s),
              coalesce(%(not_after)s::timestamptz, 'infinity')))
RETURNING expires_at
