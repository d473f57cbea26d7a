//! DevMentor Auth issuer.
//!
//! `build` opens the database, runs migrations and loads the signing keys;
//! `Issuer::serve` runs the HTTP service on a listener until `shutdown`
//! resolves, so tests start the real server on port 0.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod feed;
pub mod github;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod password;
pub mod ratelimit;
pub mod rotation;
pub mod store;
pub mod testing;
pub mod tokens;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auth_types::{Expectations, RevocationRecord};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::{Clock, Now};
use crate::config::ServeArgs;
use crate::feed::FeedHub;
use crate::keys::{Kek, Keyring};
use crate::metrics::Metrics;
use crate::password::PasswordHasher;
use crate::store::{AuditEvent, Store};

/// Verifiers may allow up to this much clock skew past `exp` (sidecars cannot
/// be configured with more), so revocation records live this much longer
/// than any token they cover: a revoked token never comes back.
pub const REVOCATION_LEEWAY_SECS: i64 = auth_types::MAX_LEEWAY_SECS;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<ServeArgs>,
    pub keys: Arc<Keyring>,
    pub hasher: Arc<PasswordHasher>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub feed: Arc<FeedHub>,
    /// `None` when GitHub sign-in is not configured.
    pub github: Option<Arc<github::GitHub>>,
    pub limiter: Arc<ratelimit::Limiter>,
    /// `None` when no SMTP server is configured.
    pub mailer: Option<Arc<mail::Mailer>>,
    /// `None` when passkeys cannot be offered (no domain to bind them to).
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// `None` unless an OTLP endpoint is configured.
    pub tracing: Option<Arc<telemetry::Tracing>>,
}

impl AppState {
    /// The one clock read of a request.
    pub fn now(&self) -> Now {
        Now {
            ms: self.clock.now_ms(),
        }
    }

    pub fn expectations(&self) -> Expectations {
        Expectations {
            issuer: self.settings.issuer_url.clone(),
            audience: self.settings.audience.clone(),
            leeway_secs: 0,
        }
    }

    /// A revocation made now can be forgotten once every access token it
    /// could cover has expired.
    pub fn revocation_expiry(&self, now: Now) -> i64 {
        now.secs() + self.settings.keys.access_token_ttl + REVOCATION_LEEWAY_SECS
    }

    /// Called after revocation records commit.
    pub async fn published(&self, records: Vec<RevocationRecord>) {
        if records.is_empty() {
            return;
        }
        self.metrics.revocations.inc_by(records.len() as u64);
        self.feed.revocations_committed().await;
    }

    /// After a key change in the database: reload, push to this replica's
    /// followers, and tell the other replicas.
    pub async fn keys_changed(&self) -> anyhow::Result<()> {
        self.keys.reload(&self.store).await?;
        self.feed.keys_changed(self.keys.version(), true).await;
        Ok(())
    }

    pub async fn update_key_metrics(&self) -> anyhow::Result<()> {
        let keys = self.store.keys().await?;
        let now = self.now().secs();
        for state in [
            rotation::NEXT,
            rotation::CURRENT,
            rotation::RETIRED,
            rotation::REMOVED,
            rotation::REVOKED,
        ] {
            let n = keys.iter().filter(|k| k.state == state).count();
            self.metrics
                .keys_by_state
                .get_or_create(&metrics::StateLabels { state })
                .set(n as i64);
        }
        if let Some(newest) = keys.iter().map(|k| k.created_at).max() {
            self.metrics
                .seconds_since_rotation
                .set((now - newest) as f64);
        }
        Ok(())
    }

    /// Audit failures are logged, not returned: the action itself succeeded.
    pub async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, action = event.action, "audit write failed");
        }
    }
}

/// The KEK file: as configured, or beside the SQLite database by default
/// (then created if missing).
pub fn kek_path(db: &config::DbArgs, keys: &config::KeyArgs) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(path) = &keys.kek_file {
        return Ok((path.clone(), false));
    }
    if !db.database_url.starts_with("sqlite:") {
        anyhow::bail!("--kek-file (ISSUER_KEK_FILE) is required with PostgreSQL");
    }
    let db_path = db
        .database_url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let db_file = db_path.split('?').next().unwrap_or_default();
    let dir = std::path::Path::new(db_file)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    Ok((dir.join("issuer.kek"), true))
}

/// The KEK for an open store. A missing default KEK is generated only for a
/// database without keys: beside existing keys a new KEK could open none of
/// them, so that is refused rather than papered over.
pub async fn open_kek(
    store: &Store,
    db: &config::DbArgs,
    keys: &config::KeyArgs,
) -> anyhow::Result<Kek> {
    let (path, create) = kek_path(db, keys)?;
    if create && !path.exists() && !store.keys().await?.is_empty() {
        anyhow::bail!(
            "KEK file {} is missing but the database holds signing keys sealed under it: \
             restore that file (or pass --kek-file); a new KEK could not open them",
            path.display()
        );
    }
    Kek::load_or_create(&path, create)
}

pub struct Issuer {
    pub state: AppState,
    tls: Option<Arc<http_server::TlsConfig>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens storage, migrates, loads keys and starts background work.
pub async fn build(mut settings: ServeArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Issuer> {
    // Settings problems first, before any connection is attempted.
    kek_path(&settings.db, &settings.keys)?;
    let tls = match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(cert), Some(key)) => Some(http_server::tls_config(cert, key)?),
        _ => None,
    };
    if let Some(path) = &settings.feed_token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--feed-token-file {}: {e}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            anyhow::bail!("--feed-token-file {}: empty", path.display());
        }
        settings.feed_token = Some(token.to_string());
    }
    let store = Store::connect(
        &settings.db.database_url,
        settings.db.database_max_connections,
    )
    .await?;
    store.migrate().await?;
    store.rebuild_search_index().await?;
    let now = clock.now_ms().div_euclid(1000);
    let keys = Arc::new(
        Keyring::open(
            &store,
            open_kek(&store, &settings.db, &settings.keys).await?,
            settings.keys.signing_alg,
            now,
        )
        .await?,
    );
    let hasher = Arc::new(PasswordHasher::new(
        settings.argon2_memory_kib,
        settings.argon2_iterations,
        settings.argon2_parallelism,
        settings.hash_concurrency,
        usize::try_from(settings.hash_queue).unwrap_or(usize::MAX),
    )?);
    let feed = Arc::new(FeedHub::new(
        settings.redis_url.as_deref(),
        usize::try_from(settings.max_feed_followers).unwrap_or(usize::MAX),
    )?);
    let github =
        github::GitHub::from_settings(&settings.github, &settings.issuer_url)?.map(Arc::new);
    let limiter = Arc::new(ratelimit::Limiter::new(settings.redis_url.as_deref())?);
    let mailer = mail::Mailer::from_settings(&settings.mail)?.map(Arc::new);
    let webauthn = api::passkeys::relying_party(&settings)?.map(Arc::new);
    let tracing = settings
        .otlp_endpoint
        .as_deref()
        .map(|e| telemetry::Tracing::new(e, settings.trace_sample_ratio, "devmentor-issuer"))
        .transpose()?
        .map(Arc::new);
    let state = AppState {
        tracing,
        webauthn,
        mailer: mailer.clone(),
        github,
        limiter,
        store: store.clone(),
        settings: Arc::new(settings),
        keys,
        hasher,
        metrics: Arc::new(Metrics::default()),
        clock: clock.clone(),
        feed: feed.clone(),
    };

    let mut tasks = Vec::new();
    let keys_changed = Arc::new(Notify::new());
    tasks.push(tokio::spawn(feed::run_hub(
        feed.clone(),
        store.clone(),
        clock.clone(),
        Duration::from_millis(state.settings.feed_poll_ms),
        Duration::from_millis(state.settings.feed_heartbeat_ms),
        state.keys.clone(),
        keys_changed.clone(),
    )));
    tasks.push(tokio::spawn(feed::run_redis_listener(
        feed.clone(),
        keys_changed.clone(),
    )));
    tasks.push(tokio::spawn(reload_keys(
        state.clone(),
        keys_changed,
        Duration::from_secs(state.settings.key_reload_secs),
    )));
    tasks.push(tokio::spawn(prune(state.clone())));
    if let Some(mailer) = mailer {
        tasks.push(tokio::spawn(mail::run_outbox(state.clone(), mailer)));
    }
    tasks.push(tokio::spawn(audit_refusals_every(
        state.clone(),
        Duration::from_millis(state.settings.audit_refusals_ms),
    )));
    tasks.push(tokio::spawn(key_lifecycle(state.clone())));
    Ok(Issuer { state, tasks, tls })
}

/// Picks up key changes made by other replicas or the CLI.
async fn reload_keys(state: AppState, pushed: Arc<Notify>, every: Duration) {
    loop {
        tokio::select! {
            _ = pushed.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
        match state.keys.reload(&state.store).await {
            Ok(true) => state.feed.keys_changed(state.keys.version(), false).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "signing key reload failed"),
        }
    }
}

/// Applies due key transitions (scheduled rotation, activation, removal).
/// Replicas all tick; the key lock makes each transition happen once.
async fn key_lifecycle(state: AppState) {
    let every = Duration::from_secs(state.settings.key_tick_secs);
    loop {
        if let Err(e) = key_tick(&state).await {
            tracing::warn!(error = %e, "key lifecycle step failed");
        }
        tokio::time::sleep(every).await;
    }
}

pub async fn key_tick(state: &AppState) -> anyhow::Result<()> {
    let now = state.now().secs();
    let life = state.settings.keys.lifecycle();
    let changes = state
        .store
        .change_keys(|keys| {
            let mut make = |st: &str, at: i64| state.keys.make_key(life.alg, st, now, at);
            Ok(rotation::plan_tick(keys, now, &life, &mut make)?)
        })
        .await?;
    if !changes.is_empty() {
        tracing::info!(?changes, "signing keys changed");
        state.keys_changed().await?;
    }
    state.update_key_metrics().await?;
    Ok(())
}

/// Records the rate limiter's refusals in the audit trail, one event per
/// route class and interval (a flood of 429s must not become a flood of
/// writes).
async fn audit_refusals_every(state: AppState, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        audit_refusals(&state).await;
    }
}

pub async fn audit_refusals(state: &AppState) {
    let now = state.now();
    for r in state.limiter.take_refusals() {
        let top: Vec<_> = r
            .top_clients
            .iter()
            .map(|(ip, n)| serde_json::json!({"ip": ip, "count": n}))
            .collect();
        state
            .audit(
                AuditEvent::new(now.ms, "rate_limited")
                    .actor("system")
                    .target(r.class)
                    .outcome(store::Outcome::Denied, "rate_limited")
                    .meta(
                        serde_json::json!({"class": r.class, "count": r.count, "top_clients": top}),
                    ),
            )
            .await;
    }
}

/// Deletes revocations whose tokens have all expired, and long-dead sessions.
async fn prune(state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let now = state.now().secs();
        match state.store.prune(now, 7 * 86_400).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "pruned expired revocations"),
            Err(e) => tracing::warn!(error = %e, "prune failed"),
        }
        let keep = state.settings.audit_retention_days * 86_400;
        if let Err(e) = state.store.prune_login_failures(now - 86_400).await {
            tracing::warn!(error = %e, "login failure prune failed");
        }
        if let Err(e) = state.store.prune_ceremonies(now).await {
            tracing::warn!(error = %e, "WebAuthn ceremony prune failed");
        }
        if let Err(e) = state.store.prune_mfa_tickets(now).await {
            tracing::warn!(error = %e, "MFA ticket prune failed");
        }
        if let Err(e) = state.store.prune_oauth_states(now).await {
            tracing::warn!(error = %e, "oauth state prune failed");
        }
        if let Err(e) = state
            .store
            .prune_mail(now * 1000 - mail::KEEP_FINISHED_MS, now)
            .await
        {
            tracing::warn!(error = %e, "mail prune failed");
        }
        match state.store.prune_audit(now - keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned audit entries past retention"),
            Err(e) => tracing::warn!(error = %e, "audit prune failed"),
        }
    }
}

impl Issuer {
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The feed tells whoever asks which sessions ended and when keys
        // change: open only where nobody but this host can reach it.
        let addr = listener.local_addr()?;
        if self.state.settings.feed_token.is_none() && !addr.ip().is_loopback() {
            return Err(std::io::Error::other(format!(
                "listening on {addr} needs a revocation-feed token: set ISSUER_FEED_TOKEN \
                 or ISSUER_FEED_TOKEN_FILE (e.g. openssl rand -hex 32), and the same on every sidecar"
            )));
        }
        let app = api::router(self.state.clone());
        let feed = self.state.feed.clone();
        let stopping = async move {
            shutdown.await;
            // Long-lived feed streams would otherwise hold the drain open.
            feed.close();
        };
        let settings = &self.state.settings;
        let options = http_server::Options {
            tls: self.tls.clone(),
            header_read_timeout: Duration::from_secs(settings.client_timeout_secs),
            handshake_timeout: Duration::from_secs(settings.client_timeout_secs),
            max_connections: usize::try_from(settings.max_connections).unwrap_or(usize::MAX),
            drain_timeout: DRAIN_TIMEOUT,
        };
        let result = http_server::serve(listener, app, options, stopping).await;
        for task in &self.tasks {
            task.abort();
        }
        self.state.store.close().await;
        result
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
