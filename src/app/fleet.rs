//! Fleet mode (several replicas on one PostgreSQL store): what each replica syncs from the
//! others through the store, every `SYNC_EVERY`, off the hot path.
//!
//! - **Per-user behaviour windows.** Each replica's window only sees its own share of a user's
//!   requests; the sync reads all replicas' recent high-risk requests per user and merges them
//!   into the local window (`detect::Behaviour::merge_fleet` says how), so a user spreading
//!   attacks over replicas is escalated on all of them. The proxy only reads the in-memory
//!   window.
//! - **Risk thresholds changed at run time** (`POST /api/config/thresholds`, auto-tuning) on
//!   one replica: the others apply the newest recorded change too. Changes recorded before a
//!   replica started are not applied to it: like a single process after a restart, it starts
//!   from its config file (the change's config diff is what makes it permanent).
//!
//! Alert and scheduled-report de-duplication are claims in the store (`alerts::engine`,
//! `app::reports`), not part of this task.

use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime};

use crate::analytics::unix_ms;
use crate::config::ThresholdsConfig;
use crate::proxy::Proxy;
use crate::report::ApplyFn;
use crate::store::Store;

/// How often a replica syncs with the fleet.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(5);

/// Syncs `proxy` with the store every `every` until aborted or the proxy is gone: the behaviour
/// window over `window` (when behaviour is on) and threshold changes (through `apply`). Holds
/// the proxy weakly: a strong reference would keep its record sender alive and stall the
/// shutdown's drain.
pub(super) async fn sync(
    proxy: Weak<Proxy>,
    store: Store,
    window: Option<Duration>,
    apply: ApplyFn,
    every: Duration,
) {
    let mut seen_change = match store.threshold_changes(1).await {
        Ok(c) => c.first().map(|c| c.id),
        Err(e) => {
            tracing::warn!(error = %e, "fleet threshold sync: history unreadable at start");
            None
        }
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(window) = window {
            sync_behaviour(&proxy, &store, window).await;
        }
        sync_thresholds(&proxy, &store, &apply, &mut seen_change).await;
        if proxy.strong_count() == 0 {
            return;
        }
    }
}

async fn sync_behaviour(proxy: &Weak<Proxy>, store: &Store, window: Duration) {
    let now_ms = unix_ms(SystemTime::now());
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2);
    let rows = match store.high_risk_by_user(now_ms - window_ms).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "fleet behaviour sync skipped");
            return;
        }
    };
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

async fn sync_thresholds(
    proxy: &Weak<Proxy>,
    store: &Store,
    apply: &ApplyFn,
    seen: &mut Option<i64>,
) {
    let newest = match store.threshold_changes(1).await {
        Ok(c) => c.into_iter().next(),
        Err(e) => {
            tracing::warn!(error = %e, "fleet threshold sync skipped");
            return;
        }
    };
    let Some(change) = newest.filter(|c| Some(c.id) != *seen) else {
        return;
    };
    *seen = Some(change.id);
    let new: ThresholdsConfig = match serde_json::from_value(change.new) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, id = change.id, "fleet threshold change unreadable; ignored");
            return;
        }
    };
    let Some(current) = proxy
        .upgrade()
        .map(|p| p.runtime.load().config.detect.thresholds)
    else {
        return;
    };
    if current == new {
        return;
    }
    match apply(new) {
        Ok(()) => {
            tracing::info!(id = change.id, source = %change.source, "risk thresholds changed by another replica; applied")
        }
        Err(e) => tracing::warn!(error = %e, id = change.id, "fleet threshold change not applied"),
    }
}
