//! Sign in with GitHub through real Envoy, against the fake GitHub: the
//! browser dance goes through the front proxy, and the session it starts
//! opens the protected upstreams like a password session.

use fake_github::browser::Browser;
use fake_github::{Config, FakeGitHub, FakeUser};
use issuer::config::Secret;
use issuer::testing::TEST_ISSUER_URL;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sign_in_through_envoy_on_sqlite() {
    github_sign_in_through_envoy(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sign_in_through_envoy_on_postgres() {
    github_sign_in_through_envoy(true).await;
}

async fn github_sign_in_through_envoy(postgres: bool) {
    let fake = FakeGitHub::start(Config {
        client_id: "envoy-client".into(),
        client_secret: "envoy-secret".into(),
        redirect_uri: format!("{TEST_ISSUER_URL}/auth/github/callback"),
        users: Vec::new(),
    })
    .await
    .expect("fake GitHub");
    let email = unique_email("envoy-gh");
    let octo = FakeUser::new(4_242, "octo-envoy", &email);
    fake.add_user(octo.clone());
    fake.sign_in_as(&octo.login);
    // One public origin (Envoy's) serves the issuer and the apps behind it.
    let Some(stack) = Stack::start_on(
        postgres,
        |a| {
            a.github.github_client_id = Some("envoy-client".into());
            a.github.github_client_secret = Some(Secret("envoy-secret".into()));
            a.github.github_web_url = fake.url();
            a.github.github_api_url = fake.url();
            a.allowed_return_origins = vec![TEST_ISSUER_URL.into()];
        },
        |_| {},
    )
    .await
    else {
        return;
    };
    let mut browser = Browser::new();
    browser.alias(TEST_ISSUER_URL, &stack.url(""));

    let return_to = format!("{TEST_ISSUER_URL}/memory/notes");
    let last = browser
        .follow(&format!(
            "{TEST_ISSUER_URL}/auth/github/login?return_to={}",
            return_to.replace(':', "%3A").replace('/', "%2F")
        ))
        .await;
    // Back on the app, which wants a token the page has not fetched yet.
    assert_eq!(last.url, return_to, "{:?}", browser.history);
    assert_eq!(last.status, 401, "{}", last.body);
    assert!(browser
        .history
        .iter()
        .any(|u| u.starts_with(&format!("{TEST_ISSUER_URL}/auth/github/callback?code="))));

    // The page trades the refresh cookie for tokens, through Envoy.
    let v = browser
        .request(
            Method::POST,
            &format!("{TEST_ISSUER_URL}/auth/refresh"),
            None,
            None,
        )
        .await;
    assert_eq!(v.status, 200, "{}", v.body);
    let tokens: Value = v.json();
    let access = token(&tokens);
    let r = stack.get("/memory/notes", Some(&access)).await;
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.expect("json");
    let me: Value = stack
        .get("/auth/me", Some(&access))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["email"], json!(email));
    assert_eq!(me["amr"], json!(["fed"]));
    assert_eq!(seen["headers"]["x-user-id"], json!([me["user"]["id"]]));
}
