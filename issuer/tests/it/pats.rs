//! Personal access tokens: created with a recent sign-in and shown once,
//! stored hashed, listed, exchanged (RFC 8693, our token type) for a short
//! access token that carries the token's own session, refused once revoked,
//! expired, or its user gone; and the attacker's cases: a look-alike, a
//! token of another user, another user's revoke, an access token made from
//! it acting on the account. On SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{json, Value};

use issuer::domain::clock::Clock;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    personal_tokens_live_and_end,
    personal_tokens_refuse_bad_asks
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const PAT: &str = "urn:devmentor:params:oauth:token-type:personal_access_token";

async fn create(t: &TestIssuer, access: &str, body: Value) -> reqwest::Response {
    t.post_auth("/auth/tokens", access, Some(body)).await
}

/// A new token's secret (the creation must succeed).
async fn new_pat(t: &TestIssuer, access: &str, body: Value) -> String {
    let r = create(t, access, body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    v["token"].as_str().expect("token").to_string()
}

async fn exchange(t: &TestIssuer, pat: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", pat),
        ("subject_token_type", PAT),
    ];
    form.extend_from_slice(extra);
    t.http
        .post(t.url("/auth/oauth2/token"))
        .form(&form)
        .send()
        .await
        .expect("token")
}

async fn oauth_error(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    (status, v["error"].as_str().unwrap_or_default().to_string())
}

async fn list(t: &TestIssuer, access: &str) -> Vec<Value> {
    let v: Value = t
        .get_auth("/auth/tokens", access)
        .await
        .json()
        .await
        .expect("json");
    v["tokens"].as_array().expect("tokens").clone()
}

async fn personal_tokens_live_and_end(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let email = unique_email("pat");
    let user = t.register(&email, PASSWORD).await;
    let user_id = user["id"].as_str().expect("id").to_string();
    let me = t.login(&email, PASSWORD).await;

    let r = create(
        &t,
        &me.access,
        json!({"name": "ci deploy", "scope": "notes:read memory:read", "expires_in_days": 7}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    let pat = v["token"].as_str().expect("token").to_string();
    let id = v["personal_token"]["id"].as_str().expect("id").to_string();
    assert!(pat.starts_with("dmp_") && pat.len() == 40, "{pat}");
    assert_eq!(v["personal_token"]["scope"], "notes:read memory:read");

    // Listed without the secret; not among the sessions; stored hashed.
    let listed = list(&t, &me.access).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["last_used_at"], Value::Null);
    assert!(!listed[0].to_string().contains(&pat[4..]));
    let sessions: Value = t
        .get_auth("/auth/sessions", &me.access)
        .await
        .json()
        .await
        .expect("json");
    assert!(!sessions.to_string().contains(&id), "{sessions}");
    assert!(t
        .server
        .state
        .store
        .personal_token_session(&pat)
        .await
        .expect("lookup")
        .is_none());

    // Exchanged: a short access token for the user, carrying the token's
    // session and scope; no refresh token; a narrower scope when asked.
    let r = exchange(&t, &pat, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["issued_token_type"], ACCESS);
    assert_eq!(v["scope"], "notes:read memory:read");
    assert!(v.get("refresh_token").is_none(), "{v}");
    let access = v["access_token"].as_str().expect("access").to_string();
    let claims = t.verify(&access).await;
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.sid, id);
    assert_eq!(claims.client_id, "personal-access-token");
    assert_eq!(claims.scope.as_deref(), Some("notes:read memory:read"));
    assert!(claims.email.is_none());
    // A bearer secret claims no factor and no time of sign-in: the edge's
    // `mfa` and `max_auth_age` rules refuse it.
    assert_eq!(claims.amr, ["pat"]);
    assert_eq!(claims.auth_time, None);
    let r = exchange(&t, &pat, &[("scope", "notes:read")]).await;
    let narrowed = r.json::<Value>().await.expect("json");
    assert_eq!(narrowed["scope"], "notes:read");
    for asked in ["notes:write", "", " "] {
        assert_eq!(
            oauth_error(exchange(&t, &pat, &[("scope", asked)]).await).await,
            (StatusCode::BAD_REQUEST, "invalid_scope".into()),
            "{asked:?}"
        );
    }
    // Its use is noted.
    assert!(list(&t, &me.access).await[0]["last_used_at"].is_i64());

    // What it gives cannot act on the account: no more tokens from a
    // leaked one, no password change.
    let r = t.get_auth("/auth/tokens", &access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = create(&t, &access, json!({"name": "more", "scope": "notes:read"})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Another user can neither see nor revoke it.
    let other_email = unique_email("pat-other");
    t.register(&other_email, PASSWORD).await;
    let other = t.login(&other_email, PASSWORD).await;
    assert!(list(&t, &other.access).await.is_empty());
    let r = t
        .http
        .delete(t.url(&format!("/auth/tokens/{id}")))
        .bearer_auth(&other.access)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nor is a session's id a token's.
    let r = t
        .http
        .delete(t.url(&format!("/auth/tokens/{}", me.session_id)))
        .bearer_auth(&me.access)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Revoked: the exchange is refused, and the feed ends the session at
    // the edge, so the access token already made is refused there too.
    let r = t
        .http
        .delete(t.url(&format!("/auth/tokens/{id}")))
        .bearer_auth(&me.access)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        oauth_error(exchange(&t, &pat, &[]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    let records = feed_records(&t).await;
    assert!(
        records
            .iter()
            .any(|r| r.kind == auth_types::RevocationKind::Session && r.subject == id),
        "{records:?}"
    );
    assert!(list(&t, &me.access).await.is_empty());
    let r = t
        .http
        .delete(t.url(&format!("/auth/tokens/{id}")))
        .bearer_auth(&me.access)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Expiry: a token past its days is refused and no longer listed.
    let short = new_pat(
        &t,
        &me.access,
        json!({"name": "short", "scope": "notes:read", "expires_in_days": 1}),
    )
    .await;
    assert_eq!(exchange(&t, &short, &[]).await.status(), StatusCode::OK);
    clock.advance_secs(86_400 + 1);
    assert_eq!(
        oauth_error(exchange(&t, &short, &[]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    // A password change ends every token of the account (an intruder's
    // token dies with the reset).
    let fresh = t.login(&email, PASSWORD).await;
    let kept = new_pat(
        &t,
        &fresh.access,
        json!({"name": "kept?", "scope": "notes:read"}),
    )
    .await;
    let r = t
        .post_auth(
            "/auth/password",
            &fresh.access,
            Some(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        oauth_error(exchange(&t, &kept, &[]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    // A disabled user's tokens give nothing.
    let admin = make_admin(&t).await;
    let other = t.login(&other_email, PASSWORD).await;
    let other_pat = new_pat(
        &t,
        &other.access,
        json!({"name": "o", "scope": "notes:read"}),
    )
    .await;
    let other_id = t.verify(&other.access).await.sub;
    let r = t
        .http
        .patch(t.url(&format!("/admin/users/{other_id}")))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        oauth_error(exchange(&t, &other_pat, &[]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
}

async fn personal_tokens_refuse_bad_asks(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |a| a.pat_max_lifetime_days = 7).await else {
        return;
    };
    let email = unique_email("pat-bad");
    t.register(&email, PASSWORD).await;
    let me = t.login(&email, PASSWORD).await;
    for (body, names) in [
        (json!({"name": "", "scope": "notes:read"}), "name"),
        (json!({"name": "x", "scope": ""}), "at least one"),
        (json!({"name": "x", "scope": "openid"}), "openid"),
        (json!({"name": "x", "scope": "email notes:read"}), "email"),
        (json!({"name": "x", "scope": "Notes"}), "Notes"),
        // Only what the operator offers (--pat-scopes).
        (
            json!({"name": "x", "scope": "billing:refund"}),
            "not offered",
        ),
        (
            json!({"name": "x", "scope": "notes:read", "expires_in_days": 8}),
            "1 to 7",
        ),
        (
            json!({"name": "x", "scope": "notes:read", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "x", "scope": "notes:read", "extra": 1}),
            "extra",
        ),
    ] {
        let (status, _, message) = error_code(create(&t, &me.access, body.clone()).await).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert!(message.contains(names), "{body}: {message}");
    }
    assert!(list(&t, &me.access).await.is_empty());

    let v: Value = create(&t, &me.access, json!({"name": "ok", "scope": "notes:read"}))
        .await
        .json()
        .await
        .expect("json");
    let pat = v["token"].as_str().expect("token").to_string();
    // Seven days at most, whatever the default.
    assert!(
        v["personal_token"]["expires_at"].as_i64().expect("exp")
            <= clock.now_ms() / 1000 + 7 * 86_400
    );

    // The exchange: a look-alike, an unknown but well-formed token, client
    // authentication beside it, a resource or an actor are all refused.
    let mut typo = pat.clone().into_bytes();
    typo[12] = if typo[12] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).expect("utf8");
    assert_eq!(
        oauth_error(exchange(&t, &typo, &[]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    assert_eq!(
        oauth_error(exchange(&t, "dmp_short", &[]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    for extra in [
        ("client_id", "someone"),
        ("resource", "https://memory.devmentor.test"),
        ("audience", "x"),
        ("actor_token", "x"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:refresh_token",
        ),
    ] {
        assert_eq!(
            oauth_error(exchange(&t, &pat, &[extra]).await).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{extra:?}"
        );
    }
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth("someone", Some("secret"))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", &pat),
            ("subject_token_type", PAT),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(oauth_error(r).await.1, "invalid_request");

    // The reserved client id cannot be registered.
    let admin = make_admin(&t).await;
    let r = t
        .post_auth(
            "/admin/clients",
            &admin,
            Some(json!({"client_id": "personal-access-token", "name": "x", "type": "confidential",
                "redirect_uris": [], "grant_types": ["client_credentials"], "scopes": ["notes:read"]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A sign-in that is no longer recent cannot make one.
    clock.advance_secs(301);
    let (status, code, _) = error_code(
        create(
            &t,
            &me.access,
            json!({"name": "late", "scope": "notes:read"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "recent_authentication_required")
    );

    // At most 50 live tokens each.
    let me = t.login(&email, PASSWORD).await;
    for i in 1..50 {
        let r = create(
            &t,
            &me.access,
            json!({"name": format!("t{i}"), "scope": "notes:read"}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{i}");
    }
    let (status, code, _) = error_code(
        create(
            &t,
            &me.access,
            json!({"name": "t51", "scope": "notes:read"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "too_many_tokens")
    );
}
