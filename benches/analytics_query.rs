//! Question: how long does `usage(days = 7)` take over a big store (target ≤ 250 ms at 10 M
//! stored requests), and the security summary and forecast next to it?
//!
//! Build the data set first, then:
//! `cargo run --release --example gen_dataset -- target/bench-1m.db 1`
//! `GATEHOUSE_BENCH_DB=target/bench-1m.db cargo bench --bench analytics_query`

use std::time::{Instant, SystemTime};

use gatehouse::analytics::{forecast_requests, security_summary, unix_ms, usage};
use gatehouse::store::Store;

const RUNS: usize = 20;

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} runs)",
        pick(0.5),
        pick(0.95),
        pick(1.0),
        ms.len()
    );
}

async fn time<F, Fut, T>(f: F) -> Vec<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        std::hint::black_box(f().await);
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out
}

#[tokio::main]
async fn main() {
    let path = std::env::var("GATEHOUSE_BENCH_DB").unwrap_or_else(|_| "target/bench-1m.db".into());
    let store = Store::open(std::path::Path::new(&path))
        .await
        .expect("open the bench data set");
    let total = store.count_requests(0, i64::MAX).await.expect("count");
    println!(
        "{path}: {total} stored requests, {:.1} MB",
        std::fs::metadata(&path).map_or(0, |m| m.len()) as f64 / 1e6
    );
    let u = usage(&store, 7).await.expect("usage");
    println!(
        "usage(7).total_requests = {}",
        u.general_metrics.total_requests
    );
    report("usage(days=7)", time(|| usage(&store, 7)).await);
    report("usage(days=30)", time(|| usage(&store, 30)).await);
    let now = unix_ms(SystemTime::now());
    report(
        "security_summary(7d)",
        time(|| security_summary(&store, now - 7 * 86_400_000, now)).await,
    );
    report(
        "forecast_requests(14d)",
        time(|| forecast_requests(&store, 14)).await,
    );
}
