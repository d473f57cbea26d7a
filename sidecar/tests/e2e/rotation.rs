//! Key rotation seen from the mesh: no valid token is ever rejected while
//! keys rotate; removed and revoked keys stop working; unknown `kid`s cost
//! at most one JWKS fetch per cooldown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth_types::{AccessClaims, Audience};
use issuer::testing::{self, TEST_AUDIENCE, TEST_ISSUER_URL};
use serde_json::{json, Value};

use crate::direct::{check_request, client, outcome};
use crate::support::*;

pub fn now_secs() -> i64 {
    sidecar::authz::now_ms() / 1000
}

/// Rotates to a new signing key without telling anyone (no push), and
/// mints a token for `sub` with it: only a fetch for its unknown kid can
/// verify it.
pub async fn token_from_an_unannounced_key(state: &issuer::AppState, sub: &str) -> String {
    let now = now_secs();
    state
        .store
        .change_keys(|keys| {
            let life = state.settings.keys.lifecycle();
            let mut make = |u, a, st: &str, at| state.keys.make_key(u, a, st, now, at);
            issuer::domain::rotation::plan_rotate_access(
                keys, now, &life, true, life.alg, &mut make,
            )
        })
        .await
        .expect("rotate");
    state.keys.reload(&state.store).await.expect("reload");
    issuer::domain::tokens::mint_access_token(&state.keys.snapshot().signing, &claims(sub, 300))
        .expect("mint")
}

pub fn claims(sub: &str, ttl: i64) -> AccessClaims {
    let now = now_secs();
    AccessClaims {
        iss: TEST_ISSUER_URL.into(),
        sub: sub.into(),
        aud: Audience::One(TEST_AUDIENCE.into()),
        exp: now + ttl,
        iat: now,
        nbf: Some(now),
        jti: uuid::Uuid::new_v4().to_string(),
        sid: String::new(),
        client_id: "devmentor-auth".into(),
        roles: vec![],
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
    }
}

async fn make_admin(stack: &Stack, email: &str) -> String {
    let login = stack.login(email).await;
    let me: Value = stack
        .http
        .get(format!("{}/auth/me", stack.issuer().base_url))
        .bearer_auth(token(&login))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    stack
        .issuer()
        .state
        .store
        .set_roles(
            me["user"]["id"].as_str().expect("id"),
            &["admin".to_string()],
        )
        .await
        .expect("roles");
    token(&stack.login_again(email).await)
}

async fn admin_post(stack: &Stack, admin: &str, path: &str, body: Value) -> Value {
    let r = stack
        .http
        .post(format!("{}{path}", stack.issuer().base_url))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .expect("admin call");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

async fn two_rotations_under_load_reject_no_valid_token_and_removed_keys_stop_working(
    front: Front,
) {
    let Some(stack) = Stack::start_front(
        front,
        |issuer| {
            issuer.keys.key_publish_lead_secs = 2; // > the sidecar's 1 s refresh
            issuer.keys.access_token_ttl = 10;
            issuer.keys.key_removal_leeway_secs = 1;
            issuer.keys.key_rotation_secs = 0;
            issuer.key_tick_secs = 1;
        },
        |_| {},
    )
    .await
    else {
        return;
    };
    let email = unique_email("rotate");
    let admin = make_admin(&stack, &email).await;
    let first_kid = auth_types::jws::peek_kid(&admin).expect("kid");
    // A token of the first key that outlives the key's removal.
    let signing = stack.issuer().state.keys.snapshot().signing.clone();
    let long_lived =
        issuer::domain::tokens::mint_access_token(&signing, &claims("long-lived", 600))
            .expect("mint");

    let tokens = Arc::new(Mutex::new(vec![admin.clone(), long_lived.clone()]));
    let (sent, rejected) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop_at = Instant::now() + Duration::from_secs(7);
    let mut workers = Vec::new();
    for w in 0..4 {
        let (tokens, sent, rejected) = (tokens.clone(), sent.clone(), rejected.clone());
        let (http, url) = (stack.http.clone(), stack.url("/ai/chat"));
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < stop_at {
                let token = {
                    let pool = tokens.lock().expect("pool");
                    pool[i % pool.len()].clone()
                };
                i += 1;
                let status = http
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("send")
                    .status();
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    rejected.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "rejected {status} for kid {:?}",
                        auth_types::jws::peek_kid(&token)
                    );
                }
            }
        }));
    }
    // New logins keep adding tokens of whichever key currently signs.
    let minting = {
        let tokens = tokens.clone();
        let (http, url) = (stack.http.clone(), stack.url("/auth/login"));
        tokio::spawn(async move {
            while Instant::now() < stop_at {
                let r: Value = http
                    .post(&url)
                    .json(&json!({"email": email, "password": PASSWORD}))
                    .send()
                    .await
                    .expect("login")
                    .json()
                    .await
                    .expect("json");
                tokens.lock().expect("pool").push(token(&r));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    admin_post(&stack, &admin, "/admin/keys/rotate", json!({})).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    admin_post(
        &stack,
        &admin,
        "/admin/keys/rotate",
        json!({"alg": "EdDSA"}),
    )
    .await;
    for w in workers {
        w.await.expect("worker");
    }
    minting.await.expect("minter");

    let kids: std::collections::BTreeSet<String> = tokens
        .lock()
        .expect("pool")
        .iter()
        .filter_map(|t| auth_types::jws::peek_kid(t))
        .collect();
    let (sent, rejected) = (
        sent.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
    );
    eprintln!(
        "rotation under load: {sent} requests, {rejected} rejected, {} signing keys seen",
        kids.len()
    );
    assert!(
        kids.len() >= 3,
        "two rotations happened during the load: {kids:?}"
    );
    assert!(sent > 100, "{sent}");
    assert_eq!(rejected, 0, "valid tokens rejected during rotation");

    // The first key leaves the JWKS after the token lifetime + leeway; its
    // long-lived token then stops working everywhere.
    let denied = wait_until(Duration::from_secs(20), || async {
        stack.get("/ai/chat", Some(&long_lived)).await.status() == 401
    })
    .await
    .expect("token of the removed key denied");
    let keys = stack.issuer().state.store.keys().await.expect("keys");
    assert!(
        keys.iter()
            .any(|k| k.kid == first_kid && k.state == "removed"),
        "{keys:?}"
    );
    let body: Value = stack
        .get("/ai/chat", Some(&long_lived))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["error"], "unknown_key");
    eprintln!("removed key's token denied {denied:?} after the load ended");
}

crate::both_fronts!(two_rotations_under_load_reject_no_valid_token_and_removed_keys_stop_working);

async fn emergency_revoke_denies_the_key_within_a_second_and_logins_continue(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let email = unique_email("compromise");
    let admin = make_admin(&stack, &email).await;
    let user_token = token(&stack.login(&unique_email("victim")).await);
    assert_eq!(stack.get("/ai/chat", Some(&user_token)).await.status(), 200);
    let kid = auth_types::jws::peek_kid(&user_token).expect("kid");

    let started = Instant::now();
    admin_post(
        &stack,
        &admin,
        &format!("/admin/keys/{kid}/revoke"),
        json!({}),
    )
    .await;
    let lag = wait_until(Duration::from_secs(1), || async {
        stack.get("/ai/chat", Some(&user_token)).await.status() == 401
    })
    .await
    .expect("tokens of the revoked key denied within a second");
    eprintln!(
        "emergency revoke → denied after {lag:?} (call included: {:?})",
        started.elapsed()
    );

    let fresh = token(&stack.login_again(&email).await);
    assert_ne!(auth_types::jws::peek_kid(&fresh).expect("kid"), kid);
    assert_eq!(stack.get("/ai/chat", Some(&fresh)).await.status(), 200);
}

crate::both_fronts!(emergency_revoke_denies_the_key_within_a_second_and_logins_continue);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_cost_one_fetch_per_cooldown_however_many_requests_miss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/issuer.db", dir.path().display());
    let issuer = start_issuer(testing::test_args(&url, dir.path())).await;
    let mut settings = sidecar_settings(&issuer.base_url);
    settings.jwks_refresh_secs = 3600;
    settings.max_staleness_secs = 7200;
    settings.unknown_kid_cooldown_ms = 60_000;
    let sidecar = start_sidecar(settings, 0).await;
    let metrics_url = format!("http://{}/metrics", sidecar.admin);
    let fetches = || async {
        let text = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find(|l| l.starts_with(r#"sidecar_jwks_fetches_total{outcome="ok"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };

    // A new signing key the sidecar has not been told about (no push).
    let state = &issuer.state;
    let fresh = token_from_an_unannounced_key(state, "u1").await;

    let before = fetches().await;
    let c = client(sidecar.grpc).await;
    let mut calls = Vec::new();
    for _ in 0..50 {
        let mut c = c.clone();
        let t = fresh.clone();
        calls.push(tokio::spawn(async move {
            outcome(
                &c.check(check_request("GET", "/ai/x", Some(&t)))
                    .await
                    .expect("check")
                    .into_inner(),
            )
            .0
        }));
    }
    for call in calls {
        assert_eq!(
            call.await.expect("join"),
            200,
            "new kid fetched and accepted"
        );
    }
    assert_eq!(
        fetches().await - before,
        1,
        "one fetch for fifty concurrent misses"
    );

    // A flood of junk kids: refused, and no further fetch within the cooldown.
    let signing = state.keys.snapshot().signing.clone();
    for i in 0..100 {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("junk-{i}")});
        let h64 = auth_types::jws::b64url_encode(header.to_string().as_bytes());
        let p64 =
            auth_types::jws::b64url_encode(&serde_json::to_vec(&claims("u1", 300)).expect("json"));
        let input = format!("{h64}.{p64}");
        let sig = auth_types::jws::b64url_encode(&signing.sign(input.as_bytes()).expect("sign"));
        let mut c = c.clone();
        let r = c
            .check(check_request(
                "GET",
                "/ai/x",
                Some(&format!("{input}.{sig}")),
            ))
            .await
            .expect("check");
        assert_eq!(outcome(&r.into_inner()), (401, "unknown_key".to_string()));
    }
    assert_eq!(
        fetches().await - before,
        1,
        "junk kids did not reach the issuer"
    );
    sidecar.stop().await;
    issuer.stop().await;
}
