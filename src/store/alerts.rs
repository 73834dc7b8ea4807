//! Alerts and their delivery attempts: one row per alert (inserted when it fires, updated when
//! it resolves) and one row per attempt to deliver one of its notices to one channel. Written
//! straight through the write pool (a handful of rows a minute at most, so no batching), read
//! back for `GET /api/alerts`.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::{flag, Sql};
use super::{query_err, rfc3339, Error, Store};

/// One alert. `figures` is the JSON object of the values the rule saw.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    /// What the alert is about within its rule (an upstream, a user, a metric; `-` for none).
    pub subject: String,
    pub level: String,
    /// `firing`, `resolved` or `test`.
    pub state: String,
    pub started_ms: i64,
    pub started_at: String,
    pub resolved_ms: Option<i64>,
    pub resolved_at: Option<String>,
    pub summary: String,
    pub figures: serde_json::Value,
    /// Filled by `Store::alerts` when asked for.
    pub deliveries: Vec<DeliveryRow>,
}

/// One delivery attempt.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeliveryRow {
    pub alert_id: String,
    /// `fired`, `resolved` or `test`.
    pub notice: String,
    pub channel: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub ts_ms: i64,
    pub ok: bool,
    /// HTTP status (or SMTP reply code) when the channel answered.
    pub status: Option<i64>,
    /// The channel's answer or the error, capped.
    pub answer: String,
}

/// Which alerts to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub state: Option<String>,
    pub level: Option<String>,
    pub rule: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: u32,
}

/// Longest answer kept per attempt, in bytes.
const ANSWER_MAX_BYTES: usize = 1_000;

impl Store {
    /// Stores a new alert (the `deliveries` field is ignored).
    ///
    /// # Errors
    /// The insert fails.
    pub async fn alert_insert(&self, a: &AlertRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO alerts (id, rule, subject, level, state, started_ms, resolved_ms, summary, figures) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.id)
        .bind(&a.rule)
        .bind(&a.subject)
        .bind(&a.level)
        .bind(&a.state)
        .bind(a.started_ms)
        .bind(a.resolved_ms)
        .bind(&a.summary)
        .bind(a.figures.to_string())
        .execute(&self.write)
        .await
        .map_err(query_err("insert alert"))?;
        Ok(())
    }

    /// Marks a firing alert resolved at `at_ms`, with the figures seen when it cleared.
    ///
    /// # Errors
    /// The update fails.
    pub async fn alert_resolve(
        &self,
        id: &str,
        at_ms: i64,
        figures: &serde_json::Value,
    ) -> Result<(), Error> {
        sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_ms = $1, figures = $2 WHERE id = $3 AND state = 'firing'",
        )
        .bind(at_ms)
        .bind(figures.to_string())
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(query_err("resolve alert"))?;
        Ok(())
    }

    /// At start: marks the alerts left firing as resolved (a restart forgets live state, so
    /// what fired before is closed rather than left firing forever), except those another
    /// replica (`instance` is this one) still holds a live claim on; and releases this
    /// replica's own old claims so the keys can fire again.
    ///
    /// # Errors
    /// An update fails.
    pub async fn alerts_close_stale(&self, at_ms: i64, instance: &str) -> Result<u64, Error> {
        let r = sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_ms = $1 WHERE state = 'firing' \
             AND id NOT IN (SELECT alert_id FROM alert_claims \
             WHERE firing = 1 AND until_ms > $1 AND instance <> $2)",
        )
        .bind(at_ms)
        .bind(instance)
        .execute(&self.write)
        .await
        .map_err(query_err("close stale alerts"))?;
        sqlx::query(
            "UPDATE alert_claims SET firing = 0, until_ms = $1 WHERE instance = $2 AND firing = 1",
        )
        .bind(at_ms)
        .bind(instance)
        .execute(&self.write)
        .await
        .map_err(query_err("release old alert claims"))?;
        Ok(r.rows_affected())
    }

    /// Stores one delivery attempt (the answer capped).
    ///
    /// # Errors
    /// The insert fails.
    pub async fn alert_delivery(&self, d: &DeliveryRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO alert_deliveries (alert_id, notice, channel, attempt, ts_ms, ok, status, answer) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&d.alert_id)
        .bind(&d.notice)
        .bind(&d.channel)
        .bind(d.attempt)
        .bind(d.ts_ms)
        .bind(i64::from(d.ok))
        .bind(d.status)
        .bind(super::cap(&d.answer, ANSWER_MAX_BYTES))
        .execute(&self.write)
        .await
        .map_err(query_err("insert alert delivery"))?;
        Ok(())
    }

    /// Alerts matching `f`, newest first, each with its delivery attempts.
    ///
    /// # Errors
    /// A query fails.
    pub async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>, Error> {
        let mut q = Sql::new(
            self.dialect,
            "SELECT id, rule, subject, level, state, started_ms, resolved_ms, summary, figures FROM alerts WHERE 1 = 1",
        );
        let text = [
            (" AND state = ", &f.state),
            (" AND level = ", &f.level),
            (" AND rule = ", &f.rule),
        ];
        for (clause, value) in text {
            if let Some(v) = value {
                q.push(clause).bind(v.clone());
            }
        }
        if let Some(s) = f.since_ms {
            q.push(" AND started_ms >= ").bind(s);
        }
        if let Some(u) = f.until_ms {
            q.push(" AND started_ms < ").bind(u);
        }
        q.push(" ORDER BY started_ms DESC, id DESC LIMIT ")
            .bind(i64::from(f.limit.max(1)));
        let rows = q
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(query_err("alerts"))?;
        let mut out = rows
            .iter()
            .map(alert_row)
            .collect::<Result<Vec<AlertRow>, _>>()
            .map_err(query_err("alerts"))?;
        for a in &mut out {
            a.deliveries = self.alert_deliveries(&a.id).await?;
        }
        Ok(out)
    }

    /// Delivery attempts of one alert, oldest first.
    ///
    /// # Errors
    /// The query fails.
    pub async fn alert_deliveries(&self, alert_id: &str) -> Result<Vec<DeliveryRow>, Error> {
        let rows = sqlx::query(
            "SELECT alert_id, notice, channel, attempt, ts_ms, ok, status, answer FROM alert_deliveries \
             WHERE alert_id = $1 ORDER BY did",
        )
        .bind(alert_id)
        .fetch_all(&self.read)
        .await
        .map_err(query_err("alert deliveries"))?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRow {
                    alert_id: r.try_get("alert_id")?,
                    notice: r.try_get("notice")?,
                    channel: r.try_get("channel")?,
                    attempt: r.try_get("attempt")?,
                    ts_ms: r.try_get("ts_ms")?,
                    ok: flag(r, "ok")?,
                    status: r.try_get("status")?,
                    answer: r.try_get("answer")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("alert deliveries"))
    }

    /// Claims the right to notify alert `alert_id` of (`rule`, `subject`) for this replica
    /// (`instance`) until `until_ms`: true when no other live claim exists (none, or its
    /// `until_ms` has passed at `now_ms`). One statement, so two replicas racing for the same
    /// key cannot both win (PostgreSQL locks the conflicting row; SQLite has one writer).
    ///
    /// # Errors
    /// The statement fails.
    pub async fn alert_claim(
        &self,
        rule: &str,
        subject: &str,
        alert_id: &str,
        instance: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, Error> {
        let won = sqlx::query(
            "INSERT INTO alert_claims (rule, subject, alert_id, instance, firing, until_ms) \
             VALUES ($1, $2, $3, $4, 1, $6) ON CONFLICT (rule, subject) DO UPDATE SET \
             alert_id = excluded.alert_id, instance = excluded.instance, firing = 1, \
             until_ms = excluded.until_ms WHERE alert_claims.until_ms <= $5 RETURNING alert_id",
        )
        .bind(rule)
        .bind(subject)
        .bind(alert_id)
        .bind(instance)
        .bind(now_ms)
        .bind(until_ms)
        .fetch_optional(&self.write)
        .await
        .map_err(query_err("claim alert"))?;
        Ok(won.is_some())
    }

    /// Extends the leases of the alerts this replica still has firing to `until_ms` (called
    /// every evaluation, so a replica that dies lets its claims lapse).
    ///
    /// # Errors
    /// The statement fails.
    pub async fn alert_claims_renew(&self, instance: &str, until_ms: i64) -> Result<u64, Error> {
        let r =
            sqlx::query("UPDATE alert_claims SET until_ms = $1 WHERE instance = $2 AND firing = 1")
                .bind(until_ms)
                .bind(instance)
                .execute(&self.write)
                .await
                .map_err(query_err("renew alert claims"))?;
        Ok(r.rows_affected())
    }

    /// Releases the claim of a resolved alert: it stays closed to the fleet until `until_ms`
    /// (the end of its cool-down).
    ///
    /// # Errors
    /// The statement fails.
    pub async fn alert_claim_release(&self, alert_id: &str, until_ms: i64) -> Result<(), Error> {
        sqlx::query("UPDATE alert_claims SET firing = 0, until_ms = $1 WHERE alert_id = $2")
            .bind(until_ms)
            .bind(alert_id)
            .execute(&self.write)
            .await
            .map_err(query_err("release alert claim"))?;
        Ok(())
    }
}

fn alert_row(r: &AnyRow) -> Result<AlertRow, sqlx::Error> {
    let started_ms: i64 = r.try_get("started_ms")?;
    let resolved_ms: Option<i64> = r.try_get("resolved_ms")?;
    let figures: String = r.try_get("figures")?;
    Ok(AlertRow {
        id: r.try_get("id")?,
        rule: r.try_get("rule")?,
        subject: r.try_get("subject")?,
        level: r.try_get("level")?,
        state: r.try_get("state")?,
        started_ms,
        started_at: rfc3339(started_ms),
        resolved_ms,
        resolved_at: resolved_ms.map(rfc3339),
        summary: r.try_get("summary")?,
        figures: serde_json::from_str(&figures).unwrap_or(serde_json::Value::Null),
        deliveries: Vec::new(),
    })
}
