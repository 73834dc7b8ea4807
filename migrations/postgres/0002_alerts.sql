-- gatehouse event store (PostgreSQL; the same tables as the SQLite schema), schema 2: alerts and their deliveries. Times are unix milliseconds.

-- One row per alert: fired by a rule (state firing, then resolved) or sent by hand (test).
CREATE TABLE alerts (
  id TEXT PRIMARY KEY,
  rule TEXT NOT NULL,
  subject TEXT NOT NULL,
  level TEXT NOT NULL,
  state TEXT NOT NULL,
  started_ms BIGINT NOT NULL,
  resolved_ms BIGINT,
  summary TEXT NOT NULL,
  figures TEXT NOT NULL
);
CREATE INDEX alerts_started ON alerts (started_ms);
CREATE INDEX alerts_state ON alerts (state);

-- One row per delivery attempt of a notice (fired, resolved or test) to a channel.
CREATE TABLE alert_deliveries (
  did BIGSERIAL PRIMARY KEY,
  alert_id TEXT NOT NULL,
  notice TEXT NOT NULL,
  channel TEXT NOT NULL,
  attempt BIGINT NOT NULL,
  ts_ms BIGINT NOT NULL,
  ok BIGINT NOT NULL,
  status BIGINT,
  answer TEXT NOT NULL
);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
