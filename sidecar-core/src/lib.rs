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
pub mod dpop;
pub mod edge;
pub mod follower;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod quota;
pub mod revocations;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::authz::Authorizer;
use crate::config::Settings;
use crate::policy::Policy;

/// The authorizer and the followers that keep it current; dropping it stops
/// them.
pub struct Running {
    pub authz: Arc<Authorizer>,
    tasks: Vec<JoinHandle<()>>,
    /// The one shutdown signal every follower watches.
    stop: watch::Sender<bool>,
}

/// Runs `work` until it ends or `stop` says so (the follower then ends at
/// its current await point: between steps, never inside a cache swap).
fn until_stopped(
    runtime: &tokio::runtime::Handle,
    stop: &watch::Sender<bool>,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let mut stopped = stop.subscribe();
    runtime.spawn(async move {
        tokio::select! {
            () = work => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    })
}

/// The validated settings and policy as an authorizer (no keys yet).
fn authorizer(mut settings: Settings) -> anyhow::Result<Authorizer> {
    settings.validate().map_err(anyhow::Error::msg)?;
    let policy = Policy::load(&settings.policy)?;
    Authorizer::new(settings, policy, Arc::new(metrics::Metrics::default()))
}

/// What keeps the state current, on `runtime`, until `stop`.
fn followers(
    authz: &Arc<Authorizer>,
    runtime: &tokio::runtime::Handle,
    stop: &watch::Sender<bool>,
) -> Vec<JoinHandle<()>> {
    vec![
        until_stopped(runtime, stop, follower::follow_revocations(authz.clone())),
        until_stopped(runtime, stop, follower::reconcile(authz.clone())),
        until_stopped(runtime, stop, follower::refresh_jwks(authz.clone())),
        until_stopped(runtime, stop, follower::watch_policy(authz.clone())),
        until_stopped(runtime, stop, follower::housekeeping(authz.clone())),
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
    let (stop, _) = watch::channel(false);
    let mut tasks = followers(&authz, &runtime, &stop);
    if authz.fetch_jwks_needed() {
        tasks.push(until_stopped(
            &runtime,
            &stop,
            retry_initial_jwks(authz.clone()),
        ));
    }
    Ok(Running { authz, tasks, stop })
}

/// The same state and followers on `runtime`, returning at once: for a
/// front end that must not wait for the issuer (the Envoy module, whose
/// configuration is loaded on Envoy's main thread). Until keys arrive every
/// decision is the fail-closed one.
pub fn start_on(settings: Settings, runtime: &tokio::runtime::Handle) -> anyhow::Result<Running> {
    let authz = Arc::new(authorizer(settings)?);
    let initial = authz.clone();
    let (stop, _) = watch::channel(false);
    let mut tasks = followers(&authz, runtime, &stop);
    tasks.push(until_stopped(runtime, &stop, async move {
        if let Err(e) = initial.fetch_jwks().await {
            tracing::warn!(error = %e, "issuer unreachable at start");
            initial.load_saved_state();
            retry_initial_jwks(initial).await;
        }
    }));
    Ok(Running { authz, tasks, stop })
}

impl Running {
    /// Stops the followers and saves the revocations for the next start.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        self.authz.save_revocations(-1);
    }

    /// Whether every follower has ended (after [`Running::stop`]).
    pub fn stopped(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.send_replace(true);
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
    /// One signal stops every follower (the loops would otherwise run, and
    /// retry an unreachable issuer, forever).
    #[tokio::test]
    async fn stop_ends_every_follower() {
        let policy =
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/policy.yaml"));
        let mut settings = crate::config::Settings::for_tests("http://127.0.0.1:9", policy);
        settings.state_dir = None;
        let running =
            super::start_on(settings, &tokio::runtime::Handle::current()).expect("starts");
        assert!(!running.stopped(), "followers run until stopped");
        running.stop();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !running.stopped() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "followers still running after stop"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

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
