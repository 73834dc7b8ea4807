//! The floor of any proxy: a bare HTTP/1.1 relay on the same stack as gatehouse (a hyper server
//! in front of hyper-util's pooled client, a multi-thread tokio runtime with the same worker
//! count), that only rewrites the URI and streams both bodies through. No parsing, detection,
//! records or metrics. The proxy bench runs it as a third side, so what gatehouse adds over
//! this relay is gatehouse's own work, and what the relay adds over a direct call is the price
//! of a second process and two more socket hops on this machine, which no proxy avoids.
//!
//! It runs as a child process, so its CPU time can be read from /proc like gatehouse's: the
//! bench re-executes itself with `PROXY_BENCH_RELAY=<upstream addr>,<listen port>` and `main`
//! calls [`serve_if_asked`] first.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const ENV: &str = "PROXY_BENCH_RELAY";

type Body = Either<Incoming, Empty<Bytes>>;

/// The relay child; killed on drop.
pub struct Relay {
    pub child: Child,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd`, which runs this executable again (directly, or under a wrapper such as
/// valgrind), as a relay on `port` in front of `upstream`.
pub fn spawn(mut cmd: Command, upstream: SocketAddr, port: u16) -> std::io::Result<Relay> {
    let child = cmd
        .env(ENV, format!("{upstream},{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Relay { child })
}

/// When this process was started as a relay, serves until killed and returns true (after an
/// error, which it prints); otherwise returns false at once.
pub fn serve_if_asked() -> bool {
    let Ok(arg) = std::env::var(ENV) else {
        return false;
    };
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let (upstream, port) = arg.split_once(',').ok_or("want <upstream>,<port>")?;
        let (upstream, port): (SocketAddr, u16) = (upstream.parse()?, port.parse()?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(serve(upstream, port))?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("relay: {e}");
    }
    true
}

async fn serve(upstream: SocketAddr, port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let client = client.clone();
            async move { Ok::<_, std::convert::Infallible>(relay(&client, upstream, req).await) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn relay(
    client: &Client<HttpConnector, Incoming>,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse::<Uri>() else {
        return bad_gateway();
    };
    parts.uri = uri;
    match client.request(Request::from_parts(parts, body)).await {
        Ok(rsp) => rsp.map(Either::Left),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Body> {
    let mut rsp = Response::new(Either::Right(Empty::new()));
    *rsp.status_mut() = StatusCode::BAD_GATEWAY;
    rsp
}
