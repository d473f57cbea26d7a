//! Signing-key lifecycle, operator rotation and emergency revocation.

use std::sync::Arc;

use auth_types::JwkSet;
use issuer::domain::clock::SystemClock;
use issuer::domain::keys::{Kek, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    lifecycle_follows_the_clock,
    admin_api_rotates_and_revokes_and_never_returns_private_keys,
    private_keys_are_stored_encrypted,
);

async fn kids(t: &TestIssuer) -> Vec<String> {
    let set: JwkSet = t
        .http
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let mut kids: Vec<String> = set.keys.into_iter().map(|k| k.kid).collect();
    kids.sort();
    kids
}

fn kid_of(token: &str) -> String {
    auth_types::jws::peek_kid(token).expect("kid")
}

async fn lifecycle_follows_the_clock(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |a| {
        a.keys.key_rotation_secs = 1000;
        a.keys.key_publish_lead_secs = 100;
        a.keys.access_token_ttl = 60;
        a.keys.key_removal_leeway_secs = 0;
        a.key_tick_secs = 3600; // the test drives the lifecycle itself
    })
    .await
    else {
        return;
    };
    let state = &t.server.state;
    let email = unique_email("life");
    t.register(&email, PASSWORD).await;
    let k1 = kid_of(&t.login(&email, PASSWORD).await.access);
    assert_eq!(kids(&t).await, vec![k1.clone()]);

    clock.advance_secs(899);
    issuer::key_tick(state).await.expect("tick");
    assert_eq!(kids(&t).await.len(), 1, "not yet time to publish");

    clock.advance_secs(1);
    issuer::key_tick(state).await.expect("tick");
    let published = kids(&t).await;
    assert_eq!(published.len(), 2, "next key published ahead of use");
    let k2 = published
        .iter()
        .find(|k| **k != k1)
        .expect("new kid")
        .clone();
    let old_token = t.login(&email, PASSWORD).await.access;
    assert_eq!(kid_of(&old_token), k1, "the next key does not sign yet");

    clock.advance_secs(100);
    issuer::key_tick(state).await.expect("tick");
    assert_eq!(
        kid_of(&t.login(&email, PASSWORD).await.access),
        k2,
        "next became current"
    );
    assert_eq!(kids(&t).await.len(), 2, "retired key still published");
    assert!(auth_types::jws::verify(&old_token, &t.jwks().await).is_ok());

    clock.advance_secs(59);
    issuer::key_tick(state).await.expect("tick");
    assert_eq!(kids(&t).await.len(), 2);
    clock.advance_secs(1);
    issuer::key_tick(state).await.expect("tick");
    assert_eq!(
        kids(&t).await,
        vec![k2.clone()],
        "retired key removed after the token lifetime"
    );
    assert!(matches!(
        auth_types::jws::verify(&old_token, &t.jwks().await),
        Err(auth_types::JwsError::UnknownKid(_))
    ));

    let states: Vec<(String, String)> = state
        .store
        .keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect();
    assert!(states.contains(&(k1, "removed".into())), "{states:?}");
    assert!(states.contains(&(k2, "current".into())), "{states:?}");
    let metrics = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"issuer_signing_keys{state="current"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"issuer_signing_keys{state="removed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_on_the_schedule_rotate_exactly_once() {
    let Some(db) = database(Backend::Postgres).await else {
        return;
    };
    let clock = manual_clock();
    let args = |dir: &std::path::Path| {
        let mut a = issuer::testing::test_args(&db.url, dir);
        a.keys.key_rotation_secs = 1000;
        a.keys.key_publish_lead_secs = 100;
        a.key_tick_secs = 3600;
        a
    };
    let a = issuer::testing::start(args(db.dir.path()), clock.clone())
        .await
        .expect("replica a");
    let b = issuer::testing::start(args(db.dir.path()), clock.clone())
        .await
        .expect("replica b");
    clock.advance_secs(950);
    for _ in 0..5 {
        let (ra, rb) = tokio::join!(issuer::key_tick(&a.state), issuer::key_tick(&b.state));
        ra.expect("tick a");
        rb.expect("tick b");
    }
    let keys = a.state.store.keys().await.expect("keys");
    let next: Vec<_> = keys.iter().filter(|k| k.state == "next").collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(next.len(), 1);
    a.stop().await;
    b.stop().await;
}

async fn admin_api_rotates_and_revokes_and_never_returns_private_keys(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("admin");
    let user = t.register(&email, PASSWORD).await;
    let plain = t.login(&email, PASSWORD).await;
    let r = t.get_auth("/admin/keys", &plain.access).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "admin role required");
    let r = t.http.get(t.url("/admin/keys")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let store = &t.server.state.store;
    store
        .set_roles(user["id"].as_str().expect("id"), &["admin".to_string()])
        .await
        .expect("roles");
    let admin = t.login(&email, PASSWORD).await.access;
    let k1 = kid_of(&admin);

    let r = t
        .post_auth("/admin/keys/rotate", &admin, Some(json!({"alg": "EdDSA"})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    let text = body.to_string();
    for private in ["private", "\"d\"", "pkcs8", "enc"] {
        assert!(!text.contains(private), "{private} in {text}");
    }
    let keys = body["keys"].as_array().expect("keys");
    assert!(
        keys.iter()
            .any(|k| k["state"] == "next" && k["alg"] == "EdDSA"),
        "{body}"
    );
    let r = t.post_auth("/admin/keys/rotate", &admin, None).await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "rotation_pending")
    );
    let r = t
        .post_auth("/admin/keys/rotate", &admin, Some(json!({"alg": "HS256"})))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Immediate rotation: the new key signs at once, the old one stays published.
    let r = t
        .post_auth("/admin/keys/rotate", &admin, Some(json!({"now": true})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let k2 = kid_of(&t.login(&email, PASSWORD).await.access);
    assert_ne!(k2, k1);
    assert!(kids(&t).await.contains(&k1));
    assert!(auth_types::jws::verify(&admin, &t.jwks().await).is_ok());

    // Emergency revoke of the signing key: gone from the JWKS, a fresh key signs.
    let r = t
        .post_auth(&format!("/admin/keys/{k2}/revoke"), &admin, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let published = kids(&t).await;
    assert!(!published.contains(&k2), "{published:?}");
    let k3 = kid_of(&t.login(&email, PASSWORD).await.access);
    assert!(k3 != k2 && k3 != k1 && published.contains(&k3));
    let r = t
        .post_auth("/admin/keys/no-such-kid/revoke", &admin, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let events = store
        .audit_events(user["id"].as_str().expect("id"))
        .await
        .expect("audit");
    assert!(
        events.contains(&"key_rotated".to_string()) && events.contains(&"key_revoked".to_string())
    );
}

async fn private_keys_are_stored_encrypted(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let stored = t.server.state.store.keys().await.expect("keys");
    let key = &stored[0];
    let kek_text = std::fs::read_to_string(t._db.dir.path().join("test.kek")).expect("kek");
    let kek = Kek::from_bytes(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, kek_text.trim())
            .expect("b64"),
    )
    .expect("kek");
    let pkcs8 = kek
        .open(&key.kid, &key.private_key_enc)
        .expect("decrypts with the KEK");
    // What is stored is not the key: no 16-byte run of the PKCS#8 appears in it.
    assert!(pkcs8
        .windows(16)
        .all(|w| !key.private_key_enc.windows(16).any(|s| s == w)));
    // And the decrypted key is the one the JWKS publishes.
    let alg = auth_types::SigningAlg::parse(&key.alg).expect("alg");
    let signer = SigningKey::from_pkcs8(&key.kid, alg, &pkcs8).expect("parses");
    let published: auth_types::Jwk = serde_json::from_str(&key.public_jwk).expect("jwk");
    assert_eq!(signer.public_jwk(), published);
    // A different KEK cannot open it.
    assert!(Kek::from_bytes(&[9u8; 32])
        .expect("kek")
        .open(&key.kid, &key.private_key_enc)
        .is_err());
}

#[tokio::test]
async fn keys_cli_lists_rotates_and_revokes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/keys.db", dir.path().display());
    // A server creates the first key, then goes away.
    let t = issuer::testing::start(
        issuer::testing::test_args(&url, dir.path()),
        Arc::new(SystemClock),
    )
    .await
    .expect("issuer");
    t.stop().await;
    let kek = dir.path().join("test.kek");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_issuer"))
            .args(args)
            .args(["--database-url", &url, "--kek-file"])
            .arg(&kek)
            .env_remove("ISSUER_REDIS_URL")
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, list, _) = run(&["keys", "list"]);
    assert!(
        ok && list.contains("current") && list.lines().count() == 2,
        "{list}"
    );
    let (ok, out, err) = run(&["keys", "rotate", "--alg", "RS256"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("new key") && out.contains("RS256") && out.contains("next"),
        "{out}"
    );
    let (ok, _, err) = run(&["keys", "rotate"]);
    assert!(!ok && err.contains("already pending"), "{err}");
    let current = list
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .next()
        .expect("kid")
        .to_string();
    let (ok, out, err) = run(&["keys", "revoke", &current]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("revoked {current}")), "{out}");
    let (_, list, _) = run(&["keys", "list"]);
    assert_eq!(list.matches(" current ").count(), 1, "{list}");
    assert!(list.contains("revoked"), "{list}");
    // Ids from before they began with a letter can start with `-`: the
    // CLI takes them as the kid, not as an option.
    let (ok, _, err) = run(&["keys", "revoke", "-Abc_def"]);
    assert!(!ok, "no such key");
    assert!(
        err.contains("-Abc_def") && !err.contains("unexpected argument"),
        "{err}"
    );
}

#[test]
fn generated_key_ids_never_start_with_a_hyphen() {
    for _ in 0..2_000 {
        let kid = issuer::domain::keys::new_kid();
        assert!(kid.starts_with('k') && kid.len() == 17, "{kid}");
    }
}

#[tokio::test]
async fn embedded_default_generates_a_private_kek_and_postgres_requires_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/sub/issuer.db", dir.path().display());
    let mut args = issuer::testing::test_args(&url, dir.path());
    args.keys.kek_file = None;
    let t = issuer::testing::start(args, Arc::new(SystemClock))
        .await
        .expect("issuer");
    let kek = dir.path().join("sub/issuer.kek");
    let mode = std::fs::metadata(&kek)
        .expect("KEK generated")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    t.stop().await;

    let mut pg = issuer::config::ServeArgs::with_database("postgres://127.0.0.1:1/none");
    pg.keys.kek_file = None;
    let err = issuer::build(pg, Arc::new(SystemClock))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--kek-file"), "{err}");
}

#[test]
fn sealed_private_keys_never_reach_a_log_line() {
    let kek = Kek::from_bytes(&[3u8; 32]).expect("kek");
    let key = issuer::domain::keys::new_stored_key(
        &kek,
        issuer::domain::keys::KeyUse::Access,
        auth_types::SigningAlg::EdDSA,
        "next",
        1,
        2,
    )
    .expect("key");
    // Key changes are logged with `?changes`, i.e. through Debug.
    let logged = format!(
        "{:?}",
        issuer::domain::rotation::KeyChange::Create(key.clone())
    );
    assert!(logged.contains(&key.kid), "{logged}");
    let sealed_bytes = format!("{:?}", key.private_key_enc);
    assert!(!logged.contains(&sealed_bytes[1..20]), "{logged}");
    assert!(logged.contains("not shown"), "{logged}");
}
