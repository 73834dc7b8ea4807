-- gatehouse event store, schema 4: what replicas sharing one store coordinate through
-- (harmless with one process: its claims always succeed).

-- Who notifies an alert: the first replica to claim (rule, subject) while no live claim
-- exists. A firing owner renews its lease every evaluation; a resolved alert keeps the claim
-- until its cool-down ends, so the fleet honours the cool-down, not just each replica.
CREATE TABLE alert_claims (
  rule TEXT NOT NULL,
  subject TEXT NOT NULL,
  alert_id TEXT NOT NULL,
  instance TEXT NOT NULL,
  firing INTEGER NOT NULL,
  until_ms INTEGER NOT NULL,
  PRIMARY KEY (rule, subject)
);

-- The per-user behaviour sync reads recent high-risk requests across the fleet.
CREATE INDEX requests_risky ON requests (ts_ms) WHERE risk_level IN ('high', 'critical');
