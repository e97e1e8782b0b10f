-- 0004_secrets: the vault's table. It only ever holds ciphertext.
-- Values are encrypted (AES-256-GCM) by the jobline process that holds JOBLINE_MASTER_KEY before
-- they are sent here, and decrypted by the worker in memory at the moment it needs them. The
-- database never sees a plaintext nor the key, so this table, its WAL, backups, replicas,
-- pg_dump output and the statement log leak nothing usable without the key. That is also why
-- secrets are set with `jobline secrets set` and not with SQL: an INSERT of a plaintext would
-- put it in exactly those places.
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

CREATE TABLE jobline.secrets (
  -- The rules of vault.NAME: the name appears as {{secret:NAME}} in HTTP calls, so it is kept
  -- to characters that need no quoting there.
  name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,200}$'),
  -- Fingerprint of the master key the row is sealed under (vault.key_id_of), never the key:
  -- rotation re-seals the rows whose key_id is not the current key's.
  key_id      text        NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
  nonce       bytea       NOT NULL CHECK (length(nonce) = 12),
  -- Encrypted value followed by GCM's 16-byte tag; the name is authenticated with it, so a row
  -- copied onto another name fails to decrypt.
  ciphertext  bytea       NOT NULL CHECK (length(ciphertext) > 16),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()  -- when the value was last set (not rotated)
);

COMMENT ON TABLE jobline.secrets IS
  'Encrypted by jobline under JOBLINE_MASTER_KEY; set with `jobline secrets set`, never with SQL.';
