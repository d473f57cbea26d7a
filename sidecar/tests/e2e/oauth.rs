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
            ..Default::default()
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
    let cookies = stack.page_cookies(&email).await;
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

/// Envoy's own OAuth2 filter (a client we did not write) in front of a
/// sample app, with the issuer as its authorization server: headless
/// Chromium signs two people in on the hosted pages (one with a TOTP code
/// from pyotp), consents, and reaches the app's scoped route with the token
/// Envoy obtained, which the sidecar judges; a route the app was not
/// granted is refused; disconnecting the app on the account page is
/// refused at the edge (scripts/browser/oauth_app_test.py).
async fn envoys_oauth2_filter_signs_people_in(postgres: bool) {
    let Some(python) =
        issuer::testing::required_service("DM_TEST_PYTHON", "Python with Playwright and pyotp")
    else {
        return;
    };
    let chromium = "/usr/bin/chromium";
    if !std::path::Path::new(chromium).exists() {
        assert_ne!(
            std::env::var("DM_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "Chromium is required at {chromium}; run ./scripts/test.sh"
        );
        return;
    }
    // The client, as an admin registers it; its secret and the filter's
    // cookie key in files Envoy reads.
    let (client, secret) = issuer::service::oauth::clients::check(
        &issuer::service::oauth::clients::NewClient {
            client_id: "sample-app".into(),
            name: "Sample app".into(),
            kind: "confidential".into(),
            // Loopback, any port (RFC 8252 §7.3): Envoy's listener's.
            redirect_uris: vec!["http://127.0.0.1/oauth2/callback".into()],
            post_logout_redirect_uris: vec![],
            scopes: vec!["openid".into(), "notes:read".into()],
            first_party: false,
            ..Default::default()
        },
        0,
    )
    .expect("client");
    let secrets = tempfile::tempdir().expect("tempdir");
    let secret_file = secrets.path().join("client-secret");
    std::fs::write(
        &secret_file,
        secret.expect("a confidential client's secret"),
    )
    .expect("write");
    let hmac_file = secrets.path().join("hmac");
    std::fs::write(
        &hmac_file,
        issuer::domain::tokens::random_b64(32).expect("random"),
    )
    .expect("write");
    let Some(stack) = Stack::start_on(postgres, |_| {}, |_| {}).await else {
        return;
    };
    let state = &stack.issuer().state;
    assert!(state
        .store
        .create_client(&client, "test")
        .await
        .expect("db"));
    // The app's Envoy: the shipped template with the sample_app block. It
    // sends people to the hosted pages that the stack's Envoy serves at
    // http://localhost:PORT, a port known once that one runs.
    let pages = format!("http://localhost:{}", stack.envoy.port);
    let args = [
        "--with".to_string(),
        "sample_app".into(),
        "--set".into(),
        "SAMPLE_APP_PORT=0".into(),
        "--set".into(),
        "SAMPLE_CLIENT_ID=sample-app".into(),
        "--set".into(),
        format!("AUTHORIZE_URL={pages}/auth/ui/authorize"),
        "--set".into(),
        format!("SAMPLE_SECRET_FILE={}", secret_file.display()),
        "--set".into(),
        format!("SAMPLE_HMAC_FILE={}", hmac_file.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let memory = echo_upstream("memory-service").await;
    let app_envoy = start_envoy_with(
        &envoy_bin().expect("envoy"),
        stack.issuer().addr.port(),
        stack.sidecar.as_ref().expect("sidecar").grpc.port(),
        memory.port(),
        memory.port(),
        &args,
    )
    .await;
    let app = format!("http://127.0.0.1:{}", app_envoy.listener("sample_app"));
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/screenshots");
    std::fs::create_dir_all(shots).expect("screenshots dir");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/browser/oauth_app_test.py"
    );
    let args = [
        script.to_string(),
        app,
        pages,
        PASSWORD.into(),
        shots.into(),
        unique_email("envoy-oauth-a"),
        unique_email("envoy-oauth-b"),
    ];
    let (succeeded, text) = run_script(python, args.to_vec()).await;
    assert!(
        succeeded && text.contains("all steps passed"),
        "{text}\nthe app's envoy:\n{}",
        app_envoy.log()
    );
    eprintln!("{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_oauth2_filter_on_sqlite() {
    envoys_oauth2_filter_signs_people_in(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_oauth2_filter_on_postgres() {
    envoys_oauth2_filter_signs_people_in(true).await;
}
