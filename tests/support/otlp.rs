//! A fake OTLP/HTTP trace receiver on 127.0.0.1:0: gunzips, decodes the protobuf with prost, and
//! answers each export with the status its script gives (200 with `{}` like Langfuse, or an
//! error). Every export it receives, accepted or not, is sent on a channel for tests to await.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One export request as received.
#[derive(Clone, Debug)]
pub struct Export {
    pub path: String,
    pub headers: http::HeaderMap,
    pub status: u16,
    pub request: ExportTraceServiceRequest,
}

impl Export {
    pub fn spans(&self) -> Vec<Span> {
        self.request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }
}

pub struct FakeOtlp {
    pub addr: SocketAddr,
    exports: mpsc::UnboundedReceiver<Export>,
}

impl FakeOtlp {
    /// Answers export number `n` (from 0) with `status(n)`.
    pub async fn start(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> FakeOtlp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake otlp");
        let addr = listener.local_addr().expect("addr");
        let (tx, exports) = mpsc::unbounded_channel();
        let status = Arc::new(status);
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, status, count) = (tx.clone(), status.clone(), count.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (tx, status, count) = (tx.clone(), status.clone(), count.clone());
                        async move {
                            let n = count.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(receive(req, status(n), &tx).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeOtlp { addr, exports }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The next export request, waiting up to 20 s.
    pub async fn next(&mut self) -> Export {
        tokio::time::timeout(Duration::from_secs(20), self.exports.recv())
            .await
            .expect("an export within 20 s")
            .expect("receiver running")
    }

    /// Exports until `n` spans were accepted (2xx); returns those spans.
    pub async fn accepted_spans(&mut self, n: usize) -> Vec<Span> {
        let mut spans = Vec::new();
        while spans.len() < n {
            let e = self.next().await;
            if (200..300).contains(&e.status) {
                spans.extend(e.spans());
            }
        }
        spans
    }

    /// Exports received so far without waiting.
    pub fn drain(&mut self) -> Vec<Export> {
        std::iter::from_fn(|| self.exports.try_recv().ok()).collect()
    }
}

async fn receive(
    req: Request<Incoming>,
    status: u16,
    tx: &mpsc::UnboundedSender<Export>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let gzip = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let raw = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        body.to_vec()
    };
    let request = ExportTraceServiceRequest::decode(&raw[..]).expect("valid OTLP protobuf");
    let _ = tx.send(Export {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        status,
        request,
    });
    let mut rsp = Response::new(Full::new(Bytes::from_static(b"{}")));
    *rsp.status_mut() = http::StatusCode::from_u16(status).expect("status");
    rsp.headers_mut()
        .insert("content-type", "application/json".parse().expect("ct"));
    rsp
}

/// A string attribute of a span.
pub fn attr_str<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// An integer attribute of a span.
pub fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// A boolean attribute of a span.
pub fn attr_bool(span: &Span, key: &str) -> Option<bool> {
    match span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        Value::BoolValue(b) => Some(*b),
        _ => None,
    }
}
