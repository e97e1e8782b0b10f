-- 0005_api: what the HTTP API needs: users' API tokens (hashes only), the functions that
-- in-process workers serve (claim-next-task hands out only the others: remote task types), and
-- an index for owner-scoped claims.

CREATE TABLE jobline.api_tokens (
  id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id       text        NOT NULL CHECK (jobline.is_valid_name(user_id, 200)),
  name          text        CHECK (name IS NULL OR jobline.is_valid_name(name, 200)),
  -- SHA-256 of the token: the token itself is shown once, when created, and never stored.
  token_hash    bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  prefix        text        NOT NULL,  -- its first characters, to recognise it in listings
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);
CREATE INDEX api_tokens_user_idx ON jobline.api_tokens (user_id);

-- Every function an in-process worker has registered, kept after the worker stops, so that a
-- remote worker asking for "any task" never gets a job meant for Python code that is merely
-- down for a deploy. Workers add theirs when they start (worker_register).
CREATE TABLE jobline.local_functions (
  function      text        PRIMARY KEY,
  last_seen_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO jobline.local_functions (function) VALUES ('sql'), ('http');

-- A user's claimable jobs in claim order: claim-next-task with a user token walks this instead
-- of every owner's pending jobs.
CREATE INDEX jobs_owner_due_idx ON jobline.jobs (owner, priority DESC, run_at, id)
  WHERE status = 'pending' AND owner IS NOT NULL;

-- Owner-scoped listings, newest first.
CREATE INDEX jobs_owner_idx ON jobline.jobs (owner, id DESC) WHERE owner IS NOT NULL;
