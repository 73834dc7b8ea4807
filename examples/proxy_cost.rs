//! What does one proxied request cost gatehouse, in instructions and CPU time? A fixed number of
//! requests, not a timed run, so `valgrind --tool=callgrind` can count them.
//!
//! Starts the benchmark's fake upstream in this process, the release `gatehouse` binary as a
//! child (optionally under a wrapper such as valgrind), warms up, then per mode (plain,
//! streamed) sends `REQUESTS` requests at concurrency `C` and reports gatehouse's CPU time
//! (utime and stime from `/proc`, per thread name) per request. Under callgrind it zeroes the
//! counters before and dumps them after each mode (`callgrind_control -z/-d`), so each dump
//! holds exactly one mode's requests plus the background work of that window.
//!
//! Run (plain CPU): `cargo build --release --bins --example proxy_cost &&
//! target/release/examples/proxy_cost 5000 1`
//! Run (instructions): `PROXY_COST_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p"
//! target/release/examples/proxy_cost 2000 1`, then `callgrind_annotate /tmp/cg.<pid>.1`
//! (plain) and `.2` (streamed). `GATEHOUSE_DETECT__ENABLED=false` turns detection off. A third
//! argument paces the requests open-loop at that many per second instead (`5000 1 1000`).
//! `PROXY_COST_RELAY=1` measures the proxy bench's bare relay (`benches/support/relay.rs`, this
//! example run again as a child) instead of gatehouse: the floor of any proxy on this stack.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

#[path = "../benches/support/child.rs"]
mod child;
#[path = "../benches/support/relay.rs"]
mod relay;
#[path = "../benches/support/upstream.rs"]
mod upstream;

use child::{free_port, Gatehouse};

use upstream::{request_body, Mode};

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

const WARMUP: usize = 200;
/// Background work (the store writer's last flush) finishes within this after the load.
const SETTLE: Duration = Duration::from_millis(1500);

/// The measured child: gatehouse or the bare relay.
enum Proxy {
    Gate(Gatehouse),
    Relay(relay::Relay),
}

impl Proxy {
    fn child(&mut self) -> &mut Child {
        match self {
            Proxy::Gate(g) => &mut g.child,
            Proxy::Relay(r) => &mut r.child,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Proxy::Gate(_) => "gatehouse",
            Proxy::Relay(_) => "relay",
        }
    }

    fn log(&self) -> String {
        match self {
            Proxy::Gate(g) => g.log().unwrap_or_default(),
            Proxy::Relay(_) => String::new(),
        }
    }
}

/// The release binary (`GATEHOUSE_BIN`, else the target dir's), or with `PROXY_COST_RELAY` the
/// bare relay; under `PROXY_COST_WRAP` if set.
fn spawn(upstream: std::net::SocketAddr, proxy: u16) -> Result<Proxy, Error> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var("GATEHOUSE_BIN").map_or_else(
        |_| {
            let target =
                std::env::var("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
            target.join("release/gatehouse")
        },
        PathBuf::from,
    );
    let relay = std::env::var_os("PROXY_COST_RELAY").is_some();
    let bin = if relay { std::env::current_exe()? } else { bin };
    let wrap = std::env::var("PROXY_COST_WRAP").unwrap_or_default();
    let mut words: Vec<String> = wrap.split_whitespace().map(str::to_owned).collect();
    words.push(bin.display().to_string());
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    if relay {
        return Ok(Proxy::Relay(relay::spawn(cmd, upstream, proxy)?));
    }
    let upstream = format!("http://{upstream}/v1");
    Ok(Proxy::Gate(child::spawn(cmd, "cost", &upstream, proxy)?))
}

/// utime and stime ticks per thread name (`comm`), summed over threads of the same name.
fn thread_ticks(pid: u32) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some((head, rest))) = (stat.find('('), stat.rsplit_once(')')) else {
            continue;
        };
        let name = head[open + 1..].trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let e = out.entry(name.to_owned()).or_insert((0, 0));
        e.0 += num(11);
        e.1 += num(12);
    }
    out
}

async fn one(client: &HttpClient, uri: &Uri, body: &Bytes) -> Result<(), Error> {
    let req = Request::post(uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, "Bearer sk-bench-client")
        .body(Full::new(body.clone()))?;
    let rsp = client.request(req).await?;
    let status = rsp.status();
    let got = rsp.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&got)).into());
    }
    Ok(())
}

/// `n` requests: `c` at a time, or (when `rate` > 0) one every 1/`rate` seconds, open loop.
/// The next request body: each request carries its own user message (see `request_body`).
fn numbered(mode: Mode) -> Bytes {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    request_body(mode, SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

async fn load(
    client: &HttpClient,
    uri: &Uri,
    mode: Mode,
    n: usize,
    c: usize,
    rate: u64,
) -> Result<(), Error> {
    if let Some(nanos) = 1_000_000_000u64.checked_div(rate) {
        let period = Duration::from_nanos(nanos);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            tokio::time::sleep_until(start + period * u32::try_from(i)?).await;
            let (client, uri, body) = (client.clone(), uri.clone(), numbered(mode));
            tasks.push(tokio::spawn(async move { one(&client, &uri, &body).await }));
        }
        for t in tasks {
            t.await??;
        }
        return Ok(());
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, uri, next) = (client.clone(), uri.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                one(&client, &uri, &numbered(mode)).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `PROXY_COST_ATTACH`, e.g. `strace -f -c -o /tmp/st.{mode} -p {pid}`: a tracer attached to
/// gatehouse for one mode's load window, stopped with SIGINT after it.
fn attach(pid: u32, mode: Mode) -> Result<Option<Child>, Error> {
    let Ok(cmd) = std::env::var("PROXY_COST_ATTACH") else {
        return Ok(None);
    };
    let cmd = cmd
        .replace("{pid}", &pid.to_string())
        .replace("{mode}", mode.name().trim());
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let child = Command::new(words[0]).args(&words[1..]).spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(Some(child))
}

fn callgrind(pid: u32, flag: &str) {
    let _ = Command::new("callgrind_control")
        .args([flag, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

async fn run(n: usize, c: usize, rate: u64) -> Result<(), Error> {
    let wrapped = std::env::var("PROXY_COST_WRAP").is_ok_and(|w| w.contains("callgrind"));
    let up = upstream::start_upstream().await?;
    let port = free_port()?;
    let mut gate = spawn(up, port)?;
    let pid = gate.child().id();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let health: Uri = format!("http://127.0.0.1:{port}/health").parse()?;
    let started = Instant::now();
    loop {
        let req = Request::get(health.clone()).body(Full::default())?;
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
            if r.status() == StatusCode::OK {
                break;
            }
        }
        if gate.child().try_wait()?.is_some() || started.elapsed() > Duration::from_secs(300) {
            let log = gate.log();
            return Err(format!("the proxy did not become healthy:\n{log}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let uri: Uri = format!("http://127.0.0.1:{port}/v1/chat/completions").parse()?;
    let rss = |key| {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let name = gate.name();
    println!("{name} pid {pid}; idle VmRSS {}", rss("VmRSS:"));
    let tick_us = 1e6 / 100.0;
    for mode in [Mode::Plain, Mode::Stream] {
        load(&client, &uri, mode, WARMUP, c.max(1), 0).await?;
        tokio::time::sleep(SETTLE).await;
        if wrapped {
            callgrind(pid, "-z");
        }
        let attached = attach(pid, mode)?;
        let before = thread_ticks(pid);
        let t0 = Instant::now();
        load(&client, &uri, mode, n, c, rate).await?;
        let took = t0.elapsed();
        tokio::time::sleep(SETTLE).await;
        let after = thread_ticks(pid);
        if let Some(mut a) = attached {
            let _ = Command::new("kill")
                .args(["-INT", &a.id().to_string()])
                .status();
            let _ = a.wait();
        }
        if wrapped {
            callgrind(pid, "-d");
        }
        let (mut user, mut sys) = (0, 0);
        let mut per = Vec::new();
        for (name, (u, s)) in &after {
            let (u0, s0) = before.get(name).copied().unwrap_or_default();
            let (du, ds) = (u - u0, s - s0);
            user += du;
            sys += ds;
            if du + ds > 0 {
                per.push(format!(
                    "{name} {:.1}",
                    (du + ds) as f64 * tick_us / n as f64
                ));
            }
        }
        let per_req = |t: u64| t as f64 * tick_us / n as f64;
        println!(
            "{} {n} requests at c={c} rate={rate}/s in {:.2} s: {name} CPU µs/req user {:.1} + sys {:.1} = {:.1}; by thread: {}",
            mode.name(),
            took.as_secs_f64(),
            per_req(user),
            per_req(sys),
            per_req(user + sys),
            per.join(", ")
        );
    }
    // The direct path for scale: this process (client and fake upstream) calling the upstream
    // itself; the socket work in it is what a proxy repeats once more on each side.
    let direct: Uri = format!("http://{up}/v1/chat/completions").parse()?;
    let me = std::process::id();
    for mode in [Mode::Plain, Mode::Stream] {
        load(&client, &direct, mode, WARMUP, c.max(1), 0).await?;
        let sum = |m: &BTreeMap<String, (u64, u64)>| {
            m.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1))
        };
        let (u0, s0) = sum(&thread_ticks(me));
        load(&client, &direct, mode, n, c, rate).await?;
        let (u1, s1) = sum(&thread_ticks(me));
        let per = |t: u64| t as f64 * tick_us / n as f64;
        println!(
            "{} direct: client + fake upstream CPU µs/req user {:.1} + sys {:.1} = {:.1}",
            mode.name(),
            per(u1 - u0),
            per(s1 - s0),
            per(u1 - u0 + s1 - s0)
        );
    }
    println!("peak VmHWM {}", rss("VmHWM:"));
    gate.child().kill()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    if relay::serve_if_asked() {
        return std::process::ExitCode::SUCCESS;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, c, rate) = (
        args.first().copied().unwrap_or(2000),
        args.get(1).copied().unwrap_or(1),
        args.get(2).copied().unwrap_or(0) as u64,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build();
    match rt
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run(n, c, rate)))
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy_cost: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
