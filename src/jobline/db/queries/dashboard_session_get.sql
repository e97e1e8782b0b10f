-- dashboard_session_get: the live session whose id hashes to %(id_hash)s: unexpired, and, for a
-- session made with an API token, only while that token is not revoked (api_tokens' unique
-- token_hash index). The caller checks the credential of the other kinds (the server's key).
SELECT s.user_id, s.via, s.credential, s.csrf_token, s.expires_at
FROM jobline.dashboard_sessions s
WHERE s.id_hash = %(id_hash)s AND s.expires_at > coalesce(%(now)s::timestamptz, now())
  AND (s.via <> 'api_token'
       OR EXISTS (SELECT 1 FROM jobline.api_tokens t WHERE t.token_hash = s.credential AND t.revoked_at IS NULL))
