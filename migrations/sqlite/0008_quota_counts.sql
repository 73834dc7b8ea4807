-- gatehouse event store, schema 8: rate-limit counters shared between replicas (fleet mode). Each
-- replica overwrites its own row per (scope, counter, window) with its own count every
-- `quotas.sync_ms` and reads the sum of the other replicas' rows; rows of ended windows are
-- deleted at sync. `scope` is a fleet-wide name (`key:<n>:<user>`, `vkey:<id>`, `team:<name>`,
-- `model:<name>`, `global`), never a secret; `instance` is one process (its name and a
-- random id), so a restarted replica never overwrites what it counted before.
CREATE TABLE quota_counts (
  scope TEXT NOT NULL,
  counter TEXT NOT NULL,
  window_id INTEGER NOT NULL,
  instance TEXT NOT NULL,
  used INTEGER NOT NULL,
  ends_ms INTEGER NOT NULL,
  PRIMARY KEY (scope, counter, window_id, instance)
);

CREATE INDEX quota_counts_ends ON quota_counts (ends_ms);
