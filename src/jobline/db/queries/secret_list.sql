-- secret_list: the name, owner, key id and times of %(owner)s's secrets (NULL: the operator's),
-- or of every owner's with %(every_owner)s, by owner and name. Never the nonce or ciphertext:
-- listings have no use for them, and what is not selected cannot leak into an output.
SELECT name, owner, key_id, created_at, updated_at
FROM jobline.secrets
WHERE %(every_owner)s OR coalesce(owner, '') = coalesce(%(owner)s::text, '')
ORDER BY owner NULLS FIRST, name
