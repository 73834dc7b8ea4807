//! Fleet mode: the rate counters and budgets of keys, teams, models and the gateway, shared with
//! the other replicas through the store every `quotas.sync_ms` (`quota::fleet` says how, and
//! what is not shared). Off the request path: admission only reads what the last sync left in
//! memory.
//!
//! One sync: write this replica's changed counts and spend (one transaction), read the sum of
//! the other replicas' rows for open windows and budget periods (one query), set each counter's
//! and budget's fleet share, delete rows of ended windows. At start, one read comes before the
//! budgets are seeded from the stored records ([`first`]), so the seed counts only what no
//! replica's row holds. If the store fails, the fleet shares stay as the last sync left them (a
//! window that ends drops its share all the same) and the next sync tries again: a replica cut
//! off from the store goes on limiting with what it knew, never refusing everything.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;

use crate::analytics::unix_ms;
use crate::proxy::Proxy;
use crate::quota::{apply_fleet, Ledger, Meter, Scope, Tally};
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
        let Some((scopes, zone, every)) = proxy
            .upgrade()
            .map(|p| (shared(&p), zone(&p), p.runtime.load().config.quotas.sync_ms))
        else {
            return;
        };
        match sync(&scopes, &zone, &store, &instance, &mut ledger).await {
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

/// Reads the fleet's shares once, before the budgets are seeded at start (`instance` is new:
/// every row in the store, this replica's earlier runs' included, is another's). A failure is
/// logged and the shares stay at zero: the seed then counts the stored records whole, and the
/// first sync that works adds the rows on top (budgets count some spend twice and refuse
/// early until the period ends, never late).
pub(super) async fn first(proxy: &Proxy, store: &Store, instance: &str) {
    if let Err(e) = sync(
        &shared(proxy),
        &zone(proxy),
        store,
        instance,
        &mut Ledger::default(),
    )
    .await
    {
        tracing::warn!(error = %e, "fleet quota sync failed at start; budgets may count the fleet's spend this period twice");
    }
}

/// Every shared scope by its fleet-wide id: the live runtime's and the virtual keys'.
fn shared(proxy: &Proxy) -> Vec<(String, Arc<Scope>)> {
    let mut scopes = proxy.runtime.load().shared_scopes();
    scopes.extend(proxy.keys.shared());
    scopes
}

/// The zone budget periods follow, of the live config.
fn zone(proxy: &Proxy) -> TimeZone {
    proxy.runtime.load().quotas.zone().clone()
}

async fn sync(
    scopes: &[(String, Arc<Scope>)],
    zone: &TimeZone,
    store: &Store,
    instance: &str,
    ledger: &mut Ledger,
) -> Result<(), crate::store::Error> {
    let by_id = || scopes.iter().map(|(id, s)| (id.as_str(), &**s));
    let now_ms = unix_ms(SystemTime::now());
    let changed = ledger.changes(by_id(), now_ms, zone);
    let rows: Vec<QuotaCount> = changed.iter().map(row).collect();
    store.put_quota_counts(instance, &rows).await?;
    ledger.commit(&changed, now_ms, zone);
    let others = store.others_quota_counts(instance, now_ms).await?;
    let others: Vec<Tally> = others.into_iter().filter_map(tally).collect();
    apply_fleet(by_id(), &others, unix_ms(SystemTime::now()), zone);
    store.purge_quota_counts(now_ms).await?;
    Ok(())
}

fn row(t: &Tally) -> QuotaCount {
    QuotaCount {
        scope: t.scope.clone(),
        counter: t.meter.as_str().to_owned(),
        window: t.window,
        used: i64::try_from(t.used).unwrap_or(i64::MAX),
        ends_ms: t.ends_ms,
    }
}

/// A stored row as a tally; `None` for a meter this version does not know (a newer
/// replica's).
fn tally(r: QuotaCount) -> Option<Tally> {
    Some(Tally {
        meter: Meter::parse(&r.counter)?,
        scope: r.scope,
        window: r.window,
        used: u64::try_from(r.used).unwrap_or(0),
        ends_ms: r.ends_ms,
    })
}
