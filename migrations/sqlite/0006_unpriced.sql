-- gatehouse event store, schema 6: requests whose cost is unknown (a model missing from the
-- price table and no cost reported by the upstream), counted beside the cost sums so a sum
-- with unknown parts is not read as complete. Rows written before this version count 0.
ALTER TABLE rollup_minute ADD COLUMN unpriced INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollup_hour ADD COLUMN unpriced INTEGER NOT NULL DEFAULT 0;
