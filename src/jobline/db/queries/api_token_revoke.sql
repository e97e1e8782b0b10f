-- api_token_revoke: revoke token %(id)s (idempotent: a revoked token keeps its first time).
UPDATE jobline.api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s
RETURNING id, user_id, name, prefix, created_at, last_used_at, revoked_at
