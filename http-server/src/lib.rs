//! The one HTTP listener loop the issuer and the sidecar's admin port use.
//!
//! `axum::serve` has no way to bound slow clients or to terminate TLS, so
//! connections are served here with hyper directly:
//! - HTTP/1.1 only (the issuer and admin ports have no use for HTTP/2, whose
//!   version sniffing and idle streams escape the header timeout);
//! - a client must finish each request head within `header_read_timeout`
//!   (slowloris, and silent or idle keep-alive connections), and a TLS
//!   handshake within `handshake_timeout`;
//! - at most `max_connections` connections are open; more are closed at once;
//! - optional TLS (rustls, ring) from PEM files;
//! - on shutdown the listener closes, open connections finish their current
//!   request, and whatever is still open after `drain_timeout` is cut.
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub use rustls::ServerConfig as TlsConfig;

#[derive(Clone)]
pub struct Options {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// A TLS server configuration from a PEM certificate chain and private key.
pub fn tls_config(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("TLS certificate {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!("TLS certificate {}: no certificates", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| anyhow::anyhow!("TLS key {}: {e}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| anyhow::anyhow!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
/// Handlers can extract `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let tls = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let handshake_timeout = options.handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(tcp, peer, app, &builder, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, peer, app, &builder, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("drain timeout; closing remaining connections");
        }
    }
    Ok(())
}

async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    builder: &Builder,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut request: axum::extract::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let service = TowerToHyperService::new(
        service
            .map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
    );
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
