//! Helpers for tests (this crate's and the sidecar's) that run the real
//! issuer on a loopback port against a real database.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ServeArgs;
use crate::domain::clock::Clock;
use crate::AppState;

pub const TEST_ISSUER_URL: &str = "https://issuer.test";
pub const TEST_AUDIENCE: &str = "devmentor";

pub struct RunningIssuer {
    pub addr: SocketAddr,
    pub base_url: String,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl RunningIssuer {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

/// Settings for a test issuer: cheap argon2 (tests check behaviour, not
/// cost), a KEK file in `dir`, a fixed issuer URL.
pub fn test_args(database_url: &str, dir: &Path) -> ServeArgs {
    let mut args = ServeArgs::with_database(database_url);
    args.issuer_url = TEST_ISSUER_URL.into();
    args.audience = TEST_AUDIENCE.into();
    args.argon2_memory_kib = 1024;
    args.argon2_iterations = 1;
    args.feed_poll_ms = 200;
    // Tests of other things send many requests from one address; the
    // limiter's own tests turn it on.
    for rate in [
        &mut args.rate_limit_login,
        &mut args.rate_limit_register,
        &mut args.rate_limit_refresh,
        &mut args.rate_limit_password,
        &mut args.rate_limit_other,
        &mut args.rate_limit_mfa,
        &mut args.rate_limit_device,
    ] {
        *rate = crate::domain::ratelimit::RateSetting(None);
    }
    let kek = dir.join("test.kek");
    if !kek.exists() {
        // Same KEK for every replica of a test, as in production.
        let _ = std::fs::write(&kek, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    }
    args.keys.kek_file = Some(kek);
    args
}

pub async fn start(args: ServeArgs, clock: Arc<dyn Clock>) -> anyhow::Result<RunningIssuer> {
    start_on(args, clock, false).await
}

/// As [`start`], with the issuer URL its own address (`http://127.0.0.1:…`),
/// for clients that must reach what discovery names: a CLI run as a
/// process.
pub async fn start_at_own_url(
    args: ServeArgs,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningIssuer> {
    start_on(args, clock, true).await
}

async fn start_on(
    mut args: ServeArgs,
    clock: Arc<dyn Clock>,
    own_url: bool,
) -> anyhow::Result<RunningIssuer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    if own_url {
        args.issuer_url = format!("http://{addr}");
    }
    let issuer = crate::build(args, clock).await?;
    let state = issuer.state.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(issuer.serve(listener, async {
        let _ = stopped.await;
    }));
    Ok(RunningIssuer {
        addr,
        base_url: format!("http://{addr}"),
        state,
        stop: Some(stop),
        handle,
    })
}

/// `DM_TEST_POSTGRES_URL`, or `None` (with a printed reason) when it is not
/// set and the run does not require services. Under `scripts/test.sh`
/// (`DM_REQUIRE_SERVICES=1`) a missing service is a failure.
pub fn required_service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("DM_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{what} is required ({var} is not set); run ./scripts/test.sh")
        }
        _ => {
            eprintln!(
                "skipping: {what} not available ({var} not set; ./scripts/test.sh provides it)"
            );
            None
        }
    }
}

/// A new empty database on the test PostgreSQL server.
pub async fn fresh_postgres_database(admin_url: &str) -> anyhow::Result<String> {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// A DPoP proof (RFC 9449) signed by `key`, for tests and benchmarks: the
/// header's `jwk` is the key's public half; `ath` when a token is given.
pub fn dpop_proof(
    key: &crate::domain::keys::SigningKey,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    iat: i64,
    jti: &str,
) -> String {
    use auth_types::jws::b64url_encode;
    let mut jwk = serde_json::to_value(key.public_jwk()).unwrap_or_default();
    if let Some(members) = jwk.as_object_mut() {
        for m in ["kid", "alg", "use"] {
            members.remove(m);
        }
    }
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": key.alg.as_str(), "jwk": jwk});
    let mut claims = serde_json::json!({"jti": jti, "htm": method, "htu": url, "iat": iat});
    if let Some(token) = access_token {
        claims["ath"] = auth_types::dpop::access_token_hash(token).into();
    }
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap_or_default();
    format!("{input}.{}", b64url_encode(&sig))
}

/// A client's DPoP key (a fresh one each call), for tests.
pub fn dpop_key(alg: auth_types::SigningAlg) -> crate::domain::keys::SigningKey {
    let pkcs8 = crate::domain::keys::generate_pkcs8(alg).unwrap_or_default();
    match crate::domain::keys::SigningKey::from_pkcs8("client", alg, &pkcs8) {
        Ok(key) => key,
        Err(e) => panic!("a {alg} key: {e}"),
    }
}

/// Now, in Unix seconds, by the system clock (a proof's `iat`).
pub fn unix_now() -> i64 {
    use crate::domain::clock::Clock;
    crate::domain::clock::SystemClock.now_ms().div_euclid(1000)
}

/// The RFC 7638 thumbprint of `key` (what `cnf.jkt` holds).
pub fn dpop_jkt(key: &crate::domain::keys::SigningKey) -> String {
    auth_types::dpop::thumbprint(&key.public_jwk()).unwrap_or_default()
}
