-- api_token_insert: store a new API token for user %(user_id)s, as its SHA-256 only.
INSERT INTO jobline.api_tokens (user_id, name, token_hash, prefix)
VALUES (%(user_id)s, %(name)s, %(token_hash)s, %(prefix)s)
RETURNING id, user_id, name, prefix, created_at, last_used_at, revoked_at
