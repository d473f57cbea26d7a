//! The edge's core: route policy, the decision, the caches of the issuer's
//! keys, revocations and permissions, and the followers that keep them
//! current. No gRPC, HTTP server or tracing exporter: the sidecar (gRPC,
//! admin, forward-auth) and the Envoy module are front ends over this, and
//! the module, loaded into Envoy, links only this.
#![forbid(unsafe_code)]

pub mod authz;
pub mod config;
pub mod csrf;
pub mod decision;
pub mod edge;
pub mod follower;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod quota;
pub mod revocations;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::authz::Authorizer;
use crate::config::Settings;
use crate::policy::Policy;

/// The authorizer and the followers that keep it current; dropping it stops
/// them.
pub struct Running {
    pub authz: Arc<Authorizer>,
    tasks: Vec<JoinHandle<()>>,
}

/// The validated settings and policy as an authorizer (no keys yet).
fn authorizer(mut settings: Settings) -> anyhow::Result<Authorizer> {
    settings.validate().map_err(anyhow::Error::msg)?;
    let policy = Policy::load(&settings.policy)?;
    Authorizer::new(settings, policy, Arc::new(metrics::Metrics::default()))
}

/// What keeps the state current, on `runtime`.
fn followers(authz: &Arc<Authorizer>, runtime: &tokio::runtime::Handle) -> Vec<JoinHandle<()>> {
    vec![
        runtime.spawn(follower::follow_revocations(authz.clone())),
        runtime.spawn(follower::reconcile(authz.clone())),
        runtime.spawn(follower::refresh_jwks(authz.clone())),
        runtime.spawn(follower::watch_policy(authz.clone())),
        runtime.spawn(follower::housekeeping(authz.clone())),
    ]
}

/// Fails only on a bad policy or bad settings; an unreachable issuer is
/// retried in the background (not ready until there are keys).
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let authz = Arc::new(authorizer(settings)?);
    if let Err(e) = authz.fetch_jwks().await {
        tracing::warn!(error = %e, "issuer unreachable at start");
        authz.load_saved_state();
    }
    let runtime = tokio::runtime::Handle::current();
    let mut tasks = followers(&authz, &runtime);
    if authz.fetch_jwks_needed() {
        tasks.push(runtime.spawn(retry_initial_jwks(authz.clone())));
    }
    Ok(Running { authz, tasks })
}

/// The same state and followers on `runtime`, returning at once: for a
/// front end that must not wait for the issuer (the Envoy module, whose
/// configuration is loaded on Envoy's main thread). Until keys arrive every
/// decision is the fail-closed one.
pub fn start_on(settings: Settings, runtime: &tokio::runtime::Handle) -> anyhow::Result<Running> {
    let authz = Arc::new(authorizer(settings)?);
    let initial = authz.clone();
    let mut tasks = followers(&authz, runtime);
    tasks.push(runtime.spawn(async move {
        if let Err(e) = initial.fetch_jwks().await {
            tracing::warn!(error = %e, "issuer unreachable at start");
            initial.load_saved_state();
            retry_initial_jwks(initial).await;
        }
    }));
    Ok(Running { authz, tasks })
}

impl Running {
    /// Stops the followers and saves the revocations for the next start.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.authz.save_revocations(-1);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn retry_initial_jwks(authz: Arc<Authorizer>) {
    let mut wait = Duration::from_millis(200);
    while authz.fetch_jwks_needed() {
        tokio::time::sleep(wait).await;
        let _ = authz.fetch_jwks().await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    /// The Envoy module links this crate: no gRPC, protobuf or HTTP server
    /// may come in with it (they belong to the sidecar's front ends).
    #[test]
    fn no_server_stack_in_the_core() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .expect("a [dependencies] table");
        for name in [
            "tonic",
            "prost",
            "axum",
            "envoy-types",
            "telemetry",
            "http-server",
            "hyper =",
        ] {
            assert!(
                !deps.lines().any(|l| l.trim_start().starts_with(name)),
                "sidecar-core depends on {name}"
            );
        }
    }
}
