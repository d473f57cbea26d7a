//! OpenID Connect Back-Channel Logout: when a user's sessions end, each
//! client that registered a URI is posted a logout token, retried until it
//! answers 2xx, given up (and audited) after the configured attempts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode as AxumStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::oauth::{code_for, exchange, header_of, page_sign_in, pkce, register_client, REDIRECT};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(logout_tokens_reach_clients_with_retries_and_failures_are_audited);

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A relying party's back-channel endpoint: `/flaky` refuses its first
/// post, `/down` every post. It records what it was sent, by path.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn tokens(&self, path: &str) -> Vec<String> {
        self.posts
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

async fn receive(
    State(rx): State<Receiver>,
    Path(path): Path<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> AxumStatus {
    let token = form.get("logout_token").cloned().unwrap_or_default();
    let mut posts = rx.posts.lock().expect("lock");
    posts.push((path.clone(), token));
    let seen = posts.iter().filter(|(p, _)| *p == path).count();
    match path.as_str() {
        "flaky" if seen == 1 => AxumStatus::SERVICE_UNAVAILABLE,
        "down" => AxumStatus::INTERNAL_SERVER_ERROR,
        _ => AxumStatus::OK,
    }
}

async fn start_receiver() -> (Receiver, String) {
    let rx = Receiver::default();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (rx, base)
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn client(id: &str, uri: &str) -> Value {
    json!({
        "client_id": id, "name": id, "type": "confidential",
        "redirect_uris": [REDIRECT], "scopes": ["openid"], "first_party": true,
        "backchannel_logout_uri": uri,
    })
}

async fn logout_tokens_reach_clients_with_retries_and_failures_are_audited(backend: Backend) {
    let Some(t) = start_with(backend, Arc::new(issuer::domain::clock::SystemClock), |a| {
        a.backchannel.backchannel_retry_base_ms = 10;
        a.backchannel.backchannel_poll_ms = 20;
        a.backchannel.backchannel_max_attempts = 3;
    })
    .await
    else {
        return;
    };
    let (rx, base) = start_receiver().await;
    let admin = make_admin(&t).await;
    for bad in [
        "http://rp.example/logout",
        "https://rp.example/logout#frag",
        "com.example.app:/logout",
        "https://user:pw@rp.example/logout",
    ] {
        let r = t
            .post_auth("/admin/clients", &admin, Some(client("bad-rp", bad)))
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let mut secrets = Vec::new();
    for (id, path) in [("flaky-rp", "flaky"), ("down-rp", "down")] {
        let registered = register_client(&t, &admin, client(id, &format!("{base}/{path}"))).await;
        assert_eq!(
            registered["backchannel_logout_uri"],
            format!("{base}/{path}")
        );
        secrets.push(
            registered["client_secret"]
                .as_str()
                .expect("secret")
                .to_string(),
        );
    }
    let discovery = t.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["backchannel_logout_supported"], true);

    let email = unique_email("bcl");
    let user = t.register(&email, PASSWORD).await;
    let user_id = user["id"].as_str().expect("id").to_string();
    let cookies = page_sign_in(&t, &email).await;
    let mut sids = Vec::new();
    for (id, secret) in ["flaky-rp", "down-rp"].iter().zip(&secrets) {
        let p = pkce();
        let code = code_for(&t, &cookies, id, &p).await;
        let r = exchange(&t, (id, Some(secret)), &code, &p.verifier).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.expect("json");
        let id_token = body["id_token"].as_str().expect("id_token");
        let claims = auth_types::jws::peek_claims::<Value>(id_token).expect("claims");
        sids.push(claims["sid"].as_str().expect("sid").to_string());
    }
    assert!(
        rx.tokens("flaky").is_empty(),
        "nothing before a session ends"
    );

    // The user signs out everywhere: both applications' sessions end.
    let own = t.login(&email, PASSWORD).await.access;
    let r = t.post_auth("/auth/logout-all", &own, None).await;
    assert!(r.status().is_success(), "{}", r.status());

    eventually("the flaky client is retried until it takes one", || {
        rx.tokens("flaky").len() >= 2
    })
    .await;
    let keys = t.jwks().await;
    let delivered = rx.tokens("flaky").last().cloned().expect("a token");
    let header = header_of(&delivered);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["alg"], "RS256");
    let claims: Value =
        auth_types::jws::verify_assertion(&delivered, &keys).expect("signed by the issuer");
    assert_eq!(claims["iss"], issuer::testing::TEST_ISSUER_URL);
    assert_eq!(claims["aud"], "flaky-rp");
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["sid"], sids[0].as_str());
    assert_eq!(claims["events"], json!({ EVENT: {} }));
    assert!(claims.get("nonce").is_none(), "a logout token has no nonce");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert!((1..=120).contains(&lifetime), "{lifetime}");

    // The client that never answers is tried three times, then given up.
    eventually("the failing client gets its three tries", || {
        rx.tokens("down").len() >= 3
    })
    .await;
    let mut audited = Value::Null;
    for _ in 0..200 {
        let r = t
            .get_auth(
                &format!("/admin/audit?action=backchannel_logout_failed&target={user_id}"),
                &admin,
            )
            .await;
        audited = r.json().await.expect("json");
        if !audited["events"].as_array().expect("events").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = audited["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{audited}");
    assert_eq!(events[0]["metadata"]["client_id"], "down-rp");
    assert_eq!(events[0]["metadata"]["attempts"], 3);
    assert_eq!(rx.tokens("down").len(), 3, "no fourth try");
    // Ending the sessions again (they are already ended) sends nothing more.
    let r = t
        .post_auth(&format!("/admin/users/{user_id}/logout-all"), &admin, None)
        .await;
    assert!(r.status().is_success());
    assert_eq!(rx.tokens("flaky").len(), 2);

    // A deleted user's sessions go with the user's rows, in the same
    // transaction; the logout is queued in it, before they go.
    let email = unique_email("bcl-deleted");
    let gone = t.register(&email, PASSWORD).await;
    let gone_id = gone["id"].as_str().expect("id").to_string();
    let cookies = page_sign_in(&t, &email).await;
    let p = pkce();
    let code = code_for(&t, &cookies, "flaky-rp", &p).await;
    let r = exchange(&t, ("flaky-rp", Some(&secrets[0])), &code, &p.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = t
        .http
        .delete(t.url(&format!("/admin/users/{gone_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    eventually("the deleted user's logout", || {
        rx.tokens("flaky").len() >= 3
    })
    .await;
    let last = rx.tokens("flaky").last().cloned().expect("token");
    let claims: Value = auth_types::jws::verify_assertion(&last, &keys).expect("signed");
    assert_eq!(claims["sub"], gone_id.as_str());
}
