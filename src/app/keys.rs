//! Keeps the proxy's virtual keys (`proxy::VirtualKeys`) in step with the store's
//! `gateway_keys`: read whole at start (before the proxy serves), every `auth.sync_secs` after,
//! and at once when this replica's admin API has written (it awaits the refresh, so the change
//! applies here before its answer goes out).
//!
//! One refresh at a time (a mutex around read-and-replace): otherwise a periodic read begun
//! before a revocation could finish after the admin's refresh and bring the key back until the
//! next sync. A failed read keeps the keys as they were and is retried at the next tick.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::proxy::Proxy;
use crate::store::{self, Store};

/// Reads the store's keys into the proxy.
pub(super) struct KeySync {
    proxy: Weak<Proxy>,
    store: Store,
    one_at_a_time: Mutex<()>,
}

impl KeySync {
    pub(super) fn new(proxy: &Arc<Proxy>, store: Store) -> Arc<KeySync> {
        Arc::new(KeySync {
            // Weak: the sync must not keep the proxy (and its record sender) alive at shutdown.
            proxy: Arc::downgrade(proxy),
            store,
            one_at_a_time: Mutex::new(()),
        })
    }

    /// Replaces the proxy's keys with the store's; returns how many are live.
    ///
    /// # Errors
    /// The store cannot be read.
    pub(super) async fn refresh(&self) -> Result<usize, store::Error> {
        let _one = self.one_at_a_time.lock().await;
        let rows = self.store.keys().await?;
        Ok(self.proxy.upgrade().map_or(0, |p| p.keys.replace(&rows)))
    }

    /// What the admin API calls after a write: a refresh, logged if it fails (the periodic
    /// sync retries).
    pub(super) fn admin_fn(self: &Arc<KeySync>) -> crate::admin::KeysSyncFn {
        let sync = self.clone();
        Arc::new(move || {
            let sync = sync.clone();
            Box::pin(async move {
                if let Err(e) = sync.refresh().await {
                    tracing::warn!(error = %e, "virtual keys not refreshed after a change; the next sync retries");
                }
            })
        })
    }
}

/// Refreshes every `every` until the proxy is gone.
pub(super) async fn run(sync: Arc<KeySync>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate, and start-up has just read the keys.
    tick.tick().await;
    loop {
        tick.tick().await;
        if sync.proxy.strong_count() == 0 {
            return;
        }
        if let Err(e) = sync.refresh().await {
            tracing::warn!(error = %e, "virtual keys sync failed; keeping the keys as they were");
        }
    }
}
