//! Fleet mode (several replicas on one PostgreSQL store): the per-user behaviour sync.
//!
//! Each replica's behaviour window only sees its own share of a user's requests. Every
//! `SYNC_EVERY` this task reads all replicas' recent high-risk requests per user from the store
//! and merges them into the local window (`detect::Behaviour::merge_fleet` says how), so a user
//! spreading attacks over replicas is escalated on all of them. Off the hot path: the proxy
//! reads only the in-memory window. Alert de-duplication lives with the alert engine (claims).

use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime};

use crate::analytics::unix_ms;
use crate::proxy::Proxy;
use crate::store::Store;

/// How often the behaviour windows are synced with the fleet.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(5);

/// Syncs `proxy`'s behaviour window with the store every `every`, until aborted or the proxy
/// is gone. Holds the proxy weakly: a strong reference would keep its record sender alive and
/// stall the shutdown's drain.
pub(super) async fn sync_behaviour(
    proxy: Weak<Proxy>,
    store: Store,
    window: Duration,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2);
    loop {
        tick.tick().await;
        let now_ms = unix_ms(SystemTime::now());
        match store.high_risk_by_user(now_ms - window_ms).await {
            Ok(rows) => {
                let counts: Vec<(String, u32, Duration)> = rows
                    .into_iter()
                    .map(|(user, n, last_ms)| {
                        let age = u64::try_from(now_ms - last_ms).unwrap_or(0);
                        (user, n, Duration::from_millis(age))
                    })
                    .collect();
                let Some(proxy) = proxy.upgrade() else { return };
                if let Some(b) = proxy.behaviour() {
                    b.merge_fleet(&counts, Instant::now());
                }
            }
            Err(e) => tracing::warn!(error = %e, "fleet behaviour sync skipped"),
        }
    }
}
