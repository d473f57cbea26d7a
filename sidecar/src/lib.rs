//! DevMentor Auth sidecar: Envoy ext_authz decisions from in-memory keys,
//! revocations and route policy.
//!
//! `start` loads the policy, fetches keys and the revocation snapshot (or a
//! last-known key set from disk), starts background followers; `serve` runs
//! the gRPC and admin listeners until `shutdown` resolves.
#![forbid(unsafe_code)]

pub mod admin;
pub mod forward;
pub mod grpc;

// The core's modules under their old names, for the front ends and tests.
pub use sidecar_core::{
    authz, config, csrf, decision, dpop, edge, follower, metrics, path, policy, quota, revocations,
};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;

use crate::authz::Authorizer;
use crate::config::Settings;

/// The core's running state, with the gRPC front end's tracing.
pub struct Sidecar {
    pub authz: Arc<Authorizer>,
    core: sidecar_core::Running,
    /// `None` unless an OTLP endpoint is configured.
    tracing: Option<Arc<telemetry::Tracing>>,
}

/// Fails only on a bad policy or bad settings; an unreachable issuer is
/// retried in the background (the sidecar is not ready until it has keys).
pub async fn start(settings: Settings) -> anyhow::Result<Sidecar> {
    let tracing = settings
        .otlp_endpoint
        .as_deref()
        .map(|e| telemetry::Tracing::new(e, settings.trace_sample_ratio, "devmentor-sidecar"))
        .transpose()?
        .map(Arc::new);
    let core = sidecar_core::start(settings).await?;
    Ok(Sidecar {
        authz: core.authz.clone(),
        core,
        tracing,
    })
}

impl Sidecar {
    pub async fn serve(
        self,
        grpc: TcpListener,
        admin: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let grpc_stop = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.changed().await;
            }
        };
        let admin_stop = {
            let mut rx = stop_rx;
            async move {
                let _ = rx.changed().await;
            }
        };
        let service = AuthorizationServer::new(grpc::AuthzService {
            authz: self.authz.clone(),
            tracing: self.tracing.clone(),
        });
        let unix = match &self.authz.settings.listen_unix {
            Some(path) => Some(bind_unix(path)?),
            None => None,
        };
        let unix_server = {
            let service = service.clone();
            let mut rx = stop_tx.subscribe();
            async move {
                let Some((listener, path)) = unix else {
                    return Ok::<(), anyhow::Error>(());
                };
                let incoming = futures_util::stream::unfold(listener, |l| async move {
                    let next = l.accept().await.map(|(stream, _)| stream);
                    Some((next, l))
                });
                let result = tonic::transport::Server::builder()
                    .timeout(Duration::from_secs(5))
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
                let _ = std::fs::remove_file(&path);
                result.map_err(anyhow::Error::from)
            }
        };
        let grpc_server = tonic::transport::Server::builder()
            // A Check is answered from memory in microseconds: anything slower
            // is stuck, and a dead peer's connection must not linger.
            .timeout(Duration::from_secs(5))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(service)
            // Envoy's HTTP/2 stream to us is latency-bound: without
            // TCP_NODELAY, Nagle holds small responses for the peer's ACK.
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
                grpc_stop,
            );
        let admin_server = http_server::serve(
            admin,
            admin::router(self.authz.clone()),
            http_server::Options {
                drain_timeout: Duration::from_secs(5),
                max_connections: 1_024,
                ..http_server::Options::default()
            },
            admin_stop,
        );
        let mut stopping = stop_tx.subscribe();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let servers = async {
            let (g, a, u) = tokio::join!(grpc_server, admin_server, unix_server);
            if let Err(e) = u {
                tracing::error!(error = %e, "Unix socket listener failed");
            }
            (g, a)
        };
        let (grpc_result, admin_result) = tokio::select! {
            results = servers => results,
            // Envoy may hold idle HTTP/2 connections open: cut them after a grace period.
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            } => (Ok(()), Ok(())),
        };
        self.core.stop();
        grpc_result?;
        admin_result?;
        Ok(())
    }
}

/// Binds the Unix socket, replacing a stale one a previous run left (never
/// a file that is not a socket), readable and writable by owner and group.
fn bind_unix(
    path: &std::path::Path,
) -> anyhow::Result<(tokio::net::UnixListener, std::path::PathBuf)> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "--listen-unix {}: exists and is not a socket",
                path.display()
            );
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("--listen-unix {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok((listener, path.to_path_buf()))
}
