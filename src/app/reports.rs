//! Wiring of the analysis agent: the closures `report::Reporter` needs (the LLM call through the
//! routed upstream, the live config, applying thresholds to the live runtime, handing digests
//! to the alert channels), the schedule and retention tasks, and the one-shot report of
//! `gatehouse report`.
//!
//! Fleet mode: replicas sharing one store all run the schedules. Each scheduled firing is
//! claimed first through the alert claims (`Store::alert_claim`, one atomic upsert, key
//! `report_schedule` and the period), so one replica writes the report, auto-tunes and sends
//! the digest; the claim stays closed for a while after the due time, then opens for the next
//! firing. With one process every claim succeeds.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use jiff::civil::Date;
use tokio::sync::mpsc;

use crate::alerts::{self, Digest, DigestItem, Message};
use crate::analytics::unix_ms;
use crate::config::{self, Config, DIGEST_CHANNELS};
use crate::proxy::side::{self, SideError};
use crate::proxy::{Proxy, ProxyError, Runtime};
use crate::report::{self, advice, ChatError, ConfigFn, Period, Report, Reporter, Trigger};
use crate::store::Store;

/// How often reports past `report.retention_days` are deleted (each report also prunes).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where the report's LLM call finds the runtime: the live one, or a fixed one for the CLI.
type RuntimeFn = Arc<dyn Fn() -> Option<Arc<Runtime>> + Send + Sync>;

/// The reporter of a running gateway. Holds the proxy weakly: the admin API must not keep the
/// proxy (and its record sender) alive at shutdown. With the alert channels running
/// (`messages`), stored reports can be sent as digests.
pub(super) fn reporter(
    store: Store,
    proxy: &Arc<Proxy>,
    initial: Arc<Config>,
    messages: Option<mpsc::Sender<(Message, Vec<String>)>>,
) -> Reporter {
    let weak = Arc::downgrade(proxy);
    let w = weak.clone();
    let runtime: RuntimeFn = Arc::new(move || w.upgrade().map(|p| p.runtime.load_full()));
    let rt = runtime.clone();
    let config: ConfigFn =
        Arc::new(move || rt().map_or_else(|| initial.clone(), |r| r.config.clone()));
    let reporter = Reporter::new(store, chat(runtime), config.clone(), apply(weak))
        .with_budgets(super::alert_budgets(proxy));
    match messages {
        Some(tx) => reporter.with_digest(send_digest(tx, config)),
        None => reporter,
    }
}

/// Queues a report's digest for the alert channels `report.digest.channels` names (or every
/// channel that takes digests); never waits: a full queue drops it, logged.
fn send_digest(tx: mpsc::Sender<(Message, Vec<String>)>, config: ConfigFn) -> report::DigestFn {
    Arc::new(move |r: &Report| {
        let c = config();
        let d = &c.report.digest;
        let kinds = if d.channels.is_empty() {
            DIGEST_CHANNELS.iter().map(|k| (*k).to_owned()).collect()
        } else {
            d.channels.clone()
        };
        let digest = digest(r, d.top, d.admin_url.as_deref(), &c.alerts.gateway_name);
        if tx.try_send((Message::Digest(digest), kinds)).is_err() {
            tracing::warn!(id = %r.id, "report digest dropped: delivery queue full");
        }
    })
}

/// The digest of a report: its period and engine, the `top` recommendations by priority, and
/// where to read it.
pub(super) fn digest(r: &Report, top: usize, admin_url: Option<&str>, gateway: &str) -> Digest {
    let mut recs: Vec<&report::Recommendation> = r.recommendations.iter().collect();
    recs.sort_by_key(|x| x.priority);
    let path = format!("/api/reports/{}?format=html", r.id);
    Digest {
        report_id: r.id.clone(),
        period: r.period.as_str().into(),
        from: r.from.clone(),
        to: r.to.clone(),
        zone: r.zone.clone(),
        engine: r.engine.label(),
        total: r.recommendations.len(),
        items: recs
            .into_iter()
            .take(top)
            .map(|x| DigestItem {
                priority: x.priority.as_str().into(),
                group: x.group.as_str().into(),
                title: x.title.clone(),
            })
            .collect(),
        link: match admin_url {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => path,
        },
        gateway: gateway.to_owned(),
        created_at: SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(r.created_ms).unwrap_or(0)),
    }
}

/// Warns about digest channels that are listed but not enabled, once at start.
pub(super) fn check_digest_channels(config: &Config, handle: &alerts::Handle) {
    let d = &config.report.digest;
    if !d.enabled {
        return;
    }
    let enabled: Vec<&str> = handle
        .delivery
        .channels
        .0
        .iter()
        .map(|(_, c)| c.kind())
        .collect();
    let wanted: Vec<&str> = if d.channels.is_empty() {
        DIGEST_CHANNELS.to_vec()
    } else {
        d.channels.iter().map(String::as_str).collect()
    };
    if !wanted.iter().any(|k| enabled.contains(k)) {
        tracing::warn!(channels = ?wanted, "report digests are enabled but none of their channels is");
    }
    for k in d.channels.iter().filter(|k| !enabled.contains(&k.as_str())) {
        tracing::warn!(channel = %k, "report.digest.channels names a channel that is not enabled");
    }
}

/// Runs the report schedules until aborted; each firing generates and stores one report
/// (and its digest) on one replica of a fleet.
pub(super) async fn run_schedules(reporter: Reporter, config: ConfigFn) {
    let c = config.clone();
    let schedule = move || c().report.schedule.clone();
    report::schedule::run(unix_ms(SystemTime::now()), schedule, |period, due_ms| {
        let (reporter, config) = (reporter.clone(), config.clone());
        async move {
            let c = config();
            if !c.report.enabled {
                return;
            }
            let instance = c.instance_name();
            let Some(claim) = claim(reporter.store(), period, due_ms, &instance).await else {
                tracing::info!(
                    period = period.as_str(),
                    "scheduled report left to another replica"
                );
                return;
            };
            if let Err(e) = reporter.generate(period, None, Trigger::Schedule).await {
                tracing::warn!(period = period.as_str(), error = %e, "scheduled report failed");
            }
            release(reporter.store(), &claim, due_ms).await;
        }
    })
    .await;
}

/// Replicas sharing a store fire the same schedule at the same time; this long after the due
/// time the claim of a firing stays closed to the others (their clocks may differ this much).
const CLAIM_SKEW_MS: i64 = 10 * 60_000;
/// Lease of a claim while its report is written (renewed by the alert engine while held).
const CLAIM_LEASE_MS: i64 = 60 * 60_000;

/// Claims the scheduled `period` report due at `due_ms` for this replica through the alert
/// claims (key `report_schedule` / period): `Some(claim id)` when this replica writes it. A
/// store error fails open, as the alert engine does: a duplicate report beats a lost one.
async fn claim(store: &Store, period: Period, due_ms: i64, instance: &str) -> Option<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = unix_ms(SystemTime::now());
    let until = now.max(due_ms) + CLAIM_LEASE_MS;
    match store
        .alert_claim(
            "report_schedule",
            period.as_str(),
            &id,
            instance,
            now,
            until,
        )
        .await
    {
        Ok(true) => Some(id),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(error = %e, "report schedule claim failed; writing the report anyway");
            Some(id)
        }
    }
}

/// Ends a claim: closed to the fleet until `CLAIM_SKEW_MS` after the due time, open after.
async fn release(store: &Store, claim: &str, due_ms: i64) {
    if let Err(e) = store
        .alert_claim_release(claim, due_ms + CLAIM_SKEW_MS)
        .await
    {
        tracing::warn!(error = %e, "report schedule claim not released");
    }
}

/// Deletes reports past `report.retention_days` now and then hourly, until aborted (reports
/// are also pruned each time one is stored).
pub(super) async fn run_retention(reporter: Reporter) {
    loop {
        reporter.prune(unix_ms(SystemTime::now())).await;
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// `gatehouse report --period P [--date D]`: one report from the store (the period containing
/// local date `D`, else the previous complete one), through the configured upstream, stored
/// like a scheduled one but without auto-tuning or a digest. Returns it as Markdown.
///
/// # Errors
/// Secrets or policies that cannot be read, a store that cannot be opened or read.
pub async fn report_once(
    config: Config,
    period: Period,
    date: Option<Date>,
) -> anyhow::Result<String> {
    let config = Arc::new(config);
    let (rt, _warnings) = Runtime::build(config.clone()).map_err(|p| anyhow::anyhow!("{p}"))?;
    let rt = Arc::new(rt);
    let store = Store::from_config(&config.store)
        .await
        .with_context(|| format!("opening the store {}", config.store.path.display()))?;
    // No gateway runs here: the budgets are those of the config (keys, teams, models, the
    // gateway, end users), read back from the store's spend as a starting gateway reads them.
    super::budgets::seed(&rt, &[], &store, unix_ms(SystemTime::now())).await;
    let budget_rt = rt.clone();
    let budgets: crate::quota::BudgetsFn = Arc::new(move || {
        let keys = budget_rt.key_scopes().map(|(n, s)| (n, &**s));
        budget_rt
            .quotas
            .budgets(keys, true, unix_ms(SystemTime::now()))
    });
    let runtime: RuntimeFn = Arc::new(move || Some(rt.clone()));
    let reporter = Reporter::new(
        store.clone(),
        chat(runtime),
        Arc::new(move || config.clone()),
        Arc::new(|_| Err("thresholds change only on a running gateway".into())),
    )
    .with_budgets(budgets);
    let r = reporter.generate(period, date, Trigger::Manual).await;
    store.close().await;
    Ok(report::render::markdown(&r?))
}

/// The report's LLM call: `report.model` routed like a client request, sent with the upstream's
/// key and retries, never through the detector or the record stream.
fn chat(runtime: RuntimeFn) -> report::ChatFn {
    Arc::new(move |body| {
        let rt = runtime();
        Box::pin(async move {
            let rt = rt.ok_or(ChatError::Transport("the gateway is shutting down".into()))?;
            let total = Duration::from_secs_f64(rt.config.report.timeout_secs);
            let (status, body) =
                side::post_json(&rt, "/chat/completions", body, advice::CALLER, total)
                    .await
                    .map_err(|e| match e {
                        SideError::NoRoute(m) => ChatError::NoRoute(m),
                        SideError::Timeout(_) => ChatError::Timeout,
                        SideError::Upstream(ProxyError::FirstByteTimeout { .. }) => {
                            ChatError::Timeout
                        }
                        other => ChatError::Transport(error_chain(&other)),
                    })?;
            if !(200..300).contains(&status) {
                return Err(ChatError::Status(status));
            }
            Ok(body)
        })
    })
}

/// Puts new thresholds into the live runtime: the running config with `detect.thresholds`
/// changed, validated and built whole, then swapped in like a reload. A later reload of the
/// config file replaces them with the file's values.
pub(super) fn apply(proxy: Weak<Proxy>) -> report::ApplyFn {
    Arc::new(move |t| {
        let proxy = proxy.upgrade().ok_or("the gateway is shutting down")?;
        let mut config = (*proxy.runtime.load().config).clone();
        config.detect.thresholds = t;
        config::validate(&config).map_err(|p| p.to_string())?;
        let (rt, _warnings) = Runtime::build(Arc::new(config)).map_err(|p| p.to_string())?;
        proxy.runtime.store(Arc::new(rt));
        Ok(())
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_replica_claims_each_scheduled_firing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("c.db")).await.expect("store");
        let due = unix_ms(SystemTime::now());
        let a = claim(&store, Period::Daily, due, "replica-a").await;
        assert!(a.is_some(), "the first replica writes the report");
        let b = claim(&store, Period::Daily, due, "replica-b").await;
        assert_eq!(b, None, "the second leaves it");
        assert!(
            claim(&store, Period::Weekly, due, "replica-b")
                .await
                .is_some(),
            "another period is another claim"
        );
        release(&store, a.as_deref().expect("claim"), due).await;
        assert_eq!(
            claim(&store, Period::Daily, due, "replica-b").await,
            None,
            "closed until the skew has passed"
        );
        let tomorrow = due + 86_400_000;
        release(&store, a.as_deref().expect("claim"), due - CLAIM_SKEW_MS).await;
        assert!(
            claim(&store, Period::Daily, tomorrow, "replica-b")
                .await
                .is_some(),
            "the next firing is open again"
        );
        store.close().await;
    }
}
