//! The composition root: builds the runtime from config, binds the listeners, spawns the
//! background tasks (record fan-out, reload watcher, admin server, report schedules), wires
//! their channels and owns shutdown. The only module that knows the whole graph.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::alerts;
mod background;
mod budgets;
mod feedback;
mod fleet;
mod fleet_quotas;
mod keys;
mod reports;

pub use reports::report_once;

use crate::analytics::{self, Live};
use crate::config::{self, Config};
use crate::event::Exchange;
use crate::llm::prices::Prices;
use crate::proxy::{self, Proxy, Runtime};
use crate::quota::{Quotas, Scope};
use crate::store::{self, Store, WriterConfig, WriterSummary};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::otel::{self, Exporter};

/// How often the config file's modification time is checked for a reload.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How long shutdown waits for record consumers to flush after the proxy has drained.
const FLUSH_WAIT: Duration = Duration::from_secs(30);
/// Queue of the in-memory consumers (live windows, metrics): they keep up easily, so this
/// only absorbs bursts.
const CONSUMER_QUEUE: usize = 65_536;
/// The fan-out's pause after each batch of records, and its largest batch (see `fan_out`).
const FANOUT_PAUSE: Duration = Duration::from_millis(10);
const FANOUT_BATCH: usize = 1024;
/// Feedback entries waiting to be stored.
const FEEDBACK_QUEUE: usize = 1024;
/// Summaries the live feed keeps for subscribers that fall behind (they skip the rest).
const FEED_BUFFER: usize = 1024;
/// How often old rows are purged.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Connect timeout of the side-call client (alert webhooks); the whole-call timeout is
/// `alerts.delivery.timeout_secs`.
const SIDE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `start` needs beyond the config.
#[derive(Default)]
pub struct Options {
    /// The file the config came from; watched for changes and re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// Extra consumers of the record stream (e.g. an embedding application or a test).
    pub record_consumers: Vec<mpsc::Sender<Arc<Exchange>>>,
}

/// A running gatehouse.
pub struct App {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    stop: watch::Sender<bool>,
    serving: JoinHandle<()>,
}

/// Background tasks, owned here so shutdown can wait for the ones that must flush.
struct Tasks {
    fanout: JoinHandle<()>,
    writer: JoinHandle<WriterSummary>,
    /// The trace exporter, when a backend is configured; flushed like the writer.
    traces: Option<JoinHandle<()>>,
    reload: JoinHandle<()>,
    admin: JoinHandle<()>,
    /// Tasks that hold no data of their own and are simply stopped.
    others: Vec<JoinHandle<()>>,
    /// Dropped when these tasks are done with: the background runtime then stops.
    _background: background::Done,
}

/// Builds everything and starts serving. The config must already be validated.
///
/// # Errors
/// Secrets that cannot be read, addresses that cannot be bound, bad TLS files, a store that
/// cannot be opened.
pub async fn start(config: Config, opts: Options) -> anyhow::Result<App> {
    let config = Arc::new(config);
    let (runtime, warnings) = Runtime::build(config.clone()).map_err(|p| anyhow::anyhow!("{p}"))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let prices = runtime.prices.clone();
    // Known models, the only `model` label values: aliases, their targets and priced models.
    let known = runtime.known_models();
    let metrics = Arc::new(Metrics::new(
        known.into_iter().chain(prices.models().map(str::to_owned)),
    ));
    let (bg, bg_done) = background::start()?;
    // Opened from the background runtime, so SQLite's worker threads inherit its priority. The
    // error names the file, or the database URL without its password.
    let store_cfg = config.store.clone();
    let store = bg
        .spawn(async move { Store::from_config(&store_cfg).await })
        .await
        .context("the background runtime stopped")??;
    tracing::info!(backend = ?store.dialect(), "event store open");
    let live = Arc::new(Live::new());
    let (records_tx, records_rx) = mpsc::channel(config.proxy.record_queue);
    let (feedback_tx, feedback_rx) = mpsc::channel(FEEDBACK_QUEUE);
    // Requests finished lately, noted by the fan-out, for ratings the store has not seen yet.
    let recent = Arc::new(feedback::Recent::default());
    let proxy =
        Arc::new(Proxy::new(runtime, records_tx, metrics.clone()).with_feedback(feedback_tx));
    let key_sync = keys::KeySync::new(&proxy, store.clone());
    let live_keys = key_sync
        .refresh()
        .await
        .context("reading the virtual gateway keys from the store")?;
    tracing::info!(live = live_keys, "virtual gateway keys loaded");
    let fleet = store.dialect() == store::Dialect::Postgres;
    // One process: a restarted replica's rows of this period stay the fleet's.
    let instance = format!(
        "{}/{}",
        config.instance_name(),
        uuid::Uuid::now_v7().simple()
    );
    {
        let (rt, virtual_keys) = (proxy.runtime.load(), proxy.keys.scopes());
        let now_ms = analytics::unix_ms(SystemTime::now());
        let seed = budgets::read(&rt, &virtual_keys, &store, now_ms).await;
        if fleet {
            if let Some(seed) = &seed {
                seed.track_users(&rt);
            }
            fleet_quotas::first(&proxy, &store, &instance).await;
        }
        if let Some(seed) = seed {
            seed.apply(&rt, &virtual_keys);
        }
    }

    let tls = config.proxy.tls.as_ref().map(|t| proxy::TlsFiles {
        cert: t.cert.clone(),
        key: t.key.clone(),
    });
    let proxy_addr: SocketAddr = config.proxy.listen.parse().context("proxy.listen")?;
    let listener = proxy::Listener::bind(proxy_addr, tls.as_ref())
        .await
        .with_context(|| format!("binding the proxy listener on {proxy_addr}"))?;
    let admin_addr: SocketAddr = config.admin.listen.parse().context("admin.listen")?;
    let admin_listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("binding the admin listener on {admin_addr}"))?;
    let proxy_addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let (stop, stopped) = watch::channel(false);
    let mut consumers = Vec::new();
    let (store_tx, store_rx) = mpsc::channel(config.store.queue.max(1));
    consumers.push(("store", store_tx));
    let (live_tx, live_rx) = mpsc::channel(CONSUMER_QUEUE);
    consumers.push(("live", live_tx));
    let (metrics_tx, metrics_rx) = mpsc::channel(CONSUMER_QUEUE);
    consumers.push(("metrics", metrics_tx));
    let traces = match Exporter::build(&config.traces).map_err(|p| anyhow::anyhow!("{p}"))? {
        e if e.backends.is_empty() => None,
        e => {
            let names: Vec<&str> = e.backends.iter().map(|b| b.name.as_str()).collect();
            tracing::info!(backends = ?names, capture = ?e.content.capture, "exporting traces");
            let (tx, rx) = mpsc::channel(e.queue);
            consumers.push(("traces", tx));
            let client = side_client(e.timeout)?;
            Some(bg.spawn(otel::run(e, client, rx, metrics.clone())))
        }
    };
    let (feed_in, feed_rx) = mpsc::channel(CONSUMER_QUEUE);
    consumers.push(("feed", feed_in));
    let (feed, _) = tokio::sync::broadcast::channel(FEED_BUFFER);
    let alerts_rx = if config.alerts.enabled {
        let (tx, rx) = mpsc::channel(CONSUMER_QUEUE);
        consumers.push(("alerts", tx));
        Some(rx)
    } else {
        None
    };
    consumers.extend(opts.record_consumers.into_iter().map(|c| ("embedder", c)));

    let mut writer_cfg = WriterConfig::from_config(&config.store);
    let m = metrics.clone();
    writer_cfg.observer = Some(Arc::new(move |s: &store::FlushStats| {
        if s.records > 0 {
            m.store_flush(s.records, s.elapsed, s.queue_depth, s.ok);
        }
        m.store_trouble(s.failed, s.dropped, s.buffered, s.failing);
    }));
    let shutdown = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut others = Vec::new();
    let alerts = match alerts_rx {
        Some(rx) => Some(start_alerts(
            &bg,
            &config,
            live.clone(),
            store.clone(),
            (rx, alert_budgets(&proxy)),
            &mut others,
        )?),
        None => None,
    };
    if let Some((handle, _)) = &alerts {
        reports::check_digest_channels(&config, handle);
    }
    let messages = alerts.as_ref().map(|(_, tx)| tx.clone());
    let reporter = reports::reporter(store.clone(), &proxy, config.clone(), messages);
    others.extend([
        bg.spawn(reports::run_schedules(
            reporter.clone(),
            reporter.config_fn(),
        )),
        bg.spawn(reports::run_retention(reporter.clone())),
        bg.spawn(analytics::run_live(live.clone(), live_rx)),
        bg.spawn(observe_metrics(metrics.clone(), metrics_rx)),
        bg.spawn(analytics::run_feed(feed_rx, feed.clone())),
        bg.spawn(store::run_retention(
            store.clone(),
            config.store.retention_days,
            RETENTION_EVERY,
            shutdown,
        )),
        bg.spawn(feedback::run(store.clone(), recent.clone(), feedback_rx)),
        bg.spawn(keys::run(
            key_sync.clone(),
            Duration::from_secs(config.auth.sync_secs),
        )),
    ]);
    if fleet {
        let b = &config.detect.behaviour;
        tracing::info!(instance = %config.instance_name(), every = ?fleet::SYNC_EVERY, "fleet mode: behaviour windows and threshold changes synced through the store");
        others.push(bg.spawn(fleet::sync(
            Arc::downgrade(&proxy),
            store.clone(),
            b.enabled.then(|| Duration::from_secs(b.window_secs)),
            reports::apply(Arc::downgrade(&proxy)),
            fleet::SYNC_EVERY,
        )));
        tracing::info!(%instance, every_ms = config.quotas.sync_ms, "fleet mode: rate limits, budgets and concurrency caps of keys, end users, teams, models and the gateway shared through the store");
        others.push(bg.spawn(fleet_quotas::run(
            Arc::downgrade(&proxy),
            store.clone(),
            instance,
        )));
    }
    let alerts = alerts.map(|(handle, _)| handle);
    metrics.watch_segment_cache(segment_cache_stats(&proxy));
    metrics.watch_budgets(budget_gauges(&proxy));
    let admin_state = crate::admin::AdminState {
        store: store.clone(),
        live,
        metrics: metrics.clone(),
        token: admin_token(&config)?,
        public_metrics: config.admin.public_metrics,
        scan: scanner(proxy.clone()),
        feed,
        alerts,
        reports: Some(reporter),
        proxy_openapi: Some(proxy_doc(&proxy)),
        keys_synced: Some(key_sync.admin_fn()),
        quotas: Some(quota_view(&proxy)),
    };
    let tasks = Tasks {
        fanout: bg.spawn(fan_out(
            records_rx,
            consumers,
            metrics.clone(),
            Arc::downgrade(&proxy),
            prices,
            recent,
        )),
        writer: bg.spawn(store::run_writer(store.clone(), store_rx, writer_cfg)),
        traces,
        reload: bg.spawn(watch_config(
            proxy.clone(),
            metrics.clone(),
            opts.config_path.clone(),
        )),
        admin: tokio::spawn(serve_admin(
            admin_listener,
            admin_state,
            proxy::Limits {
                max_connections: config.admin.max_connections,
                header_read: Duration::from_secs(config.admin.header_read_secs),
                tls_handshake: Duration::from_secs(10),
            },
            stopped.clone(),
        )),
        others,
        _background: bg_done,
    };
    let grace = Duration::from_secs(config.proxy.grace_period_secs);
    let serving = tokio::spawn(serve_proxy(listener, proxy.clone(), stopped, grace, tasks));
    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, "gatehouse listening");
    Ok(App {
        proxy_addr,
        admin_addr,
        proxy,
        metrics,
        store,
        stop,
        serving,
    })
}

/// The shared HTTP client for side calls (trace export, alert webhooks): explicit timeouts, no redirects
/// (a redirected webhook is a misconfiguration, and following it could leak the payload).
pub fn side_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a bundled crypto provider (no aws-lc): it uses the ring
    // provider `main` installs, and would panic without one.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        anyhow::bail!("no rustls crypto provider installed (main installs ring)");
    }
    reqwest::Client::builder()
        .connect_timeout(SIDE_CONNECT_TIMEOUT)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client for side calls")
}

/// Builds the alert channels, spawns the engine (fed by its own record consumer) and the
/// delivery task, and returns what the admin API needs and the delivery queue (for report
/// digests).
fn start_alerts(
    bg: &tokio::runtime::Handle,
    config: &Config,
    live: Arc<Live>,
    store: Store,
    (records, budgets): (mpsc::Receiver<Arc<Exchange>>, alerts::BudgetsFn),
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<(Arc<alerts::Handle>, Messages)> {
    let a = &config.alerts;
    let timeout = Duration::from_secs(a.delivery.timeout_secs);
    let (channels, warnings) = alerts::Channels::build(a, timeout);
    for w in warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(channels = ?channels.labels(), rules = a.rules.len(), "alerts enabled");
    let delivery = Arc::new(alerts::Delivery::new(
        channels,
        side_client(timeout)?,
        store.clone(),
        &a.delivery,
    ));
    let (notices_tx, notices_rx) = mpsc::channel(alerts::delivery::QUEUE);
    let engine = alerts::Engine::new(a, live, store, notices_tx.clone(), config.instance_name())
        .with_budgets(budgets);
    let handle = Arc::new(alerts::Handle {
        rules: engine.rules.clone(),
        delivery: delivery.clone(),
        gateway: a.gateway_name.clone(),
        dashboard_url: a.dashboard_url.clone(),
    });
    tasks.push(bg.spawn(alerts::run_engine(engine, records)));
    tasks.push(bg.spawn(alerts::run_delivery(delivery, notices_rx)));
    Ok((handle, notices_tx))
}

/// The delivery queue of the alert channels: a message and the channel kinds it goes to.
type Messages = mpsc::Sender<(alerts::Message, Vec<String>)>;

impl App {
    /// Stops accepting, drains in-flight requests within the grace period, flushes records.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        drop(self.proxy);
        let _ = self.serving.await;
    }

    /// Reloads the runtime from `path` now (what SIGHUP and a file change do). On error the
    /// running runtime stays.
    ///
    /// # Errors
    /// Every problem of the new config.
    pub fn reload(&self, path: Option<&std::path::Path>) -> anyhow::Result<()> {
        apply_reload(&self.proxy, &self.metrics, path)
    }

    /// Runs until SIGTERM or SIGINT, then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        self.shutdown().await;
    }
}

/// Feeds every record to the Prometheus registry.
async fn observe_metrics(metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Arc<Exchange>>) {
    while let Some(ex) = rx.recv().await {
        metrics.observe(&ex);
    }
}

fn admin_token(config: &Config) -> anyhow::Result<Option<crate::config::Secret>> {
    match (&config.admin.token, &config.admin.token_file) {
        (Some(t), _) => Ok(Some(t.clone())),
        (None, Some(f)) => Ok(Some(
            config::SecretSource::File(f.clone())
                .read()
                .context("admin.token_file")?,
        )),
        (None, None) => Ok(None),
    }
}

/// The live detector's segment cache counts, for `/metrics`.
fn segment_cache_stats(proxy: &Arc<Proxy>) -> crate::telemetry::metrics::CacheStatsFn {
    // Weak, as in `scanner`.
    let proxy = Arc::downgrade(proxy);
    Arc::new(move || {
        let rt = proxy.upgrade()?.runtime.load_full();
        let stats = rt.guard.as_ref()?.detector.cache_stats();
        Some((stats.hits, stats.misses))
    })
}

/// The proxy port's OpenAPI document for the passthrough list the live runtime has.
fn proxy_doc(proxy: &Arc<Proxy>) -> crate::admin::ProxyDocFn {
    // Weak, as `scanner`: the admin API must not keep the proxy alive at shutdown.
    let proxy = Arc::downgrade(proxy);
    Arc::new(move || {
        let rt = proxy.upgrade()?.runtime.load_full();
        Some(proxy::openapi::document(&rt.config.proxy.passthrough))
    })
}

/// The budgets `/metrics` may name (teams, models, the gateway, labelled keys, config and
/// virtual), for the `gatehouse_budget_*` gauges.
fn budget_gauges(proxy: &Arc<Proxy>) -> crate::telemetry::metrics::BudgetsFn {
    // Weak, as `scanner`.
    let proxy = Arc::downgrade(proxy);
    Arc::new(move || {
        let budgets = read_quotas(&proxy, |q, keys, now| q.budgets(keys, false, now));
        budgets
            .unwrap_or_default()
            .into_iter()
            .filter(|b| b.labelled)
            .map(|b| crate::telemetry::metrics::BudgetGauge {
                scope: b.scope.as_str(),
                remaining_usd: b.remaining_usd(),
                used_ratio: b.used_ratio(),
                name: b.name,
            })
            .collect()
    })
}

/// Every spend budget now (end users' included), for the budget alert rule and the reports.
fn alert_budgets(proxy: &Arc<Proxy>) -> alerts::BudgetsFn {
    // Weak, as `scanner`.
    let proxy = Arc::downgrade(proxy);
    Arc::new(move || {
        read_quotas(&proxy, |q, keys, now| q.budgets(keys, true, now)).unwrap_or_default()
    })
}

/// The live limits and counters, for `/api/quotas`.
fn quota_view(proxy: &Arc<Proxy>) -> crate::admin::QuotasFn {
    // Weak, as `scanner`.
    let proxy = Arc::downgrade(proxy);
    Arc::new(move |users| read_quotas(&proxy, |q, keys, now| q.view(keys, users, now)))
}

/// Every key's scope by its user, the config's keys then the virtual keys, as the quota views
/// take them.
type KeyScopes<'a> = &'a mut dyn Iterator<Item = (&'a str, &'a Scope)>;

/// Runs `read` over the live runtime's limits and every key's scope, now; `None` once the proxy
/// is gone (shutdown).
fn read_quotas<T>(
    proxy: &std::sync::Weak<Proxy>,
    read: impl for<'a> FnOnce(&'a Quotas, KeyScopes<'a>, i64) -> T,
) -> Option<T> {
    let proxy = proxy.upgrade()?;
    let rt = proxy.runtime.load_full();
    let virtual_keys = proxy.keys.scopes();
    let mut keys = rt
        .key_scopes()
        .map(|(n, s)| (n, &**s))
        .chain(virtual_keys.iter().map(|(n, s)| (&**n, &**s)));
    Some(read(
        &rt.quotas,
        &mut keys,
        analytics::unix_ms(SystemTime::now()),
    ))
}

/// The admin API's view of the live detector: scans like the proxy does, including the
/// configured actions, without touching the user's behaviour window.
fn scanner(proxy: Arc<Proxy>) -> crate::admin::ScanFn {
    // Weak: the admin API must not keep the proxy (and its record sender) alive at shutdown.
    let proxy = Arc::downgrade(&proxy);
    Arc::new(move |input| {
        let rt = proxy.upgrade()?.runtime.load_full();
        rt.guard.as_ref().map(|g| g.detector.scan(input))
    })
}

async fn serve_proxy(
    listener: proxy::Listener,
    proxy: Arc<Proxy>,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
    tasks: Tasks,
) {
    let signal = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    proxy::serve(listener, proxy, signal, grace).await;
    tasks.reload.abort();
    let _ = tasks.reload.await;
    // Every record sender is gone once the connections and the reload task are: the fan-out
    // drains, drops its consumer queues, and the writer commits what is left.
    let flushed = async {
        let _ = tasks.fanout.await;
        let traces = async {
            if let Some(t) = tasks.traces {
                let _ = t.await;
            }
        };
        tokio::join!(tasks.writer, traces).0
    };
    match tokio::time::timeout(FLUSH_WAIT, flushed).await {
        Ok(Ok(summary)) => tracing::info!(?summary, "records flushed"),
        Ok(Err(e)) => tracing::error!(error = %e, "the store writer failed"),
        Err(_) => tracing::warn!("records still queued after the flush wait; exiting anyway"),
    }
    tasks.admin.abort();
    tasks.others.iter().for_each(JoinHandle::abort);
}

/// How long open admin connections (a dashboard's live feed) get to finish at shutdown.
const ADMIN_GRACE: Duration = Duration::from_secs(5);

/// Serves the admin router with the proxy's accept loop, so the same connection cap and
/// header timeouts hold (`admin.max_connections`, `admin.header_read_secs`).
async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: crate::admin::AdminState,
    limits: proxy::Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let metrics = state.metrics.clone();
    let router = crate::admin::router(state);
    // Each request carries the peer address, which the sign-in limiter keys on.
    let service = move |peer: SocketAddr| {
        let router = router
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        hyper_util::service::TowerToHyperService::new(router)
    };
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let listener = proxy::Listener {
        tcp: listener,
        tls: None,
    };
    proxy::accept_loop(
        listener,
        "admin",
        limits,
        metrics,
        service,
        shutdown,
        ADMIN_GRACE,
    )
    .await;
}

/// Hands each record to every consumer without waiting: a full consumer queue drops the record
/// for that consumer and counts it. Fills in the cost from the price table when the upstream
/// reported none (off the hot path).
///
/// Records are taken in batches, with a pause of `FANOUT_PAUSE` after each: while the fan-out
/// sleeps nobody waits on the record queue, so the proxy's `try_send` wakes no one, and each
/// consumer is woken once per batch instead of once per request. On a busy proxy that turns
/// about six task wake-ups per request into a few hundred a second in all; the price is that
/// consumers see a record up to `FANOUT_PAUSE` later.
///
/// Each record is noted as recent (for ratings the store has not seen yet) before it is handed
/// on. Prices come from the live runtime, so a reload (SIGHUP, or a change to the price file)
/// reprices from the next batch; `Weak`, as in `scanner`, so the fan-out never keeps the proxy
/// (and its record sender) alive at shutdown.
async fn fan_out(
    mut rx: mpsc::Receiver<Exchange>,
    consumers: Vec<(&'static str, mpsc::Sender<Arc<Exchange>>)>,
    metrics: Arc<Metrics>,
    proxy: std::sync::Weak<Proxy>,
    mut prices: Arc<Prices>,
    recent: Arc<feedback::Recent>,
) {
    let mut batch = Vec::with_capacity(FANOUT_BATCH);
    while rx.recv_many(&mut batch, FANOUT_BATCH).await > 0 {
        if let Some(p) = proxy.upgrade() {
            prices = p.runtime.load().prices.clone();
        }
        for ex in batch.drain(..) {
            recent.note(&ex);
            hand_on(ex, &consumers, &metrics, &prices);
        }
        tokio::time::sleep(FANOUT_PAUSE).await;
    }
}

fn hand_on(
    mut ex: Exchange,
    consumers: &[(&'static str, mpsc::Sender<Arc<Exchange>>)],
    metrics: &Metrics,
    prices: &Prices,
) {
    ex.cost = ex.cost_with(prices);
    // A priced model is a known name, so a key in the rollups even when no upstream answered.
    if !ex.model_known {
        let sent = ex.upstream_model.as_deref().or(ex.model.as_deref());
        ex.model_known = sent.is_some_and(|m| prices.get(m).is_some());
    }
    let ex = Arc::new(ex);
    for (name, c) in consumers {
        if c.try_send(ex.clone()).is_err() {
            metrics.record_dropped(name);
        }
    }
}

/// Reloads the runtime on SIGHUP and when the config file, a policy file or the price file
/// changes. A bad config or policy keeps the old runtime and says why.
async fn watch_config(proxy: Arc<Proxy>, metrics: Arc<Metrics>, path: Option<PathBuf>) {
    let mut hup = hangup();
    let mut last = fingerprint(&proxy, path.as_deref());
    loop {
        tokio::select! {
            _ = recv_hangup(&mut hup) => {}
            () = tokio::time::sleep(WATCH_EVERY) => {
                let now = fingerprint(&proxy, path.as_deref());
                if now == last {
                    continue;
                }
                last = now;
            }
        }
        let _ = apply_reload(&proxy, &metrics, path.as_deref());
    }
}

/// Modification times and sizes of the config file, of every file in the policies directory
/// and of the price file: a change in any of them triggers a reload.
fn fingerprint(
    proxy: &Proxy,
    path: Option<&std::path::Path>,
) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut files: Vec<PathBuf> = path.map(|p| vec![p.to_owned()]).unwrap_or_default();
    let config = proxy.runtime.load().config.clone();
    if let Ok(dir) = std::fs::read_dir(&config.detect.policies) {
        files.extend(dir.filter_map(|e| e.ok().map(|e| e.path())));
    }
    files.push(config.prices.clone());
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map_or(0, |m| m.len());
            (f, modified, len)
        })
        .collect()
}

fn apply_reload(
    proxy: &Proxy,
    metrics: &Metrics,
    path: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let current = proxy.runtime.load_full();
    match reload_after(path, Some(&current)) {
        Ok(rt) => {
            proxy.runtime.store(Arc::new(rt));
            metrics.config_reload(true);
            tracing::info!("configuration reloaded");
            Ok(())
        }
        Err(e) => {
            metrics.config_reload(false);
            tracing::error!("reload failed, keeping the running configuration:\n{e:#}");
            Err(e)
        }
    }
}

/// Loads, validates and builds a whole new runtime.
///
/// # Errors
/// Any load, validation or build problem, all listed.
pub fn reload(path: Option<&std::path::Path>) -> anyhow::Result<Runtime> {
    reload_after(path, None)
}

/// [`reload`], keeping the counters of `previous`'s limits that are still configured.
fn reload_after(
    path: Option<&std::path::Path>,
    previous: Option<&Runtime>,
) -> anyhow::Result<Runtime> {
    let config = config::load(path)?;
    config::validate(&config)?;
    let (rt, warnings) = Runtime::build_after(Arc::new(config), previous)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(rt)
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(unix)]
fn hangup() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(unix)]
async fn recv_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
type Hangup = ();
#[cfg(not(unix))]
fn hangup() -> Hangup {}
#[cfg(not(unix))]
async fn recv_hangup(_: &mut Hangup) {
    std::future::pending().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
