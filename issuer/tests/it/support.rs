use std::sync::Arc;

use auth_types::{AccessClaims, JwkSet, VerifyingKeySet};
use issuer::config::ServeArgs;
use issuer::domain::clock::{Clock, ManualClock, SystemClock};
use issuer::testing::{self, RunningIssuer};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Backend::Postgres).await })*
        }
    };
}

pub struct Db {
    pub url: String,
    pub dir: tempfile::TempDir,
}

/// A fresh, empty database; `None` only when PostgreSQL is not provided and
/// not required (plain `cargo test`).
pub async fn database(backend: Backend) -> Option<Db> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}/issuer.db", dir.path().display()),
        Backend::Postgres => {
            let admin = testing::required_service("DM_TEST_POSTGRES_URL", "PostgreSQL")?;
            testing::fresh_postgres_database(&admin)
                .await
                .expect("create test database")
        }
    };
    Some(Db { url, dir })
}

pub struct TestIssuer {
    pub server: RunningIssuer,
    pub http: reqwest::Client,
    /// Keeps the database (and its temp dir) alive as long as the server.
    pub _db: Db,
}

impl TestIssuer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Option<Value>) -> Response {
        let mut req = self.http.post(self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, email: &str, password: &str) -> Value {
        let r = self
            .post(
                "/auth/register",
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.expect("json")
    }

    /// Logs in and returns the token response.
    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        let r = self
            .post("/auth/login", json!({"email": email, "password": password}))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login {email}");
        Tokens::from(r.json::<Value>().await.expect("json"))
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post("/auth/refresh", json!({"refresh_token": refresh_token}))
            .await
    }

    pub async fn jwks(&self) -> VerifyingKeySet {
        let set: JwkSet = serde_json::from_value(self.get_json("/.well-known/jwks.json").await)
            .expect("a JWK Set");
        VerifyingKeySet::from_jwks(&set).0
    }

    /// A public GET answered with JSON (discovery, the JWKS).
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect(path)
            .json()
            .await
            .expect("json")
    }

    pub async fn verify(&self, token: &str) -> AccessClaims {
        auth_types::jws::verify(token, &self.jwks().await)
            .expect("token verifies against the published JWKS")
            .claims
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
}

impl From<Value> for Tokens {
    fn from(v: Value) -> Self {
        Tokens {
            access: v["access_token"].as_str().expect("access_token").into(),
            refresh: v["refresh_token"].as_str().expect("refresh_token").into(),
            session_id: v["session_id"].as_str().expect("session_id").into(),
        }
    }
}

pub async fn start_with(
    backend: Backend,
    clock: Arc<dyn Clock>,
    tweak: impl FnOnce(&mut ServeArgs),
) -> Option<TestIssuer> {
    let db = database(backend).await?;
    let mut args = testing::test_args(&db.url, db.dir.path());
    tweak(&mut args);
    let server = testing::start(args, clock).await.expect("issuer starts");
    Some(TestIssuer {
        server,
        http: reqwest::Client::new(),
        _db: db,
    })
}

/// The first page of the revocation feed, as a follower reads it.
pub async fn feed_page(t: &TestIssuer) -> auth_types::RevocationEvent {
    t.http
        .get(t.url("/internal/revocations?after=0"))
        .send()
        .await
        .expect("feed")
        .json()
        .await
        .expect("json")
}

/// Live revocation records (the first page; tests hold fewer than a page).
pub async fn feed_records(t: &TestIssuer) -> Vec<auth_types::RevocationRecord> {
    match feed_page(t).await {
        auth_types::RevocationEvent::Snapshot { records, .. } => records,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// A fresh user with the `admin` role; returns its access token.
pub async fn make_admin(t: &TestIssuer) -> String {
    let email = unique_email("admin");
    let user: Value = t.register(&email, PASSWORD).await;
    t.server
        .state
        .store
        .set_roles(user["id"].as_str().expect("id"), &["admin".to_string()])
        .await
        .expect("roles");
    t.login(&email, PASSWORD).await.access
}

pub async fn start(backend: Backend) -> Option<TestIssuer> {
    start_with(backend, Arc::new(SystemClock), |_| {}).await
}

pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now_ms()))
}

pub async fn error_code(r: Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body: Value = r.json().await.expect("error body is JSON");
    (
        status,
        body["error"].as_str().expect("error code").to_string(),
        body["message"].as_str().expect("error message").to_string(),
    )
}

pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub const PASSWORD: &str = "correct horse battery staple";
