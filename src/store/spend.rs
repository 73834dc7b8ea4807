//! Spend read back at start, so budgets do not start from zero after a restart: one grouped
//! query over the current budget periods.

use sqlx::Row;

use super::sql::num;
use super::{query_err, Error, Store};

/// Dollars one (key user, end user, team) combination spent since each requested start.
#[derive(Clone, Debug, PartialEq)]
pub struct Spent {
    pub key_user: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    /// One sum per start given to [`Store::spend_since`], in the same order.
    pub usd: Vec<f64>,
}

impl Store {
    /// The cost of the requests stored since each of `starts` (unix ms), grouped by key user,
    /// end user and team. One query, whatever the number of starts (at most a handful: one per
    /// budget period in use).
    ///
    /// # Errors
    /// The query fails.
    pub async fn spend_since(&self, starts: &[i64]) -> Result<Vec<Spent>, Error> {
        let Some(&earliest) = starts.iter().min() else {
            return Ok(Vec::new());
        };
        // The starts are integers we computed, not input: inlined, so the column list can vary.
        let sums: Vec<String> = starts
            .iter()
            .enumerate()
            .map(|(i, s)| format!("SUM(CASE WHEN ts_ms >= {s} THEN cost ELSE 0.0 END) AS s{i}"))
            .collect();
        let sql = format!(
            "SELECT key_user, \"user\", team, {} FROM requests \
             WHERE ts_ms >= $1 AND cost IS NOT NULL GROUP BY key_user, \"user\", team",
            sums.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(earliest)
            .fetch_all(&self.read)
            .await
            .map_err(query_err("spend since"))?;
        rows.iter()
            .map(|r| {
                let usd = (0..starts.len())
                    .map(|i| num(r, &format!("s{i}")))
                    .collect::<Result<Vec<f64>, _>>()?;
                Ok(Spent {
                    key_user: r.try_get("key_user")?,
                    user: r.try_get("user")?,
                    team: r.try_get("team")?,
                    usd,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_err("spend since"))
    }
}
