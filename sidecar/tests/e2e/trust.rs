//! Trust between sidecar and issuer: TLS with a private CA, freshness that
//! means progress, key changes that reach every replica's followers and never
//! go backwards, and account changes enforced at the edge.

use std::sync::Arc;
use std::time::Duration;

use issuer::domain::clock::SystemClock;
use issuer::testing;
use serde_json::{json, Value};
use sidecar::authz::Credential;
use sidecar::decision::{Decision, DenyReason, RequestAttrs};

use crate::support::*;

fn attrs(path: &str) -> RequestAttrs<'_> {
    RequestAttrs {
        method: "GET",
        host: "mesh.local",
        path,
    }
}

fn denied(d: &Decision) -> Option<DenyReason> {
    match d {
        Decision::Deny { reason, .. } => Some(*reason),
        Decision::Allow { .. } => None,
    }
}

async fn register_and_login(base: &str, email: &str) -> Value {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_its_database_cannot_keep_a_sidecar_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/issuer.db", dir.path().display());
    let issuer = start_issuer(testing::test_args(&url, dir.path())).await;
    let mut settings = sidecar_settings(&issuer.base_url);
    settings.jwks_refresh_secs = 1;
    settings.max_staleness_secs = 3;
    let sidecar = start_sidecar(settings, 0).await;
    let access = token(&register_and_login(&issuer.base_url, &unique_email("half")).await);
    let now = sidecar::authz::now_ms;
    assert_eq!(
        denied(
            &sidecar
                .authz()
                .check(attrs("/ai/x"), Credential::bearer(&access), now())
                .await
        ),
        None
    );

    // Half-working: the process answers JWKS from memory and keeps the feed
    // connection alive, but cannot read its database.
    issuer.state.store.close().await;
    let jwks = reqwest::get(format!("{}/.well-known/jwks.json", issuer.base_url))
        .await
        .expect("jwks");
    assert_eq!(jwks.status(), 200, "still serving keys from memory");
    let took = wait_until(Duration::from_secs(15), || async {
        denied(
            &sidecar
                .authz()
                .check(attrs("/ai/x"), Credential::bearer(&access), now())
                .await,
        ) == Some(DenyReason::StaleState)
    })
    .await
    .expect("the sidecar fails closed once the issuer makes no progress");
    eprintln!("stale after {took:?} (max staleness 3 s)");
    sidecar.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_replica_is_refused_by_a_sidecar_following_another() {
    let Some(pg_admin) = testing::required_service("DM_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let db_url = testing::fresh_postgres_database(&pg_admin)
        .await
        .expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = || {
        let mut a = testing::test_args(&db_url, dir.path());
        // No Redis, and a periodic reload too slow to matter: only the
        // key-set version poll can spread the change in time.
        a.redis_url = None;
        a.key_reload_secs = 3_600;
        a
    };
    let a = start_issuer(replica()).await;
    let b = start_issuer(replica()).await;
    let sidecar = start_sidecar(sidecar_settings(&b.base_url), 0).await;
    let email = unique_email("kv");
    let login = register_and_login(&a.base_url, &email).await;
    let access = token(&login);
    let now = sidecar::authz::now_ms;
    assert_eq!(
        denied(
            &sidecar
                .authz()
                .check(attrs("/ai/x"), Credential::bearer(&access), now())
                .await
        ),
        None
    );
    let version_before = sidecar.authz().key_set_version();

    // An admin on replica A revokes the key that signed the token.
    let user = a
        .state
        .store
        .user_by_email(&email)
        .await
        .expect("db")
        .expect("user");
    a.state
        .store
        .set_roles(&user.id, &["admin".to_string()])
        .await
        .expect("roles");
    let admin = token(
        &reqwest::Client::new()
            .post(format!("{}/auth/login", a.base_url))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login")
            .json::<Value>()
            .await
            .expect("json"),
    );
    let kid = a.state.keys.snapshot().signing.kid.clone();
    let r = reqwest::Client::new()
        .post(format!("{}/admin/keys/{kid}/revoke", a.base_url))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let took = wait_until(Duration::from_secs(5), || async {
        denied(
            &sidecar
                .authz()
                .check(attrs("/ai/x"), Credential::bearer(&access), now())
                .await,
        ) == Some(DenyReason::UnknownKey)
    })
    .await
    .expect("replica B's follower refuses the revoked key within 5 s, without Redis");
    eprintln!("key revoke on A → refused via B after {took:?}");
    assert!(sidecar.authz().key_set_version() > version_before);
    sidecar.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_is_enforced_at_the_edge_at_once() {
    let Some(stack) = Stack::start(|_| {}).await else {
        return;
    };
    let email = unique_email("promote");
    let login = stack.login(&email).await;
    let access = token(&login);
    assert_eq!(stack.get("/ai/chat", Some(&access)).await.status(), 200);
    assert_eq!(stack.get("/ai/admin/x", Some(&access)).await.status(), 403);

    let store = &stack.issuer().state.store;
    let admin_email = unique_email("root");
    stack.login(&admin_email).await;
    let root = store
        .user_by_email(&admin_email)
        .await
        .expect("db")
        .expect("user");
    store
        .set_roles(&root.id, &["admin".to_string()])
        .await
        .expect("roles");
    let admin = token(&stack.login_again(&admin_email).await);
    let user = store
        .user_by_email(&email)
        .await
        .expect("db")
        .expect("user");
    let r = stack
        .http
        .patch(format!(
            "{}/admin/users/{}",
            stack.issuer().base_url,
            user.id
        ))
        .bearer_auth(&admin)
        .json(&json!({"roles": ["admin"]}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);

    // The old token says "no roles": it stops working everywhere…
    let lag = wait_until(Duration::from_secs(1), || async {
        stack.get("/ai/chat", Some(&access)).await.status() == 401
    })
    .await
    .expect("the old token is refused within a second");
    eprintln!("role change → old token refused at the edge after {lag:?}");
    let body: Value = stack
        .get("/ai/chat", Some(&access))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["error"], "token_revoked");
    // …and the same session refreshes into a token with the new role.
    let r = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), 200);
    let fresh = token(&r.json::<Value>().await.expect("json"));
    assert_eq!(stack.get("/ai/admin/x", Some(&fresh)).await.status(), 200);
}

/// A private CA and a certificate for `localhost` signed by it, as PEM files.
fn private_ca(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "DevMentor test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("issuer.pem"),
        dir.join("issuer-key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).expect("write");
    std::fs::write(&cert_file, cert.pem()).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    (ca_file, cert_file, key_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_follows_an_https_issuer_it_trusts_and_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = private_ca(dir.path());
    let url = format!("sqlite://{}/issuer.db", dir.path().display());
    let mut args = testing::test_args(&url, dir.path());
    args.tls_cert_file = Some(cert);
    args.tls_key_file = Some(key);
    let issuer = testing::start(args, Arc::new(SystemClock))
        .await
        .expect("issuer serves TLS");
    let https = format!("https://localhost:{}", issuer.addr.port());

    // Plain HTTP to a TLS port gets nothing.
    assert!(
        reqwest::get(format!("http://localhost:{}/health", issuer.addr.port()))
            .await
            .map_or(true, |r| r.status() != 200)
    );

    let mut settings = sidecar_settings(&https);
    settings.issuer_ca_file = Some(ca.clone());
    let sidecar = start_sidecar(settings, 0).await;
    let trusted = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem"),
        )
        .build()
        .expect("client");
    let email = unique_email("tls");
    for (path, want) in [("/auth/register", 201), ("/auth/login", 200)] {
        let r = trusted
            .post(format!("{https}{path}"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("over TLS");
        assert_eq!(r.status(), want);
        // Served over TLS: browsers are told to keep it that way.
        assert_eq!(
            r.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        if path == "/auth/login" {
            let access = token(&r.json().await.expect("json"));
            let d = sidecar
                .authz()
                .check(
                    attrs("/ai/x"),
                    Credential::bearer(&access),
                    sidecar::authz::now_ms(),
                )
                .await;
            assert_eq!(denied(&d), None);
        }
    }
    sidecar.stop().await;

    // Without the CA the same issuer is not trusted: no keys, never ready.
    let untrusting = sidecar::start(sidecar_settings(&https))
        .await
        .expect("starts (retries in the background)");
    let fetch = untrusting.authz.fetch_jwks().await;
    assert!(fetch.is_err(), "certificate from an unknown CA accepted");
    assert!(!untrusting.authz.is_ready(sidecar::authz::now_ms()));
    issuer.stop().await;
}

#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sidecar"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SIDECAR_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.arg("serve").args(args).output().expect("run sidecar");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let policy = policy_file();
    let policy = policy.to_str().expect("utf-8 path");
    let (code, err) = run(&[
        "--policy",
        policy,
        "--issuer-url",
        "https://issuer.mesh:3002",
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("SIDECAR_FEED_TOKEN"), "{err}");
    let (code, err) = run(&[
        "--policy",
        policy,
        "--issuer-url",
        "http://issuer.mesh:3002",
        "--feed-token",
        "t",
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("plain http"), "{err}");
    let (code, err) = run(&[
        "--policy",
        policy,
        "--issuer-url",
        "http://127.0.0.1:3002",
        "--issuer-ca-file",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("https"), "{err}");
    let (code, err) = run(&[
        "--policy",
        policy,
        "--issuer-url",
        "https://issuer.mesh",
        "--feed-token",
        "t",
        "--issuer-ca-file",
        "/nonexistent/ca.pem",
    ]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
