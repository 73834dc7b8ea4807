//! Reads and writes for the analysis agent: stored reports, the threshold history, and the
//! per-request figures a report needs that rollups do not keep (risk scores for threshold
//! replay, error counts per upstream, threat counts per day).

use serde::Serialize;
use sqlx::Row;

use super::security::THREAT_LEVELS;
use super::sql::{count, num};
use super::{query_err, Error, Store};

/// Most scored requests one replay reads (the newest); bounds a report's memory on busy
/// gateways at ~10 MB.
pub const MAX_SCORED: i64 = 200_000;

/// One stored report, as written by `report`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StoredReport {
    pub id: String,
    pub created_ms: i64,
    pub period: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub engine: String,
    pub recommendations: i64,
    #[serde(skip)]
    pub json: String,
    #[serde(skip)]
    pub markdown: String,
    #[serde(skip)]
    pub html: String,
}

/// One request with a risk score above zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub user: Option<String>,
    pub score: f64,
}

/// Requests and errors of one upstream.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UpstreamCount {
    pub upstream: String,
    pub requests: u64,
    pub errors: u64,
}

/// Threatening requests (medium risk or above) of one key (a category or a user) on one UTC
/// day.
#[derive(Clone, Debug, PartialEq)]
pub struct DailyThreats {
    pub day_ms: i64,
    pub key: String,
    pub requests: u64,
}

/// One change of the risk thresholds (values as JSON text, as given).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ThresholdChange {
    pub id: i64,
    pub ts_ms: i64,
    pub source: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
    pub effect: serde_json::Value,
}

impl Store {
    /// Stores a report.
    ///
    /// # Errors
    /// The insert fails.
    pub async fn insert_report(&self, r: &StoredReport) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO reports (id, created_ms, period, from_ms, to_ms, engine, \
             recommendations, json, markdown, html) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.id)
        .bind(r.created_ms)
        .bind(&r.period)
        .bind(r.from_ms)
        .bind(r.to_ms)
        .bind(&r.engine)
        .bind(r.recommendations)
        .bind(&r.json)
        .bind(&r.markdown)
        .bind(&r.html)
        .execute(&self.write)
        .await
        .map_err(query_err("insert report"))?;
        Ok(())
    }

    /// At most `limit` reports (without their bodies), newest first, starting after
    /// `after` = (created_ms, id) of the last report of the previous page.
    ///
    /// # Errors
    /// The query fails.
    pub async fn reports(
        &self,
        limit: u32,
        after: Option<(i64, &str)>,
    ) -> Result<Vec<StoredReport>, Error> {
        let (page, limit_at) = if after.is_some() {
            (
                "WHERE created_ms < $1 OR (created_ms = $2 AND id < $3) ",
                "$4",
            )
        } else {
            ("", "$1")
        };
        let sql = format!(
            "SELECT id, created_ms, period, from_ms, to_ms, engine, recommendations, \
             '' AS json, '' AS markdown, '' AS html FROM reports {page}\
             ORDER BY created_ms DESC, id DESC LIMIT {limit_at}"
        );
        let mut q = sqlx::query(&sql);
        if let Some((ms, id)) = after {
            q = q.bind(ms).bind(ms).bind(id.to_owned());
        }
        let rows = q
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(query_err("list reports"))?;
        rows.iter()
            .map(report_from_row)
            .collect::<Result<_, _>>()
            .map_err(query_err("list reports"))
    }

    /// Deletes the reports created before `cutoff_ms`; returns how many.
    ///
    /// # Errors
    /// The delete fails.
    pub async fn delete_reports_before(&self, cutoff_ms: i64) -> Result<u64, Error> {
        let r = sqlx::query("DELETE FROM reports WHERE created_ms < $1")
            .bind(cutoff_ms)
            .execute(&self.write)
            .await
            .map_err(query_err("delete old reports"))?;
        Ok(r.rows_affected())
    }

    /// One report with its bodies; `None` when there is no such id. `latest` picks the newest.
    ///
    /// # Errors
    /// The query fails.
    pub async fn report(&self, id: Option<&str>) -> Result<Option<StoredReport>, Error> {
        let q = match id {
            Some(id) => sqlx::query("SELECT * FROM reports WHERE id = $1").bind(id.to_owned()),
            None => sqlx::query("SELECT * FROM reports ORDER BY created_ms DESC, id DESC LIMIT 1"),
        };
        let row = q
            .fetch_optional(&self.read)
            .await
            .map_err(query_err("read report"))?;
        row.as_ref()
            .map(report_from_row)
            .transpose()
            .map_err(query_err("read report"))
    }

    /// Requests in `[since_ms, until_ms)` with a risk score above zero (the newest
    /// `MAX_SCORED`), and the number of scanned requests (score present, zero included).
    ///
    /// # Errors
    /// The query fails.
    pub async fn scored_requests(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<(Vec<Scored>, u64), Error> {
        let rows = sqlx::query(
            "SELECT \"user\", risk_score FROM requests WHERE ts_ms >= $1 AND ts_ms < $2 \
             AND risk_score > 0 ORDER BY ts_ms DESC LIMIT $3",
        )
        .bind(since_ms)
        .bind(until_ms)
        .bind(MAX_SCORED)
        .fetch_all(&self.read)
        .await
        .map_err(query_err("scored requests"))?;
        let scored = rows
            .iter()
            .map(|r| {
                Ok(Scored {
                    user: r.try_get("user")?,
                    score: num(r, "risk_score")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_err("scored requests"))?;
        let scanned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM requests WHERE ts_ms >= $1 AND ts_ms < $2 \
             AND risk_score IS NOT NULL",
        )
        .bind(since_ms)
        .bind(until_ms)
        .fetch_one(&self.read)
        .await
        .map_err(query_err("scanned requests"))?;
        Ok((scored, scanned.max(0) as u64))
    }

    /// Requests and errors (as `Exchange::counts_as_error` counts them) per upstream.
    ///
    /// # Errors
    /// The query fails.
    pub async fn upstream_counts(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<UpstreamCount>, Error> {
        let rows = sqlx::query(
            "SELECT upstream, COUNT(*) AS requests, \
             SUM(CASE WHEN outcome IN ('upstream_error', 'stream_error', 'failed') \
                 AND (blame IS NULL OR blame <> 'client') THEN 1 ELSE 0 END) AS errors \
             FROM requests WHERE ts_ms >= $1 AND ts_ms < $2 AND upstream IS NOT NULL \
             GROUP BY upstream ORDER BY upstream",
        )
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.read)
        .await
        .map_err(query_err("upstream counts"))?;
        rows.iter()
            .map(|r| {
                Ok(UpstreamCount {
                    upstream: r.try_get("upstream")?,
                    requests: count(r, "requests")?,
                    errors: count(r, "errors")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("upstream counts"))
    }

    /// Threatening requests (medium risk or above) per UTC day and category (`by_user` false)
    /// or user (true).
    ///
    /// # Errors
    /// The query fails.
    pub async fn daily_threats(
        &self,
        since_ms: i64,
        until_ms: i64,
        by_user: bool,
    ) -> Result<Vec<DailyThreats>, Error> {
        let key = if by_user { "\"user\"" } else { "category" };
        let sql = format!(
            "SELECT (ts_ms / 86400000) * 86400000 AS day, {key} AS k, \
             COUNT(DISTINCT request_id) AS n FROM security_matches \
             WHERE ts_ms >= $1 AND ts_ms < $2 AND {key} IS NOT NULL AND {THREAT_LEVELS} \
             GROUP BY day, k ORDER BY day, k"
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .bind(until_ms)
            .fetch_all(&self.read)
            .await
            .map_err(query_err("daily threats"))?;
        rows.iter()
            .map(|r| {
                Ok(DailyThreats {
                    day_ms: r.try_get("day")?,
                    key: r.try_get("k")?,
                    requests: count(r, "n")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("daily threats"))
    }

    /// Records a threshold change; returns its id.
    ///
    /// # Errors
    /// The insert fails.
    pub async fn insert_threshold_change(
        &self,
        ts_ms: i64,
        source: &str,
        old: &serde_json::Value,
        new: &serde_json::Value,
        effect: &serde_json::Value,
    ) -> Result<i64, Error> {
        let r = sqlx::query(
            "INSERT INTO threshold_changes (ts_ms, source, old, new, effect) \
             VALUES ($1, $2, $3, $4, $5) RETURNING cid",
        )
        .bind(ts_ms)
        .bind(source)
        .bind(old.to_string())
        .bind(new.to_string())
        .bind(effect.to_string())
        .fetch_one(&self.write)
        .await
        .map_err(query_err("insert threshold change"))?;
        r.try_get("cid")
            .map_err(query_err("insert threshold change"))
    }

    /// The newest `limit` threshold changes, newest first.
    ///
    /// # Errors
    /// The query fails.
    pub async fn threshold_changes(&self, limit: u32) -> Result<Vec<ThresholdChange>, Error> {
        let rows = sqlx::query("SELECT * FROM threshold_changes ORDER BY cid DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(query_err("threshold changes"))?;
        let json = |r: &sqlx::any::AnyRow, c: &str| -> Result<serde_json::Value, sqlx::Error> {
            let s: String = r.try_get(c)?;
            Ok(serde_json::from_str(&s).unwrap_or(serde_json::Value::Null))
        };
        rows.iter()
            .map(|r| {
                Ok(ThresholdChange {
                    id: r.try_get("cid")?,
                    ts_ms: r.try_get("ts_ms")?,
                    source: r.try_get("source")?,
                    old: json(r, "old")?,
                    new: json(r, "new")?,
                    effect: json(r, "effect")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("threshold changes"))
    }
}

fn report_from_row(r: &sqlx::any::AnyRow) -> Result<StoredReport, sqlx::Error> {
    Ok(StoredReport {
        id: r.try_get("id")?,
        created_ms: r.try_get("created_ms")?,
        period: r.try_get("period")?,
        from_ms: r.try_get("from_ms")?,
        to_ms: r.try_get("to_ms")?,
        engine: r.try_get("engine")?,
        recommendations: r.try_get("recommendations")?,
        json: r.try_get("json")?,
        markdown: r.try_get("markdown")?,
        html: r.try_get("html")?,
    })
}
