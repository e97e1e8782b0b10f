-- secret_get_many: the sealed rows of the secrets named in %(names)s (text[]), for the process
-- holding the master key to decrypt; names with no row are simply absent. Uses the primary key.
SELECT name, key_id, nonce, ciphertext
FROM jobline.secrets
WHERE name = ANY(%(names)s::text[])
