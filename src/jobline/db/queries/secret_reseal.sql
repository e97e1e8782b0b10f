-- secret_reseal: rotation's write. Replace the sealed value of %(owner)s's secret %(name)s with
-- one under the current key (%(key_id)s, %(nonce)s, %(ciphertext)s), but only if the row is
-- still the one that was decrypted: sealed under %(old_key_id)s with nonce %(old_nonce)s. The
-- nonce is fresh for every seal, so it identifies the version: a re-run, a concurrent rotation
-- or a `secrets set` since the read leaves the row alone instead of overwriting it with an older
-- value. updated_at is kept: the value did not change. Returns the name if the row was re-sealed.
UPDATE jobline.secrets
SET key_id = %(key_id)s, nonce = %(nonce)s, ciphertext = %(ciphertext)s
WHERE coalesce(owner, '') = coalesce(%(owner)s::text, '') AND name = %(name)s
  AND key_id = %(old_key_id)s AND nonce = %(old_nonce)s
RETURNING name
