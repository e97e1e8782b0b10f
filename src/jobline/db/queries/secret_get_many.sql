-- secret_get_many: the sealed rows of %(owner)s's secrets (NULL: the operator's) named in
-- %(names)s (text[]), for the process holding the master key to decrypt; names with no row are
-- simply absent. Never another owner's row. Uses secrets_owner_name_idx.
SELECT name, owner, key_id, nonce, ciphertext
FROM jobline.secrets
WHERE coalesce(owner, '') = coalesce(%(owner)s::text, '') AND name = ANY(%(names)s::text[])
