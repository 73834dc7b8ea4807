//! Alerts and their delivery attempts: one row per alert (inserted when it fires, updated when
//! it resolves) and one row per attempt to deliver one of its notices to one channel. Written
//! straight through the write pool (a handful of rows a minute at most, so no batching), read
//! back for `GET /api/alerts`.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            "UPDATE alerts SET state = 'resolved', resolved_ms = ?, figures = ? WHERE id = ? AND state = 'firing'",
        )
        .bind(at_ms)
        .bind(figures.to_string())
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(query_err("resolve alert"))?;
        Ok(())
    }

    /// Marks every alert still firing as resolved (at start: a restart forgets live state, so
    /// what fired before it is closed rather than left firing forever).
    ///
    /// # Errors
    /// The update fails.
    pub async fn alerts_close_stale(&self, at_ms: i64) -> Result<u64, Error> {
        let r = sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_ms = ? WHERE state = 'firing'",
        )
        .bind(at_ms)
        .execute(&self.write)
        .await
        .map_err(query_err("close stale alerts"))?;
        Ok(r.rows_affected())
    }

    /// Stores one delivery attempt (the answer capped).
    ///
    /// # Errors
    /// The insert fails.
    pub async fn alert_delivery(&self, d: &DeliveryRow) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO alert_deliveries (alert_id, notice, channel, attempt, ts_ms, ok, status, answer) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, rule, subject, level, state, started_ms, resolved_ms, summary, figures FROM alerts WHERE 1 = 1",
        );
        let text = [
            (" AND state = ", &f.state),
            (" AND level = ", &f.level),
            (" AND rule = ", &f.rule),
        ];
        for (clause, value) in text {
            if let Some(v) = value {
                q.push(clause).push_bind(v.clone());
            }
        }
        if let Some(s) = f.since_ms {
            q.push(" AND started_ms >= ").push_bind(s);
        }
        if let Some(u) = f.until_ms {
            q.push(" AND started_ms < ").push_bind(u);
        }
        q.push(" ORDER BY started_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(f.limit.max(1)));
        let rows = q
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(query_err("alerts"))?;
        let mut out: Vec<AlertRow> = rows.iter().map(alert_row).collect();
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
             WHERE alert_id = ? ORDER BY did",
        )
        .bind(alert_id)
        .fetch_all(&self.read)
        .await
        .map_err(query_err("alert deliveries"))?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRow {
                alert_id: r.get("alert_id"),
                notice: r.get("notice"),
                channel: r.get("channel"),
                attempt: r.get("attempt"),
                ts_ms: r.get("ts_ms"),
                ok: r.get::<i64, _>("ok") != 0,
                status: r.get("status"),
                answer: r.get("answer"),
            })
            .collect())
    }
}

fn alert_row(r: &SqliteRow) -> AlertRow {
    let started_ms: i64 = r.get("started_ms");
    let resolved_ms: Option<i64> = r.get("resolved_ms");
    let figures: String = r.get("figures");
    AlertRow {
        id: r.get("id"),
        rule: r.get("rule"),
        subject: r.get("subject"),
        level: r.get("level"),
        state: r.get("state"),
        started_ms,
        started_at: rfc3339(started_ms),
        resolved_ms,
        resolved_at: resolved_ms.map(rfc3339),
        summary: r.get("summary"),
        figures: serde_json::from_str(&figures).unwrap_or(serde_json::Value::Null),
        deliveries: Vec::new(),
    }
}
