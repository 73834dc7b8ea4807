//! Reads over `security_matches`: the paged event list and the per-category and per-user
//! counts the security summary needs. A security event is one detector match; its request's
//! level, action and blocked flag are copied onto it at write time so no join is needed.

use crate::detect::Category;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::read::{page, push_after, push_range, rfc3339, Cursor, Page};
use super::sql::{count, flag, Sql};
use super::{query_err, Error, Store};

/// One detector match with its request's context.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct MatchRow {
    pub request_id: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub ts_ms: i64,
    pub user: Option<String>,
    pub model: Option<String>,
    pub risk_level: String,
    pub action: String,
    pub blocked: bool,
    pub category: String,
    pub rule: String,
    pub weight: f64,
    pub segment: i64,
    pub span_start: i64,
    pub span_end: i64,
    pub snippet: String,
    #[serde(skip)]
    pub mid: i64,
}

/// Security-event filters; all optional, combined with AND. Times are unix ms, `until` exclusive.
#[derive(Clone, Debug, Default)]
pub struct SecurityFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Exact level of the request (`low`, `medium`, `high`, `critical`).
    pub risk_level: Option<String>,
    pub category: Option<String>,
    pub user: Option<String>,
    pub oldest_first: bool,
}

/// A user with threats in a range.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Offender {
    pub user: String,
    /// Requests with at least one match.
    pub requests: u64,
    pub matches: u64,
    pub blocked: u64,
    /// Highest level seen.
    pub max_level: String,
}

const LEVELS: [&str; 5] = ["none", "low", "medium", "high", "critical"];

/// The SQL condition on `security_matches` of a threatening request: medium risk or above.
pub(crate) const THREAT_LEVELS: &str = "risk_level IN ('medium', 'high', 'critical')";

fn match_from_row(r: &AnyRow) -> Result<MatchRow, sqlx::Error> {
    let ts_ms: i64 = r.try_get("ts_ms")?;
    Ok(MatchRow {
        mid: r.try_get("mid")?,
        request_id: r.try_get("request_id")?,
        timestamp: rfc3339(ts_ms),
        ts_ms,
        user: r.try_get("user")?,
        model: r.try_get("model")?,
        risk_level: r.try_get("risk_level")?,
        action: r.try_get("action")?,
        blocked: flag(r, "blocked")?,
        category: r.try_get("category")?,
        rule: r.try_get("rule")?,
        weight: r.try_get("weight")?,
        segment: r.try_get("segment")?,
        span_start: r.try_get("span_start")?,
        span_end: r.try_get("span_end")?,
        snippet: r.try_get("snippet")?,
    })
}

impl Store {
    /// One page of security events, at most `limit` after `after`.
    ///
    /// # Errors
    /// The query fails.
    pub async fn security_events(
        &self,
        f: &SecurityFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<MatchRow>, Error> {
        let mut qb = Sql::new(self.dialect, "SELECT * FROM security_matches WHERE 1=1");
        push_range(&mut qb, f.since_ms, f.until_ms);
        let eq = [
            ("risk_level", &f.risk_level),
            ("category", &f.category),
            ("\"user\"", &f.user),
        ];
        for (col, val) in eq {
            if let Some(v) = val {
                qb.push(&format!(" AND {col} = ")).bind(v.clone());
            }
        }
        if let Some(c) = after {
            push_after(&mut qb, c, "mid", f.oldest_first);
        }
        let dir = if f.oldest_first { "ASC" } else { "DESC" };
        qb.push(&format!(" ORDER BY ts_ms {dir}, mid {dir} LIMIT "))
            .bind(i64::from(limit));
        let rows = qb
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(query_err("security events"))?;
        let items = rows
            .iter()
            .map(match_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("security events"))?;
        Ok(page(items, limit, |m| Cursor {
            ts_ms: m.ts_ms,
            rid: m.mid,
        }))
    }

    /// Requests with a match per category in `[since_ms, until_ms)`, most first.
    ///
    /// # Errors
    /// The query fails.
    pub async fn threats_by_category(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(String, u64)>, Error> {
        let rows = sqlx::query(
            "SELECT category, COUNT(DISTINCT request_id) AS n FROM security_matches \
             WHERE ts_ms >= $1 AND ts_ms < $2 GROUP BY category ORDER BY n DESC, category",
        )
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.read)
        .await
        .map_err(query_err("threats by category"))?;
        rows.iter()
            .map(|r| Ok((r.try_get("category")?, count(r, "n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("threats by category"))
    }

    /// The `n` users with the most requests with a match in `[since_ms, until_ms)`, at any
    /// level.
    ///
    /// # Errors
    /// The query fails.
    pub async fn top_offenders(
        &self,
        since_ms: i64,
        until_ms: i64,
        n: u32,
    ) -> Result<Vec<Offender>, Error> {
        self.offenders(since_ms, until_ms, n, "1=1").await
    }

    /// The `n` users with the most threatening requests in `[since_ms, until_ms)`: requests at
    /// medium risk or above ([`THREAT_LEVELS`]); a match at none or low is one weak signal.
    ///
    /// # Errors
    /// The query fails.
    pub async fn threat_offenders(
        &self,
        since_ms: i64,
        until_ms: i64,
        n: u32,
    ) -> Result<Vec<Offender>, Error> {
        self.offenders(since_ms, until_ms, n, THREAT_LEVELS).await
    }

    /// Offenders among the matches that pass `filter` (a fixed SQL condition, never input).
    async fn offenders(
        &self,
        since_ms: i64,
        until_ms: i64,
        n: u32,
        filter: &str,
    ) -> Result<Vec<Offender>, Error> {
        let sql = format!(
            "SELECT \"user\", COUNT(DISTINCT request_id) AS requests, COUNT(*) AS matches, \
             COUNT(DISTINCT CASE WHEN blocked <> 0 THEN request_id END) AS blocked, \
             MAX(CASE risk_level WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 \
             WHEN 'critical' THEN 4 ELSE 0 END) AS lvl FROM security_matches \
             WHERE ts_ms >= $1 AND ts_ms < $2 AND \"user\" IS NOT NULL AND {filter} \
             GROUP BY \"user\" ORDER BY requests DESC, \"user\" LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .bind(until_ms)
            .bind(i64::from(n))
            .fetch_all(&self.read)
            .await
            .map_err(query_err("top offenders"))?;
        rows.iter()
            .map(|r| {
                let lvl = count(r, "lvl")? as usize;
                Ok(Offender {
                    user: r.try_get("user")?,
                    requests: count(r, "requests")?,
                    matches: count(r, "matches")?,
                    blocked: count(r, "blocked")?,
                    max_level: LEVELS.get(lvl).copied().unwrap_or("none").to_owned(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("top offenders"))
    }

    /// Per identified user: offences since `since_ms` (the requests
    /// `detect::Verdict::counts_as_offence` counts: level high or critical, not an escalation,
    /// with two distinct hostile rules or one weighted as high on its own), and the newest one's
    /// time. What each replica's behaviour window merges from the fleet
    /// (`detect::Behaviour::merge_fleet`).
    ///
    /// # Errors
    /// The query fails.
    pub async fn high_risk_by_user(&self, since_ms: i64) -> Result<Vec<(String, u32, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT \"user\", COUNT(*) AS n, MAX(ts_ms) AS last_ms FROM requests r \
             WHERE ts_ms >= $1 AND risk_level IN ('high', 'critical') AND \"user\" IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM security_matches m \
             WHERE m.request_id = r.id AND m.rule = $2) \
             AND ((SELECT COUNT(DISTINCT m.rule) FROM security_matches m \
                   WHERE m.request_id = r.id AND m.category NOT IN ($3, $4, $5) \
                   AND NOT (m.rule LIKE $8 AND m.weight <= 0)) >= 2 \
               OR EXISTS (SELECT 1 FROM security_matches m WHERE m.request_id = r.id \
                   AND m.category NOT IN ($3, $4, $5) AND m.weight >= $6 \
                   AND m.rule NOT LIKE $7)) \
             GROUP BY \"user\"",
        )
        .bind(since_ms)
        .bind(crate::detect::behaviour::ESCALATION_RULE)
        .bind(Category::Obfuscation.as_str())
        .bind(Category::SecretsInPrompt.as_str())
        .bind(Category::PiiInPrompt.as_str())
        .bind(f64::from(crate::detect::verdict::SELF_EVIDENT_WEIGHT))
        .bind(format!("{}%", crate::detect::verdict::LEARNED_PREFIX))
        .bind(format!("{}%", crate::detect::verdict::JUDGE_PREFIX))
        .fetch_all(&self.read)
        .await
        .map_err(query_err("high-risk requests by user"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("user")?,
                    u32::try_from(count(r, "n")?).unwrap_or(u32::MAX),
                    r.try_get("last_ms")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("high-risk requests by user"))
    }
}
