//! Every endpoint over HTTP, including the error paths.

use std::sync::Arc;
use std::time::Duration;

use auth_types::{RevocationEvent, RevocationKind, SigningAlg};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    register_validates_and_refuses_duplicates,
    bad_input_gets_json_4xx_never_5xx,
    login_issues_verifiable_tokens_and_a_host_cookie,
    wrong_password_and_unknown_email_look_the_same,
    repeated_failures_slow_an_account_down_without_locking_it,
    refresh_rotates_and_reuse_revokes_the_session,
    refresh_accepts_the_cookie,
    concurrent_refreshes_exactly_one_wins,
    concurrent_refreshes_in_the_grace_window_agree,
    grace_window_replays_only_the_newest_rotation,
    sessions_expire_by_idle_timeout_and_absolute_lifetime,
    logout_and_logout_all_end_sessions,
    sessions_list_and_delete_only_own,
    password_change_ends_every_session,
    legacy_bcrypt_hash_verifies_and_is_upgraded,
    well_known_and_operational_endpoints,
    ready_fails_without_database_and_hides_internals,
);

async fn register_validates_and_refuses_duplicates(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("reg");
    let r = t
        .post(
            "/auth/register",
            json!({"email": email.to_uppercase(), "password": PASSWORD, "name": "Ada"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.expect("json");
    assert_eq!(user["email"], email, "email is normalised to lower case");
    assert_eq!(user["name"], "Ada");
    assert!(user.get("password_hash").is_none());

    let (status, code, _) = error_code(
        t.post(
            "/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "email_taken")
    );

    for (password, why) in [("short1", "at least 8"), ("password123", "too common")] {
        let (status, code, message) = error_code(
            t.post(
                "/auth/register",
                json!({"email": unique_email("weak"), "password": password}),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code, "weak_password");
        assert!(message.contains(why), "{message}");
    }

    // Long passphrases (128+ characters) are allowed.
    let long = "a long passphrase with many words ".repeat(5);
    assert!(long.len() >= 128);
    let r = t
        .post(
            "/auth/register",
            json!({"email": unique_email("long"), "password": long}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let (status, code, _) = error_code(
        t.post(
            "/auth/register",
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email")
    );
}

async fn bad_input_gets_json_4xx_never_5xx(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let send = |body: &'static str, content_type: &'static str| {
        t.http
            .post(t.url("/auth/login"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, code, _) =
        error_code(send("{not json", "application/json").await.expect("send")).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );

    let (status, code, message) = error_code(
        send(r#"{"email":"a@b.co"}"#, "application/json")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(
        message.contains("password"),
        "names the missing field: {message}"
    );

    let (status, code, _) = error_code(
        send(r#"{"email":1,"password":"x"}"#, "application/json")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    let (status, code, _) = error_code(send("{}", "text/plain").await.expect("send")).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    let huge = json!({"email": "a@b.co", "password": "x".repeat(64 * 1024)});
    let (status, code, _) = error_code(t.post("/auth/register", huge).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    let (status, code, _) =
        error_code(t.http.get(t.url("/nope")).send().await.expect("send")).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, code, _) =
        error_code(t.http.get(t.url("/auth/login")).send().await.expect("send")).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    let (status, code, _) = error_code(
        t.http
            .post(t.url("/auth/refresh"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, code, _) = error_code(t.refresh("rt_made_up").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_grant")
    );

    // Bearer problems: missing, garbage, wrong scheme.
    let r = t.http.get(t.url("/auth/me")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    let (status, _, _) = error_code(t.get_auth("/auth/me", "not.a.jwt").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = t
        .http
        .get(t.url("/auth/me"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn login_issues_verifiable_tokens_and_a_host_cookie(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("login");
    let user = t.register(&email, PASSWORD).await;
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    for attr in [
        "__Host-refresh_token=rt_",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ] {
        assert!(cookie.contains(attr), "cookie lacks {attr}: {cookie}");
    }
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let tokens = Tokens::from(body);
    assert!(cookie.contains(&tokens.refresh));

    let claims = t.verify(&tokens.access).await;
    assert_eq!(claims.sub, user["id"].as_str().expect("id"));
    assert_eq!(claims.iss, issuer::testing::TEST_ISSUER_URL);
    assert!(claims.aud.contains(issuer::testing::TEST_AUDIENCE));
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.sid, tokens.session_id);
    assert_eq!(claims.amr, vec!["pwd".to_string()]);
    assert!(!claims.jti.is_empty());
    let header: Value = serde_json::from_slice(
        &auth_types::jws::b64url_decode(tokens.access.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("header json");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");

    let me: Value = t
        .get_auth("/auth/me", &tokens.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["email"], email);
    assert_eq!(me["session_id"], tokens.session_id);

    // Another login of the same user is a separate session with a distinct token id.
    let second = t.login(&email, PASSWORD).await;
    assert_ne!(second.session_id, tokens.session_id);
    assert_ne!(t.verify(&second.access).await.jti, claims.jti);
}

async fn wrong_password_and_unknown_email_look_the_same(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("same");
    t.register(&email, PASSWORD).await;
    let wrong = t
        .post(
            "/auth/login",
            json!({"email": email, "password": "wrong password!"}),
        )
        .await;
    let unknown = t
        .post(
            "/auth/login",
            json!({"email": unique_email("nobody"), "password": PASSWORD}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let wrong: Value = wrong.json().await.expect("json");
    let unknown: Value = unknown.json().await.expect("json");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "invalid_credentials");
}

async fn refresh_rotates_and_reuse_revokes_the_session(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let email = unique_email("rot");
    t.register(&email, PASSWORD).await;
    let first = t.login(&email, PASSWORD).await;

    let r = t.refresh(&first.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let second = Tokens::from(r.json::<Value>().await.expect("json"));
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(t.verify(&second.access).await.sid, first.session_id);
    assert_eq!(
        t.get_auth("/auth/me", &second.access).await.status(),
        StatusCode::OK
    );

    // Replaying RT1 after RT2 exists, past the grace window: refused, and
    // RT2 dies with the session.
    clock.advance_secs(t.server.state.settings.refresh_grace_secs + 1);
    let (status, code, message) = error_code(t.refresh(&first.refresh).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_grant")
    );
    assert!(message.contains("revoked"), "{message}");
    assert_eq!(
        t.refresh(&second.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get_auth("/auth/me", &second.access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let user_id = t.verify(&second.access).await.sub;
    let events = t
        .server
        .state
        .store
        .audit_events(&user_id)
        .await
        .expect("audit");
    assert!(
        events.contains(&"refresh_token_reuse".to_string()),
        "{events:?}"
    );

    // The revocation is on the feed for sidecars.
    let feed = feed_page(&t).await;
    let RevocationEvent::Snapshot {
        records,
        last_seq,
        complete,
    } = feed
    else {
        panic!("expected a snapshot")
    };
    assert!(complete, "a handful of records fit one page");
    assert!(records
        .iter()
        .any(|r| r.kind == RevocationKind::Session && r.subject == first.session_id));
    assert!(last_seq >= records.last().map_or(0, |r| r.seq));
}

async fn refresh_accepts_the_cookie(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("cookie");
    t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let r = t
        .http
        .post(t.url("/auth/refresh"))
        .header(
            "cookie",
            format!("other=1; __Host-refresh_token={}", tokens.refresh),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("__Host-refresh_token=rt_"));
}

/// Eight requests race with one refresh token: `n_ok` of them succeed, and
/// every successful answer carries the same successor.
async fn race_refreshes(base_urls: &[&str], refresh_token: &str) -> (usize, Vec<String>) {
    let http = reqwest::Client::new();
    let attempts = (0..8).map(|i| {
        let http = http.clone();
        let url = format!("{}/auth/refresh", base_urls[i % base_urls.len()]);
        let rt = refresh_token.to_string();
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"refresh_token": rt}))
                .send()
                .await
                .expect("send");
            let status = r.status();
            let body: Value = r.json().await.expect("json");
            (status, body)
        })
    });
    let mut successors = Vec::new();
    for a in attempts.collect::<Vec<_>>() {
        let (status, body) = a.await.expect("join");
        match status {
            StatusCode::OK => {
                successors.push(body["refresh_token"].as_str().expect("rt").to_string())
            }
            StatusCode::UNAUTHORIZED => assert_eq!(body["error"], "invalid_grant"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (successors.len(), successors)
}

async fn concurrent_refreshes_exactly_one_wins(backend: Backend) {
    let Some(t) = start_with(backend, Arc::new(issuer::domain::clock::SystemClock), |a| {
        a.refresh_grace_secs = 0;
    })
    .await
    else {
        return;
    };
    let email = unique_email("race");
    t.register(&email, PASSWORD).await;
    for _round in 0..3 {
        let tokens = t.login(&email, PASSWORD).await;
        let (ok, _) = race_refreshes(&[&t.server.base_url], &tokens.refresh).await;
        assert_eq!(ok, 1, "strict rotation: one winner");
    }
}

async fn concurrent_refreshes_in_the_grace_window_agree(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("tabs");
    t.register(&email, PASSWORD).await;
    for _round in 0..3 {
        let tokens = t.login(&email, PASSWORD).await;
        let (ok, successors) = race_refreshes(&[&t.server.base_url], &tokens.refresh).await;
        assert_eq!(ok, 8, "every racer succeeds");
        assert!(
            successors.iter().all(|s| *s == successors[0]),
            "one successor, not branches: {successors:?}"
        );
        // The successor works, and the session goes on.
        let r = t.refresh(&successors[0]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let next = Tokens::from(r.json::<Value>().await.expect("json"));
        assert_eq!(
            t.get_auth("/auth/me", &next.access).await.status(),
            StatusCode::OK
        );
    }
}

/// The successor is decided once, in the database: racers spread over two
/// replicas of one PostgreSQL get the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_agree_on_the_successor() {
    let Some(a) = start(Backend::Postgres).await else {
        return;
    };
    let b = issuer::testing::start(
        issuer::testing::test_args(&a._db.url, a._db.dir.path()),
        Arc::new(issuer::domain::clock::SystemClock),
    )
    .await
    .expect("replica b");
    let email = unique_email("replicas");
    a.register(&email, PASSWORD).await;
    for _round in 0..3 {
        let tokens = a.login(&email, PASSWORD).await;
        let (ok, successors) =
            race_refreshes(&[&a.server.base_url, &b.base_url], &tokens.refresh).await;
        assert_eq!(ok, 8, "every racer succeeds on either replica");
        assert!(
            successors.iter().all(|s| *s == successors[0]),
            "{successors:?}"
        );
    }
    // Past the successor, replaying on the other replica is reuse there too.
    let tokens = a.login(&email, PASSWORD).await;
    let r = a.refresh(&tokens.refresh).await;
    let second = Tokens::from(r.json::<Value>().await.expect("json"));
    assert_eq!(a.refresh(&second.refresh).await.status(), StatusCode::OK);
    let r = reqwest::Client::new()
        .post(format!("{}/auth/refresh", b.base_url))
        .json(&json!({"refresh_token": tokens.refresh}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    b.stop().await;
}

/// Only the newest rotation can be replayed, only within the window, and
/// only while the session lives; anything else is reuse and ends the session.
async fn grace_window_replays_only_the_newest_rotation(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |a| a.refresh_grace_secs = 5).await else {
        return;
    };
    let email = unique_email("grace");
    t.register(&email, PASSWORD).await;

    // A retry after a lost response gets the same successor, with a fresh,
    // valid access token for the same session.
    let rt1 = t.login(&email, PASSWORD).await;
    let r = t.refresh(&rt1.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rt2 = Tokens::from(r.json::<Value>().await.expect("json"));
    clock.advance_secs(4);
    let r = t.refresh(&rt1.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains(&rt2.refresh));
    let retried = Tokens::from(r.json::<Value>().await.expect("json"));
    assert_eq!(retried.refresh, rt2.refresh);
    assert_eq!(retried.session_id, rt1.session_id);
    assert_eq!(
        t.get_auth("/auth/me", &retried.access).await.status(),
        StatusCode::OK
    );
    let user_id = t.verify(&retried.access).await.sub;
    let events = t
        .server
        .state
        .store
        .audit_events(&user_id)
        .await
        .expect("audit");
    assert!(
        events.contains(&"refresh_grace_replay".to_string()),
        "{events:?}"
    );

    // Two generations old, even inside the window: reuse.
    let r = t.refresh(&rt2.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rt3 = Tokens::from(r.json::<Value>().await.expect("json"));
    let (status, code, message) = error_code(t.refresh(&rt1.refresh).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_grant")
    );
    assert!(message.contains("revoked"), "{message}");
    assert_eq!(
        t.refresh(&rt3.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get_auth("/auth/me", &rt3.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(feed_records(&t)
        .await
        .iter()
        .any(|r| r.kind == RevocationKind::Session && r.subject == rt1.session_id));

    // After the window, the just-rotated token is reuse too.
    let a1 = t.login(&email, PASSWORD).await;
    let r = t.refresh(&a1.refresh).await;
    let a2 = Tokens::from(r.json::<Value>().await.expect("json"));
    clock.advance_secs(6);
    assert_eq!(
        t.refresh(&a1.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.refresh(&a2.refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "the session was ended"
    );

    // A session ended by logout gives nothing back, even inside the window.
    let b1 = t.login(&email, PASSWORD).await;
    let r = t.refresh(&b1.refresh).await;
    let b2 = Tokens::from(r.json::<Value>().await.expect("json"));
    let r = t.post_auth("/auth/logout", &b2.access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        t.refresh(&b1.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn sessions_expire_by_idle_timeout_and_absolute_lifetime(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |a| {
        a.session_idle_timeout = 3600;
        a.session_max_lifetime = 3 * 3600;
    })
    .await
    else {
        return;
    };
    let email = unique_email("expiry");
    t.register(&email, PASSWORD).await;

    // Access tokens expire on their own.
    let tokens = t.login(&email, PASSWORD).await;
    clock.advance_secs(901);
    let (status, _, message) = error_code(t.get_auth("/auth/me", &tokens.access).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("expired"), "{message}");

    // Idle: unused for longer than the idle timeout.
    clock.advance_secs(3600);
    assert_eq!(
        t.refresh(&tokens.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Absolute: refreshed every 50 minutes, it still ends after 3 hours.
    let mut refresh = t.login(&email, PASSWORD).await.refresh;
    let mut refreshed = 0;
    loop {
        clock.advance_secs(3000);
        let r = t.refresh(&refresh).await;
        if r.status() != StatusCode::OK {
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            break;
        }
        refresh = Tokens::from(r.json::<Value>().await.expect("json")).refresh;
        refreshed += 1;
    }
    assert_eq!(refreshed, 3, "3000 s × 3 < 3 h < 3000 s × 4");
}

async fn logout_and_logout_all_end_sessions(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("logout");
    t.register(&email, PASSWORD).await;
    let a = t.login(&email, PASSWORD).await;
    let b = t.login(&email, PASSWORD).await;
    let c = t.login(&email, PASSWORD).await;

    let r = t.post_auth("/auth/logout", &a.access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    assert_eq!(
        t.get_auth("/auth/me", &a.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.refresh(&a.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get_auth("/auth/me", &b.access).await.status(),
        StatusCode::OK
    );

    let r = t.post_auth("/auth/logout-all", &b.access, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for s in [&b, &c] {
        assert_eq!(
            t.get_auth("/auth/me", &s.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.refresh(&s.refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let records = t
        .server
        .state
        .store
        .revocations_after(0, 0, 100)
        .await
        .expect("records");
    let sids: Vec<&str> = records.iter().map(|r| r.subject.as_str()).collect();
    for s in [&a, &b, &c] {
        assert!(sids.contains(&s.session_id.as_str()), "{sids:?}");
    }
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq), "ordered");
}

async fn sessions_list_and_delete_only_own(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("sess");
    t.register(&email, PASSWORD).await;
    let mine = t.login(&email, PASSWORD).await;
    let r = t
        .http
        .post(t.url("/auth/login"))
        .header("user-agent", "second-device/1.0")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    let other = Tokens::from(r.json::<Value>().await.expect("json"));

    let list: Value = t
        .get_auth("/auth/sessions", &mine.access)
        .await
        .json()
        .await
        .expect("json");
    let sessions = list["sessions"].as_array().expect("array");
    assert_eq!(sessions.len(), 2);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], mine.session_id);
    let second = sessions
        .iter()
        .find(|s| s["id"] == other.session_id)
        .expect("listed");
    assert_eq!(second["user_agent"], "second-device/1.0");
    assert_eq!(second["ip"], "127.0.0.1");

    // Somebody else cannot delete (or learn of) my session.
    let stranger_email = unique_email("stranger");
    t.register(&stranger_email, PASSWORD).await;
    let stranger = t.login(&stranger_email, PASSWORD).await;
    let path = format!("/auth/sessions/{}", other.session_id);
    let r = t
        .http
        .delete(t.url(&path))
        .bearer_auth(&stranger.access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        t.get_auth("/auth/me", &other.access).await.status(),
        StatusCode::OK
    );

    let r = t
        .http
        .delete(t.url(&path))
        .bearer_auth(&mine.access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        t.get_auth("/auth/me", &other.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = t
        .http
        .delete(t.url(&path))
        .bearer_auth(&mine.access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "already deleted");
    let r = t
        .http
        .delete(t.url("/auth/sessions/no-such-id"))
        .bearer_auth(&mine.access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn password_change_ends_every_session(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("pw");
    t.register(&email, PASSWORD).await;
    let a = t.login(&email, PASSWORD).await;
    let b = t.login(&email, PASSWORD).await;

    let r = t
        .post_auth(
            "/auth/password",
            &a.access,
            Some(json!({"current_password": "not it at all", "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = t
        .post_auth(
            "/auth/password",
            &a.access,
            Some(json!({"current_password": PASSWORD, "new_password": "short"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let r = t
        .post_auth(
            "/auth/password",
            &a.access,
            Some(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for s in [&a, &b] {
        assert_eq!(
            t.get_auth("/auth/me", &s.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.refresh(&s.refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    t.login(&email, "a brand new passphrase").await;

    let records = t
        .server
        .state
        .store
        .revocations_after(0, 0, 100)
        .await
        .expect("records");
    assert!(records.iter().any(|r| r.kind == RevocationKind::UserBefore));
}

async fn legacy_bcrypt_hash_verifies_and_is_upgraded(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("legacy");
    let legacy = bcrypt::hash("imported password", 4).expect("bcrypt");
    let user = issuer::store::User {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        name: None,
        password_hash: legacy.clone(),
        roles: vec![],
        created_at: 0,
        password_changed_at: 0,
        disabled_at: None,
        token_generation: 0,
        email_verified_at: None,
        avatar_url: None,
        metadata: "{}".into(),
        admin_metadata: "{}".into(),
    };
    t.server
        .state
        .store
        .create_user(&user)
        .await
        .expect("insert");
    let wrong = t
        .post(
            "/auth/login",
            json!({"email": email, "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    t.login(&email, "imported password").await;

    let mut upgraded = None;
    for _ in 0..100 {
        let stored = t
            .server
            .state
            .store
            .user_by_id(&user.id)
            .await
            .expect("db")
            .expect("user");
        if stored.password_hash != legacy {
            upgraded = Some(stored.password_hash);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let upgraded = upgraded.expect("hash upgraded after login");
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    t.login(&email, "imported password").await;
}

async fn well_known_and_operational_endpoints(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let r = t
        .http
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let jwks: Value = r.json().await.expect("json");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    for key in keys {
        assert!(key["kid"].is_string() && key["alg"] == "ES256" && key["use"] == "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published"
            );
        }
    }
    let config: Value = t
        .http
        .get(t.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(config["issuer"], issuer::testing::TEST_ISSUER_URL);
    assert_eq!(
        config["jwks_uri"],
        format!("{}/.well-known/jwks.json", issuer::testing::TEST_ISSUER_URL)
    );
    // Only what is offered, and every endpoint it names answers as one.
    let advertised: Vec<&str> = config
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let offered = [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "device_authorization_endpoint",
        "end_session_endpoint",
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
        "revocation_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "dpop_signing_alg_values_supported",
        "jwks_uri",
        "response_types_supported",
        "response_modes_supported",
        "grant_types_supported",
        "code_challenge_methods_supported",
        "token_endpoint_auth_methods_supported",
        "scopes_supported",
        "prompt_values_supported",
        "acr_values_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "authorization_response_iss_parameter_supported",
        "request_parameter_supported",
        "request_uri_parameter_supported",
        "claims_parameter_supported",
        "claims_supported",
    ];
    for key in &advertised {
        assert!(
            offered.contains(key),
            "advertises {key}, which is not offered"
        );
    }
    assert_eq!(config["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(config["response_types_supported"], json!(["code"]));
    for (key, method, status) in [
        ("authorization_endpoint", "GET", StatusCode::BAD_REQUEST),
        ("token_endpoint", "POST", StatusCode::BAD_REQUEST),
        ("userinfo_endpoint", "GET", StatusCode::UNAUTHORIZED),
        ("revocation_endpoint", "POST", StatusCode::BAD_REQUEST),
        ("introspection_endpoint", "POST", StatusCode::BAD_REQUEST),
        (
            "device_authorization_endpoint",
            "POST",
            StatusCode::BAD_REQUEST,
        ),
        ("end_session_endpoint", "GET", StatusCode::OK),
    ] {
        let url = config[key]
            .as_str()
            .expect(key)
            .replace(issuer::testing::TEST_ISSUER_URL, &t.url(""));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = t.http.request(method, url).send().await.expect("send");
        assert_eq!(r.status(), status, "{key}");
    }
    assert_eq!(
        t.http
            .get(t.url("/health"))
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        t.http
            .get(t.url("/ready"))
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );

    let email = unique_email("metrics");
    t.register(&email, PASSWORD).await;
    t.login(&email, PASSWORD).await;
    let _ = t
        .post(
            "/auth/login",
            json!({"email": email, "password": "wrong password"}),
        )
        .await;
    let text = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"issuer_logins_total{outcome="success"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"issuer_logins_total{outcome="failure"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"issuer_http_requests_total{route="/auth/login",method="POST",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("issuer_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

async fn ready_fails_without_database_and_hides_internals(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    t.server.state.store.close().await;
    let r = t.http.get(t.url("/ready")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.text().await.expect("text");
    assert!(!body.to_lowercase().contains("pool"), "{body}");
    assert!(!body.to_lowercase().contains("sql"), "{body}");
    // Liveness is about the process, not its dependencies.
    assert_eq!(
        t.http
            .get(t.url("/health"))
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
    // Requests needing the database get a generic 5xx, never a panic or internals.
    let r = t
        .post(
            "/auth/login",
            json!({"email": "a@b.co", "password": PASSWORD}),
        )
        .await;
    assert!(r.status().is_server_error());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["message"], "internal error");
}

#[tokio::test]
async fn every_signing_algorithm_issues_verifiable_tokens() {
    for alg in [SigningAlg::EdDSA, SigningAlg::RS256] {
        let Some(t) = start_with(
            Backend::Sqlite,
            Arc::new(issuer::domain::clock::SystemClock),
            |a| {
                a.keys.signing_alg = alg;
            },
        )
        .await
        else {
            return;
        };
        let email = unique_email("alg");
        t.register(&email, PASSWORD).await;
        let tokens = t.login(&email, PASSWORD).await;
        let verified = auth_types::jws::verify(&tokens.access, &t.jwks().await).expect("verifies");
        assert_eq!(verified.alg, alg);
    }
}

async fn repeated_failures_slow_an_account_down_without_locking_it(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("guessed");
    let user: Value = t.register(&email, PASSWORD).await;
    let attempt = |password: &'static str, email: String| {
        let t = &t;
        async move {
            t.post("/auth/login", json!({"email": email, "password": password}))
                .await
        }
    };
    let unknown = unique_email("nobody");
    for who in [email.clone(), unknown.clone()] {
        // Six free failures (the sixth sets a one-second delay)…
        for _ in 0..6 {
            let r = attempt("wrong password!", who.clone()).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{who}");
        }
        // …then every attempt waits, the right password too (no oracle),
        // and an unknown account answers exactly like a known one.
        let r = attempt(PASSWORD, who.clone()).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{who}");
        assert_eq!(r.headers()["retry-after"], "1");
        let (_, code, _) = error_code(r).await;
        assert_eq!(code, "login_delayed");
    }
    // The delay passes: the owner signs in, and the count starts over.
    clock.advance_secs(1);
    t.login(&email, PASSWORD).await;
    let r = attempt("wrong password!", email.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Growing: each further failure doubles the wait, never past a minute.
    for _ in 0..5 {
        attempt("wrong password!", email.clone()).await;
    }
    for expected in [1, 2, 4] {
        let r = attempt("wrong password!", email.clone()).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: i64 = r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("secs");
        assert_eq!(wait, expected);
        clock.advance_secs(wait);
        assert_eq!(
            attempt("wrong password!", email.clone()).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // An admin clears it at once.
    let r = t
        .http
        .delete(t.url(&format!(
            "/admin/users/{}/login-delay",
            user["id"].as_str().expect("id")
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("clear");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["cleared"], true);
    t.login(&email, PASSWORD).await;
}
