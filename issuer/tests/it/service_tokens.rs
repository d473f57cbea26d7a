//! `client_credentials` (RFC 6749 §4.4): a confidential client acting as
//! itself gets a short access token with `sub` = `client:<id>`, its route
//! scopes and at most one of its resources; no refresh token, no ID token,
//! nothing of a person's. Deleting it, rotating its secret at once, or
//! taking a scope away ends its tokens through the feed. On SQLite and
//! PostgreSQL.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{oauth_error, register_client};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(services_get_tokens_of_their_own);

const NOTES: &str = "https://notes.example/api";

async fn service_token(
    t: &TestIssuer,
    id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    t.http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .expect("token")
}

fn own_token_revocations(records: &[auth_types::RevocationRecord], id: &str) -> usize {
    records
        .iter()
        .filter(|r| {
            r.kind == auth_types::RevocationKind::UserBefore && r.subject == format!("client:{id}")
        })
        .count()
}

/// A client as the admin API shows it.
async fn client_view(t: &TestIssuer, admin: &str, id: &str) -> Value {
    t.get_auth(&format!("/admin/clients/{id}"), admin)
        .await
        .json()
        .await
        .expect("json")
}

async fn services_get_tokens_of_their_own(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let service = |id: &str, extra: Value| {
        let mut body = json!({"client_id": id, "name": "Batch", "type": "confidential",
            "redirect_uris": [], "grant_types": ["client_credentials"],
            "scopes": ["openid", "notes:read", "notes:write"], "audiences": [NOTES]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    for (body, names) in [
        (
            service("pub-svc", json!({"type": "public"})),
            "confidential",
        ),
        (
            service(
                "rt-svc",
                json!({"grant_types": ["client_credentials", "refresh_token"]}),
            ),
            "authorization_code",
        ),
        (
            service("code-svc", json!({"grant_types": ["authorization_code"]})),
            "redirect_uris",
        ),
    ] {
        let (status, code, message) =
            error_code(t.post_auth("/admin/clients", &admin, Some(body)).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_metadata")
        );
        assert!(message.contains(names), "{names}: {message}");
    }
    let secret = register_client(&t, &admin, service("batch", json!({}))).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();

    // Every route scope it has, none of a person's; no refresh, no ID token.
    let r = service_token(&t, "batch", &secret, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["scope"], "notes:read notes:write");
    assert_eq!(v["expires_in"], 900);
    assert!(
        v.get("refresh_token").is_none() && v.get("id_token").is_none(),
        "{v}"
    );
    let access = v["access_token"].as_str().expect("access").to_string();
    // Each use is counted in memory and written in batches, not per
    // request: nothing is written until the flush (the job's, every
    // --usage-flush-secs, and at shutdown), then the day's count and the
    // time of the last use.
    let before = client_view(&t, &admin, "batch").await;
    assert_eq!(before["uses_by_day"], json!([]), "{before}");
    assert!(before.get("last_used_at").is_none(), "{before}");
    assert_eq!(
        issuer::service::usage::flush(&t.server.state)
            .await
            .expect("flush"),
        1
    );
    let after = client_view(&t, &admin, "batch").await;
    assert_eq!(after["uses_by_day"][0]["uses"], 1, "{after}");
    assert!(after["last_used_at"].as_i64().is_some(), "{after}");
    assert!(service_token(&t, "batch", &secret, &[])
        .await
        .status()
        .is_success());
    issuer::service::usage::flush(&t.server.state)
        .await
        .expect("flush");
    assert_eq!(
        client_view(&t, &admin, "batch").await["uses_by_day"][0]["uses"],
        2,
        "added to, not replaced"
    );
    let claims = t.verify(&access).await;
    assert_eq!(claims.sub, "client:batch");
    assert_eq!(claims.client_id, "batch");
    assert!(claims.roles.is_empty() && claims.email.is_none() && claims.amr.is_empty());
    assert_eq!(
        claims.aud,
        auth_types::Audience::One(issuer::testing::TEST_AUDIENCE.into())
    );
    // Not a person: the issuer's own API and userinfo refuse it.
    assert_eq!(
        t.get_auth("/auth/me", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get_auth("/auth/oauth2/userinfo", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Narrower scope, a resource; a person's scope, another resource, a
    // wrong secret.
    let v: Value = service_token(
        &t,
        "batch",
        &secret,
        &[("scope", "notes:read"), ("resource", NOTES)],
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["scope"], "notes:read");
    let claims = t.verify(v["access_token"].as_str().expect("access")).await;
    assert_eq!(claims.aud, auth_types::Audience::One(NOTES.into()));
    for (extra, want) in [
        (("scope", "openid"), "invalid_scope"),
        (("scope", "notes:admin"), "invalid_scope"),
        (("resource", "https://other.example"), "invalid_target"),
    ] {
        let (status, error) =
            oauth_error(service_token(&t, "batch", &secret, &[extra]).await).await;
        assert_eq!(
            (status, error.as_str()),
            (StatusCode::BAD_REQUEST, want),
            "{extra:?}"
        );
    }
    let (status, error) = oauth_error(service_token(&t, "batch", "cs_wrong", &[]).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    // A client that signs people in may not act as itself.
    let app = register_client(
        &t,
        &admin,
        json!({"client_id": "web", "name": "Web", "type": "confidential",
               "redirect_uris": ["https://app.test/cb"], "scopes": ["notes:read"]}),
    )
    .await;
    let (status, error) = oauth_error(
        service_token(
            &t,
            "web",
            app["client_secret"].as_str().expect("secret"),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );

    // Introspection (RFC 7662) knows it; revocation (RFC 7009) by the
    // client ends that one token, at the edge too (a `token` record).
    let introspect = |token: String| {
        let (t, secret) = (&t, &secret);
        async move {
            let v: Value = t
                .http
                .post(t.url("/auth/oauth2/introspect"))
                .basic_auth("batch", Some(secret))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .expect("introspect")
                .json()
                .await
                .expect("json");
            v
        }
    };
    let v = introspect(access.clone()).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["sub"], "client:batch");
    assert_eq!(v["scope"], "notes:read notes:write");
    let r = t
        .http
        .post(t.url("/auth/oauth2/revoke"))
        .basic_auth("batch", Some(&secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(introspect(access.clone()).await["active"], false);
    let jti = t.verify(&access).await.jti;
    assert!(feed_records(&t)
        .await
        .iter()
        .any(|r| r.kind == auth_types::RevocationKind::Token && r.subject == jti));
    let fresh = service_token(&t, "batch", &secret, &[])
        .await
        .json::<Value>()
        .await
        .expect("json")["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    assert_eq!(introspect(fresh.clone()).await["active"], true);

    // Taking a scope away, a leaked secret, a deletion: each ends what it
    // holds, through the feed (one user_before record of client:batch).
    assert_eq!(own_token_revocations(&feed_records(&t).await, "batch"), 0);
    let r = t
        .http
        .put(t.url("/admin/clients/batch"))
        .bearer_auth(&admin)
        .json(&service("batch", json!({"scopes": ["notes:read"]})))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(own_token_revocations(&feed_records(&t).await, "batch"), 1);
    assert_eq!(
        introspect(fresh).await["active"],
        false,
        "issued before the narrowing"
    );
    let r = t
        .post_auth("/admin/clients/batch/secret?immediate=true", &admin, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(own_token_revocations(&feed_records(&t).await, "batch"), 2);
    let r = t
        .http
        .delete(t.url("/admin/clients/batch"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(own_token_revocations(&feed_records(&t).await, "batch"), 3);
}
