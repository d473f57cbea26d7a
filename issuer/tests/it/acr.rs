//! `acr_values` at the authorization endpoint (OIDC Core 3.1.2.1): `aal2`
//! alone asks for a sign-in with a second factor. A user without one gets
//! `unmet_authentication_requirements`; a session with one gets a code and
//! an ID token saying `aal2`; a list naming `aal1`, or only values the
//! issuer does not know, accepts any sign-in. On SQLite and PostgreSQL.

use issuer::domain::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{
    authorize, authorize_url, exchange, location, page_sign_in, param, pkce, register_client,
    REDIRECT,
};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(acr_values_ask_for_a_second_factor);

pub(crate) fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

async fn acr_values_ask_for_a_second_factor(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let secret = register_client(
        &t,
        &admin,
        json!({"client_id": "acr", "name": "ACR", "type": "confidential",
               "redirect_uris": [REDIRECT], "scopes": ["openid"], "first_party": true}),
    )
    .await["client_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let discovery = t.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["acr_values_supported"], json!(["aal1", "aal2"]));
    let email = unique_email("acr");
    t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;
    let ask = |acr: &'static str| {
        let (t, cookies) = (&t, &cookies);
        async move {
            let p = pkce();
            let extra = format!(
                "&acr_values={}",
                oauth2::url::form_urlencoded::byte_serialize(acr.as_bytes()).collect::<String>()
            );
            let r = authorize(
                t,
                cookies,
                &authorize_url(t, "acr", REDIRECT, &p.challenge, &extra),
            )
            .await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{acr}");
            (location(&r), p)
        }
    };

    // No second factor: the requirement cannot be met, and the client hears it.
    for acr in ["aal2", "aal2 urn:example:gold"] {
        let (back, _) = ask(acr).await;
        assert_eq!(
            param(&back, "error").as_deref(),
            Some("unmet_authentication_requirements"),
            "{acr}: {back}"
        );
        assert_eq!(param(&back, "state").as_deref(), Some("s-1"));
        assert!(param(&back, "code").is_none());
    }
    // Any sign-in is acceptable when aal1 is listed, or nothing known is.
    for acr in ["aal1 aal2", "urn:example:gold", ""] {
        let (back, _) = ask(acr).await;
        assert!(param(&back, "code").is_some(), "{acr}: {back}");
    }

    // The session adds a second factor (TOTP set up from it: it counts as
    // two-factor from then on), and aal2 is met.
    let page_token = cookies
        .split("; ")
        .find_map(|c| c.strip_prefix("__Secure-page_token="))
        .expect("page token")
        .to_string();
    let r = t.post_auth("/auth/mfa/totp", &page_token, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let totp: Value = r.json().await.expect("json");
    let Some(code) = crate::mfa::otp(
        totp["secret"].as_str().expect("secret"),
        clock.now_ms() / 1000,
    ) else {
        return;
    };
    let r = t
        .post_auth(
            "/auth/mfa/totp/confirm",
            &page_token,
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (back, p) = ask("aal2").await;
    let code = param(&back, "code").unwrap_or_else(|| panic!("a code: {back}"));
    let v: Value = exchange(&t, ("acr", Some(&secret)), &code, &p.verifier)
        .await
        .json()
        .await
        .expect("json");
    let id = claims_of(v["id_token"].as_str().expect("id_token"));
    assert_eq!(id["acr"], "aal2", "{id}");
    assert!(id["amr"]
        .as_array()
        .expect("amr")
        .iter()
        .any(|m| m == "otp"));
}
