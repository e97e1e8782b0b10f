-- api_token_list: tokens (never their hashes), of %(user_id)s or everyone's (NULL), newest first.
SELECT id, user_id, name, prefix, created_at, last_used_at, revoked_at
FROM jobline.api_tokens
WHERE %(user_id)s::text IS NULL OR user_id = %(user_id)s
ORDER BY id DESC
