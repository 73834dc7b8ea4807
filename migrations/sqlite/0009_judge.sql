-- gatehouse event store, schema 9: the optional judge's opinion on a request in its uncertain
-- band (safe, unsafe, error, timeout) and how long it took, in microseconds; NULL when the
-- judge was not asked.
ALTER TABLE requests ADD COLUMN judge TEXT;
ALTER TABLE requests ADD COLUMN judge_us INTEGER;
