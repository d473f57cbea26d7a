//! Resource indicators (RFC 8707): an application asks for a token for one
//! of the resources it was registered for, and gets that `aud`; any other
//! resource is `invalid_target`, at the authorization endpoint, at the
//! exchange and at a refresh (which leaves the refresh token as it was).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{
    authorize, authorize_url, code_for, exchange, location, oauth_error, page_sign_in, param, pkce,
    register_client, REDIRECT,
};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(resource_indicators_choose_the_access_tokens_audience);

const NOTES: &str = "https://notes.example/api";

fn enc(s: &str) -> String {
    oauth2::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn resource_indicators_choose_the_access_tokens_audience(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let body = |audiences: Value| {
        json!({
            "client_id": "res", "name": "Res", "type": "confidential",
            "redirect_uris": [REDIRECT], "scopes": ["openid"], "first_party": true,
            "audiences": audiences,
        })
    };
    for bad in [
        json!(["https://a.example/#frag"]),
        json!(["not a uri"]),
        json!(["https://a.example/?q=1"]),
    ] {
        let r = t
            .post_auth("/admin/clients", &admin, Some(body(bad.clone())))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let secret = register_client(&t, &admin, body(json!([NOTES]))).await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let email = unique_email("resource");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;

    // Asked at the authorization endpoint: a resource it was not
    // registered for goes back to the client as invalid_target.
    let p = pkce();
    let other = format!("&resource={}", enc("https://other.example"));
    let r = authorize(
        &t,
        &cookies,
        &authorize_url(&t, "res", REDIRECT, &p.challenge, &other),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("invalid_target")
    );
    let mine = format!("&resource={}", enc(NOTES));
    let r = authorize(
        &t,
        &cookies,
        &authorize_url(&t, "res", REDIRECT, &p.challenge, &mine),
    )
    .await;
    let code = param(&location(&r), "code").expect("code");
    let r = exchange(&t, ("res", Some(&secret)), &code, &p.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.expect("json");
    let access = tokens["access_token"].as_str().expect("access");
    assert_eq!(
        t.verify(access).await.aud,
        auth_types::Audience::One(NOTES.into())
    );
    // A token for the notes API is not one for the issuer's userinfo.
    let r = t.get_auth("/auth/oauth2/userinfo", access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A refresh may name the grant's resource, no other; a refused one
    // leaves the refresh token as it was.
    let rt = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let refresh = |resource: Option<&'static str>, rt: String| {
        let (t, secret) = (&t, &secret);
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", rt),
            ];
            if let Some(r) = resource {
                form.push(("resource", r.to_string()));
            }
            t.http
                .post(t.url("/auth/oauth2/token"))
                .basic_auth("res", Some(secret))
                .form(&form)
                .send()
                .await
                .expect("send")
        }
    };
    let (status, error) =
        oauth_error(refresh(Some("https://other.example"), rt.clone()).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_target")
    );
    let r = refresh(Some(NOTES), rt).await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.expect("json");
    let access = again["access_token"].as_str().expect("access");
    assert_eq!(
        t.verify(access).await.aud,
        auth_types::Audience::One(NOTES.into())
    );

    // Named at the exchange only: one of the client's, or invalid_target.
    for (resource, want) in [("https://other.example", None), (NOTES, Some(NOTES))] {
        let p = pkce();
        let code = code_for(&t, &cookies, "res", &p).await;
        let r = t
            .http
            .post(t.url("/auth/oauth2/token"))
            .basic_auth("res", Some(&secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &p.verifier),
                ("resource", resource),
            ])
            .send()
            .await
            .expect("send");
        match want {
            None => assert_eq!(oauth_error(r).await.1, "invalid_target"),
            Some(aud) => {
                let v: Value = r.json().await.expect("json");
                let access = v["access_token"].as_str().expect("access");
                assert_eq!(
                    t.verify(access).await.aud,
                    auth_types::Audience::One(aud.into())
                );
            }
        }
    }
    // Without one, the mesh's audience, as before.
    let p = pkce();
    let code = code_for(&t, &cookies, "res", &p).await;
    let v: Value = exchange(&t, ("res", Some(&secret)), &code, &p.verifier)
        .await
        .json()
        .await
        .expect("json");
    let access = v["access_token"].as_str().expect("access");
    assert_eq!(
        t.verify(access).await.aud,
        auth_types::Audience::One(issuer::testing::TEST_AUDIENCE.into())
    );
}
