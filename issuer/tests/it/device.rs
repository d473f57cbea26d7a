//! The device authorization grant (RFC 8628): a CLI asks for codes and
//! polls, its user approves on the verification page. The codes and the
//! polling are driven by the `openidconnect` crate (a client we did not
//! write); the spec's refusals and the page's attacks by hand. The clock
//! is the issuer's manual one: polling intervals pass without sleeping.

use std::time::Duration;

use openidconnect::core::{CoreClient, CoreDeviceAuthorizationResponse, CoreProviderMetadata};
use openidconnect::{
    ClientId, DeviceAuthorizationUrl, IssuerUrl, OAuth2TokenResponse, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{no_redirects, page_sign_in, register_client, transport};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(a_cli_signs_in_by_device_code);

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn cli_client(id: &str, first_party: bool) -> Value {
    json!({"client_id": id, "name": "DevMentor CLI", "type": "public", "redirect_uris": [],
           "grant_types": [DEVICE, "refresh_token"], "first_party": first_party,
           "scopes": ["openid", "email", "notes:read", "offline_access"]})
}

async fn device_authorization(t: &TestIssuer, form: &[(&str, &str)]) -> reqwest::Response {
    t.http
        .post(t.url("/auth/oauth2/device_authorization"))
        .form(form)
        .send()
        .await
        .expect("device authorization")
}

async fn poll(t: &TestIssuer, client_id: &str, device_code: &str) -> (StatusCode, Value) {
    let r = t
        .http
        .post(t.url("/auth/oauth2/token"))
        .form(&[
            ("grant_type", DEVICE),
            ("device_code", device_code),
            ("client_id", client_id),
        ])
        .send()
        .await
        .expect("poll");
    (r.status(), r.json().await.expect("json"))
}

fn error_of(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or_default())
}

/// The verification page as a signed-in browser uses it: the code
/// entered, the question's page (and its form token).
async fn enter_code(t: &TestIssuer, cookies: &str, code: &str) -> (StatusCode, String) {
    let r = no_redirects()
        .post(t.url("/auth/ui/device"))
        .header("cookie", cookies)
        .header("sec-fetch-site", "same-origin")
        .form(&[("user_code", code)])
        .send()
        .await
        .expect("enter code");
    (r.status(), r.text().await.expect("page"))
}

fn answer_token(page: &str) -> String {
    let at = page
        .find("name=\"answer_token\" value=\"")
        .expect("form token")
        + 27;
    page[at..].split('"').next().expect("token").to_string()
}

async fn answer(
    t: &TestIssuer,
    cookies: &str,
    code: &str,
    token: &str,
    decision: &str,
) -> (StatusCode, String) {
    let r = no_redirects()
        .post(t.url("/auth/ui/device/answer"))
        .header("cookie", cookies)
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("user_code", code),
            ("answer_token", token),
            ("decision", decision),
        ])
        .send()
        .await
        .expect("answer");
    (r.status(), r.text().await.expect("page"))
}

async fn a_cli_signs_in_by_device_code(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let admin = make_admin(&t).await;
    // Every client up front: the admin's sign-in is recent only while the
    // clock has not moved.
    register_client(&t, &admin, cli_client("cli", true)).await;
    register_client(&t, &admin, cli_client("other-cli", true)).await;
    register_client(&t, &admin, cli_client("third-cli", false)).await;
    register_client(
        &t,
        &admin,
        json!({"client_id": "web", "name": "Web", "type": "public",
               "redirect_uris": ["https://app.test/cb"], "scopes": ["openid"]}),
    )
    .await;
    let email = unique_email("device");
    let user = t.register(&email, PASSWORD).await;
    let cookies = page_sign_in(&t, &email).await;

    // The codes, by the crate; the discovery document names the endpoint.
    let http = transport(t.url(""));
    let issuer = IssuerUrl::new(issuer::testing::TEST_ISSUER_URL.into()).expect("issuer");
    let discovery = t.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery["device_authorization_endpoint"],
        format!("{}/auth/oauth2/device_authorization", issuer.as_str())
    );
    assert!(discovery["grant_types_supported"]
        .as_array()
        .expect("grants")
        .contains(&json!(DEVICE)));
    let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new("cli".into()), None)
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(
                discovery["device_authorization_endpoint"]
                    .as_str()
                    .expect("endpoint")
                    .into(),
            )
            .expect("url"),
        );
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("notes:read".into()))
        .request_async(&http)
        .await
        .expect("device codes");
    let user_code = details.user_code().secret().clone();
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(
        details.verification_uri().as_str(),
        format!("{}/auth/ui/device", issuer.as_str())
    );
    assert_eq!(details.interval(), Duration::from_secs(5));
    let device_code = details.device_code().secret().clone();

    // Before the user answers: pending; polled again at once: slow_down
    // (and the interval grows by 5 s for good, at each one); after the
    // longer wait, pending.
    assert_eq!(
        error_of(&poll(&t, "cli", &device_code).await),
        (StatusCode::BAD_REQUEST, "authorization_pending")
    );
    assert_eq!(
        error_of(&poll(&t, "cli", &device_code).await),
        (StatusCode::BAD_REQUEST, "slow_down")
    );
    clock.advance_secs(5);
    assert_eq!(
        error_of(&poll(&t, "cli", &device_code).await),
        (StatusCode::BAD_REQUEST, "slow_down"),
        "the interval is 10 s now (and 15 s after this one)"
    );
    clock.advance_secs(15);
    assert_eq!(
        error_of(&poll(&t, "cli", &device_code).await),
        (StatusCode::BAD_REQUEST, "authorization_pending")
    );
    // Another client's poll with the code learns nothing.
    clock.advance_secs(15);
    assert_eq!(
        error_of(&poll(&t, "other-cli", &device_code).await),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );

    // The page: signed out, to the sign-in page and back here with the code.
    let r = no_redirects()
        .get(t.url(&format!("/auth/ui/device?user_code={user_code}")))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(
        to,
        format!("/auth/ui/login?return_to=%2Fauth%2Fui%2Fdevice%3Fuser_code%3D{user_code}")
    );
    // A wrong code is said so, on the form; typed loosely, the right one
    // shows the client, the scopes and the code.
    let (status, page) = enter_code(&t, &cookies, "BCDF-GHJK").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("not one we gave out"), "{page}");
    let typed = user_code.to_lowercase().replace('-', " ");
    let (status, page) = enter_code(&t, &cookies, &typed).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("DevMentor CLI") && page.contains(&user_code),
        "{page}"
    );
    assert!(page.contains("Use notes:read"), "{page}");
    let token = answer_token(&page);
    // The form token is this browser session's, for this code: another
    // user's session, or a made-up token, is refused.
    let other = unique_email("device-other");
    t.register(&other, PASSWORD).await;
    let other_cookies = page_sign_in(&t, &other).await;
    for (cookies, token) in [(&other_cookies, token.as_str()), (&cookies, "forged")] {
        let (status, page) = answer(&t, cookies, &user_code, token, "allow").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    }
    let (status, page) = answer(&t, &cookies, &user_code, &token, "allow").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Approved"), "{page}");
    // Answered: the code is spent for the page.
    let (status, _) = answer(&t, &cookies, &user_code, &token, "deny").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The crate polls (at once: slow_down, which it obeys by "sleeping",
    // here by moving the issuer's clock) and gets the tokens.
    let sleeper = {
        let clock = clock.clone();
        move |d: Duration| {
            clock.advance_secs(i64::try_from(d.as_secs()).expect("secs"));
            std::future::ready(())
        }
    };
    clock.advance_secs(1);
    let tokens = client
        .exchange_device_access_token(&details)
        .expect("token endpoint")
        .request_async(&http, sleeper, None)
        .await
        .expect("tokens");
    let at = t.verify(tokens.access_token().secret()).await;
    assert_eq!(at.sub, user["id"].as_str().expect("id"));
    assert_eq!(at.client_id, "cli");
    assert_eq!(at.scope.as_deref(), Some("openid notes:read"));
    assert_eq!(at.amr, vec!["pwd".to_string()]);
    assert!(tokens.id_token().is_some(), "openid: an ID token");
    assert!(
        tokens.refresh_token().is_some(),
        "first-party: a refresh token"
    );
    // Once only.
    clock.advance_secs(30);
    assert_eq!(
        error_of(&poll(&t, "cli", &device_code).await),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );

    // Approved from a browser session that then ends (signed out here, or
    // everywhere, or by a password change): the approval ends with it.
    let fresh_code = device_authorization(&t, &[("client_id", "cli")]).await;
    let orphan: Value = fresh_code.json().await.expect("json");
    let other_tab = page_sign_in(&t, &email).await;
    let code = orphan["user_code"].as_str().expect("code");
    let (_, page) = enter_code(&t, &other_tab, code).await;
    let (status, _) = answer(&t, &other_tab, code, &answer_token(&page), "allow").await;
    assert_eq!(status, StatusCode::OK);
    let r = no_redirects()
        .post(t.url("/auth/ui/logout"))
        .header("cookie", &other_tab)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("logout");
    assert!(
        r.status().is_redirection() || r.status().is_success(),
        "{}",
        r.status()
    );
    let (status, v) = poll(&t, "cli", orphan["device_code"].as_str().expect("dc")).await;
    assert_eq!(
        (status, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant")),
        "{v}"
    );

    // Guessing codes is held back per account too (10 per 10 minutes),
    // whatever addresses the guesses come from.
    let guesser = unique_email("device-guesser");
    t.register(&guesser, PASSWORD).await;
    let guesser = page_sign_in(&t, &guesser).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(enter_code(&t, &guesser, "BCDF-GHJK").await.0);
    }
    assert_eq!(statuses[..10], [StatusCode::BAD_REQUEST; 10]);
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);

    // Denied: the device hears access_denied. Expired: expired_token.
    let fresh = |scope: &'static str| {
        let t = &t;
        async move {
            let r = device_authorization(t, &[("client_id", "cli"), ("scope", scope)]).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["cache-control"], "no-store");
            r.json::<Value>().await.expect("json")
        }
    };
    let denied = fresh("notes:read").await;
    let code = denied["user_code"].as_str().expect("code");
    let (_, page) = enter_code(&t, &cookies, code).await;
    let (status, page) = answer(&t, &cookies, code, &answer_token(&page), "deny").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let denied_code = denied["device_code"].as_str().expect("device code");
    assert_eq!(
        error_of(&poll(&t, "cli", denied_code).await),
        (StatusCode::BAD_REQUEST, "access_denied")
    );
    let late = fresh("notes:read").await;
    clock.advance_secs(601);
    let late_code = late["device_code"].as_str().expect("device code");
    assert_eq!(
        error_of(&poll(&t, "cli", late_code).await),
        (StatusCode::BAD_REQUEST, "expired_token")
    );
    let (status, _) = enter_code(&t, &cookies, late["user_code"].as_str().expect("code")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an expired code is not shown"
    );

    // The request's refusals: a scope the client may not ask for, a
    // resource it is not registered for, a client not registered for the
    // grant, an unknown client.
    for (form, want) in [
        (
            vec![("client_id", "cli"), ("scope", "notes:write")],
            (StatusCode::BAD_REQUEST, "invalid_scope"),
        ),
        (
            vec![("client_id", "cli"), ("resource", "https://other.test")],
            (StatusCode::BAD_REQUEST, "invalid_target"),
        ),
        (
            vec![("client_id", "nobody")],
            (StatusCode::UNAUTHORIZED, "invalid_client"),
        ),
    ] {
        let r = device_authorization(&t, &form).await;
        let status = r.status();
        let v: Value = r.json().await.expect("json");
        assert_eq!(
            (status, v["error"].as_str().unwrap_or_default()),
            want,
            "{form:?}"
        );
    }
    let r = device_authorization(&t, &[("client_id", "web")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "unauthorized_client"
    );

    // A third-party CLI: the approval is remembered as the user's consent
    // (the account's list of apps shows it), and it gets no refresh token
    // without offline_access.
    let r = device_authorization(&t, &[("client_id", "third-cli"), ("scope", "openid")]).await;
    let third: Value = r.json().await.expect("json");
    let code = third["user_code"].as_str().expect("code");
    let (_, page) = enter_code(&t, &cookies, code).await;
    let (status, _) = answer(&t, &cookies, code, &answer_token(&page), "allow").await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = poll(&t, "third-cli", third["device_code"].as_str().expect("dc")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("refresh_token").is_none(), "{v}");
    let account = t.login(&email, PASSWORD).await;
    let apps = t.get_auth("/auth/apps", &account.access).await;
    let apps: Value = apps.json().await.expect("json");
    assert!(apps.to_string().contains("third-cli"), "{apps}");
}
