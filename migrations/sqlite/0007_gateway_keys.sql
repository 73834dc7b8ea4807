-- gatehouse event store, schema 7: virtual gateway keys created at run time (`/api/keys`).
-- Only a SHA-256 hash of each secret is kept (the secrets are 32 random bytes, so a plain hash
-- cannot be reversed by guessing), with its first characters to tell keys apart in lists. A
-- revoked key stays as a row with `revoked_at_ms`. Every replica loads this table into memory
-- and re-reads it every `auth.sync_secs`; requests never read it.
CREATE TABLE gateway_keys (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  name TEXT,
  "user" TEXT NOT NULL,
  team TEXT,
  end_users TEXT NOT NULL,
  models TEXT NOT NULL,
  limits TEXT NOT NULL,
  metadata TEXT NOT NULL,
  expires_at_ms INTEGER,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  revoked_at_ms INTEGER
);
