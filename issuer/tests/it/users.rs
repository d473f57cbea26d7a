//! Administrators change accounts; whatever a live token says about the
//! user stops being honoured at once.

use auth_types::RevocationKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    role_changes_revoke_live_tokens_and_new_tokens_carry_the_new_roles,
    disabling_ends_sessions_and_enabling_lets_the_user_back,
    user_changes_are_admin_only_and_validated,
);

async fn patch(t: &TestIssuer, admin: &str, id: &str, body: Value) -> reqwest::Response {
    t.http
        .patch(t.url(&format!("/admin/users/{id}")))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .expect("patch")
}

async fn user_records(t: &TestIssuer, user_id: &str) -> Vec<auth_types::RevocationRecord> {
    feed_records(t)
        .await
        .into_iter()
        .filter(|r| r.kind == RevocationKind::UserGeneration && r.subject == user_id)
        .collect()
}

async fn role_changes_revoke_live_tokens_and_new_tokens_carry_the_new_roles(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("member");
    let user: Value = t.register(&email, PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    let old = t.login(&email, PASSWORD).await;
    let old_claims = t.verify(&old.access).await;
    assert!(old_claims.roles.is_empty());

    let r = patch(
        &t,
        &admin,
        id,
        json!({"roles": ["team:blue", "team:blue", "reader"]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["user"]["roles"], json!(["reader", "team:blue"]));

    // Every token minted so far is of an older generation than the record's.
    let records = user_records(&t, id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].covers(&old_claims));
    let r = t.get_auth("/auth/me", &old.access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The session lives on: a refresh yields a token with the new roles
    // that the record does not cover, even within the same second.
    let r = t.refresh(&old.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh = Tokens::from(r.json::<Value>().await.expect("json"));
    let claims = t.verify(&fresh.access).await;
    assert_eq!(claims.roles, vec!["reader", "team:blue"]);
    assert!(!records[0].covers(&claims), "not covered by the record");
    let r = t.get_auth("/auth/me", &fresh.access).await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn disabling_ends_sessions_and_enabling_lets_the_user_back(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("leaver");
    let user: Value = t.register(&email, PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    let a = t.login(&email, PASSWORD).await;
    let b = t.login(&email, PASSWORD).await;

    let r = patch(&t, &admin, id, json!({"disabled": true})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["disabled"], true);
    for tokens in [&a, &b] {
        assert_eq!(
            t.refresh(&tokens.refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.get_auth("/auth/me", &tokens.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "account_disabled")
    );
    assert!(!user_records(&t, id).await.is_empty());

    let r = patch(&t, &admin, id, json!({"disabled": false})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let back = t.login(&email, PASSWORD).await;
    assert_eq!(
        t.get_auth("/auth/me", &back.access).await.status(),
        StatusCode::OK
    );
}

async fn user_changes_are_admin_only_and_validated(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("plain");
    let user: Value = t.register(&email, PASSWORD).await;
    let id = user["id"].as_str().expect("id");
    let plain = t.login(&email, PASSWORD).await.access;

    let r = patch(&t, &plain, id, json!({"roles": ["admin"]})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no self-promotion");
    for (body, status) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"roles": ["a b"]}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"roles": ["x,admin"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"roles": [""]}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"roles": "admin"}), StatusCode::BAD_REQUEST),
        (json!({"colour": "red"}), StatusCode::BAD_REQUEST),
    ] {
        let r = patch(&t, &admin, id, body.clone()).await;
        let (got, _, _) = error_code(r).await;
        assert_eq!(got, status, "{body}");
    }
    let r = patch(&t, &admin, "no-such-user", json!({"disabled": true})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nothing was half-applied by the refused requests.
    let r = t.get_auth(&format!("/admin/users/{id}"), &admin).await;
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["user"]["roles"], json!([]));
    assert!(user_records(&t, id).await.is_empty());
}
