//! Proxy overhead: what does gatehouse add over calling a fast upstream directly?
//!
//! Questions, answered side by side in one run for a ~1 KB chat completion request, plain and
//! streamed (SSE: 10 small chunks, then `data: [DONE]`), against a fake upstream on loopback.
//! Three sides: direct to the upstream; through a bare relay (`support/relay.rs`: hyper server
//! plus hyper-util pooled client, nothing else, the floor of any proxy on this stack); through
//! gatehouse.
//! 1. Added latency p50/p90/p99/p99.9 at a fixed, open-loop 1,000 req/s (each request's full latency,
//!    whole body read), over direct and over the relay. Target: added p99 ≤ 250 µs.
//! 2. Max throughput (req/s) at concurrency 64 on each side.
//! 3. CPU time per request (utime+stime from /proc/<pid>/stat) of gatehouse and of the relay,
//!    so gatehouse's own share is the difference. Target: ≤ 30 µs. For scale, the direct path's
//!    own CPU per request (this process: client and fake upstream, the same socket calls a
//!    proxy makes once on each side).
//! 4. gatehouse RSS: idle (VmRSS after start, before load; target ≤ 30 MB) and peak (VmHWM).
//!
//! Method: the fake upstream runs in this process; the release `gatehouse` binary runs as a
//! child (cwd = a fresh temp dir, so no `gateway.yaml`: defaults + `GATEHOUSE_*` env, detection
//! on unless `GATEHOUSE_DETECT__ENABLED=false` is set for this process); the relay is this
//! bench binary run again as a child. Each phase rotates 1 s slices (direct, relay, gatehouse,
//! direct, ...) so load drift on a shared machine hits all sides alike; each side gets 10 s per
//! phase. Child CPU is read around every slice and attributed to the side that ran. The client
//! and the fake upstream share this process's cores with the proxies, so max throughput is a
//! whole-machine figure, not gatehouse alone.
//!
//! Run: `CARGO_TARGET_DIR=target-bench cargo bench --bench proxy_overhead`
//! (prefix `GATEHOUSE_DETECT__ENABLED=false` to see what detection costs, or
//! `PROXY_BENCH_WORKERS=1` to give gatehouse and the relay, not this process, one tokio
//! worker). ~2.5 min.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

#[path = "support/child.rs"]
mod child;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/upstream.rs"]
mod upstream;

use child::{free_port, Gatehouse};

use upstream::{request_body, start_upstream, Mode, ANSWER, DONE};

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

const PERIOD: Duration = Duration::from_millis(1); // open loop: 1,000 req/s
const SLICE_REQUESTS: u32 = 1_000; // one second of open-loop load per slice
const SLICE_TIME: Duration = Duration::from_secs(1); // one closed-loop slice
const SIDES: usize = 3; // direct, relay, gatehouse
const NAMES: [&str; SIDES] = ["direct", "relay", "gatehouse"];
const SLICES: usize = 10 * SIDES; // rotating direct / relay / gatehouse: 10 s each per phase
const CONCURRENCY: usize = 64;
const MAX_PER_TASK: u64 = 50_000; // count bound of one closed-loop task in one slice
const TIMEOUT: Duration = Duration::from_secs(5); // one request, headers to last byte
const WARMUP: usize = 300; // sequential requests per side and mode before measuring

// ---------------------------------------------------------------- gatehouse child

fn spawn_gatehouse(
    bin: &Path,
    upstream: &str,
    proxy: u16,
    detect: &str,
) -> Result<Gatehouse, Error> {
    let mut cmd = Command::new(bin);
    cmd.env("GATEHOUSE_DETECT__ENABLED", detect).envs(workers());
    Ok(child::spawn(cmd, "bench", upstream, proxy)?)
}

/// `PROXY_BENCH_WORKERS` as the proxies' `TOKIO_WORKER_THREADS`.
fn workers() -> Option<(&'static str, String)> {
    let w = std::env::var("PROXY_BENCH_WORKERS").ok()?;
    Some(("TOKIO_WORKER_THREADS", w))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // after the comm: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    Ok(f.get(11).ok_or("no utime")?.parse::<u64>()?
        + f.get(12).ok_or("no stime")?.parse::<u64>()?)
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

// ---------------------------------------------------------------- load

struct Ctx {
    client: HttpClient,
    /// `[direct, relay, gatehouse]` chat completion URIs.
    uris: [Uri; SIDES],
    /// Numbers the requests: each carries its own user message (see `request_body`).
    seq: std::sync::atomic::AtomicU64,
}

/// One request, whole body read. Err: transport error, timeout, non-200 or a truncated body.
async fn one(ctx: &Ctx, side: usize, mode: Mode) -> Result<Duration, String> {
    let t0 = Instant::now();
    let exchange = async {
        let req = Request::post(ctx.uris[side].clone())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, "Bearer sk-bench-client")
            .body(Full::new(request_body(
                mode,
                ctx.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )))
            .map_err(|e| e.to_string())?;
        let rsp = ctx.client.request(req).await;
        let rsp = rsp.map_err(|e| format!("{e:?}"))?;
        let status = rsp.status();
        let got = rsp.into_body().collect().await.map_err(|e| e.to_string())?;
        let got = got.to_bytes();
        let whole = match mode {
            Mode::Plain => got.len() == ANSWER.len(),
            Mode::Stream => got.ends_with(DONE),
        };
        if status == StatusCode::OK && whole {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&got[..got.len().min(200)]).into_owned();
        Err(format!("{status}: {text}"))
    };
    let timed = tokio::time::timeout(TIMEOUT, exchange).await;
    timed.map_err(|_| "timeout".to_string())??;
    Ok(t0.elapsed())
}

/// What one side (direct, relay or gatehouse) got in one phase.
#[derive(Default)]
struct Side {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// The proxy's (relay's or gatehouse's) CPU ticks during this side's slices.
    proxy_ticks: u64,
    /// This process's CPU ticks (load generator and fake upstream) during this side's slices.
    own_ticks: u64,
    /// Open loop: how late each send started after its scheduled time.
    lags: Vec<Duration>,
}

impl Side {
    fn add(&mut self, r: Result<Duration, String>) {
        match r {
            Ok(d) => self.latencies.push(d),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }
}

/// One open-loop slice: SLICE_REQUESTS sends, one per PERIOD, each in its own task.
async fn open_loop(ctx: &Arc<Ctx>, side: usize, mode: Mode, out: &mut Side) {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(SLICE_REQUESTS as usize);
    for i in 0..SLICE_REQUESTS {
        let at = start + PERIOD * i;
        tokio::time::sleep_until(at).await;
        out.lags.push(at.elapsed());
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move { one(&ctx, side, mode).await }));
    }
    for t in tasks {
        out.add(t.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    out.elapsed += start.elapsed();
}

/// One closed-loop slice: CONCURRENCY tasks send back to back until SLICE_TIME is up.
async fn closed_loop(ctx: &Arc<Ctx>, side: usize, mode: Mode, out: &mut Side) {
    let start = Instant::now();
    let deadline = start + SLICE_TIME;
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Side::default();
            while Instant::now() < deadline && mine.ok() + mine.errors < MAX_PER_TASK {
                mine.add(one(&ctx, side, mode).await);
            }
            mine
        }));
    }
    for t in tasks {
        let mine = t.await.unwrap_or_default();
        out.errors += mine.errors;
        out.latencies.extend(mine.latencies);
        if let Some(e) = mine.first_error {
            out.first_error.get_or_insert(e);
        }
    }
    out.elapsed += start.elapsed();
}

/// A phase: SLICES rotating slices, direct first. `pids` are the relay's and gatehouse's.
async fn phase(
    ctx: &Arc<Ctx>,
    pids: [u32; 2],
    mode: Mode,
    open: bool,
) -> Result<[Side; SIDES], Error> {
    let mut sides: [Side; SIDES] = Default::default();
    let me = std::process::id();
    for slice in 0..SLICES {
        let side = slice % SIDES;
        let proxy = side.checked_sub(1).map(|i| pids[i]);
        let before = proxy.map(cpu_ticks).transpose()?.unwrap_or(0);
        let own = cpu_ticks(me)?;
        if open {
            open_loop(ctx, side, mode, &mut sides[side]).await;
        } else {
            closed_loop(ctx, side, mode, &mut sides[side]).await;
        }
        let after = proxy.map(cpu_ticks).transpose()?.unwrap_or(0);
        sides[side].proxy_ticks += after.saturating_sub(before);
        sides[side].own_ticks += cpu_ticks(me)?.saturating_sub(own);
    }
    for s in &mut sides {
        s.latencies.sort_unstable();
        s.lags.sort_unstable();
    }
    Ok(sides)
}

// ---------------------------------------------------------------- main

/// The children, killed on drop.
struct Proxies {
    relay: relay::Relay,
    gate: Gatehouse,
}

/// Starts the fake upstream, the relay and gatehouse; waits for both proxies to answer.
async fn start(bin: &Path, detect: &str) -> Result<(Proxies, Arc<Ctx>), Error> {
    let upstream = start_upstream().await?;
    let (relay_port, proxy) = (free_port()?, free_port()?);
    let mut relay = relay::spawn(Command::new(std::env::current_exe()?), upstream, relay_port)?;
    let mut gate = spawn_gatehouse(bin, &format!("http://{upstream}/v1"), proxy, detect)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let health: Uri = format!("http://127.0.0.1:{proxy}/health").parse()?;
    // The fake upstream answers any path, so a relayed `/health` is the relay's.
    let relayed: Uri = format!("http://127.0.0.1:{relay_port}/health").parse()?;
    let started = Instant::now();
    for uri in [health, relayed] {
        loop {
            let req = Request::get(uri.clone()).body(Full::default())?;
            let rsp = tokio::time::timeout(Duration::from_secs(1), client.request(req)).await;
            if rsp.is_ok_and(|r| r.is_ok_and(|r| r.status() == StatusCode::OK)) {
                break;
            }
            let exited = gate.child.try_wait()?;
            if exited.is_some() || started.elapsed() > Duration::from_secs(15) {
                let log = gate.log()?;
                let msg = format!("gatehouse not healthy (exit {exited:?}); log:\n{log}");
                return Err(msg.into());
            }
            if let Some(status) = relay.child.try_wait()? {
                return Err(format!("the relay exited: {status}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ctx = Ctx {
        client,
        uris: [
            format!("http://{upstream}/v1/chat/completions").parse()?,
            format!("http://127.0.0.1:{relay_port}/v1/chat/completions").parse()?,
            format!("http://127.0.0.1:{proxy}/v1/chat/completions").parse()?,
        ],
        seq: std::sync::atomic::AtomicU64::new(0),
    };
    Ok((Proxies { relay, gate }, Arc::new(ctx)))
}

fn main() -> ExitCode {
    if relay::serve_if_asked() {
        return ExitCode::SUCCESS;
    }
    let bin = child::gatehouse_binary();
    if !bin.is_file() {
        let bin = bin.display();
        eprintln!("no gatehouse binary at {bin}; build it: cargo build --release");
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    if let Err(e) = rt
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run(&bin)))
    {
        eprintln!("proxy_overhead: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn run(bin: &Path) -> Result<(), Error> {
    let detect = std::env::var("GATEHOUSE_DETECT__ENABLED").unwrap_or_else(|_| "true".into());
    let load_start = loadavg();
    let (children, ctx) = start(bin, &detect).await?;
    let pid = children.gate.child.id();
    let pids = [children.relay.child.id(), pid];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_mb = child::proc_kb(pid, "VmRSS:")? as f64 / 1024.0;
    let relay_rss_mb = child::proc_kb(pids[0], "VmRSS:")? as f64 / 1024.0;

    let mut warmup: [Side; SIDES] = Default::default();
    for mode in [Mode::Plain, Mode::Stream] {
        for (side, out) in warmup.iter_mut().enumerate() {
            for _ in 0..WARMUP {
                out.add(one(&ctx, side, mode).await);
            }
        }
    }
    let mut results = Vec::new();
    let mut loads = Vec::new();
    for mode in [Mode::Plain, Mode::Stream] {
        let latency = phase(&ctx, pids, mode, true).await?;
        loads.push(loadavg());
        // `PROXY_BENCH_ONLY=latency` skips the closed loop (e.g. for a run under a
        // real-time scheduling class, where a saturating phase would starve the machine).
        let throughput = if std::env::var("PROXY_BENCH_ONLY").is_ok_and(|v| v == "latency") {
            Default::default()
        } else {
            phase(&ctx, pids, mode, false).await?
        };
        loads.push(loadavg());
        results.push((mode, latency, throughput));
    }
    let peak_rss_mb = child::proc_kb(pid, "VmHWM:")? as f64 / 1024.0;
    let log = children.gate.log()?;
    drop(children);

    let (b0, b1) = (
        request_body(Mode::Plain, 0).len(),
        request_body(Mode::Stream, 0).len(),
    );
    println!("\ngatehouse proxy overhead (detection enabled={detect}; request {b0} B / {b1} B)");
    let load_end = loadavg();
    println!("load average (1/5/15 min) at start: {load_start}; at end: {load_end}");
    println!("1-min load after each phase: {}\n", loads.join(" | "));
    let tick_us = 1e6 / clock_ticks_per_sec();
    println!(
        "{:<38}   direct    relay gatehouse    added  over relay   target",
        ""
    );
    for (mode, lat, thr) in &results {
        let name = mode.name();
        for p in [50.0, 90.0, 99.0, 99.9] {
            let [d, r, g] = [0, 1, 2].map(|i| pct(&lat[i].latencies, p));
            let (added, label) = (g - d, format!("{name} p{p} latency µs @1000/s"));
            let target = (p == 99.0).then(|| verdict(added, 250.0));
            let target = target.unwrap_or_default();
            let over = g - r;
            println!("{label:<38}{d:>9.0}{r:>9.0}{g:>10.0}{added:>+9.0}{over:>+12.0}   {target}");
        }
        let rate = |s: &Side| s.ok() as f64 / s.elapsed.as_secs_f64();
        let [d, r, g] = [0, 1, 2].map(|i| rate(&thr[i]));
        let label = format!("{name} max req/s, concurrency {CONCURRENCY}");
        let change = (g / d - 1.0) * 100.0;
        let vs_relay = g / r;
        println!(
            "{label:<38}{d:>9.0}{r:>9.0}{g:>10.0}{change:>+8.0}%   ratio {:.2} (relay {:.2}, gatehouse/relay {vs_relay:.2})",
            g / d,
            r / d
        );
        for (at, s) in [("@1000/s", lat), ("c=64", thr)] {
            let [r, g] =
                [1, 2].map(|i| s[i].proxy_ticks as f64 * tick_us / s[i].ok().max(1) as f64);
            let label = format!("{name} proxy CPU µs/req {at}");
            let (target, over) = (verdict(g, 30.0), g - r);
            println!(
                "{label:<38}{:>9}{r:>9.1}{g:>10.1}{:>9}{over:>+12.1}   {target}",
                "", ""
            );
        }
        // The direct path's own cost for scale: the client and fake upstream (this process)
        // make the same socket calls a proxy makes once on each side.
        let own = thr[0].own_ticks as f64 * tick_us / thr[0].ok().max(1) as f64;
        let label = format!("{name} direct path CPU µs/req c=64");
        println!("{label:<38}{own:>9.1}   (client + fake upstream, this process)");
    }
    let rss = format!("{idle_rss_mb:.1} / {peak_rss_mb:.1}");
    let target = verdict(idle_rss_mb, 30.0);
    println!(
        "{:<38}{relay_rss_mb:>18.1}{rss:>14}                 {target}",
        "RSS MB (relay idle; gatehouse idle / peak)"
    );

    println!("\nper side: ok, errors, open-loop send lag p99, the proxy's CPU during its slices");
    let mut errors = 0;
    for (mode, lat, thr) in &results {
        for (phase, sides) in [("latency", lat), ("throughput", thr)] {
            for (side, s) in NAMES.iter().zip(sides) {
                let lag = if s.lags.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.2} ms", pct(&s.lags, 99.0) / 1e3)
                };
                let cpu_ms = s.proxy_ticks as f64 * tick_us / 1e3;
                let first = s.first_error.as_deref().unwrap_or("");
                let (label, ok, err) =
                    (format!("{} {phase} {side}", mode.name()), s.ok(), s.errors);
                print!("  {label:<28}{ok:>8} ok {err:>3} err  ");
                println!("lag p99 {lag:>8}  CPU {cpu_ms:>5.0} ms {first}");
                errors += s.errors;
            }
        }
    }
    errors += warmup.iter().map(|w| w.errors).sum::<u64>();
    let warmup_ok: u64 = warmup.iter().map(Side::ok).sum();
    println!("  warm-up (all sides)         {warmup_ok:>8} ok, errors in total: {errors}");
    let bad = |l: &&str| l.contains("WARN") || l.contains("ERROR");
    let warnings: Vec<&str> = log.lines().filter(bad).collect();
    let (lines, n) = (log.lines().count(), warnings.len());
    println!("gatehouse log: {lines} lines, {n} WARN/ERROR");
    for w in warnings.iter().take(5) {
        println!("  {}", w.chars().take(240).collect::<String>());
    }
    if errors > 0 {
        return Err(format!("{errors} requests failed").into());
    }
    Ok(())
}

// ---------------------------------------------------------------- helpers

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len().saturating_sub(1)) as f64 * p / 100.0).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn verdict(value: f64, limit: f64) -> String {
    format!("≤ {limit} {}", if value <= limit { "ok" } else { "MISS" })
}
