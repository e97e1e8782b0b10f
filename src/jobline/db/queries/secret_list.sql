-- secret_list: every secret's name, key id and times, by name. Never the nonce or ciphertext:
-- listings have no use for them, and what is not selected cannot leak into an output.
SELECT name, key_id, created_at, updated_at
FROM jobline.secrets
ORDER BY name
