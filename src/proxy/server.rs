//! The proxy listener: accepts TCP (optionally TLS) connections and serves HTTP/1.1 and h2c
//! (or h2 over TLS via ALPN) with hyper; stops accepting on shutdown and lets connections in
//! flight finish within the grace period.
//!
//! Slow or idle clients cannot hold the listener: at most `proxy.max_connections` are open
//! (more are closed at accept), a client must finish its request headers — and on HTTP/1.1 a
//! kept-alive connection must start its next request — within `proxy.header_read_secs`, a TLS
//! handshake within `proxy.tls_handshake_secs`; HTTP/2 peers that stop answering pings are
//! dropped. Request bodies have their own idle timeout (`handle::read_body`). These settings
//! are read when the listener starts (a reload does not change them).

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

/// Serves until `shutdown` resolves, then drains connections for up to `grace`.
pub async fn serve(
    listener: Listener,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let (max_connections, header_read, tls_handshake) = {
        let c = &proxy.runtime.load().config.proxy;
        (
            c.max_connections,
            Duration::from_secs(c.header_read_secs),
            Duration::from_secs(c.tls_handshake_secs),
        )
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read);
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
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            proxy.metrics.connection_closed("over_limit");
            tracing::debug!(%peer, "connection refused: proxy.max_connections reached");
            drop(stream);
            continue;
        };
        let open = Open::new(proxy.metrics.clone(), slot);
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let svc = service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(super::handle::handle(proxy, req).await) }
        });
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
                    let stream = match tokio::time::timeout(tls_handshake, tls.accept(stream)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            open.metrics.connection_closed("tls_timeout");
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
        grace_secs = grace.as_secs_f64(),
        "proxy stopped accepting; draining"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing the remaining connections");
    }
}

/// One open connection: counted in `gatehouse_connections_open` and holding a slot of
/// `proxy.max_connections` until it ends.
struct Open {
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Open {
    fn new(
        metrics: Arc<crate::telemetry::metrics::Metrics>,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Open {
        metrics.connection(true);
        Open {
            metrics,
            _slot: slot,
        }
    }

    /// Counts a connection hyper closed because the client was too slow with its headers.
    fn ended_with(&self, e: &(dyn std::error::Error + 'static)) {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            self.metrics.connection_closed("header_timeout");
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection(false);
    }
}
