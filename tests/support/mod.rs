//! Test support: a scripted fake OpenAI-compatible upstream on 127.0.0.1:0, and a gateway
//! started in-process through `app::start` pointed at it, with the record stream tapped.
#![allow(dead_code)]

pub mod otlp;
pub mod pg;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};

use gatehouse::config::{Config, UpstreamConfig};
use gatehouse::event::Exchange;

type Body = BoxBody<Bytes, std::io::Error>;

/// What the fake upstream received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// What the fake upstream answers.
#[derive(Clone)]
pub enum Reply {
    Json(u16, String),
    /// Status, extra headers, body.
    Full(u16, Vec<(&'static str, String)>, Bytes),
    /// An event stream: each chunk is sent after the gate gives a permit (the first needs none
    /// when `gate` is None); `reset_after` aborts the connection after that many chunks.
    Stream {
        chunks: Vec<Bytes>,
        gate: Option<Arc<Semaphore>>,
        reset_after: Option<usize>,
    },
    /// Like `Json`, after a delay.
    Slow(Duration, u16, String),
    /// Never answers.
    Hang,
}

pub fn stream(chunks: &[&str]) -> Reply {
    Reply::Stream {
        chunks: chunks.iter().map(|c| Bytes::from(c.to_string())).collect(),
        gate: None,
        reset_after: None,
    }
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Notified when a streamed answer could not be sent because the peer went away.
    pub cancelled: Arc<Notify>,
}

impl FakeUpstream {
    /// Starts a fake upstream answering request number `n` (from 0) with `script(n, req)`.
    pub async fn start(
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let cancelled = Arc::new(Notify::new());
        let script: Arc<Script> = Arc::new(script);
        let (rec, canc) = (received.clone(), cancelled.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rec, canc, script) = (rec.clone(), canc.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (rec, canc, script) = (rec.clone(), canc.clone(), script.clone());
                        async move { Ok::<_, Infallible>(answer(req, &rec, &canc, &*script).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeUpstream {
            addr,
            received,
            cancelled,
        }
    }

    /// Always answers with the same reply.
    pub async fn always(reply: Reply) -> FakeUpstream {
        FakeUpstream::start(move |_, _| reply.clone()).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }
}

async fn answer(
    req: Request<Incoming>,
    rec: &Mutex<Vec<Received>>,
    canc: &Arc<Notify>,
    script: &Script,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let n = {
        let mut r = rec.lock().expect("lock");
        r.push(received.clone());
        r.len() - 1
    };
    match script(n, &received) {
        Reply::Json(status, body) => full(
            status,
            vec![("content-type", "application/json".into())],
            Bytes::from(body),
        ),
        Reply::Full(status, headers, body) => full(status, headers, body),
        Reply::Slow(delay, status, body) => {
            tokio::time::sleep(delay).await;
            full(
                status,
                vec![("content-type", "application/json".into())],
                Bytes::from(body),
            )
        }
        Reply::Stream {
            chunks,
            gate,
            reset_after,
        } => streamed(chunks, gate, reset_after, canc.clone()),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

fn full(status: u16, headers: Vec<(&'static str, String)>, body: Bytes) -> Response<Body> {
    let mut rsp = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
    *rsp.status_mut() = http::StatusCode::from_u16(status).expect("status");
    for (k, v) in headers {
        rsp.headers_mut()
            .insert(k, v.parse().expect("header value"));
    }
    rsp
}

fn streamed(
    chunks: Vec<Bytes>,
    gate: Option<Arc<Semaphore>>,
    reset_after: Option<usize>,
    cancelled: Arc<Notify>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        for (i, chunk) in chunks.into_iter().enumerate() {
            if reset_after == Some(i) {
                let _ = tx.send(Err(std::io::Error::other("reset"))).await;
                return;
            }
            if let (Some(g), true) = (&gate, i > 0) {
                g.acquire().await.expect("gate").forget();
            }
            if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                cancelled.notify_one();
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut rsp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    rsp.headers_mut().insert(
        "content-type",
        "text/event-stream; charset=utf-8".parse().expect("ct"),
    );
    rsp
}

/// A gateway running in-process on 127.0.0.1:0, with its record stream tapped.
pub struct TestGateway {
    pub app: Option<gatehouse::app::App>,
    /// Where this gateway's store is (a SQLite file in `dir`, or a fresh PostgreSQL database
    /// when `TEST_STORE=postgres`).
    pub store_config: gatehouse::config::StoreConfig,
    pub url: String,
    pub admin_url: String,
    pub records: mpsc::Receiver<Arc<Exchange>>,
    pub dir: tempfile::TempDir,
}

/// A config pointed at `upstream` with loopback listeners on port 0.
pub fn config_for(upstream: &str) -> Config {
    let mut c = Config::default();
    c.proxy.listen = "127.0.0.1:0".into();
    c.admin.listen = "127.0.0.1:0".into();
    c.upstreams.clear();
    let mut up = UpstreamConfig::default();
    up.base_url = upstream.to_owned();
    up.api_key_env = Some("GATEHOUSE_TEST_UPSTREAM_KEY_UNSET".into());
    up.backoff_ms = 10;
    c.upstreams.insert("fake".into(), up);
    c.models.default_upstream = Some("fake".into());
    // Never export to a real Langfuse from tests, whatever the environment holds.
    c.traces.langfuse.enabled = Some(false);
    c.models.aliases.insert(
        "qwendeepseek".into(),
        gatehouse::config::AliasConfig {
            model: "deepseek/deepseek-r1-distill-qwen-32b".into(),
            upstream: None,
        },
    );
    c
}

impl TestGateway {
    pub async fn start(config: Config) -> TestGateway {
        TestGateway::start_in(config, tempfile::tempdir().expect("tempdir")).await
    }

    /// Starts a gateway whose SQLite store is in `dir`: a fresh directory, or that of a stopped
    /// gateway ([`TestGateway::stop_keeping_store`]) to start again on its records.
    pub async fn start_in(config: Config, dir: tempfile::TempDir) -> TestGateway {
        let mut config = config;
        config.store.path = dir.path().join("gatehouse.db");
        if std::env::var("TEST_STORE").as_deref() == Ok("postgres") {
            let server = pg::postgres_url().expect("TEST_STORE=postgres needs a server");
            config.store.url = Some(gatehouse::config::Secret::new(
                pg::fresh_postgres_db(&server).await,
            ));
        }
        TestGateway::start_on(config, dir).await
    }

    /// Starts a second gateway on `other`'s store (the same SQLite file or PostgreSQL
    /// database), as a second replica would.
    pub async fn start_sharing(config: Config, other: &TestGateway) -> TestGateway {
        let mut config = config;
        config.store = other.store_config.clone();
        TestGateway::start_on(config, tempfile::tempdir().expect("tempdir")).await
    }

    async fn start_on(config: Config, dir: tempfile::TempDir) -> TestGateway {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = config;
        // The crate's own files by absolute path: the config tests' `figment::Jail` moves the
        // process's working directory for a moment, and a gateway starting in that moment
        // would look for `policies/` in the jail.
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for path in [&mut config.detect.policies, &mut config.prices] {
            if path.is_relative() {
                *path = here.join(&*path);
            }
        }
        let store_config = config.store.clone();
        gatehouse::config::validate(&config).expect("test config must validate");
        let (tx, records) = mpsc::channel(100_000);
        let opts = gatehouse::app::Options {
            config_path: None,
            record_consumers: vec![tx],
        };
        let app = gatehouse::app::start(config, opts)
            .await
            .unwrap_or_else(|e| panic!("gateway starts: {e:#}"));
        TestGateway {
            url: format!("http://{}", app.proxy_addr),
            admin_url: format!("http://{}", app.admin_addr),
            app: Some(app),
            store_config,
            records,
            dir,
        }
    }

    pub async fn with_upstream(upstream: &FakeUpstream) -> TestGateway {
        TestGateway::start(config_for(&upstream.url())).await
    }

    /// POSTs `body` to this gateway's `/v1/chat/completions`, with no key.
    pub async fn chat(&self, body: &serde_json::Value) -> reqwest::Response {
        self.chat_request(body)
            .send()
            .await
            .expect("a response from the proxy")
    }

    /// [`TestGateway::chat`] as end user `user` (`X-Gatehouse-User`).
    pub async fn chat_as(&self, user: &str, body: &serde_json::Value) -> reqwest::Response {
        self.chat_request(body)
            .header("x-gatehouse-user", user)
            .send()
            .await
            .expect("a response from the proxy")
    }

    fn chat_request(&self, body: &serde_json::Value) -> reqwest::RequestBuilder {
        client()
            .post(format!("{}/v1/chat/completions", self.url))
            .json(body)
    }

    /// Opens this gateway's store (again), as an operator's tool would.
    pub async fn open_store(&self) -> gatehouse::store::Store {
        gatehouse::store::Store::from_config(&self.store_config)
            .await
            .expect("store opens")
    }

    /// The next record, waiting up to 10 s.
    pub async fn record(&mut self) -> Arc<Exchange> {
        tokio::time::timeout(Duration::from_secs(10), self.records.recv())
            .await
            .expect("a record within 10 s")
            .expect("record channel open")
    }

    /// Stops gracefully (every record committed), keeping the store's directory.
    pub async fn stop_keeping_store(mut self) -> tempfile::TempDir {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        self.shutdown().await;
        dir
    }

    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

/// The body of a GET of `url` (with no token), as text.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .expect("a text body")
}

/// Waits for the next clock minute when less than `margin` of this one is left, so a minute
/// window (quotas) cannot reset inside a test that counts per minute.
pub async fn fresh_minute(margin: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let left = Duration::from_secs(60) - Duration::from_millis((now.as_millis() % 60_000) as u64);
    if left < margin {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub const CHAT_BODY: &str = r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"Colour of the sky?"}],"temperature":0.2,"metadata":{"tenant":"acme"}}"#;

pub const CHAT_ANSWER: &str = r#"{"id":"chatcmpl-9f3","object":"chat.completion","created":1767225600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"finish_reason":"stop","logprobs":null,"message":{"role":"assistant","content":"Blue","refusal":null,"annotations":[]}}],"usage":{"prompt_tokens":1210,"completion_tokens":3,"total_tokens":1213,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},"service_tier":"default","system_fingerprint":"fp_0ab1"}"#;

/// The chat stream of the OpenAI reference, usage chunk included.
pub fn chat_stream_events(with_usage: bool) -> Vec<String> {
    let head = r#"{"id":"chatcmpl-9f3","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-mini-2024-07-18","#;
    let usage_null = if with_usage { r#","usage":null"# } else { "" };
    let mut v = vec![
        format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]{usage_null}}}\n\n"),
        format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"Bl\"}},\"finish_reason\":null}}]{usage_null}}}\n\n"),
        format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"ue\"}},\"finish_reason\":null}}]{usage_null}}}\n\n"),
        format!("data: {head}\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]{usage_null}}}\n\n"),
    ];
    if with_usage {
        v.push(format!("data: {head}\"choices\":[],\"usage\":{{\"prompt_tokens\":1210,\"completion_tokens\":2,\"total_tokens\":1212,\"prompt_tokens_details\":{{\"cached_tokens\":1024}},\"completion_tokens_details\":{{\"reasoning_tokens\":0}}}}}}\n\n"));
    }
    v.push("data: [DONE]\n\n".into());
    v
}

/// One request a `Receiver` got.
#[derive(Clone, Debug)]
pub struct Hook {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A webhook receiver on 127.0.0.1:0 (Slack, Teams, generic webhooks, Alertmanager): answers
/// request number `n` on each path with `script(path, n)` (status, body) and hands every
/// request to `hooks`.
pub struct Receiver {
    pub addr: SocketAddr,
    pub hooks: mpsc::UnboundedReceiver<Hook>,
}

impl Receiver {
    pub async fn start(
        script: impl Fn(&str, usize) -> (u16, &'static str) + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let (tx, hooks) = mpsc::unbounded_channel();
        let script = Arc::new(script);
        let counts = Arc::new(Mutex::new(std::collections::HashMap::<String, usize>::new()));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, script, counts) = (tx.clone(), script.clone(), counts.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (tx, script, counts) = (tx.clone(), script.clone(), counts.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let path = parts.uri.path().to_owned();
                            let n = {
                                let mut c = counts.lock().expect("lock");
                                let e = c.entry(path.clone()).or_default();
                                *e += 1;
                                *e - 1
                            };
                            let (status, text) = script(&path, n);
                            let _ = tx.send(Hook {
                                path,
                                headers: parts.headers,
                                body,
                            });
                            Ok::<_, Infallible>(full(
                                status,
                                vec![],
                                Bytes::from_static(text.as_bytes()),
                            ))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, hooks }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, waiting up to 10 s.
    pub async fn next(&mut self) -> Hook {
        tokio::time::timeout(Duration::from_secs(10), self.hooks.recv())
            .await
            .expect("a webhook request within 10 s")
            .expect("receiver open")
    }
}

/// One message an `SmtpSink` accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA section (headers and body), dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

/// A plain SMTP server on 127.0.0.1:0 (no TLS, no AUTH) that accepts every message.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub mails: mpsc::UnboundedReceiver<Mail>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let addr = listener.local_addr().expect("addr");
        let (tx, mails) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, tx.clone()));
            }
        });
        SmtpSink { addr, mails }
    }

    pub async fn next(&mut self) -> Mail {
        tokio::time::timeout(Duration::from_secs(10), self.mails.recv())
            .await
            .expect("a mail within 10 s")
            .expect("sink open")
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, tx: mpsc::UnboundedSender<Mail>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r);
    let _ = w.write_all(b"220 sink ESMTP ready\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_owned();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().to_owned());
            b"250 ok\r\n"
        } else if upper == "DATA" {
            let _ = w.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let _ = tx.send(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 2.0.0 queued as 42\r\n"
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 ok\r\n"
        };
        let _ = w.write_all(reply).await;
    }
}

/// An HTTP/1.1 answer read off a raw socket.
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
}

/// Sends `method path` with `body` as raw HTTP/1.1 bytes (so the path reaches the server exactly
/// as written: no client normalises it) and reads the answer until the server closes.
pub async fn raw_request(base: &str, method: &str, path: &str, body: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("write head");
    tcp.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut raw))
        .await
        .expect("answer within 20 s")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(h) = std::collections::HashMap::<String, String>::get(&headers, "transfer-encoding")
    {
        if h.contains("chunked") {
            body = dechunk(&body);
        }
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = raw.get(start + size + 2..).unwrap_or(&[]);
    }
    out
}

/// Log lines of the current thread's `tracing` output, captured (plain text, no colour) while
/// this value lives; tests run the gateway on the test's own single-threaded runtime.
pub struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> Logs {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        // Every gateway start registers a scoped subscriber (its background thread's), and
        // each registration recomputes tracing's global maximum level from the subscribers
        // alive at that moment; one racing this capture's registration could leave the
        // maximum at OFF, and this thread's events would be dropped before reaching the
        // capture. A global subscriber that accepts every level keeps the maximum at TRACE
        // whatever the race; it discards what it gets.
        static ACCEPT_ALL: std::sync::Once = std::sync::Once::new();
        ACCEPT_ALL.call_once(|| {
            let _ = tracing::subscriber::set_global_default(Discard);
        });
        let guard = tracing::subscriber::set_default(subscriber);
        Logs { buf, _guard: guard }
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.buf.lock().expect("lock").clone()).expect("utf-8")
    }
}

/// A subscriber that is interested in everything and keeps nothing (see `Logs::capture`).
struct Discard;

impl tracing::Subscriber for Discard {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
