-- dashboard_link_insert: a one-time sign-in link (`jobline dev`), by the SHA-256 of its token,
-- valid for %(seconds)s; expired links are deleted on the way.
WITH pruned AS (DELETE FROM jobline.dashboard_links WHERE expires_at < now())
INSERT INTO jobline.dashboard_links (token_hash, credential, expires_at)
VALUES (%(token_hash)s, %(credential)s, now() + make_interval(secs => %(seconds)s))
RETURNING expires_at
