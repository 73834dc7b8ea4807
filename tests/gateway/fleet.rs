//! Fleet mode end to end: two `gatehouse` processes (the real binary) writing to one PostgreSQL
//! database; the analytics either one serves are the fleet's sum, nothing is lost, and a rate
//! limit holds for the fleet, not for each replica.
//! Needs `TEST_POSTGRES_URL` (CI sets it; skipped otherwise, and `TEST_POSTGRES_REQUIRED=1`
//! makes a missing server an error).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::pg::{fresh_postgres_db, postgres_url};
use crate::support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

struct Replica {
    child: Child,
    proxy: String,
    admin: String,
}

impl Replica {
    fn spawn(name: &str, store_url: &str, upstream: &str) -> Replica {
        Replica::spawn_with(name, store_url, upstream, &[])
    }

    /// As `spawn`, with `extra` environment variables.
    fn spawn_with(name: &str, store_url: &str, upstream: &str, extra: &[(&str, &str)]) -> Replica {
        let (proxy, admin) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("serve")
            .envs(extra.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("GATEHOUSE_PROXY__LISTEN", format!("127.0.0.1:{proxy}"))
            .env("GATEHOUSE_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env("GATEHOUSE_UPSTREAMS__OPENROUTER__BASE_URL", upstream)
            .env("GATEHOUSE_STORE__URL", store_url)
            .env("GATEHOUSE_STORE__FLUSH_MS", "50")
            .env("GATEHOUSE_INSTANCE", name)
            .env("OPENROUTER_API_KEY", "sk-or-v1-test")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gatehouse binary starts");
        Replica {
            child,
            proxy: format!("http://127.0.0.1:{proxy}"),
            admin: format!("http://127.0.0.1:{admin}"),
        }
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(r) = client().get(format!("{}/health", self.proxy)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("replica at {} never became healthy", self.proxy);
    }

    async fn total_requests(&self) -> u64 {
        let v: serde_json::Value = client()
            .get(format!("{}/api/usage/analytics?days=1", self.admin))
            .send()
            .await
            .expect("analytics answers")
            .json()
            .await
            .expect("json");
        v["general_metrics"]["total_requests"]
            .as_u64()
            .unwrap_or_else(|| panic!("total_requests in {v}"))
    }

    /// SIGTERM, then the exit status (a clean shutdown flushes the store).
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("replica exits")
    }
}

impl Drop for Replica {
    /// A test that fails mid-way leaves no replica running (a stopped one is already gone).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(base: &str, n: usize, user: &str) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = format!("{base}/v1/chat/completions");
        let body = serde_json::json!({"model": "openai/gpt-4o-mini", "user": user,
            "messages": [{"role": "user", "content": format!("hello {i}")}]});
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        if tasks.len() == 8 {
            for t in tasks.drain(..) {
                assert_eq!(t.await.expect("task").expect("answer"), 200);
            }
        }
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("answer"), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_show_the_fleet_sum_and_lose_nothing() {
    let Some(server) = postgres_url() else { return };
    let url = fresh_postgres_db(&server).await;
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let a = Replica::spawn("replica-a", &url, &up.url());
    let b = Replica::spawn("replica-b", &url, &up.url());
    a.wait_ready().await;
    b.wait_ready().await;
    // Both write the same minute's rollup rows at the same time.
    tokio::join!(send(&a.proxy, 120, "alice"), send(&b.proxy, 80, "bob"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = (0, 0);
    while tokio::time::Instant::now() < deadline {
        seen = (a.total_requests().await, b.total_requests().await);
        if seen == (200, 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen,
        (200, 200),
        "each replica's analytics show the fleet's 120 + 80"
    );
    // A threshold change made on one replica reaches the other through the store.
    let critical_on = |admin: String| async move {
        let v: serde_json::Value = client()
            .get(format!("{admin}/api/config/thresholds"))
            .send()
            .await
            .expect("thresholds")
            .json()
            .await
            .expect("json");
        v["current"]["critical"].as_f64()
    };
    assert_eq!(
        critical_on(b.admin.clone()).await,
        Some(20.0),
        "the file's value"
    );
    let change = serde_json::json!({"low": 3.0, "medium": 7.0, "high": 12.0, "critical": 18.0});
    let v: serde_json::Value = client()
        .post(format!("{}/api/config/thresholds", a.admin))
        .json(&change)
        .send()
        .await
        .expect("change")
        .json()
        .await
        .expect("json");
    assert_eq!(v["applied"], true, "{v}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while critical_on(b.admin.clone()).await != Some(18.0) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        critical_on(b.admin.clone()).await,
        Some(18.0),
        "replica b applied a's change"
    );
    assert!(a.stop().success(), "replica a shuts down cleanly");
    assert!(b.stop().success(), "replica b shuts down cleanly");
    let store = gatehouse::store::Store::connect(&url).await.expect("store");
    assert_eq!(store.count_requests(0, i64::MAX).await.expect("count"), 200);
    let users = store.user_rollups(0, i64::MAX / 2).await.expect("users");
    let per_user: Vec<(&str, u64)> = users
        .iter()
        .map(|u| (u.user.as_str(), u.requests))
        .collect();
    assert_eq!(per_user, vec![("alice", 120), ("bob", 80)]);
}

const ADMIN_TOKEN: &str = "fleet-admin-token";

/// `quotas.sync_ms` (T) of the quota tests' replicas.
const SYNC_MS: u64 = 200;
const SYNC_MS_ENV: &str = "200";

/// An admin API call with the token; the JSON answer.
async fn admin(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let rsp = req.send().await.expect("an admin answer");
    let status = rsp.status();
    let v: Value = rsp.json().await.expect("json");
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// The environment of the quota tests that make keys through `/api/keys`: the admin token, a
/// key sync every second, `quotas.sync_ms` = [`SYNC_MS`].
const KEYS_ENV: [(&str, &str); 3] = [
    ("GATEHOUSE_ADMIN__TOKEN", ADMIN_TOKEN),
    ("GATEHOUSE_AUTH__SYNC_SECS", "1"),
    ("GATEHOUSE_QUOTAS__SYNC_MS", SYNC_MS_ENV),
];

/// Replicas `<name>-a` and `<name>-b` on `store_url`, with `env`, once both are ready.
async fn two_replicas(
    name: &str,
    store_url: &str,
    upstream: &str,
    env: &[(&str, &str)],
) -> (Replica, Replica) {
    let a = Replica::spawn_with(&format!("{name}-a"), store_url, upstream, env);
    let b = Replica::spawn_with(&format!("{name}-b"), store_url, upstream, env);
    a.wait_ready().await;
    b.wait_ready().await;
    (a, b)
}

/// Makes a virtual key on replica `r` (`POST /api/keys` with `spec`); its secret.
async fn make_key(r: &Replica, spec: Value) -> String {
    let made = admin(&r.admin, reqwest::Method::POST, "/api/keys", Some(spec)).await;
    made["secret"].as_str().expect("the secret").to_owned()
}

/// What replica `r` shows of scope `kind` named `name` in `/api/quotas` (a configured scope or
/// one of the 100 busiest end users; a key by its user): `None` while it does not know it.
async fn scope_view(r: &Replica, kind: &str, name: &str) -> Option<Value> {
    let v = admin(
        &r.admin,
        reqwest::Method::GET,
        "/api/quotas?users=100",
        None,
    )
    .await;
    let listed = |field: &str| v[field].as_array().cloned().unwrap_or_default();
    listed("scopes")
        .into_iter()
        .chain(listed("users"))
        .find(|s| s["scope"] == kind && s["name"] == name)
}

/// The fleet-wide requests this minute of scope `kind` named `name`, as replica `r` sees them.
async fn minute_used(r: &Replica, kind: &str, name: &str) -> Option<u64> {
    scope_view(r, kind, name).await?["requests_per_minute"]["used"].as_u64()
}

/// Polls `r` until the key of `user` shows `want` requests this minute; panics after 20 s.
async fn wait_for_used(r: &Replica, user: &str, want: u64) {
    wait_for_minute(r, "key", user, want).await;
}

/// Polls `probe` every 50 ms until it reads `want`; panics after 20 s, naming `what` and
/// the last reading.
async fn poll_until<F, Fut>(what: String, want: u64, probe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    while tokio::time::Instant::now() < deadline {
        seen = probe().await;
        if seen == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: never showed {want}, last {seen:?}");
}

/// Polls `r` until scope `kind` named `name` shows `want` requests this minute; panics after
/// 20 s.
async fn wait_for_minute(r: &Replica, kind: &str, name: &str, want: u64) {
    let what = format!("{} requests for {kind} {name}", r.admin);
    poll_until(what, want, || minute_used(r, kind, name)).await;
}

/// Who a request is from: a gateway key, or an end user named in the body (no key).
#[derive(Clone, Copy)]
enum Who<'a> {
    Key(&'a str),
    User(&'a str),
}

/// Sends `n` chat requests one after the other with `key`, `pace` apart; how many were
/// admitted (200) and refused (429).
async fn send_with_key(base: &str, key: &str, n: usize, pace: Duration) -> (usize, usize) {
    send_as(base, Who::Key(key), n, pace).await
}

/// Sends `n` chat requests one after the other as `who`, `pace` apart; how many were admitted
/// (200) and refused (429).
async fn send_as(base: &str, who: Who<'_>, n: usize, pace: Duration) -> (usize, usize) {
    let (mut ok, mut refused) = (0, 0);
    for i in 0..n {
        if i > 0 && !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let mut body = serde_json::json!({"model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": format!("hello {i}")}]});
        let mut req = client().post(format!("{base}/v1/chat/completions"));
        match who {
            Who::Key(key) => req = req.bearer_auth(key),
            Who::User(user) => body["user"] = user.into(),
        }
        let status = req
            .json(&body)
            .send()
            .await
            .expect("an answer")
            .status()
            .as_u16();
        match status {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, refused)
}

/// A key's `requests_per_minute: 20` is the fleet's, not each replica's: 15 on replica a, then
/// on b only the 5 left once b has synced; a, synced again, refuses. Without sharing b would
/// admit 15 more (30 in all). Requests are sent in turns, each after the other replica's sync,
/// so the bound's blind time holds no admission and the overshoot must be 0. Then a second key,
/// sent 20 requests on each replica at once, paced: the fleet admits no more than the README's
/// bound computed from that pace, `T` and a generous `d` (counted alone, the replicas would
/// admit all 40), never less than the limit (a replica counting its own requests twice would
/// refuse early), and both replicas end up showing the same fleet count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rate_limit_holds_for_two_replicas_on_one_postgres() {
    let Some(server) = postgres_url() else { return };
    let url = fresh_postgres_db(&server).await;
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let env = KEYS_ENV;
    let (a, b) = two_replicas("quota", &url, &up.url(), &env).await;
    let mut secrets = Vec::new();
    for user in ["fleet-key", "fleet-burst"] {
        let spec = serde_json::json!({"user": user, "limits": {"requests_per_minute": 20}});
        secrets.push(make_key(&a, spec).await);
    }
    let (secret, burst) = (&secrets[0], &secrets[1]);
    // b learns the keys at its next key sync (nothing is sent yet: it shows 0 once it has).
    wait_for_used(&b, "fleet-burst", 0).await;
    // Every count below is in one clock minute.
    fresh_minute(Duration::from_secs(40)).await;

    let on_a = send_with_key(&a.proxy, secret, 15, Duration::ZERO).await;
    assert_eq!(on_a, (15, 0), "a alone is under the limit");
    wait_for_used(&b, "fleet-key", 15).await;
    let on_b = send_with_key(&b.proxy, secret, 15, Duration::ZERO).await;
    assert_eq!(on_b, (5, 10), "b admits only what the fleet has left");
    wait_for_used(&a, "fleet-key", 20).await;
    let again_a = send_with_key(&a.proxy, secret, 5, Duration::ZERO).await;
    assert_eq!(
        again_a,
        (0, 5),
        "a refuses once the fleet has used the minute"
    );
    let admitted = on_a.0 + on_b.0 + again_a.0;
    eprintln!(
        "fleet quota: admitted {admitted} of 35 against a limit of 20 (overshoot {})",
        admitted.saturating_sub(20)
    );
    assert_eq!(admitted, 20, "the fleet admits the limit, no more");

    // Each replica waits `pace` after each answer before its next request, so it admits at most
    // r = 1 / pace requests a second, whatever the load. The README's bound with N = 2:
    // limit + min(limit, 2 * r * (T + d)), with T = quotas.sync_ms and d, the time one sync
    // takes (milliseconds on loopback), taken as a whole second so a loaded machine's late
    // syncs stay inside it: 20 + min(20, 2 * 4 * 1.2) = 29.6, while replicas counting alone
    // admit 40.
    let pace = Duration::from_millis(250);
    let (limit, sync_secs, d_secs) = (20.0, SYNC_MS as f64 / 1000.0, 1.0);
    let r = 1.0 / pace.as_secs_f64();
    let bound = limit + f64::min(limit, 2.0 * r * (sync_secs + d_secs));
    let started = std::time::Instant::now();
    let (on_a, on_b) = tokio::join!(
        send_with_key(&a.proxy, burst, 20, pace),
        send_with_key(&b.proxy, burst, 20, pace)
    );
    let secs = started.elapsed().as_secs_f64();
    let admitted = (on_a.0 + on_b.0) as u64;
    eprintln!(
        "fleet quota, both at once: admitted {admitted} ({} on a, {} on b) of 40 in {secs:.2} s (each replica at most {r} requests/s, measured {:.1}) against a limit of 20 and a bound of {bound:.1} (counted alone: 40)",
        on_a.0,
        on_b.0,
        20.0 / secs,
    );
    assert!(admitted >= 20, "never fewer than the limit: {admitted}");
    assert!(
        admitted as f64 <= bound,
        "the fleet admitted {admitted}, past the bound {bound:.1}"
    );
    wait_for_used(&a, "fleet-burst", admitted).await;
    wait_for_used(&b, "fleet-burst", admitted).await;
    assert!(a.stop().success(), "replica a shuts down cleanly");
    assert!(b.stop().success(), "replica b shuts down cleanly");
}

/// The fleet-wide spend this period of scope `kind` named `name`, in micro-dollars, as replica
/// `r` sees it (`None` while it does not know it).
async fn spent(r: &Replica, kind: &str, name: &str) -> Option<u64> {
    let usd = scope_view(r, kind, name).await?["budget"]["spent_usd"].as_f64()?;
    Some((usd * 1e6).round() as u64)
}

/// The fleet-wide spend this period of the key of `user`, in micro-dollars, as replica `r`
/// sees it (`None` while it does not know the key).
async fn key_spent(r: &Replica, user: &str) -> Option<u64> {
    spent(r, "key", user).await
}

/// Polls `r` until the key of `user` shows `want` micro-dollars spent; panics after 20 s.
async fn wait_for_spent(r: &Replica, user: &str, want: u64) {
    wait_for_scope_spent(r, "key", user, want).await;
}

/// Polls `r` until scope `kind` named `name` shows `want` micro-dollars spent; panics after
/// 20 s.
async fn wait_for_scope_spent(r: &Replica, kind: &str, name: &str, want: u64) {
    let what = format!("{} µ$ spent by {kind} {name}", r.admin);
    poll_until(what, want, || spent(r, kind, name)).await;
}

/// What every answer of the budget test costs, as OpenRouter's `usage.cost` (USD).
const COST_USD: f64 = 0.001;

/// A chat answer costing [`COST_USD`].
fn costly_answer() -> String {
    answer_costing(COST_USD)
}

/// A chat answer costing `usd`.
fn answer_costing(usd: f64) -> String {
    serde_json::json!({
        "id": "gen-1", "object": "chat.completion", "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Blue"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
                  "cost": usd}
    })
    .to_string()
}

/// A key's budget of $0.01 a day (ten answers at $0.001) is the fleet's, and a restart counts
/// no dollar twice: 3 on replica a; b, once synced, 3; a restarted reads $0.006 (the records'
/// $0.006 and the shared rows' $0.006 are the same dollars) and admits the 4 left; b, synced,
/// none. Sent in turns, each after the other replica's sync, and one at a time (a cost is
/// charged before its answer ends), so nothing is in flight or blind when the budget is reached
/// and the fleet spends exactly the budget. Counted alone, b would admit 3 on a fresh $0.01 and
/// never see a's $0.003. Then a second key with $0.02, 20 requests on each replica at once,
/// paced: the fleet spends no more than the README's bound computed from that pace, `T` and a
/// generous `d` (counted alone, the replicas would spend $0.04).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_budget_holds_for_two_replicas_and_a_restart_on_one_postgres() {
    let Some(server) = postgres_url() else { return };
    let url = fresh_postgres_db(&server).await;
    let up = FakeUpstream::always(Reply::Json(200, costly_answer())).await;
    let env = KEYS_ENV;
    let (a, b) = two_replicas("budget", &url, &up.url(), &env).await;
    let mut secrets = Vec::new();
    for (user, usd) in [("fleet-budget", 0.01), ("fleet-budget-burst", 0.02)] {
        let spec = serde_json::json!({"user": user,
            "limits": {"budget_usd": usd, "per": "day"}});
        secrets.push(make_key(&a, spec).await);
    }
    let (secret, burst) = (&secrets[0], &secrets[1]);
    wait_for_spent(&b, "fleet-budget-burst", 0).await;

    let on_a = send_with_key(&a.proxy, secret, 3, Duration::ZERO).await;
    assert_eq!(on_a, (3, 0), "a alone is under the budget");
    wait_for_spent(&b, "fleet-budget", 3_000).await;
    let on_b = send_with_key(&b.proxy, secret, 3, Duration::ZERO).await;
    assert_eq!(on_b, (3, 0), "b spends on top of a's $0.003");
    wait_for_spent(&a, "fleet-budget", 6_000).await;
    assert!(a.stop().success(), "replica a shuts down cleanly");
    let a = Replica::spawn_with("budget-a", &url, &up.url(), &env);
    a.wait_ready().await;
    assert_eq!(
        key_spent(&a, "fleet-budget").await,
        Some(6_000),
        "the restarted replica counts the fleet's $0.006 once, from its first request on"
    );
    let again_a = send_with_key(&a.proxy, secret, 10, Duration::ZERO).await;
    assert_eq!(again_a, (4, 6), "a admits only what the fleet has left");
    wait_for_spent(&b, "fleet-budget", 10_000).await;
    let again_b = send_with_key(&b.proxy, secret, 3, Duration::ZERO).await;
    assert_eq!(
        again_b,
        (0, 3),
        "b refuses once the fleet has spent the budget"
    );
    let admitted = on_a.0 + on_b.0 + again_a.0 + again_b.0;
    eprintln!("fleet budget: admitted {admitted} answers at ${COST_USD} against $0.01");
    assert_eq!(admitted, 10, "the fleet spends the budget, no more");

    // Each replica waits `pace` after each answer, so it spends at most s = COST_USD / pace
    // dollars a second, and has at most one answer (c = COST_USD) in flight. The README's bound
    // with N = 2: budget + min(budget, 2 * s * (T + d)) + 2 * c, with d a whole second (see
    // the rate test): 0.02 + 0.0096 + 0.002 = $0.0316, while replicas counting alone spend
    // $0.04.
    let pace = Duration::from_millis(250);
    let (budget, sync_secs, d_secs) = (0.02, SYNC_MS as f64 / 1000.0, 1.0);
    let s = COST_USD / pace.as_secs_f64();
    let bound = budget + f64::min(budget, 2.0 * s * (sync_secs + d_secs)) + 2.0 * COST_USD;
    let (on_a, on_b) = tokio::join!(
        send_with_key(&a.proxy, burst, 20, pace),
        send_with_key(&b.proxy, burst, 20, pace)
    );
    let spent = (on_a.0 + on_b.0) as f64 * COST_USD;
    eprintln!(
        "fleet budget, both at once: {} on a and {} on b admitted, ${spent:.3} spent against $0.02 and a bound of ${bound:.4} (counted alone: $0.04)",
        on_a.0, on_b.0
    );
    assert!(
        spent >= budget - 1e-9,
        "never less than the budget: ${spent:.3}"
    );
    assert!(
        spent <= bound + 1e-9,
        "the fleet spent ${spent:.3}, past the bound ${bound:.4}"
    );
    let micros = (spent * 1e6).round() as u64;
    wait_for_spent(&a, "fleet-budget-burst", micros).await;
    wait_for_spent(&b, "fleet-budget-burst", micros).await;
    assert!(a.stop().success(), "replica a shuts down cleanly");
    assert!(b.stop().success(), "replica b shuts down cleanly");
}

/// The scopes in `quota_counts` of the database at `url` (every replica's rows).
async fn shared_scopes(url: &str) -> Vec<String> {
    use sqlx::Connection;
    let mut db = sqlx::postgres::PgConnection::connect(url)
        .await
        .expect("connect to the test database");
    sqlx::query_scalar("SELECT DISTINCT scope FROM quota_counts ORDER BY scope")
        .fetch_all(&mut db)
        .await
        .expect("read quota_counts")
}

/// End users' limits are the fleet's too (no key here: the body names the user), shared by a
/// digest of their id: every end user has `requests_per_minute: 6` and $0.02 a day.
/// - u-new: 4 on replica a; b, which has never seen u-new, starts them from the fleet's count
///   and admits only the 2 left; a, synced, none. (u-probe, one request on each replica,
///   tells when b has read a's rows: a writes them in one transaction.)
/// - u-budget, answers at $0.004: 1 on each replica, 2 more on b, then a restarted reads the
///   fleet's $0.016 once (records and shared rows are the same dollars) and admits the 1 left;
///   b none.
///
/// Without sharing b would admit 4 more of u-new and 5 more answers of u-budget. No end user's
/// id is in the shared table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_users_limits_hold_for_two_replicas_and_a_restart_on_one_postgres() {
    let Some(server) = postgres_url() else { return };
    let url = fresh_postgres_db(&server).await;
    let up = FakeUpstream::start(|_, req| {
        let body = String::from_utf8_lossy(&req.body);
        let usd = if body.contains("u-budget") {
            0.004
        } else {
            COST_USD
        };
        Reply::Json(200, answer_costing(usd))
    })
    .await;
    let env = [
        ("GATEHOUSE_ADMIN__TOKEN", ADMIN_TOKEN),
        ("GATEHOUSE_QUOTAS__SYNC_MS", SYNC_MS_ENV),
        ("GATEHOUSE_QUOTAS__USERS__DEFAULT__REQUESTS_PER_MINUTE", "6"),
        ("GATEHOUSE_QUOTAS__USERS__DEFAULT__BUDGET_USD", "0.02"),
        ("GATEHOUSE_QUOTAS__USERS__DEFAULT__PER", "day"),
    ];
    let (a, b) = two_replicas("users", &url, &up.url(), &env).await;
    // Every count below is in one clock minute.
    fresh_minute(Duration::from_secs(40)).await;
    let now = Duration::ZERO;
    let (fresh, probe) = (Who::User("u-new"), Who::User("u-probe"));

    assert_eq!(send_as(&b.proxy, probe, 1, now).await, (1, 0));
    assert_eq!(
        send_as(&a.proxy, fresh, 4, now).await,
        (4, 0),
        "a alone is under the limit"
    );
    assert_eq!(send_as(&a.proxy, probe, 1, now).await, (1, 0));
    wait_for_minute(&b, "user", "u-probe", 2).await;
    assert_eq!(
        send_as(&b.proxy, fresh, 4, now).await,
        (2, 2),
        "b, new to u-new, admits only what the fleet has left"
    );
    wait_for_minute(&a, "user", "u-new", 6).await;
    assert_eq!(
        send_as(&a.proxy, fresh, 2, now).await,
        (0, 2),
        "a refuses once the fleet has used the minute"
    );

    let budget = Who::User("u-budget");
    assert_eq!(send_as(&a.proxy, budget, 1, now).await, (1, 0));
    assert_eq!(send_as(&b.proxy, budget, 1, now).await, (1, 0));
    wait_for_scope_spent(&a, "user", "u-budget", 8_000).await;
    wait_for_scope_spent(&b, "user", "u-budget", 8_000).await;
    assert_eq!(send_as(&b.proxy, budget, 2, now).await, (2, 0));
    wait_for_scope_spent(&a, "user", "u-budget", 16_000).await;
    assert!(a.stop().success(), "replica a shuts down cleanly");
    let a = Replica::spawn_with("users-a", &url, &up.url(), &env);
    a.wait_ready().await;
    assert_eq!(
        spent(&a, "user", "u-budget").await,
        Some(16_000),
        "the restarted replica counts the fleet's $0.016 once, from its first request on"
    );
    assert_eq!(
        send_as(&a.proxy, budget, 3, now).await,
        (1, 2),
        "a admits only what the fleet has left"
    );
    wait_for_scope_spent(&b, "user", "u-budget", 20_000).await;
    assert_eq!(
        send_as(&b.proxy, budget, 2, now).await,
        (0, 2),
        "b refuses once the fleet has spent the budget"
    );

    let scopes = shared_scopes(&url).await;
    assert!(!scopes.is_empty(), "the replicas shared their counts");
    for s in &scopes {
        assert!(
            !s.contains("u-") && s.starts_with("user:") && s.len() == 21,
            "an end user is shared by digest only: {s}"
        );
    }
    assert!(a.stop().success(), "replica a shuts down cleanly");
    assert!(b.stop().success(), "replica b shuts down cleanly");
}

/// Opens a streamed chat request with `key` that stays in flight until `gate` gives its
/// chunks; the answer's status, and the answer (drop it, or read it to the end, to finish).
async fn hold_open(base: &str, key: &str) -> (u16, reqwest::Response) {
    let body = serde_json::json!({"model": "openai/gpt-4o-mini", "stream": true,
        "messages": [{"role": "user", "content": "hello"}]});
    let rsp = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("an answer");
    (rsp.status().as_u16(), rsp)
}

/// The requests in flight replica `r` counts for the key of `user` (its own and, as of its
/// last sync, the rest of the fleet's).
async fn in_flight(r: &Replica, user: &str) -> Option<u64> {
    scope_view(r, "key", user).await?["concurrent"]["in_flight"].as_u64()
}

/// Polls `r` until the key of `user` shows `want` requests in flight; panics after 20 s.
async fn wait_for_in_flight(r: &Replica, user: &str, want: u64) {
    let what = format!("{} in flight for {user}", r.admin);
    poll_until(what, want, || in_flight(r, user)).await;
}

/// A key's `concurrent: 3` is the fleet's: with 2 answers held open on replica a, b admits 1
/// and refuses the next; a, synced, refuses too; once the answers end, each replica has room
/// again. Counted per replica, b would admit 3 and a 1 more (5 at once). Then replica a is
/// killed with its 2 requests in flight: b counts them until their lease ends
/// (`3 · quotas.sync_ms + 5 s`), not for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_cap_holds_for_two_replicas_on_one_postgres() {
    let Some(server) = postgres_url() else { return };
    let url = fresh_postgres_db(&server).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let chunks = chat_stream_events(true);
    let up = {
        let gate = gate.clone();
        FakeUpstream::start(move |_, _| Reply::Stream {
            chunks: chunks.iter().map(|c| c.clone().into()).collect(),
            gate: Some(gate.clone()),
            reset_after: None,
        })
        .await
    };
    let env = KEYS_ENV;
    let (a, b) = two_replicas("conc", &url, &up.url(), &env).await;
    let spec = serde_json::json!({"user": "fleet-conc", "limits": {"concurrent": 3}});
    let secret = make_key(&a, spec).await;
    wait_for_in_flight(&b, "fleet-conc", 0).await;

    let mut open = Vec::new();
    for _ in 0..2 {
        let (status, rsp) = hold_open(&a.proxy, &secret).await;
        assert_eq!(status, 200);
        open.push(rsp);
    }
    wait_for_in_flight(&b, "fleet-conc", 2).await;
    let (status, rsp) = hold_open(&b.proxy, &secret).await;
    assert_eq!(status, 200, "b has one slot of the fleet's 3");
    open.push(rsp);
    let (status, _) = hold_open(&b.proxy, &secret).await;
    assert_eq!(status, 429, "b refuses the fourth");
    wait_for_in_flight(&a, "fleet-conc", 3).await;
    let (status, _) = hold_open(&a.proxy, &secret).await;
    assert_eq!(status, 429, "a refuses too, once synced");

    // The answers end: every slot comes back, on both replicas.
    gate.add_permits(10_000);
    for rsp in open.drain(..) {
        rsp.bytes().await.expect("the whole answer");
    }
    wait_for_in_flight(&a, "fleet-conc", 0).await;
    wait_for_in_flight(&b, "fleet-conc", 0).await;

    // A replica that dies mid-request: its slots lapse with their lease.
    gate.forget_permits(10_000);
    let gate_closed = gate.available_permits() == 0;
    assert!(gate_closed, "the answers are held again");
    for _ in 0..2 {
        let (status, rsp) = hold_open(&a.proxy, &secret).await;
        assert_eq!(status, 200);
        open.push(rsp);
    }
    wait_for_in_flight(&b, "fleet-conc", 2).await;
    drop(a); // killed: no clean shutdown, its rows stay until their lease ends
    drop(open);
    let lease = Duration::from_millis(3 * SYNC_MS + 5_000);
    let killed = std::time::Instant::now();
    wait_for_in_flight(&b, "fleet-conc", 0).await;
    let lapsed = killed.elapsed();
    eprintln!("a killed replica's requests in flight lapsed after {lapsed:?} (lease {lease:?})");
    let (status, _) = hold_open(&b.proxy, &secret).await;
    assert_eq!(status, 200, "b has its slots back");
    gate.add_permits(10_000);
    assert!(b.stop().success(), "replica b shuts down cleanly");
}

/// `gatehouse serve` pointed at a PostgreSQL port nobody listens on (user `gh`, `password`), with
/// `RUST_LOG` at `log`: it stops at the store; what it printed.
fn serve_without_a_database(password: &str, log: &str) -> std::process::Output {
    let closed = free_port();
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(
            "GATEHOUSE_STORE__URL",
            format!("postgres://gh:{password}@127.0.0.1:{closed}/gatehouse"),
        )
        .env("GATEHOUSE_PROXY__LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_ADMIN__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", log)
        .env_remove("NO_COLOR")
        .output()
        .expect("gatehouse runs")
}

#[test]
fn an_unreachable_database_stops_the_start_with_the_reason_and_no_password() {
    let out = serve_without_a_database("hunter2", "error");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open store postgres://gh:***@127.0.0.1"),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let out = serve_without_a_database("pw", "info");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(" WARN gatehouse"), "it logged: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "no ANSI escapes off a terminal: {err:?}"
    );
}
