-- secret_delete: remove the secret %(name)s of %(owner)s (NULL: the operator's); returns its
-- name, or no row if there was none. Uses secrets_owner_name_idx.
DELETE FROM jobline.secrets
WHERE coalesce(owner, '') = coalesce(%(owner)s::text, '') AND name = %(name)s
RETURNING name
