-- gatehouse event store, schema 1. Times are unix milliseconds (UTC), durations microseconds.

-- One row per proxied request. No prompt text unless capture is configured.
CREATE TABLE requests (
  rid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  ts_ms INTEGER NOT NULL,
  user TEXT,
  team TEXT,
  session TEXT,
  endpoint TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  model TEXT,
  upstream_model TEXT,
  response_model TEXT,
  upstream TEXT,
  upstream_request_id TEXT,
  stream INTEGER NOT NULL,
  status INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  error_kind TEXT,
  blame TEXT,
  attempts INTEGER NOT NULL,
  latency_us INTEGER NOT NULL,
  ttfb_us INTEGER,
  ttft_us INTEGER,
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  cached_tokens INTEGER,
  reasoning_tokens INTEGER,
  cost REAL,
  bytes_in INTEGER NOT NULL,
  bytes_out INTEGER NOT NULL,
  prompt_chars INTEGER,
  response_chars INTEGER,
  risk_level TEXT,
  risk_score REAL,
  action TEXT,
  blocked INTEGER NOT NULL,
  shadow INTEGER,
  categories TEXT,
  scan_us INTEGER,
  learned_score REAL,
  prompt TEXT,
  response TEXT
);
CREATE INDEX requests_ts ON requests (ts_ms);

-- One row per detector match.
CREATE TABLE security_matches (
  mid INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  user TEXT,
  model TEXT,
  risk_level TEXT NOT NULL,
  action TEXT NOT NULL,
  blocked INTEGER NOT NULL,
  category TEXT NOT NULL,
  rule TEXT NOT NULL,
  weight REAL NOT NULL,
  segment INTEGER NOT NULL,
  span_start INTEGER NOT NULL,
  span_end INTEGER NOT NULL,
  snippet TEXT NOT NULL
);
CREATE INDEX security_matches_ts ON security_matches (ts_ms);
CREATE INDEX security_matches_request ON security_matches (request_id);

-- Rollups keyed by bucket start, model and outcome; h0..h25 count latencies per fixed bucket
-- (store::hist::BOUNDS_US), so percentiles over weeks come from rollups alone.
CREATE TABLE rollup_minute (
  bucket_ms INTEGER NOT NULL,
  model TEXT NOT NULL,
  outcome TEXT NOT NULL,
  requests INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  blocked INTEGER NOT NULL,
  threats_low INTEGER NOT NULL,
  threats_medium INTEGER NOT NULL,
  threats_high INTEGER NOT NULL,
  threats_critical INTEGER NOT NULL,
  latency_sum_us INTEGER NOT NULL,
  latency_max_us INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cost REAL NOT NULL,
  prompt_chars INTEGER NOT NULL,
  response_chars INTEGER NOT NULL,
  h0 INTEGER NOT NULL DEFAULT 0,
  h1 INTEGER NOT NULL DEFAULT 0,
  h2 INTEGER NOT NULL DEFAULT 0,
  h3 INTEGER NOT NULL DEFAULT 0,
  h4 INTEGER NOT NULL DEFAULT 0,
  h5 INTEGER NOT NULL DEFAULT 0,
  h6 INTEGER NOT NULL DEFAULT 0,
  h7 INTEGER NOT NULL DEFAULT 0,
  h8 INTEGER NOT NULL DEFAULT 0,
  h9 INTEGER NOT NULL DEFAULT 0,
  h10 INTEGER NOT NULL DEFAULT 0,
  h11 INTEGER NOT NULL DEFAULT 0,
  h12 INTEGER NOT NULL DEFAULT 0,
  h13 INTEGER NOT NULL DEFAULT 0,
  h14 INTEGER NOT NULL DEFAULT 0,
  h15 INTEGER NOT NULL DEFAULT 0,
  h16 INTEGER NOT NULL DEFAULT 0,
  h17 INTEGER NOT NULL DEFAULT 0,
  h18 INTEGER NOT NULL DEFAULT 0,
  h19 INTEGER NOT NULL DEFAULT 0,
  h20 INTEGER NOT NULL DEFAULT 0,
  h21 INTEGER NOT NULL DEFAULT 0,
  h22 INTEGER NOT NULL DEFAULT 0,
  h23 INTEGER NOT NULL DEFAULT 0,
  h24 INTEGER NOT NULL DEFAULT 0,
  h25 INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket_ms, model, outcome)
) WITHOUT ROWID;

CREATE TABLE rollup_hour (
  bucket_ms INTEGER NOT NULL,
  model TEXT NOT NULL,
  outcome TEXT NOT NULL,
  requests INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  blocked INTEGER NOT NULL,
  threats_low INTEGER NOT NULL,
  threats_medium INTEGER NOT NULL,
  threats_high INTEGER NOT NULL,
  threats_critical INTEGER NOT NULL,
  latency_sum_us INTEGER NOT NULL,
  latency_max_us INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cost REAL NOT NULL,
  prompt_chars INTEGER NOT NULL,
  response_chars INTEGER NOT NULL,
  h0 INTEGER NOT NULL DEFAULT 0,
  h1 INTEGER NOT NULL DEFAULT 0,
  h2 INTEGER NOT NULL DEFAULT 0,
  h3 INTEGER NOT NULL DEFAULT 0,
  h4 INTEGER NOT NULL DEFAULT 0,
  h5 INTEGER NOT NULL DEFAULT 0,
  h6 INTEGER NOT NULL DEFAULT 0,
  h7 INTEGER NOT NULL DEFAULT 0,
  h8 INTEGER NOT NULL DEFAULT 0,
  h9 INTEGER NOT NULL DEFAULT 0,
  h10 INTEGER NOT NULL DEFAULT 0,
  h11 INTEGER NOT NULL DEFAULT 0,
  h12 INTEGER NOT NULL DEFAULT 0,
  h13 INTEGER NOT NULL DEFAULT 0,
  h14 INTEGER NOT NULL DEFAULT 0,
  h15 INTEGER NOT NULL DEFAULT 0,
  h16 INTEGER NOT NULL DEFAULT 0,
  h17 INTEGER NOT NULL DEFAULT 0,
  h18 INTEGER NOT NULL DEFAULT 0,
  h19 INTEGER NOT NULL DEFAULT 0,
  h20 INTEGER NOT NULL DEFAULT 0,
  h21 INTEGER NOT NULL DEFAULT 0,
  h22 INTEGER NOT NULL DEFAULT 0,
  h23 INTEGER NOT NULL DEFAULT 0,
  h24 INTEGER NOT NULL DEFAULT 0,
  h25 INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket_ms, model, outcome)
) WITHOUT ROWID;

-- Per-user hourly rollup (identified users only): unique users and top users over weeks.
CREATE TABLE rollup_user_hour (
  bucket_ms INTEGER NOT NULL,
  user TEXT NOT NULL,
  requests INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  blocked INTEGER NOT NULL,
  threats INTEGER NOT NULL,
  tokens INTEGER NOT NULL,
  cost REAL NOT NULL,
  latency_sum_us INTEGER NOT NULL,
  PRIMARY KEY (bucket_ms, user)
) WITHOUT ROWID;

-- The same per user and UTC day: long windows read days and only their edge hours.
CREATE TABLE rollup_user_day (
  bucket_ms INTEGER NOT NULL,
  user TEXT NOT NULL,
  requests INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  blocked INTEGER NOT NULL,
  threats INTEGER NOT NULL,
  tokens INTEGER NOT NULL,
  cost REAL NOT NULL,
  latency_sum_us INTEGER NOT NULL,
  PRIMARY KEY (bucket_ms, user)
) WITHOUT ROWID;

-- User feedback on a request (POST /api/feedback).
CREATE TABLE feedback (
  fid INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  score REAL NOT NULL,
  comment TEXT
);
CREATE INDEX feedback_ts ON feedback (ts_ms);
CREATE INDEX feedback_request ON feedback (request_id);
