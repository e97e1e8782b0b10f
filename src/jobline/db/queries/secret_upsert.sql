-- secret_upsert: store the sealed value of %(owner)s's secret %(name)s (NULL: the operator's;
-- %(key_id)s, %(nonce)s and %(ciphertext)s from vault.seal), replacing any previous one. A
-- replacement keeps created_at and bumps updated_at. Uses secrets_owner_name_idx.
-- A user holds at most %(max_per_owner)s secrets (users may set their own over HTTP, and must
-- not fill the table): a new name beyond that inserts nothing and returns no row. Two sets at
-- once may pass the count together; the cap bounds growth, it is not an exact quota.
-- Returns created: true when the name was new (xmax is 0 only on a row this statement inserted,
-- the usual way to tell the two outcomes of ON CONFLICT apart).
INSERT INTO jobline.secrets AS s (name, owner, key_id, nonce, ciphertext)
SELECT %(name)s, %(owner)s, %(key_id)s, %(nonce)s, %(ciphertext)s
WHERE %(owner)s::text IS NULL
   OR (SELECT count(*) FROM jobline.secrets o WHERE o.owner = %(owner)s AND o.name <> %(name)s) < %(max_per_owner)s
ON CONFLICT ((coalesce(owner, '')), name) DO UPDATE
SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = now()
RETURNING s.name, s.owner, s.key_id, s.created_at, s.updated_at, (s.xmax = 0) AS created
