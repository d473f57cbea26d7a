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
    users_are_searched_and_paged,
    deleting_a_user_ends_everything,
    profiles_and_metadata,
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
    // The same answer as a wrong password (review finding: answering
    // `account_disabled` only to the right password made an oracle).
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let r = t
        .post(
            "/auth/login",
            json!({"email": email, "password": "wrong passphrase"}),
        )
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
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
    // And what an operator needs to help the user.
    assert_eq!(
        body["mfa"],
        json!({"totp": false, "passkeys": 0, "recovery_codes_left": 0})
    );
    assert_eq!(body["identities"], json!([]));
    assert_eq!(body["teams"], json!([]));
    assert_eq!(body["has_password"], true);
    assert!(body["live_sessions"].as_u64().is_some(), "{body}");

    // Found by fuzzing (schemathesis): an admin could delete, disable or
    // demote themselves through the admin API, and lock everyone out when
    // they were the last admin. Refused, with the session left alone.
    let me: Value = t
        .get_auth("/auth/me", &admin)
        .await
        .json()
        .await
        .expect("me");
    let my_id = me["user"]["id"].as_str().expect("own id");
    for body in [
        json!({"disabled": true}),
        json!({"roles": ["auditor"]}),
        json!({"roles": []}),
    ] {
        let r = patch(&t, &admin, my_id, body.clone()).await;
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::CONFLICT, "self_change_refused"),
            "{body}"
        );
    }
    let r = t
        .http
        .delete(t.url(&format!("/admin/users/{my_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "self_change_refused")
    );
    // Still an admin, still signed in; metadata alone is fine.
    let r = patch(
        &t,
        &admin,
        my_id,
        json!({"admin_metadata": {"team": "ops"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        t.get_auth("/admin/users", &admin).await.status(),
        StatusCode::OK
    );
}

async fn list(t: &TestIssuer, admin: &str, query: &str) -> reqwest::Response {
    t.http
        .get(t.url(&format!("/admin/users?{query}")))
        .bearer_auth(admin)
        .send()
        .await
        .expect("list")
}

fn emails(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["user"]["email"].as_str().expect("email").to_string())
        .collect()
}

async fn users_are_searched_and_paged(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    for (email, name) in [
        ("grace.hopper@navy.example", "Grace Hopper"),
        ("ada_lovelace@engines.example", "Ada Lovelace"),
        ("adam@example.org", "Adam Smith"),
        ("percent%sign@example.org", "Per Cent"),
    ] {
        let r = t
            .post(
                "/auth/register",
                json!({"email": email, "password": PASSWORD, "name": name}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let found = |q: &'static str| {
        let t = &t;
        let admin = admin.clone();
        async move {
            let r = list(t, &admin, &format!("q={q}")).await;
            assert_eq!(r.status(), StatusCode::OK);
            emails(&r.json().await.expect("json"))
        }
    };
    // Substrings of email and name, any case; wildcards are literal.
    assert_eq!(found("HOPPER").await, vec!["grace.hopper@navy.example"]);
    assert_eq!(
        found("lovelace").await,
        vec!["ada_lovelace@engines.example"]
    );
    assert_eq!(found("a_l").await, vec!["ada_lovelace@engines.example"]);
    assert_eq!(found("t%25s").await, vec!["percent%sign@example.org"]);
    assert_eq!(
        found("da").await,
        vec!["ada_lovelace@engines.example", "adam@example.org"],
        "short queries too"
    );
    assert!(found("zzzz").await.is_empty());
    assert!(found("%25").await == vec!["percent%sign@example.org"]);

    // Pages by email, with an opaque cursor, covering everyone once.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let r = list(&t, &admin, &format!("limit=2&after={after}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.expect("json");
        seen.extend(emails(&page));
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "ordered, no repeats");
    assert_eq!(seen.len(), 5, "four users and the admin: {seen:?}");

    for bad in ["limit=0", "limit=201", "after=%%%", "unknown=1"] {
        let r = list(&t, &admin, bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let (_, plain) = {
        let email = unique_email("plain");
        t.register(&email, PASSWORD).await;
        (email.clone(), t.login(&email, PASSWORD).await)
    };
    assert_eq!(
        list(&t, &plain.access, "").await.status(),
        StatusCode::FORBIDDEN
    );
}

async fn deleting_a_user_ends_everything(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("leaving");
    let user: Value = t.register(&email, PASSWORD).await;
    let id = user["id"].as_str().expect("id").to_string();
    let a = t.login(&email, PASSWORD).await;
    let b = t.login(&email, PASSWORD).await;

    // First an admin ends the sessions only.
    let r = t
        .http
        .post(t.url(&format!("/admin/users/{id}/logout-all")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("logout-all");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["sessions_ended"], 2);
    for tokens in [&a, &b] {
        assert_eq!(
            t.get_auth("/auth/me", &tokens.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    let c = t.login(&email, PASSWORD).await;
    let r = t
        .http
        .delete(t.url(&format!("/admin/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        t.get_auth("/auth/me", &c.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.refresh(&c.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let records = user_records(&t, &id).await;
    assert!(records
        .iter()
        .any(|r| r.kind == RevocationKind::UserGeneration));
    assert!(feed_records(&t)
        .await
        .iter()
        .any(|r| r.kind == RevocationKind::Session && r.subject == c.session_id));
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = t
        .http
        .delete(t.url(&format!("/admin/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The address is free again.
    t.register(&email, PASSWORD).await;
}

async fn profiles_and_metadata(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("profile");
    let user: Value = t.register(&email, PASSWORD).await;
    let id = user["id"].as_str().expect("id").to_string();
    let tokens = t.login(&email, PASSWORD).await;
    let update = |body: Value| {
        t.http
            .patch(t.url("/auth/profile"))
            .bearer_auth(&tokens.access)
            .json(&body)
            .send()
    };
    let r = update(json!({
        "name": "  Ada  ",
        "avatar_url": "https://img.example/ada.png",
        "metadata": {"theme": "dark", "langs": ["rust"]},
    }))
    .await
    .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["name"], "Ada");
    assert_eq!(p["metadata"]["theme"], "dark");
    assert_eq!(p["admin_metadata"], json!({}));
    // Absent fields stay; null clears.
    let r = update(json!({"avatar_url": null})).await.expect("patch");
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["name"], "Ada");
    assert!(p["avatar_url"].is_null());
    // The name is searchable at once.
    let r = list(&t, &admin, "q=ada").await;
    assert!(emails(&r.json().await.expect("json")).contains(&email));

    for (body, code) in [
        (json!({"metadata": [1, 2]}), "invalid_metadata"),
        (
            json!({"metadata": {"x": "y".repeat(5000)}}),
            "invalid_metadata",
        ),
        (
            json!({"avatar_url": "http://img.example/a.png"}),
            "invalid_avatar_url",
        ),
        (
            json!({"avatar_url": "javascript:alert(1)"}),
            "invalid_avatar_url",
        ),
        (json!({"name": "x".repeat(201)}), "invalid_name"),
    ] {
        let r = update(body.clone()).await.expect("patch");
        let (status, got, _) = error_code(r).await;
        assert_eq!(
            (status, got.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}"
        );
    }
    let r = update(json!({"admin_metadata": {"tier": "gold"}}))
        .await
        .expect("patch");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "users cannot set admin metadata"
    );

    let r = t
        .http
        .patch(t.url(&format!("/admin/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"admin_metadata": {"tier": "gold"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    let p: Value = t
        .get_auth("/auth/profile", &tokens.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(p["admin_metadata"]["tier"], "gold");
    assert_eq!(p["metadata"]["theme"], "dark");
}
