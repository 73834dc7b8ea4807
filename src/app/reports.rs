//! Wiring of the analysis agent: the closures `report::Reporter` needs (the LLM call through the
//! routed upstream, the live config, applying thresholds to the live runtime), the schedule
//! task, and the one-shot report of `gatehouse report`.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::analytics::unix_ms;
use crate::config::{self, Config};
use crate::proxy::side::{self, SideError};
use crate::proxy::{Proxy, ProxyError, Runtime};
use crate::report::{self, advice, ChatError, ConfigFn, Period, Reporter};
use crate::store::Store;

/// Where the report's LLM call finds the runtime: the live one, or a fixed one for the CLI.
type RuntimeFn = Arc<dyn Fn() -> Option<Arc<Runtime>> + Send + Sync>;

/// The reporter of a running gateway. Holds the proxy weakly: the admin API must not keep the
/// proxy (and its record sender) alive at shutdown.
pub(super) fn reporter(store: Store, proxy: &Arc<Proxy>, initial: Arc<Config>) -> Reporter {
    let weak = Arc::downgrade(proxy);
    let w = weak.clone();
    let runtime: RuntimeFn = Arc::new(move || w.upgrade().map(|p| p.runtime.load_full()));
    let rt = runtime.clone();
    let config: ConfigFn =
        Arc::new(move || rt().map_or_else(|| initial.clone(), |r| r.config.clone()));
    Reporter::new(store, chat(runtime), config, apply(weak))
}

/// Runs the report schedules until aborted; each firing generates and stores one report.
pub(super) async fn run_schedules(reporter: Reporter, config: ConfigFn) {
    let c = config.clone();
    let schedule = move || c().report.schedule.clone();
    report::schedule::run(unix_ms(SystemTime::now()), schedule, |period, _| {
        let (reporter, config) = (reporter.clone(), config.clone());
        async move {
            if !config().report.enabled {
                return;
            }
            if let Err(e) = reporter.generate(period, true).await {
                tracing::warn!(period = period.as_str(), error = %e, "scheduled report failed");
            }
        }
    })
    .await;
}

/// `gatehouse report --period P`: one report from the store, through the configured upstream,
/// stored like a scheduled one. Returns it as Markdown.
///
/// # Errors
/// Secrets or policies that cannot be read, a store that cannot be opened or read.
pub async fn report_once(config: Config, period: Period) -> anyhow::Result<String> {
    let config = Arc::new(config);
    let (rt, _warnings) = Runtime::build(config.clone()).map_err(|p| anyhow::anyhow!("{p}"))?;
    let rt = Arc::new(rt);
    let store = Store::from_config(&config.store)
        .await
        .with_context(|| format!("opening the store {}", config.store.path.display()))?;
    let runtime: RuntimeFn = Arc::new(move || Some(rt.clone()));
    let reporter = Reporter::new(
        store.clone(),
        chat(runtime),
        Arc::new(move || config.clone()),
        Arc::new(|_| Err("thresholds change only on a running gateway".into())),
    );
    let r = reporter.generate(period, false).await;
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
fn apply(proxy: Weak<Proxy>) -> report::ApplyFn {
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
