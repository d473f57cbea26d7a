//! An application's token through Envoy: it reaches the route whose scope
//! the user allowed and no other, the upstream learns the client, and a
//! disconnect on the account is refused at the edge within the feed's lag.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1/callback";

async fn an_apps_token_reaches_only_its_scope_and_dies_with_its_consent(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let state = &stack.issuer().state;
    let (client, _) = issuer::service::oauth::clients::check(
        &issuer::service::oauth::clients::NewClient {
            client_id: "notes".into(),
            name: "Notes".into(),
            kind: "public".into(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            scopes: vec!["openid".into(), "notes:read".into()],
            first_party: false,
            token_endpoint_auth_method: None,
            jwks: None,
            backchannel_logout_uri: None,
        },
        state.now().secs(),
    )
    .expect("client");
    assert!(state
        .store
        .create_client(&client, "test")
        .await
        .expect("db"));

    let email = unique_email("app");
    let own = stack.login(&email).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // The browser signs in on the hosted pages, through Envoy.
    let r = no_redirects
        .post(stack.url("/auth/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    let cookies = cookies.join("; ");
    let query = format!(
        "response_type=code&client_id=notes&redirect_uri={}&scope=openid+notes%3Aread\
         &state=s&code_challenge={CHALLENGE}&code_challenge_method=S256",
        "http%3A%2F%2F127.0.0.1%3A4711%2Fcallback"
    );
    let authorize = stack.url(&format!("/auth/ui/authorize?{query}"));
    let page = no_redirects
        .get(&authorize)
        .header("cookie", &cookies)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("authorize")
        .text()
        .await
        .expect("consent page");
    let consent = page
        .split("name=\"consent_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("consent form");
    let r = no_redirects
        .post(stack.url("/auth/ui/authorize"))
        .header("cookie", &cookies)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{query}&decision=allow&consent_token={consent}"))
        .send()
        .await
        .expect("consent");
    let landing = r.text().await.expect("page");
    let back = landing
        .split("url=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("back to the app")
        .replace("&amp;", "&");
    let code = back
        .split("code=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .expect("code");
    let r = stack
        .http
        .post(stack.url("/auth/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:4711/callback"),
            ("code_verifier", VERIFIER),
            ("client_id", "notes"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let app = token(&r.json::<Value>().await.expect("json"));

    // Its scope's route, and the client named to the upstream.
    let r = stack.get("/memory/notes/1", Some(&app)).await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    assert_eq!(seen["headers"]["x-client-id"], json!(["notes"]));
    // No other route: they were written for people.
    let r = stack.get("/ai/chat", Some(&app)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "insufficient_scope"
    );
    // The user's own token still passes both.
    assert_eq!(
        stack.get("/ai/chat", Some(&token(&own))).await.status(),
        200
    );

    // The user disconnects the app: refused at the edge.
    let r = stack
        .http
        .delete(stack.url("/auth/apps/notes"))
        .bearer_auth(token(&own))
        .send()
        .await
        .expect("disconnect");
    assert_eq!(r.status(), 200);
    let lag = wait_until(Duration::from_secs(1), || async {
        stack.get("/memory/notes/1", Some(&app)).await.status() == 401
    })
    .await
    .expect("disconnected app refused within a second");
    eprintln!("disconnect → app token denied at the edge after {lag:?}");
    assert_eq!(
        stack.get("/ai/chat", Some(&token(&own))).await.status(),
        200
    );
}

crate::both_fronts!(an_apps_token_reaches_only_its_scope_and_dies_with_its_consent);
