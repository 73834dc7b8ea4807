//! The proxy listener: accepts TCP (optionally TLS) connections and serves HTTP/1.1 and h2c
//! (or h2 over TLS via ALPN) with hyper; stops accepting on shutdown and lets connections in
//! flight finish within the grace period.
//!
//! Slow or idle clients cannot hold a listener: at most `max_connections` are open (more are
//! closed at accept), a client must finish its request headers — and on HTTP/1.1 a kept-alive
//! connection must start its next request — within `header_read_secs`, a TLS handshake within
//! `tls_handshake_secs`; HTTP/2 peers that stop answering pings are dropped. Request bodies have
//! their own idle timeout (`handle::read_body`). These settings are read when the listener
//! starts (a reload does not change them). The accept loop (`accept_loop`) serves the admin
//! listener too, with its own limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::Proxy;
use crate::telemetry::metrics::Metrics;

/// A bound proxy listener, ready to serve.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Certificate and key paths for TLS termination.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Listener {
    /// Binds the address and loads TLS material when given.
    ///
    /// # Errors
    /// The address cannot be bound, or the PEM files cannot be read or used.
    pub async fn bind(addr: SocketAddr, tls: Option<&TlsFiles>) -> anyhow::Result<Listener> {
        let tcp = TcpListener::bind(addr).await?;
        let tls = match tls {
            Some(files) => Some(acceptor(files)?),
            None => None,
        };
        Ok(Listener { tcp, tls })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&files.key)?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What bounds a listener's connections (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read: Duration,
    pub tls_handshake: Duration,
}

/// Serves the proxy until `shutdown` resolves, then drains connections for up to `grace`.
pub async fn serve(
    listener: Listener,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let limits = {
        let c = &proxy.runtime.load().config.proxy;
        Limits {
            max_connections: c.max_connections,
            header_read: Duration::from_secs(c.header_read_secs),
            tls_handshake: Duration::from_secs(c.tls_handshake_secs),
        }
    };
    let metrics = proxy.metrics.clone();
    let service = move |_peer: SocketAddr| {
        let proxy = proxy.clone();
        service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(super::handle::handle(proxy, req).await) }
        })
    };
    accept_loop(listener, "proxy", limits, metrics, service, shutdown, grace).await;
    tracing::info!("proxy listener closed");
}

/// Accepts connections on `listener` (named `name` in logs and metrics) and serves each with
/// the service `make(peer)` returns, within `limits`, until `shutdown` resolves; then drains
/// connections for up to `grace`. Shared by the proxy and admin listeners.
pub async fn accept_loop<M, S, B>(
    listener: Listener,
    name: &'static str,
    limits: Limits,
    metrics: Arc<Metrics>,
    make: M,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) where
    M: Fn(SocketAddr) -> S,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_closed(name, "over_limit");
            tracing::debug!(listener = name, %peer, "connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let open = Open::new(metrics.clone(), name, slot);
        let _ = stream.set_nodelay(true);
        let svc = make(peer);
        match &listener.tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        open.ended_with(&*e);
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(tls) => {
                let tls = tls.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake = tls.accept(stream);
                    let stream = match tokio::time::timeout(limits.tls_handshake, handshake).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            open.metrics.connection_closed(open.name, "tls_timeout");
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        open.ended_with(&*e);
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!(
        listener = name,
        grace_secs = grace.as_secs_f64(),
        "stopped accepting; draining"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "grace period over; closing the remaining connections"
        );
    }
}

/// One open connection: counted in `gatehouse_connections_open` and holding a slot of
/// `proxy.max_connections` until it ends.
struct Open {
    metrics: Arc<Metrics>,
    name: &'static str,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Open {
    fn new(
        metrics: Arc<Metrics>,
        name: &'static str,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Open {
        metrics.connection(name, true);
        Open {
            metrics,
            name,
            _slot: slot,
        }
    }

    /// Counts a connection hyper closed because the client was too slow with its headers.
    fn ended_with(&self, e: &(dyn std::error::Error + 'static)) {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            self.metrics.connection_closed(self.name, "header_timeout");
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection(self.name, false);
    }
}
