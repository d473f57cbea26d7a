//! Personal access tokens through Envoy: a script exchanges its token for
//! a short access token, which the edge takes on the rule naming its scope
//! (and nowhere written for people); revoking the personal access token
//! refuses that access token at the edge within the feed's lag.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// The route whose rule names `scopes: [notes:read]` (envoy/policy.yaml).
const NOTES: &str = "/memory/notes/1";

pub async fn pat_through_envoy(stack: &Stack) {
    let email = unique_email("pat");
    let me = stack.login(&email).await;
    let session = token(&me);
    let me: Value = stack
        .get("/auth/me", Some(&session))
        .await
        .json()
        .await
        .expect("json");
    let v = stack
        .personal_token(
            &session,
            json!({"name": "ci", "scope": "notes:read", "expires_in_days": 7}),
        )
        .await;
    let pat = v["token"].as_str().expect("token").to_string();
    let id = v["personal_token"]["id"].as_str().expect("id").to_string();
    // The personal access token itself is no bearer token at the edge.
    assert_eq!(stack.get(NOTES, Some(&pat)).await.status(), 401);

    let access = token(&stack.exchange_pat(&pat, None).await);
    let r = stack.get(NOTES, Some(&access)).await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(
        seen["headers"]["x-user-id"],
        json!([me["user"]["id"].clone()])
    );
    // A scoped token reaches only rules that name a scope or a client.
    assert_eq!(stack.get("/ai/chat", Some(&access)).await.status(), 403);

    let r = stack
        .http
        .delete(stack.url(&format!("/auth/tokens/{id}")))
        .bearer_auth(&session)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 204);
    let lag = wait_until(Duration::from_secs(2), || async {
        stack.get(NOTES, Some(&access)).await.status() == 401
    })
    .await
    .expect("a revoked personal access token's access token refused at the edge");
    eprintln!("personal access token revoked → its access token denied at the edge after {lag:?}");
}
