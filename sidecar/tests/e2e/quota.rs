//! Per-user quotas and the email_verified requirement at the edge, through
//! real Envoy: a spent quota answers 429 with Retry-After without reaching
//! the upstream, other users and routes keep their own budgets.

use serde_json::Value;

use crate::support::*;

const POLICY: &str = r#"
rules:
  - name: issuer-public
    prefix: /auth/
    allow: public
  - name: jwks-public
    prefix: /.well-known/
    allow: public
  - name: ai-chat
    prefix: /ai/chat/
    allow: authenticated
    quota: 3/60
  - name: ai-gateway
    prefix: /ai/
    allow: authenticated
  - name: memory-verified
    prefix: /memory/verified/
    allow: authenticated
    email_verified: true
  - name: memory-service
    prefix: /memory/
    allow: authenticated
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_verified_email_are_enforced_at_the_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let Some(stack) = Stack::start(|s| s.policy = policy.clone()).await else {
        return;
    };
    let alice_email = unique_email("-alice");
    let alice = token(&stack.login(&alice_email).await);
    let bob = token(&stack.login(&unique_email("bob")).await);

    for i in 0..3 {
        let r = stack.get(&format!("/ai/chat/{i}"), Some(&alice)).await;
        assert_eq!(r.status(), 200, "within the quota");
        let echoed: Value = r.json().await.expect("json");
        assert_eq!(echoed["upstream"], "ai-gateway");
    }
    let r = stack.get("/ai/chat/3", Some(&alice)).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=20).contains(&retry),
        "one request back in 20 s: {retry}"
    );
    let body: Value = r.json().await.expect("our JSON, not the upstream's");
    assert_eq!(body["error"], "quota_exceeded");
    assert!(body.get("upstream").is_none());
    // Encoding the path differently does not open a fresh budget.
    let r = stack.get("/ai/chat/%33", Some(&alice)).await;
    assert!(r.status() == 429 || r.status() == 400, "{}", r.status());
    // Other users, and other rules, are unaffected.
    assert_eq!(stack.get("/ai/chat/0", Some(&bob)).await.status(), 200);
    assert_eq!(stack.get("/ai/other", Some(&alice)).await.status(), 200);
    // A refused request (no token) spends nobody's quota.
    assert_eq!(stack.get("/ai/chat/0", None).await.status(), 401);

    // email_verified: refused until the token says so.
    let r = stack.get("/memory/verified/notes", Some(&alice)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "email_not_verified"
    );
    let store = &stack.issuer().state.store;
    let user = store
        .user_by_email(&alice_email)
        .await
        .expect("db")
        .expect("user");
    let now = sidecar::authz::now_ms() / 1000;
    let hash = "e2e-verify-token-hash";
    assert!(store
        .create_email_token(
            hash,
            &user,
            issuer::store::TokenPurpose::VerifyEmail,
            now,
            now + 600,
            now - 3600,
            5
        )
        .await
        .expect("token"));
    store
        .spend_email_token(hash, issuer::store::TokenPurpose::VerifyEmail, now)
        .await
        .expect("spend")
        .expect("was live");
    let verified = token(&stack.login_again(&alice_email).await);
    assert_eq!(
        stack
            .get("/memory/verified/notes", Some(&verified))
            .await
            .status(),
        200
    );
    assert_eq!(stack.get("/memory/notes", Some(&alice)).await.status(), 200);
}
