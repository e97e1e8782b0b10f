-- 0006_secret_owners: secrets belong to the operator (owner NULL) or to one user.
-- An operator's secret is what `{{secret:NAME}}` names in a call the operator wrote (code, SQL,
-- a service-key job); a user's secret is what `{{owner_secret:NAME}}` names in an operator's
-- call made for a job that user owns (seed 003's per-user OAuth tokens). A name is unique per
-- owner, so every user may have their own `linkedin_token`. vault.py binds the owner into each
-- ciphertext (its associated data), so a row moved to another owner fails to decrypt.
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

ALTER TABLE jobline.secrets
  ADD COLUMN owner text CHECK (owner IS NULL OR jobline.is_valid_name(owner, 200));

ALTER TABLE jobline.secrets DROP CONSTRAINT secrets_pkey;
ALTER TABLE jobline.secrets ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;

-- One name per owner, the operator counting as one owner: '' is no valid owner (is_valid_name),
-- so it stands for NULL. Every secret_* query looks rows up through this expression.
CREATE UNIQUE INDEX secrets_owner_name_idx ON jobline.secrets ((coalesce(owner, '')), name);
