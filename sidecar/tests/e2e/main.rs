//! End-to-end: requests through a real Envoy, authorised by the real sidecar
//! against the real issuer.

mod cli;
mod direct;
mod dpop;
mod edge;
mod forward;
mod github;
mod interop;
mod module;
mod oauth;
mod observability;
mod pages;
mod pats;
mod quota;
mod rotation;
mod stepup;
mod support;
mod teams;
mod tracing;
mod trust;
mod unix;

use std::process::Command;
use std::time::Duration;

use auth_types::{AccessClaims, Audience};
use issuer::testing::{self, TEST_AUDIENCE, TEST_ISSUER_URL};
use serde_json::{json, Value};

use support::*;

#[test]
fn envoy_accepts_the_front_proxy_config() {
    let Some(envoy) = envoy_bin() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // The ports the demo uses.
    let config = render(&[
        ("ENVOY_PORT", 8080),
        ("ENVOY_ADMIN_PORT", 9901),
        ("SIDECAR_PORT", 9001),
        ("ISSUER_PORT", 3002),
        ("AI_GATEWAY_PORT", 3001),
        ("MEMORY_PORT", 3003),
    ]);
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config).expect("write");
    // The same template with the tracer on, and the pods' renderings as
    // committed under k8s/ (their freshness is checked by check-deploy.sh).
    let traced = dir.path().join("traced.yaml");
    std::fs::write(
        &traced,
        render_with(&[("ENVOY_PORT", 8080)], &["--set", "OTEL=collector:4317"]),
    )
    .expect("write");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for config in [
        path.clone(),
        traced,
        format!("{root}/k8s/base/apps/ai-gateway/envoy.yaml").into(),
        format!("{root}/k8s/base/apps/memory-service/envoy.yaml").into(),
    ] {
        let out = Command::new(envoy.as_str())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&config)
            .output()
            .expect("run envoy");
        assert!(
            out.status.success(),
            "{}: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And a broken config is refused, so the check above means something.
    std::fs::write(&path, "static_resources: {listeners: [{name: x}]}\n").expect("write");
    let out = Command::new(envoy_bin().expect("envoy"))
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&path)
        .output()
        .expect("run envoy");
    assert!(!out.status.success());
}

async fn allow_deny_and_identity_headers_through_envoy(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let login = stack.login(&unique_email("e2e")).await;
    let access = token(&login);
    let keys = stack.issuer().state.keys.snapshot();
    let sub = auth_types::jws::verify(&access, &keys.verifying)
        .expect("valid")
        .claims
        .sub;

    // Valid token: the upstream sees who is calling.
    let r = stack.get("/ai/chat", Some(&access)).await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["upstream"], "ai-gateway");
    assert_eq!(seen["headers"]["x-user-id"], json!([sub]));
    assert_eq!(
        seen["headers"]["x-session-id"],
        json!([login["session_id"]])
    );

    // A client-sent identity never reaches the upstream.
    let r = stack
        .http
        .get(stack.url("/memory/notes"))
        .bearer_auth(&access)
        .header("x-user-id", "attacker")
        .header("x-user-roles", "admin")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["upstream"], "memory-service");
    assert_eq!(seen["headers"]["x-user-id"], json!([sub]));
    assert!(seen["headers"].get("x-user-roles").is_none(), "{seen}");

    // No token: 401 with a bearer challenge and a JSON reason.
    let r = stack.get("/ai/chat", None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .starts_with("Bearer"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "missing_token");

    // Garbage and tampered tokens: 401.
    assert_eq!(
        stack.get("/ai/chat", Some("not-a-token")).await.status(),
        401
    );
    let mut parts: Vec<&str> = access.split('.').collect();
    let forged = auth_types::jws::b64url_encode(br#"{"sub":"admin"}"#);
    parts[1] = &forged;
    let r = stack.get("/ai/chat", Some(&parts.join("."))).await;
    assert_eq!(r.status(), 401);

    // Authenticated but without the role: 403.
    let r = stack.get("/ai/admin/settings", Some(&access)).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "missing_role");
    // Path-captured role: team:blue required, the user has none.
    assert_eq!(
        stack
            .get("/memory/teams/blue/doc", Some(&access))
            .await
            .status(),
        403
    );

    // Expired (signed by the issuer's real key, so only time is wrong): 401.
    let now = issuer::domain::clock::Clock::now_ms(&issuer::domain::clock::SystemClock) / 1000;
    let expired = AccessClaims {
        iss: TEST_ISSUER_URL.into(),
        sub: sub.clone(),
        aud: Audience::One(TEST_AUDIENCE.into()),
        exp: now - 120,
        iat: now - 1000,
        nbf: Some(now - 1000),
        jti: uuid::Uuid::new_v4().to_string(),
        sid: "old".into(),
        client_id: "devmentor-auth".into(),
        roles: vec!["admin".into()],
        permissions: vec![],
        amr: vec!["pwd".into()],
        email: None,
        user_gen: 0,
        teams: Default::default(),
        teams_overflow: false,
        email_verified: false,
        acr: None,
        auth_time: None,
        scope: None,
        act: None,
        cnf: None,
    };
    let signing = stack.issuer().state.keys.snapshot().signing.clone();
    let expired_token =
        issuer::domain::tokens::mint_access_token(&signing, &expired).expect("mint");
    let r = stack.get("/ai/chat", Some(&expired_token)).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "token_expired");

    // The same key, a live admin token: allowed to the admin route.
    let mut admin = expired;
    admin.exp = now + 300;
    admin.iat = now;
    admin.nbf = Some(now);
    let admin_token = issuer::domain::tokens::mint_access_token(&signing, &admin).expect("mint");
    assert_eq!(
        stack
            .get("/ai/admin/settings", Some(&admin_token))
            .await
            .status(),
        200
    );

    // Envoy has no route here. Its ext_authz filter then skips the check
    // and the router answers 404; the module has no view of the route and
    // decides anyway: the policy's default deny (403). Either way nothing
    // upstream is reached.
    let want = match front {
        Front::Sidecar => 404,
        Front::Module => 403,
    };
    assert_eq!(stack.get("/elsewhere", Some(&access)).await.status(), want);
}

crate::both_fronts!(allow_deny_and_identity_headers_through_envoy);

async fn logout_and_refresh_reuse_are_enforced_within_a_second(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let email = unique_email("revoke");
    let login = stack.login(&email).await;
    let access = token(&login);
    assert_eq!(stack.get("/ai/chat", Some(&access)).await.status(), 200);

    let r = stack
        .http
        .post(stack.url("/auth/logout"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    let lag = wait_until(Duration::from_secs(1), || async {
        stack.get("/ai/chat", Some(&access)).await.status() == 401
    })
    .await
    .expect("logged-out token denied within a second");
    eprintln!("logout → denied at the sidecar after {lag:?}");
    let r = stack.get("/ai/chat", Some(&access)).await;
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "token_revoked");

    // Refresh-token reuse kills the session's live access token too.
    let login = stack.login_again(&email).await;
    let rt1 = login["refresh_token"].as_str().expect("rt").to_string();
    let r = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({"refresh_token": rt1}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), 200);
    let rt2 = r.json::<Value>().await.expect("json")["refresh_token"]
        .as_str()
        .expect("rt")
        .to_string();
    // Rotate once more, so RT1 is two generations old: reuse even inside
    // the refresh grace window.
    let r = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({"refresh_token": rt2}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), 200);
    let live = token(&r.json::<Value>().await.expect("json"));
    assert_eq!(stack.get("/ai/chat", Some(&live)).await.status(), 200);
    let r = stack
        .http
        .post(stack.url("/auth/refresh"))
        .json(&json!({"refresh_token": rt1}))
        .send()
        .await
        .expect("replay");
    assert_eq!(r.status(), 401);
    wait_until(Duration::from_secs(1), || async {
        stack.get("/ai/chat", Some(&live)).await.status() == 401
    })
    .await
    .expect("reuse revokes the live token within a second");
}

crate::both_fronts!(logout_and_refresh_reuse_are_enforced_within_a_second);

async fn issuer_away_serves_from_cache_then_fails_closed_and_sidecar_away_denies(front: Front) {
    let Some(mut stack) = Stack::start_front(
        front,
        |_| {},
        |s| {
            s.max_staleness_secs = 4;
        },
    )
    .await
    else {
        return;
    };
    let access = token(&stack.login(&unique_email("away")).await);
    assert_eq!(stack.get("/ai/chat", Some(&access)).await.status(), 200);

    // Issuer gone: cached keys keep valid tokens working…
    stack.issuer.take().expect("issuer").stop().await;
    assert_eq!(stack.get("/ai/chat", Some(&access)).await.status(), 200);
    assert_eq!(stack.get("/memory/x", Some(&access)).await.status(), 200);
    // …until the state is older than the max staleness: then fail closed.
    wait_until(Duration::from_secs(10), || async {
        stack.get("/ai/chat", Some(&access)).await.status() == 503
    })
    .await
    .expect("stale state fails closed");

    // Sidecar gone: Envoy refuses (failure_mode_allow: false). (The
    // module is Envoy: it cannot be away without Envoy.)
    if front == Front::Sidecar {
        stack.sidecar.take().expect("sidecar").stop().await;
        let r = stack.get("/ai/chat", Some(&access)).await;
        assert!(r.status() == 503 || r.status() == 403, "{}", r.status());
    }
}

crate::both_fronts!(issuer_away_serves_from_cache_then_fails_closed_and_sidecar_away_denies);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_reaches_a_sidecar_following_another() {
    let Some(envoy_bin) = envoy_bin() else { return };
    let Some(pg_admin) = testing::required_service("DM_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let Some(redis) = testing::required_service("DM_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let db_url = testing::fresh_postgres_database(&pg_admin)
        .await
        .expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = |_: u8| {
        let mut a = testing::test_args(&db_url, dir.path());
        a.redis_url = Some(redis.clone());
        // Long poll and heartbeat (also a catch-up read): only Redis can
        // make the revocation arrive quickly.
        a.feed_poll_ms = 60_000;
        a.feed_heartbeat_ms = 20_000;
        a
    };
    let a = start_issuer(replica(0)).await;
    let b = start_issuer(replica(1)).await;
    let sidecar = start_sidecar(sidecar_settings(&b.base_url), 0).await;
    let ai = echo_upstream("ai-gateway").await;
    let memory = echo_upstream("memory-service").await;
    // Envoy's public routes go to replica A.
    let envoy = start_envoy(
        &envoy_bin,
        a.addr.port(),
        sidecar.grpc.port(),
        ai.port(),
        memory.port(),
    )
    .await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", envoy.port);
    let email = unique_email("replica");
    let r = http
        .post(url("/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let login: Value = http
        .post(url("/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let access = token(&login);
    let get = || http.get(url("/ai/chat")).bearer_auth(&access).send();
    assert_eq!(get().await.expect("get").status(), 200);

    let r = http
        .post(format!("{}/auth/logout", a.base_url))
        .bearer_auth(&access)
        .send()
        .await
        .expect("logout on A");
    assert_eq!(r.status(), 204);
    let lag = wait_until(Duration::from_secs(1), || async {
        get().await.is_ok_and(|r| r.status() == 401)
    })
    .await
    .expect("logout on replica A denied by the sidecar following replica B within a second");
    eprintln!("cross-replica revocation lag {lag:?}");
    drop(envoy);
    sidecar.stop().await;
    a.stop().await;
    b.stop().await;
}
