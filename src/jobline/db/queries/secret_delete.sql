-- secret_delete: remove the secret %(name)s; returns its name, or no row if there was none.
-- Uses the primary key.
DELETE FROM jobline.secrets WHERE name = %(name)s
RETURNING name
