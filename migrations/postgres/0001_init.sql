-- gatehouse event store (PostgreSQL; the same tables as the SQLite schema), schema 1. Times are unix milliseconds (UTC), durations microseconds.

-- One row per proxied request. No prompt text unless capture is configured.
CREATE TABLE requests (
  rid BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  ts_ms BIGINT NOT NULL,
  "user" TEXT,
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
  stream BIGINT NOT NULL,
  status BIGINT NOT NULL,
  outcome TEXT NOT NULL,
  error_kind TEXT,
  blame TEXT,
  attempts BIGINT NOT NULL,
  latency_us BIGINT NOT NULL,
  ttfb_us BIGINT,
  ttft_us BIGINT,
  prompt_tokens BIGINT,
  completion_tokens BIGINT,
  cached_tokens BIGINT,
  reasoning_tokens BIGINT,
  cost DOUBLE PRECISION,
  bytes_in BIGINT NOT NULL,
  bytes_out BIGINT NOT NULL,
  prompt_chars BIGINT,
  response_chars BIGINT,
  risk_level TEXT,
  risk_score DOUBLE PRECISION,
  action TEXT,
  blocked BIGINT NOT NULL,
  shadow BIGINT,
  categories TEXT,
  scan_us BIGINT,
  learned_score DOUBLE PRECISION,
  prompt TEXT,
  response TEXT
);
CREATE INDEX requests_ts ON requests (ts_ms);

-- One row per detector match.
CREATE TABLE security_matches (
  mid BIGSERIAL PRIMARY KEY,
  request_id TEXT NOT NULL,
  ts_ms BIGINT NOT NULL,
  "user" TEXT,
  model TEXT,
  risk_level TEXT NOT NULL,
  action TEXT NOT NULL,
  blocked BIGINT NOT NULL,
  category TEXT NOT NULL,
  rule TEXT NOT NULL,
  weight DOUBLE PRECISION NOT NULL,
  segment BIGINT NOT NULL,
  span_start BIGINT NOT NULL,
  span_end BIGINT NOT NULL,
  snippet TEXT NOT NULL
);
CREATE INDEX security_matches_ts ON security_matches (ts_ms);
CREATE INDEX security_matches_request ON security_matches (request_id);

-- Rollups keyed by bucket start, model and outcome; h0..h25 count latencies per fixed bucket
-- (store::hist::BOUNDS_US), so percentiles over weeks come from rollups alone.
CREATE TABLE rollup_minute (
  bucket_ms BIGINT NOT NULL,
  model TEXT NOT NULL,
  outcome TEXT NOT NULL,
  requests BIGINT NOT NULL,
  errors BIGINT NOT NULL,
  blocked BIGINT NOT NULL,
  threats_low BIGINT NOT NULL,
  threats_medium BIGINT NOT NULL,
  threats_high BIGINT NOT NULL,
  threats_critical BIGINT NOT NULL,
  latency_sum_us BIGINT NOT NULL,
  latency_max_us BIGINT NOT NULL,
  prompt_tokens BIGINT NOT NULL,
  completion_tokens BIGINT NOT NULL,
  cost DOUBLE PRECISION NOT NULL,
  prompt_chars BIGINT NOT NULL,
  response_chars BIGINT NOT NULL,
  h0 BIGINT NOT NULL DEFAULT 0,
  h1 BIGINT NOT NULL DEFAULT 0,
  h2 BIGINT NOT NULL DEFAULT 0,
  h3 BIGINT NOT NULL DEFAULT 0,
  h4 BIGINT NOT NULL DEFAULT 0,
  h5 BIGINT NOT NULL DEFAULT 0,
  h6 BIGINT NOT NULL DEFAULT 0,
  h7 BIGINT NOT NULL DEFAULT 0,
  h8 BIGINT NOT NULL DEFAULT 0,
  h9 BIGINT NOT NULL DEFAULT 0,
  h10 BIGINT NOT NULL DEFAULT 0,
  h11 BIGINT NOT NULL DEFAULT 0,
  h12 BIGINT NOT NULL DEFAULT 0,
  h13 BIGINT NOT NULL DEFAULT 0,
  h14 BIGINT NOT NULL DEFAULT 0,
  h15 BIGINT NOT NULL DEFAULT 0,
  h16 BIGINT NOT NULL DEFAULT 0,
  h17 BIGINT NOT NULL DEFAULT 0,
  h18 BIGINT NOT NULL DEFAULT 0,
  h19 BIGINT NOT NULL DEFAULT 0,
  h20 BIGINT NOT NULL DEFAULT 0,
  h21 BIGINT NOT NULL DEFAULT 0,
  h22 BIGINT NOT NULL DEFAULT 0,
  h23 BIGINT NOT NULL DEFAULT 0,
  h24 BIGINT NOT NULL DEFAULT 0,
  h25 BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket_ms, model, outcome)
);

CREATE TABLE rollup_hour (
  bucket_ms BIGINT NOT NULL,
  model TEXT NOT NULL,
  outcome TEXT NOT NULL,
  requests BIGINT NOT NULL,
  errors BIGINT NOT NULL,
  blocked BIGINT NOT NULL,
  threats_low BIGINT NOT NULL,
  threats_medium BIGINT NOT NULL,
  threats_high BIGINT NOT NULL,
  threats_critical BIGINT NOT NULL,
  latency_sum_us BIGINT NOT NULL,
  latency_max_us BIGINT NOT NULL,
  prompt_tokens BIGINT NOT NULL,
  completion_tokens BIGINT NOT NULL,
  cost DOUBLE PRECISION NOT NULL,
  prompt_chars BIGINT NOT NULL,
  response_chars BIGINT NOT NULL,
  h0 BIGINT NOT NULL DEFAULT 0,
  h1 BIGINT NOT NULL DEFAULT 0,
  h2 BIGINT NOT NULL DEFAULT 0,
  h3 BIGINT NOT NULL DEFAULT 0,
  h4 BIGINT NOT NULL DEFAULT 0,
  h5 BIGINT NOT NULL DEFAULT 0,
  h6 BIGINT NOT NULL DEFAULT 0,
  h7 BIGINT NOT NULL DEFAULT 0,
  h8 BIGINT NOT NULL DEFAULT 0,
  h9 BIGINT NOT NULL DEFAULT 0,
  h10 BIGINT NOT NULL DEFAULT 0,
  h11 BIGINT NOT NULL DEFAULT 0,
  h12 BIGINT NOT NULL DEFAULT 0,
  h13 BIGINT NOT NULL DEFAULT 0,
  h14 BIGINT NOT NULL DEFAULT 0,
  h15 BIGINT NOT NULL DEFAULT 0,
  h16 BIGINT NOT NULL DEFAULT 0,
  h17 BIGINT NOT NULL DEFAULT 0,
  h18 BIGINT NOT NULL DEFAULT 0,
  h19 BIGINT NOT NULL DEFAULT 0,
  h20 BIGINT NOT NULL DEFAULT 0,
  h21 BIGINT NOT NULL DEFAULT 0,
  h22 BIGINT NOT NULL DEFAULT 0,
  h23 BIGINT NOT NULL DEFAULT 0,
  h24 BIGINT NOT NULL DEFAULT 0,
  h25 BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (bucket_ms, model, outcome)
);

-- Per-user hourly rollup (identified users only): unique users and top users over weeks.
CREATE TABLE rollup_user_hour (
  bucket_ms BIGINT NOT NULL,
  "user" TEXT NOT NULL,
  requests BIGINT NOT NULL,
  errors BIGINT NOT NULL,
  blocked BIGINT NOT NULL,
  threats BIGINT NOT NULL,
  tokens BIGINT NOT NULL,
  cost DOUBLE PRECISION NOT NULL,
  latency_sum_us BIGINT NOT NULL,
  PRIMARY KEY (bucket_ms, "user")
);

-- The same per user and UTC day: long windows read days and only their edge hours.
CREATE TABLE rollup_user_day (
  bucket_ms BIGINT NOT NULL,
  "user" TEXT NOT NULL,
  requests BIGINT NOT NULL,
  errors BIGINT NOT NULL,
  blocked BIGINT NOT NULL,
  threats BIGINT NOT NULL,
  tokens BIGINT NOT NULL,
  cost DOUBLE PRECISION NOT NULL,
  latency_sum_us BIGINT NOT NULL,
  PRIMARY KEY (bucket_ms, "user")
);

-- User feedback on a request (POST /api/feedback).
CREATE TABLE feedback (
  fid BIGSERIAL PRIMARY KEY,
  request_id TEXT NOT NULL,
  ts_ms BIGINT NOT NULL,
  score DOUBLE PRECISION NOT NULL,
  comment TEXT
);
CREATE INDEX feedback_ts ON feedback (ts_ms);
CREATE INDEX feedback_request ON feedback (request_id);
