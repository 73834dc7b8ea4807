-- gatehouse event store, schema 10: when each shared rate-limit row was last written (unix ms,
-- the writer's clock), so a replica reads only the rows written since its last read (less a
-- margin for clock skew and slow commits) instead of every open row of every end user.
ALTER TABLE quota_counts ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX quota_counts_updated ON quota_counts (updated_ms);
