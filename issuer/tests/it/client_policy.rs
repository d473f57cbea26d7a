//! What a client is registered for bounds what it gets: its grant types
//! (a client without the refresh grant never holds a refresh token, and is
//! refused the grant) and its token lifetimes (only ever shorter than the
//! issuer's; a session keeps its client's access-token lifetime across
//! refreshes and ends at its client's session lifetime).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{
    authorize, authorize_url, code_for, exchange, location, oauth_error, page_sign_in, param, pkce,
    register_client, REDIRECT,
};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    a_second_rotation_during_the_overlap_is_refused,
    demoting_a_client_ends_the_sessions_no_one_consented_to,
    an_update_keeps_the_credentials_and_ends_grants_it_no_longer_allows,
    grant_types_and_lifetimes_are_checked_at_registration,
    a_client_without_the_refresh_grant_gets_no_refresh_token,
    a_clients_lifetimes_bound_its_tokens_and_its_session
);

fn client(id: &str, extra: Value) -> Value {
    let mut body = json!({
        "client_id": id, "name": "App", "type": "confidential",
        "redirect_uris": [REDIRECT], "scopes": ["openid"], "first_party": true,
    });
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

async fn refresh_grant(t: &TestIssuer, id: &str, secret: &str, rt: &str) -> reqwest::Response {
    t.http
        .post(t.url("/auth/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .expect("send")
}

fn secret_of(registered: &Value) -> String {
    registered["client_secret"]
        .as_str()
        .expect("secret")
        .to_string()
}

async fn grant_types_and_lifetimes_are_checked_at_registration(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    for (extra, names) in [
        (json!({"grant_types": ["implicit"]}), "grant_types"),
        (json!({"grant_types": ["password"]}), "grant_types"),
        (
            json!({"grant_types": ["refresh_token"]}),
            "authorization_code",
        ),
        (json!({"grant_types": []}), "authorization_code"),
        (
            json!({"grant_types": ["authorization_code"], "scopes": ["openid", "offline_access"]}),
            "offline_access",
        ),
        (json!({"access_token_ttl": 59}), "access_token_ttl"),
        (json!({"access_token_ttl": 86401}), "access_token_ttl"),
        (json!({"access_token_ttl": -1}), "access_token_ttl"),
        (json!({"refresh_token_ttl": 299}), "refresh_token_ttl"),
        (json!({"refresh_token_ttl": 31536001}), "refresh_token_ttl"),
    ] {
        let r = t
            .post_auth("/admin/clients", &admin, Some(client("bad", extra.clone())))
            .await;
        let (status, code, message) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_metadata"),
            "{extra}"
        );
        assert!(message.contains(names), "{extra}: {message}");
    }
    // Nothing half-made: the id is still free.
    let made = register_client(&t, &admin, client("bad", json!({}))).await;
    // Left out: both grants, the issuer's lifetimes.
    assert_eq!(
        made["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert!(made.get("access_token_ttl").is_none());
    let made = register_client(
        &t,
        &admin,
        client(
            "tuned",
            json!({"grant_types": ["authorization_code", "authorization_code"],
                   "access_token_ttl": 120, "refresh_token_ttl": 600}),
        ),
    )
    .await;
    assert_eq!(made["grant_types"], json!(["authorization_code"]));
    assert_eq!(
        (
            made["access_token_ttl"].as_i64(),
            made["refresh_token_ttl"].as_i64()
        ),
        (Some(120), Some(600))
    );
    let listed: Value = t
        .http
        .get(t.url("/admin/clients"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let tuned = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["client_id"] == "tuned")
        .expect("listed");
    assert_eq!(tuned["access_token_ttl"], 120);
}

async fn a_client_without_the_refresh_grant_gets_no_refresh_token(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let code_only = secret_of(
        &register_client(
            &t,
            &admin,
            client("code-only", json!({"grant_types": ["authorization_code"]})),
        )
        .await,
    );
    let both = secret_of(&register_client(&t, &admin, client("both", json!({}))).await);
    let email = unique_email("grants");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;

    // First-party, which would otherwise get one.
    let p = pkce();
    let code = code_for(&t, &cookies, "both", &p).await;
    let v: Value = exchange(&t, ("both", Some(&both)), &code, &p.verifier)
        .await
        .json()
        .await
        .expect("json");
    let rt = v["refresh_token"].as_str().expect("refresh").to_string();

    let p = pkce();
    let code = code_for(&t, &cookies, "code-only", &p).await;
    let r = exchange(&t, ("code-only", Some(&code_only)), &code, &p.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert!(v["access_token"].is_string());
    assert!(
        v.get("refresh_token").is_none(),
        "a refresh token was answered"
    );

    // The refresh grant is refused to it, even with another client's
    // refresh token, before that token is looked at: it stays usable.
    let (status, error) = oauth_error(refresh_grant(&t, "code-only", &code_only, &rt).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
    let r = refresh_grant(&t, "both", &both, &rt).await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn a_clients_lifetimes_bound_its_tokens_and_its_session(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let short = secret_of(
        &register_client(
            &t,
            &admin,
            client(
                "short",
                json!({"access_token_ttl": 120, "refresh_token_ttl": 600}),
            ),
        )
        .await,
    );
    // Longer than the issuer's 900 s: cut to the issuer's.
    let long = secret_of(
        &register_client(
            &t,
            &admin,
            client("long", json!({"access_token_ttl": 86400})),
        )
        .await,
    );
    let email = unique_email("lifetimes");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let issuer_ttl = t.server.state.settings.keys.access_token_ttl;
    assert_eq!(issuer_ttl, 900, "the test assumes the issuer's default");

    let p = pkce();
    let code = code_for(&t, &cookies, "long", &p).await;
    let v: Value = exchange(&t, ("long", Some(&long)), &code, &p.verifier)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["expires_in"], issuer_ttl);
    let claims = t.verify(v["access_token"].as_str().expect("access")).await;
    assert_eq!(claims.exp - claims.iat, issuer_ttl);

    let p = pkce();
    let code = code_for(&t, &cookies, "short", &p).await;
    let v: Value = exchange(&t, ("short", Some(&short)), &code, &p.verifier)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["expires_in"], 120);
    let claims = t.verify(v["access_token"].as_str().expect("access")).await;
    assert_eq!(claims.exp - claims.iat, 120);
    // The ID token lives no longer than the access token it comes with.
    let id = crate::acr::claims_of(v["id_token"].as_str().expect("id_token"));
    assert_eq!(
        id["exp"].as_i64().expect("exp") - id["iat"].as_i64().expect("iat"),
        120
    );

    // A refresh keeps the client's lifetime.
    clock.advance_secs(300);
    let r = refresh_grant(
        &t,
        "short",
        &short,
        v["refresh_token"].as_str().expect("rt"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["expires_in"], 120);
    let claims = t.verify(v["access_token"].as_str().expect("access")).await;
    assert_eq!(claims.exp - claims.iat, 120);

    // The session ends at the client's 600 s, however recently refreshed.
    clock.advance_secs(301);
    let (status, error) = oauth_error(
        refresh_grant(
            &t,
            "short",
            &short,
            v["refresh_token"].as_str().expect("rt"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
}

async fn put_client(t: &TestIssuer, admin: &str, id: &str, body: Value) -> reqwest::Response {
    t.http
        .put(t.url(&format!("/admin/clients/{id}")))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .expect("put")
}

async fn an_update_keeps_the_credentials_and_ends_grants_it_no_longer_allows(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let wide = json!({"scopes": ["openid", "notes:read"]});
    let secret = secret_of(&register_client(&t, &admin, client("notes", wide.clone())).await);
    let email = unique_email("update");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    // Two grants: one with notes:read, one with openid alone.
    let mut refresh_tokens = Vec::new();
    for scope in ["openid+notes%3Aread", "openid"] {
        let p = pkce();
        let url = authorize_url(&t, "notes", REDIRECT, &p.challenge, "")
            .replace("scope=openid", &format!("scope={scope}"));
        let code = param(&location(&authorize(&t, &cookies, &url).await), "code").expect("code");
        let v: Value = exchange(&t, ("notes", Some(&secret)), &code, &p.verifier)
            .await
            .json()
            .await
            .expect("json");
        refresh_tokens.push(v["refresh_token"].as_str().expect("rt").to_string());
    }

    // What may not change: the id, the type, the method; keys go elsewhere.
    for (body, names) in [
        (client("other", wide.clone()), "client_id"),
        (
            client("notes", json!({"type": "public", "scopes": ["openid"]})),
            "type",
        ),
        (
            client(
                "notes",
                json!({"token_endpoint_auth_method": "private_key_jwt"}),
            ),
            "token_endpoint_auth_method",
        ),
        (client("notes", json!({"jwks": {"keys": []}})), "jwks"),
        (
            client("notes", json!({"access_token_ttl": 5})),
            "access_token_ttl",
        ),
    ] {
        let (status, code, message) = error_code(put_client(&t, &admin, "notes", body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_metadata")
        );
        assert!(message.contains(names), "{names}: {message}");
    }
    // A code issued before the change, redeemed after it.
    let pending_pkce = pkce();
    let url = authorize_url(&t, "notes", REDIRECT, &pending_pkce.challenge, "")
        .replace("scope=openid", "scope=openid+notes%3Aread");
    let pending = param(&location(&authorize(&t, &cookies, &url).await), "code").expect("code");
    let r = put_client(&t, &admin, "nobody", client("nobody", json!({}))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let before = feed_records(&t).await.len();

    // Narrowed: the grant holding notes:read ends (and reaches the feed);
    // the other, and the client's secret, are untouched.
    let r = put_client(
        &t,
        &admin,
        "notes",
        client(
            "notes",
            json!({"name": "Notes, renamed", "redirect_uris": [REDIRECT, "https://app.test/cb2"]}),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["sessions_ended"], 1);
    assert_eq!(v["name"], "Notes, renamed");
    // Two admins from the same read: the second, naming the version it
    // read, is refused rather than undo the first.
    assert_eq!(v["version"], 2);
    let stale = client(
        "notes",
        json!({"version": 1, "scopes": ["openid", "notes:read"]}),
    );
    let (status, code, _) = error_code(put_client(&t, &admin, "notes", stale).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "client_changed")
    );
    assert_eq!(v["scopes"], json!(["openid"]));
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(feed_records(&t).await.len(), before + 1);
    let (status, error) =
        oauth_error(refresh_grant(&t, "notes", &secret, &refresh_tokens[0]).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let r = refresh_grant(&t, "notes", &secret, &refresh_tokens[1]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = exchange(
        &t,
        ("notes", Some(&secret)),
        &pending,
        &pending_pkce.verifier,
    )
    .await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_string()),
        "a code for a scope the client lost"
    );
    // The new redirect URI works at once.
    let p = pkce();
    let r = authorize(
        &t,
        &cookies,
        &authorize_url(&t, "notes", "https://app.test/cb2", &p.challenge, ""),
    )
    .await;
    let cb2_code = param(&location(&r), "code").expect("code");

    // Left out of an update, grant types and lifetimes stay (their defaults
    // are the widest); null clears a lifetime; a shorter one reaches the
    // live sessions; a removed redirect URI's codes no longer redeem.
    let narrow = json!({"grant_types": ["authorization_code"], "access_token_ttl": 120,
                        "refresh_token_ttl": 3600});
    let r = put_client(&t, &admin, "notes", client("notes", narrow)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = put_client(&t, &admin, "notes", client("notes", json!({})))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["grant_types"], json!(["authorization_code"]), "{v}");
    assert_eq!(
        (
            v["access_token_ttl"].as_i64(),
            v["refresh_token_ttl"].as_i64()
        ),
        (Some(120), Some(3600))
    );
    let r = exchange(&t, ("notes", Some(&secret)), &cb2_code, &p.verifier).await;
    assert_eq!(
        oauth_error(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".to_string()),
        "a code for a redirect URI no longer registered"
    );
    // The surviving session was opened with the issuer's lifetime: its
    // refresh now gets 120 s tokens. (The refresh grant is gone from the
    // client, so it is put back first.)
    let widened = json!({"grant_types": ["authorization_code", "refresh_token"],
                         "access_token_ttl": null});
    let v: Value = put_client(&t, &admin, "notes", client("notes", widened))
        .await
        .json()
        .await
        .expect("json");
    assert!(v.get("access_token_ttl").is_none(), "null clears: {v}");
    assert_eq!(v["refresh_token_ttl"], 3600);
    // The session keeps the 120 s it was cut to (lifetimes only shorten).
    let refreshed: Value = refresh_grant(&t, "notes", &secret, &refresh_tokens[1])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(refreshed["expires_in"], 120, "{refreshed}");
    // Audited with what changed.
    let events: Value = t
        .http
        .get(t.url("/admin/audit?action=oauth_client_updated"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let first = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["metadata"]["sessions_ended"] == 1);
    assert!(first.is_some(), "{events}");
}

async fn a_second_rotation_during_the_overlap_is_refused(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let first = secret_of(&register_client(&t, &admin, client("rot", json!({}))).await);
    let rotate = |immediate: bool| {
        let (t, admin) = (&t, &admin);
        async move {
            t.post_auth(
                &format!("/admin/clients/rot/secret?immediate={immediate}"),
                admin,
                None,
            )
            .await
        }
    };
    let authenticates = |secret: String| {
        let t = &t;
        async move {
            // A made-up refresh token: invalid_grant means the secret passed.
            oauth_error(refresh_grant(t, "rot", &secret, "rt_made-up").await)
                .await
                .1
                == "invalid_grant"
        }
    };
    let r = rotate(false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let second = r.json::<Value>().await.expect("json")["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert!(authenticates(first.clone()).await && authenticates(second.clone()).await);
    // Again, with an overlap, while the first one's runs (a double click, a
    // reloaded page): refused, and both secrets still work.
    let (status, code, message) = error_code(rotate(false).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "rotation_in_progress")
    );
    assert!(message.contains("immediate"), "{message}");
    assert!(authenticates(first.clone()).await && authenticates(second.clone()).await);
    // Immediate: only the newest works.
    let r = rotate(true).await;
    assert_eq!(r.status(), StatusCode::OK);
    let third = r.json::<Value>().await.expect("json")["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert!(authenticates(third).await);
    assert!(!authenticates(first).await && !authenticates(second).await);
}

async fn introspect(t: &TestIssuer, secret: &str, token: &str) -> bool {
    let v: Value = t
        .http
        .post(t.url("/auth/oauth2/introspect"))
        .basic_auth("demo", Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    v["active"] == true
}

/// First-party clients skip consent; one made third-party again keeps only
/// the sessions a consent covers.
async fn demoting_a_client_ends_the_sessions_no_one_consented_to(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let third = json!({"first_party": false});
    let secret = secret_of(&register_client(&t, &admin, client("demo", third.clone())).await);
    // B allows it on the consent page.
    let b = unique_email("consented");
    t.register(&b, PASSWORD).await;
    let cookies = page_sign_in(&t, &b).await;
    let p = pkce();
    let url = authorize_url(&t, "demo", REDIRECT, &p.challenge, "");
    let page = authorize(&t, &cookies, &url)
        .await
        .text()
        .await
        .expect("consent page");
    let query = url.split_once('?').expect("query").1.to_string();
    let allowed = crate::oauth::no_redirects()
        .post(t.url("/auth/ui/authorize"))
        .header("cookie", &cookies)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "{query}&decision=allow&consent_token={}",
            crate::oauth::hidden(&page, "consent_token")
        ))
        .send()
        .await
        .expect("allow")
        .text()
        .await
        .expect("page");
    let to = crate::oauth::landing_url(&allowed);
    let code = param(&oauth2::url::Url::parse(&to).expect("url"), "code").expect("code");
    let v: Value = exchange(&t, ("demo", Some(&secret)), &code, &p.verifier)
        .await
        .json()
        .await
        .expect("json");
    let b_token = v["access_token"].as_str().expect("access").to_string();
    // Made first-party: A is never asked.
    let first = json!({"first_party": true});
    let v: Value = put_client(&t, &admin, "demo", client("demo", first))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["sessions_ended"], 0);
    let a = unique_email("never-asked");
    t.register(&a, PASSWORD).await;
    let cookies = page_sign_in(&t, &a).await;
    let p = pkce();
    let code = code_for(&t, &cookies, "demo", &p).await;
    let v: Value = exchange(&t, ("demo", Some(&secret)), &code, &p.verifier)
        .await
        .json()
        .await
        .expect("json");
    let a_token = v["access_token"].as_str().expect("access").to_string();
    assert!(introspect(&t, &secret, &a_token).await);
    // Third-party again: A's session ends, B's consent still covers B's.
    let v: Value = put_client(&t, &admin, "demo", client("demo", third))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["sessions_ended"], 1, "{v}");
    assert!(!introspect(&t, &secret, &a_token).await);
    assert!(introspect(&t, &secret, &b_token).await);
}
