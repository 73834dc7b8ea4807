//! The fast fake upstream shared by `benches/proxy_overhead.rs` and `examples/proxy_cost.rs`:
//! an in-process hyper server on loopback that answers a chat completion with a fixed JSON
//! body, or (when the request says `"stream":true`) with 10 SSE chunks and `data: [DONE]`.

use std::sync::LazyLock;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1767225600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"finish_reason":"stop","logprobs":null,"message":{"role":"assistant","content":"The roadmap is on track; migration runbook owned by Alice.","refusal":null}}],"usage":{"prompt_tokens":260,"completion_tokens":14,"total_tokens":274},"system_fingerprint":"fp_bench"}"#;
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// 10 SSE chunks (role, 8 content words, finish + usage), then `[DONE]`.
static SSE: LazyLock<Vec<Bytes>> = LazyLock::new(|| {
    let head = r#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1767225600,"model":"gpt-4o-mini-2024-07-18","#;
    let mut v = vec![format!("{head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n")];
    for word in [
        "The ", "roadmap ", "is ", "on ", "track; ", "Alice ", "owns ", "it.",
    ] {
        v.push(format!("{head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"));
    }
    v.push(format!("{head}\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":260,\"completion_tokens\":8,\"total_tokens\":268}}}}\n\n"));
    v.push(String::from_utf8_lossy(DONE).into_owned());
    v.into_iter().map(Bytes::from).collect()
});

const SYSTEM: &str = "You are a concise assistant for an engineering team. Answer in short bullet points and keep a neutral tone.";
const USER: &str = "Please summarise the following meeting notes for the team. We discussed the quarterly roadmap, the hiring plan for the platform group, and the migration of our billing service to the new database cluster. Action items: Alice owns the migration runbook, Bob will draft the hiring rubric, and Carol will follow up with finance about the Q3 budget. The on-call rotation moves to weekly shifts next month, and the staging environment will be rebuilt from the new images on Thursday. Open questions: whether the analytics export can wait until after the migration, and who reviews the new alerting thresholds. Please also list any risks you see in the plan and suggest an owner for each of them.";

/// Plain or streamed (SSE) chat completion.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Stream,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain ",
            Mode::Stream => "stream",
        }
    }
}

/// The ~1 KB chat request for `mode`. `n` numbers its user message, so no two requests of a run
/// carry the same message, as in real traffic: gatehouse keeps the scans of messages it has seen
/// (the detector's segment cache), and one message sent over and over would measure that cache,
/// not a scan.
pub fn request_body(mode: Mode, n: u64) -> Bytes {
    let extra = match mode {
        Mode::Plain => "",
        Mode::Stream => r#","stream":true,"stream_options":{"include_usage":true}"#,
    };
    Bytes::from(format!(
        r#"{{"model":"openai/gpt-4o-mini","messages":[{{"role":"system","content":"{SYSTEM}"}},{{"role":"user","content":"[{n:010}] {USER}"}}],"temperature":0.2,"max_tokens":256{extra}}}"#
    ))
}

/// Binds 127.0.0.1:0 and serves the fake upstream on the current runtime.
pub async fn start_upstream() -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, std::convert::Infallible>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let streamed = [&b"\"stream\":true"[..], b"\"stream\": true"]
        .iter()
        .any(|pat| body.windows(pat.len()).any(|w| w == *pat));
    let (content_type, body) = if streamed {
        let frames = SSE.iter().cloned().map(|c| Ok(Frame::data(c)));
        let body = StreamBody::new(futures_util::stream::iter(frames));
        ("text/event-stream", BodyExt::boxed(body))
    } else {
        let body = Full::new(Bytes::from_static(ANSWER.as_bytes()));
        ("application/json", body.boxed())
    };
    let mut rsp = Response::new(body);
    let value = hyper::header::HeaderValue::from_static(content_type);
    rsp.headers_mut().insert(CONTENT_TYPE, value);
    Ok(rsp)
}
