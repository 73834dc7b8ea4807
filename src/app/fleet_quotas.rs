//! Fleet mode: the rate counters of keys, teams, models and the gateway, shared with the other
//! replicas through the store every `quotas.sync_ms` (`quota::fleet` says how, and what is not
//! shared). Off the request path: admission only reads what the last sync left in memory.
//!
//! One sync: write this replica's changed counts (one transaction), read the sum of the other
//! replicas' counts for open windows (one query), set each counter's fleet share, delete rows
//! of ended windows. If the store fails, the fleet shares stay as the last sync left them (a
//! window that ends drops its share all the same) and the next sync tries again: a replica cut
//! off from the store goes on limiting with what it knew, never refusing everything.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::analytics::unix_ms;
use crate::proxy::Proxy;
use crate::quota::{apply_fleet, Counter, Ledger, Scope, Tally};
use crate::store::{QuotaCount, Store};

/// Syncs `proxy`'s shared counters through `store` as `instance` (one process: its rows are
/// its own) every `quotas.sync_ms` of the live config, until the proxy is gone. Holds the
/// proxy weakly, as `fleet::sync` does.
pub(super) async fn run(proxy: Weak<Proxy>, store: Store, instance: String) {
    let mut ledger = Ledger::default();
    let mut failing = false;
    // The first sync at once: a replica that starts late in a window learns what the fleet
    // used before it admits for a whole interval blind.
    loop {
        let Some((scopes, every)) = proxy
            .upgrade()
            .map(|p| (shared(&p), p.runtime.load().config.quotas.sync_ms))
        else {
            return;
        };
        match sync(&scopes, &store, &instance, &mut ledger).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("fleet quota sync works again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "fleet quota sync failed; limits count with the fleet's last known share until it works again");
            }
            Err(e) => tracing::debug!(error = %e, "fleet quota sync failed again"),
        }
        tokio::time::sleep(Duration::from_millis(every)).await;
    }
}

/// Every shared scope by its fleet-wide id: the live runtime's and the virtual keys'.
fn shared(proxy: &Proxy) -> Vec<(String, Arc<Scope>)> {
    let mut scopes = proxy.runtime.load().shared_scopes();
    scopes.extend(proxy.keys.shared());
    scopes
}

async fn sync(
    scopes: &[(String, Arc<Scope>)],
    store: &Store,
    instance: &str,
    ledger: &mut Ledger,
) -> Result<(), crate::store::Error> {
    let by_id = || scopes.iter().map(|(id, s)| (id.as_str(), &**s));
    let now_ms = unix_ms(SystemTime::now());
    let changed = ledger.changes(by_id(), now_ms);
    let rows: Vec<QuotaCount> = changed.iter().map(row).collect();
    store.put_quota_counts(instance, &rows).await?;
    ledger.commit(&changed, now_ms);
    let others = store.others_quota_counts(instance, now_ms).await?;
    let others: Vec<Tally> = others.into_iter().filter_map(tally).collect();
    apply_fleet(by_id(), &others, unix_ms(SystemTime::now()));
    store.purge_quota_counts(now_ms).await?;
    Ok(())
}

fn row(t: &Tally) -> QuotaCount {
    QuotaCount {
        scope: t.scope.clone(),
        counter: t.counter.as_str().to_owned(),
        window: t.window,
        used: i64::try_from(t.used).unwrap_or(i64::MAX),
        ends_ms: t.ends_ms,
    }
}

/// A stored row as a tally; `None` for a counter this version does not know (a newer
/// replica's).
fn tally(r: QuotaCount) -> Option<Tally> {
    Some(Tally {
        counter: Counter::parse(&r.counter)?,
        scope: r.scope,
        window: r.window,
        used: u64::try_from(r.used).unwrap_or(0),
        ends_ms: r.ends_ms,
    })
}
