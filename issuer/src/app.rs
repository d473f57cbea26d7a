//! The running issuer: its shared state, how it is built from settings, and
//! how it serves until shutdown. Routes are `http`'s, background work is
//! `jobs`', the rules are `service`'s.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{self, ServeArgs};
use crate::domain::clock::Clock;
use crate::domain::keys::Kek;
use crate::domain::password::PasswordHasher;
use crate::domain::ratelimit;
use crate::jobs::Jobs;
use crate::service::feed::FeedHub;
use crate::service::github::client as github_client;
use crate::service::keyring::Keyring;
use crate::service::mail;
use crate::service::metrics::Metrics;
use crate::service::state::AppState;
use crate::store::Store;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    jobs: Jobs,
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
        github_client::GitHub::from_settings(&settings.github, &settings.issuer_url)?.map(Arc::new);
    let limiter = Arc::new(ratelimit::Limiter::new(settings.redis_url.as_deref())?);
    limiter.connect(std::time::Duration::from_secs(2)).await;
    let mailer = mail::Mailer::from_settings(&settings.mail)?.map(Arc::new);
    let webauthn = crate::service::passkeys::relying_party(&settings)?.map(Arc::new);
    let tracing = settings
        .otlp_endpoint
        .as_deref()
        .map(|e| telemetry::Tracing::new(e, settings.trace_sample_ratio, "devmentor-issuer"))
        .transpose()?
        .map(Arc::new);
    let workload = Arc::new(crate::service::oauth::workload::WorkloadTrust::load(
        settings.workload_trust.as_deref(),
    )?);
    let state = AppState {
        usage: Arc::default(),
        workload,
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
        backchannel_wake: Arc::new(tokio::sync::Notify::new()),
    };

    let jobs = Jobs::start(&state);
    Ok(Issuer { state, jobs, tls })
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
        let app = crate::http::router(self.state.clone());
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
        self.jobs.stop().await;
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
