-- secret_upsert: store the sealed value of the secret %(name)s (%(key_id)s, %(nonce)s and
-- %(ciphertext)s from vault.seal), replacing any previous one. A replacement keeps created_at
-- and bumps updated_at. Uses the primary key.
-- Returns created: true when the name was new (xmax is 0 only on a row this statement inserted,
-- the usual way to tell the two outcomes of ON CONFLICT apart).
INSERT INTO jobline.secrets AS s (name, key_id, nonce, ciphertext)
VALUES (%(name)s, %(key_id)s, %(nonce)s, %(ciphertext)s)
ON CONFLICT (name) DO UPDATE
SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = now()
RETURNING s.name, s.key_id, s.created_at, s.updated_at, (s.xmax = 0) AS created
