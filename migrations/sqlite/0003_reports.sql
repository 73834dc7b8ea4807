-- gatehouse event store, schema 2: analysis reports and the threshold history.

-- One row per generated report; `json` is the whole report, the renderings are stored as made.
CREATE TABLE reports (
  id TEXT PRIMARY KEY,
  created_ms INTEGER NOT NULL,
  period TEXT NOT NULL,
  from_ms INTEGER NOT NULL,
  to_ms INTEGER NOT NULL,
  engine TEXT NOT NULL,
  recommendations INTEGER NOT NULL,
  json TEXT NOT NULL,
  markdown TEXT NOT NULL,
  html TEXT NOT NULL
);
CREATE INDEX reports_created ON reports (created_ms);

-- Every change of the risk thresholds made through the admin API or auto-tuning.
CREATE TABLE threshold_changes (
  cid INTEGER PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  source TEXT NOT NULL,
  old TEXT NOT NULL,
  new TEXT NOT NULL,
  effect TEXT NOT NULL
);
