//! Soak: does gatehouse's memory stay flat under steady load?
//!
//! The release `gatehouse` binary runs as a child (defaults: SQLite store, detection on)
//! in front of the in-process fake upstream; this process sends ~1 KB chat completions open
//! loop at `SOAK_RATE` req/s (default 300; every 10th one streamed) for `SOAK_SECS` seconds
//! (default 600), each with a fresh message (so the detector's segment cache is exercised, not
//! just hit). Every 10 s it prints the child's RSS (VmRSS), its peak (VmHWM), the answers so
//! far and the late or failed ones; at the end, RSS at the first report after warm-up against
//! the last, the growth per minute between them; then it SIGKILLs gatehouse under load and
//! counts the store's rows against the 2xx answers: what a hard crash loses.
//!
//! Run: `cargo build --release && CARGO_TARGET_DIR=target-bench cargo bench --bench soak`
//! (`SOAK_SECS=120` for a short run). Not a test: it takes ten minutes and its figures are
//! for reading, not asserting, on a shared machine.

use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

#[path = "support/child.rs"]
mod child;
#[path = "support/upstream.rs"]
mod upstream;

type Error = Box<dyn std::error::Error + Send + Sync>;

const REPORT_EVERY: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds before RSS is expected to level off: at 300 req/s the store's page cache (16 MiB)
/// and the detector's segment cache (16 MiB) take about three minutes to fill.
const WARM_UP: f64 = 180.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

fn main() -> ExitCode {
    let bin = child::gatehouse_binary();
    if !bin.is_file() {
        eprintln!(
            "no gatehouse binary at {}; build it: cargo build --release",
            bin.display()
        );
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match rt
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run(&bin)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(bin: &std::path::Path) -> Result<(), Error> {
    let rate = env_u64("SOAK_RATE", 300).max(1);
    let secs = env_u64("SOAK_SECS", 600).max(10);
    let upstream = upstream::start_upstream().await?;
    let proxy = child::free_port()?;
    let mut gate = child::spawn(
        Command::new(bin),
        "soak",
        &format!("http://{upstream}/v1"),
        proxy,
    )?;
    let pid = gate.child.id();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let health: Uri = format!("http://127.0.0.1:{proxy}/health").parse()?;
    let started = Instant::now();
    loop {
        let req = Request::get(health.clone()).body(Full::default())?;
        let up = tokio::time::timeout(Duration::from_secs(1), client.request(req)).await;
        if up.is_ok_and(|r| r.is_ok_and(|r| r.status() == StatusCode::OK)) {
            break;
        }
        if gate.child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(15) {
            return Err(format!("gatehouse not healthy; log:\n{}", gate.log()?).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_mb = child::proc_kb(pid, "VmRSS:")? as f64 / 1024.0;
    println!("soak: {rate} req/s for {secs} s; gatehouse idle RSS {idle_mb:.1} MB");
    let modes = [upstream::Mode::Plain, upstream::Mode::Stream].map(upstream::Mode::name);
    println!(
        "of every ten requests, nine are {} and one is {}",
        modes[0].trim(),
        modes[1]
    );
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>7}",
        "t (s)", "RSS MB", "peak MB", "answered", "failed"
    );
    let chat: Uri = format!("http://127.0.0.1:{proxy}/v1/chat/completions").parse()?;
    let counts = Arc::new(Counts::default());
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next_report = start + REPORT_EVERY;
    let mut reports: Vec<(f64, f64)> = Vec::new();
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        n += 1;
        let mode = if n.is_multiple_of(10) {
            upstream::Mode::Stream
        } else {
            upstream::Mode::Plain
        };
        let req = Request::post(chat.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(upstream::request_body(mode, n)))?;
        let (client, tally) = (client.clone(), counts.clone());
        tokio::spawn(async move {
            let done = tokio::time::timeout(TIMEOUT, async {
                let rsp = client.request(req).await.ok()?;
                let ok = rsp.status() == StatusCode::OK;
                rsp.into_body().collect().await.ok()?;
                Some(ok)
            })
            .await;
            let counter = match done {
                Ok(Some(true)) => &tally.ok,
                _ => &tally.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
        if Instant::now() >= next_report {
            next_report += REPORT_EVERY;
            let t = start.elapsed().as_secs_f64();
            let rss = child::proc_kb(pid, "VmRSS:")? as f64 / 1024.0;
            let peak = child::proc_kb(pid, "VmHWM:")? as f64 / 1024.0;
            reports.push((t, rss));
            println!(
                "{t:>6.0} {rss:>9.1} {peak:>9.1} {:>9} {:>7}",
                counts.ok.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed)
            );
        }
    }
    // A hard crash under load: SIGKILL while requests are in flight, then count what was
    // answered 200 against what the store kept.
    let _ = gate.child.kill();
    let _ = gate.child.wait();
    tokio::time::sleep(TIMEOUT).await;
    let ok = counts.ok.load(Ordering::Relaxed);
    // Past the warm-up (caches and pools fill), RSS should not keep climbing.
    let warm = reports
        .iter()
        .find(|(t, _)| *t >= WARM_UP)
        .or(reports.first());
    if let (Some(&(t0, r0)), Some(&(t1, r1))) = (warm, reports.last()) {
        let per_min = if t1 > t0 {
            (r1 - r0) / (t1 - t0) * 60.0
        } else {
            0.0
        };
        println!(
            "RSS {r0:.1} MB at {t0:.0} s → {r1:.1} MB at {t1:.0} s: {per_min:+.2} MB/min after warm-up"
        );
    }
    let rows = store_rows(&gate.dir.join("gatehouse.db"));
    let lost = rows
        .parse::<u64>()
        .map_or_else(|_| "unknown".into(), |r| ok.saturating_sub(r).to_string());
    println!(
        "answered 200: {ok}, failed or late (in flight at the kill included): {}, rows in the \
         store after a SIGKILL under load: {rows}, answered but lost: {lost}",
        counts.failed.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Rows in the child's `requests` table (through the `sqlite3` shell when present).
fn store_rows(db: &std::path::Path) -> String {
    Command::new("sqlite3")
        .arg(db)
        .arg("SELECT count(*) FROM requests")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown (no sqlite3 shell)".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}
