-- 0007_vault_names: Supabase Vault's names, so seed 001's command ports by renaming `vault.` to
-- `jobline.` while the database still never holds a plaintext.
-- `decrypted_secret` is not the value but the `{{secret:NAME}}` reference, which the worker
-- resolves in memory when it sends the request: `'Bearer ' || (SELECT decrypted_secret FROM
-- jobline.decrypted_secrets WHERE name = 'key')` builds the same header a hand-written
-- reference would. Only the operator's secrets are listed (users' own are for their own calls).
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

CREATE VIEW jobline.decrypted_secrets AS
SELECT id, name, NULL::text AS description,
       encode(ciphertext, 'base64') AS secret,          -- Vault's `secret` is the ciphertext too
       '{{secret:' || name || '}}' AS decrypted_secret,
       key_id, nonce, created_at, updated_at
FROM jobline.secrets
WHERE owner IS NULL;

COMMENT ON VIEW jobline.decrypted_secrets IS
  'Vault''s view: decrypted_secret is the {{secret:NAME}} reference that workers resolve at send time.';

-- Vault's create_secret and update_secret take the plaintext as an argument: by the time they
-- run, the value is in the statement log and pg_stat_statements. So they only say what to do.
CREATE FUNCTION jobline.create_secret(new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '',
                                      new_key_id uuid DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'jobline.create_secret: secrets are set with `jobline secrets set %`, which encrypts the value before it reaches the database',
    coalesce(new_name, 'NAME')
    USING ERRCODE = '0A000',
          HINT = 'A value passed to SQL can reach the server''s statement log and pg_stat_statements: if this one is '
                 'a real credential, consider it exposed and rotate it.';
END $$;

CREATE FUNCTION jobline.update_secret(secret_id bigint, new_secret text DEFAULT NULL, new_name text DEFAULT NULL,
                                      new_description text DEFAULT NULL, new_key_id uuid DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'jobline.update_secret: secrets are set with `jobline secrets set NAME` (and renamed by setting the new name and `jobline secrets rm` of the old), which encrypts the value before it reaches the database'
    USING ERRCODE = '0A000',
          HINT = 'A value passed to SQL can reach the server''s statement log and pg_stat_statements: if this one is '
                 'a real credential, consider it exposed and rotate it.';
END $$;
