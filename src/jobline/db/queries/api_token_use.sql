-- api_token_use: the user of the live token whose SHA-256 is %(token_hash)s (none when unknown
-- or revoked), recording its use at most once a minute so busy tokens do not write every call.
WITH found AS (
  SELECT id, user_id, last_used_at FROM jobline.api_tokens
  WHERE token_hash = %(token_hash)s AND revoked_at IS NULL
), touched AS (
  UPDATE jobline.api_tokens t SET last_used_at = now()
  FROM found
  WHERE t.id = found.id AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
)
SELECT user_id FROM found
