//! Fleet mode: the rate counters, budgets and concurrency caps of keys, end users, teams,
//! models and the gateway, shared with the other replicas through the store every
//! `quotas.sync_ms` (`quota::fleet` says how). Off the request path: admission only reads what
//! the last sync left in memory.
//!
//! One sync: write this replica's changed counts and spend (one transaction), read the other
//! replicas' rows written since the last read (one query; all of them the first time), sum
//! them per scope with what was read before, set each counter's, budget's and concurrency
//! cap's fleet share, delete rows of ended windows. At start, one read comes before the
//! budgets are seeded from the stored records ([`first`]), so the seed counts only what no
//! replica's row holds. If the store fails, the fleet shares stay as the last sync left them (a
//! window that ends drops its share all the same) and the next sync tries again: a replica cut
//! off from the store goes on limiting with what it knew, never refusing everything.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::analytics::unix_ms;
use crate::proxy::{Proxy, Runtime};
use crate::quota::{apply_fleet, lease_ms, Ledger, Meter, Others, Scope, Tally};
use crate::store::{QuotaCount, Store};

/// Syncs `proxy`'s shared counters through `store` as `instance` (one process: its rows are
/// its own) every `quotas.sync_ms` of the live config, until the proxy is gone. Holds the
/// proxy weakly, as `fleet::sync` does.
pub(super) async fn run(proxy: Weak<Proxy>, store: Store, instance: String) {
    let (mut ledger, mut others) = (Ledger::default(), Others::default());
    let mut failing = false;
    // The first sync at once: a replica that starts late in a window learns what the fleet
    // used before it admits for a whole interval blind.
    loop {
        let Some(round) = proxy.upgrade().map(|p| Round::of(&p)) else {
            return;
        };
        match sync(&round, &store, &instance, &mut ledger, &mut others).await {
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
        tokio::time::sleep(Duration::from_millis(round.sync_ms)).await;
    }
}

/// Reads the fleet's shares once, before the budgets are seeded at start (`instance` is new:
/// every row in the store, this replica's earlier runs' included, is another's). A failure is
/// logged and the shares stay at zero: the seed then counts the stored records whole, and the
/// first sync that works adds the rows on top (budgets count some spend twice and refuse
/// early until the period ends, never late).
pub(super) async fn first(proxy: &Proxy, store: &Store, instance: &str) {
    let round = Round::of(proxy);
    let (mut ledger, mut others) = (Ledger::default(), Others::default());
    if let Err(e) = sync(&round, store, instance, &mut ledger, &mut others).await {
        tracing::warn!(error = %e, "fleet quota sync failed at start; budgets may count the fleet's spend this period twice");
    }
}

/// What one sync works on, taken from the live config when it starts (a reload during it
/// applies from the next).
struct Round {
    /// Every shared scope by its fleet-wide id: the live runtime's and the virtual keys'.
    scopes: Vec<(String, Arc<Scope>)>,
    runtime: Arc<Runtime>,
    /// `quotas.sync_ms`.
    sync_ms: u64,
}

impl Round {
    fn of(proxy: &Proxy) -> Round {
        let runtime = proxy.runtime.load_full();
        let mut scopes = runtime.shared_scopes();
        scopes.extend(proxy.keys.shared());
        Round {
            scopes,
            sync_ms: runtime.config.quotas.sync_ms,
            runtime,
        }
    }
}

/// One sync: what this replica sent (`ledger`) and what it has read of the others (`others`)
/// carry over to the next.
async fn sync(
    round: &Round,
    store: &Store,
    instance: &str,
    ledger: &mut Ledger,
    others: &mut Others,
) -> Result<(), crate::store::Error> {
    let quotas = &round.runtime.quotas;
    let (zone, lease) = (quotas.zone(), lease_ms(round.sync_ms));
    let by_id = || round.scopes.iter().map(|(id, s)| (id.as_str(), &**s));
    let now_ms = unix_ms(SystemTime::now());
    let changed = ledger.changes(by_id(), now_ms, zone, lease);
    let rows: Vec<QuotaCount> = changed.iter().map(row).collect();
    store.put_quota_counts(instance, &rows, now_ms).await?;
    ledger.commit(&changed, now_ms, zone);
    let read_ms = unix_ms(SystemTime::now());
    let read = store
        .others_quota_counts(instance, others.since(), read_ms)
        .await?;
    let read = read
        .into_iter()
        .filter_map(|(inst, r)| Some((inst, tally(r)?)));
    others.merge(read, read_ms, lease);
    // End users first seen from here on start from these sums (the same handle every time).
    quotas.set_fleet_users(others.sums());
    apply_fleet(by_id(), &others.read(), read_ms, zone);
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
