//! Bounded under abuse: slow clients, oversized and early-refused bodies on
//! kept-alive connections, a full hashing queue, invented methods, and error
//! bodies that are always JSON.

use std::sync::Arc;
use std::time::Duration;

use issuer::domain::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn sqlite(tweak: impl FnOnce(&mut issuer::config::ServeArgs)) -> TestIssuer {
    start_with(Backend::Sqlite, Arc::new(SystemClock), tweak)
        .await
        .expect("sqlite issuer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_never_reset_a_kept_alive_connection() {
    let t = sqlite(|_| {}).await;
    // One connection, reused: every answer must arrive intact.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let big = "x".repeat(200 * 1024);
    for round in 0..20 {
        let r = http
            .post(t.url("/auth/login"))
            .header("content-type", "application/json")
            .body(format!("{{\"email\":\"{big}\"}}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
        // Refused before the body matters (no token, wrong type): still clean.
        let r = http
            .post(t.url("/auth/logout"))
            .body("y".repeat(12 * 1024))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = http
            .post(t.url("/auth/login"))
            .header("content-type", "text/plain")
            .body("z".repeat(12 * 1024))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let (status, _, _) = error_code(r).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let r = http.get(t.url("/health")).send().await.expect("health");
    assert_eq!(r.status(), StatusCode::OK);
}

/// Reads until the server closes; `None` if it is still open at `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let t = sqlite(|a| a.client_timeout_secs = 1).await;
    // A connection that never says anything.
    let mut silent = tokio::net::TcpStream::connect(t.server.addr)
        .await
        .expect("connect");
    assert!(
        closed_within(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a silent connection is cut off"
    );
    // The start of an HTTP/2 preface, then nothing (no version sniffing hang).
    let mut preface = tokio::net::TcpStream::connect(t.server.addr)
        .await
        .expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM")
        .await
        .expect("write");
    assert!(
        closed_within(&mut preface, Duration::from_secs(10))
            .await
            .is_some(),
        "a partial HTTP/2 preface is cut off"
    );
    // A kept-alive connection idle after its first answer.
    let mut idle = tokio::net::TcpStream::connect(t.server.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answered = closed_within(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"),
        "answered before closing"
    );
    // Headers that never finish (slowloris).
    let mut slow = tokio::net::TcpStream::connect(t.server.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(10))
            .await
            .is_some(),
        "a half-sent request head is cut off"
    );
    // A body that never finishes.
    let mut trickle = tokio::net::TcpStream::connect(t.server.addr)
        .await
        .expect("connect");
    trickle
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"em",
        )
        .await
        .expect("write");
    let answer = closed_within(&mut trickle, Duration::from_secs(10))
        .await
        .expect("a stalled body is cut off");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    let t = sqlite(|a| {
        a.hash_concurrency = 1;
        a.hash_queue = 1;
        // Slow enough per hash that 24 at once cannot all be queued.
        a.argon2_memory_kib = 19_456;
        a.argon2_iterations = 2;
    })
    .await;
    let logins = (0..24).map(|i| {
        let http = t.http.clone();
        let url = t.url("/auth/login");
        async move {
            http.post(url)
                .json(&json!({"email": format!("nobody{i}@example.com"), "password": PASSWORD}))
                .send()
                .await
                .expect("login")
        }
    });
    let responses = futures_util::future::join_all(logins).await;
    let mut busy = 0;
    for r in responses {
        match r.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(r.headers()["retry-after"], "1");
                let body: Value = r.json().await.expect("json");
                assert_eq!(body["error"], "busy");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "some sign-ins are refused rather than queued");
    // Once the queue drains, sign-ins work again.
    let r = t
        .post(
            "/auth/login",
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    let mut status = r.status();
    for _ in 0..50 {
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = t
            .post(
                "/auth/login",
                json!({"email": "nobody@example.com", "password": PASSWORD}),
            )
            .await
            .status();
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_do_not_grow_the_metrics() {
    let t = sqlite(|_| {}).await;
    for i in 0..30 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).expect("method");
        let r = t
            .http
            .request(method, t.url("/health"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body: Value = r.json().await.expect("405 is JSON");
        assert_eq!(body["error"], "method_not_allowed");
    }
    let metrics = t.http.get(t.url("/metrics")).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(!text.contains("BREW"), "client input in labels");
    assert!(text.contains("method=\"other\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_json() {
    let t = sqlite(|_| {}).await;
    for path in [
        "/internal/revocations?after=abc",
        "/internal/revocations?after=1&colour=red",
        "/internal/revocations/stream?after=-x",
        "/no/such/endpoint",
    ] {
        let r = t.http.get(t.url(path)).send().await.expect("send");
        let status = r.status();
        assert!(status.is_client_error(), "{path}: {status}");
        let body: Value = r
            .json()
            .await
            .unwrap_or_else(|_| panic!("{path}: not JSON"));
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{path}: {body}"
        );
    }
    let r = t
        .http
        .patch(t.url("/admin/users/%FF%FE"))
        .bearer_auth("x")
        .send()
        .await
        .expect("send");
    let body: Value = r.json().await.expect("json");
    assert!(body["error"].is_string());
}

/// CSRF, CORS and security headers, as a browser meets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_csrf_refusals_cors_and_security_headers() {
    let Some(t) = start_with(
        Backend::Sqlite,
        std::sync::Arc::new(issuer::domain::clock::SystemClock),
        |a| a.cors_allowed_origins = vec!["https://app.example".into()],
    )
    .await
    else {
        return;
    };
    let email = unique_email("browser");
    t.register(&email, PASSWORD).await;
    let refresh_with = |token: String, headers: Vec<(&'static str, &'static str)>, body: bool| {
        let mut req = t.http.post(t.url("/auth/refresh"));
        if body {
            req = req.json(&serde_json::json!({"refresh_token": token}));
        } else {
            req = req.header("cookie", format!("__Host-refresh_token={token}"));
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    // A page elsewhere cannot make the browser spend its refresh cookie.
    let tokens = t.login(&email, PASSWORD).await;
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
    ] {
        let r = refresh_with(tokens.refresh.clone(), headers.clone(), false)
            .await
            .expect("send");
        let (status, code, _) = error_code(r).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "cross_site_request"),
            "{headers:?}"
        );
    }
    // The issuer's own origin and the allowed one may; the token was not
    // spent by the refused attempts.
    let r = refresh_with(
        tokens.refresh.clone(),
        vec![("origin", "https://issuer.test")],
        false,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    // Spent from the cookie, the next one comes back in the cookie only:
    // no script on the page can read it from the body.
    let next = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-refresh_token="))
        .and_then(|v| v.split(';').next())
        .expect("refresh cookie")
        .to_string();
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body["access_token"].is_string());
    let r = refresh_with(
        next,
        vec![
            ("origin", "https://app.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        false,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    // A token in the body is no cookie: nothing for a page to forge.
    let other = t.login(&email, PASSWORD).await;
    let r = refresh_with(
        other.refresh,
        vec![("origin", "https://evil.example")],
        true,
    )
    .await
    .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    // Sent in the body, it comes back in the body (API clients).
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["refresh_token"].is_string(), "{body}");
    // A browser's sign-in: the refresh token in the cookie only.
    let r = t
        .http
        .post(t.url("/auth/login"))
        .header("origin", "https://issuer.test")
        .header("sec-fetch-site", "same-origin")
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get_all("set-cookie").iter().any(|v| v
        .to_str()
        .is_ok_and(|v| v.starts_with("__Host-refresh_token="))));
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "{body}");

    // CORS: preflights from the allowed origin only, with credentials.
    let preflight = |origin: &'static str| {
        t.http
            .request(reqwest::Method::OPTIONS, t.url("/auth/refresh"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("https://app.example").await.expect("preflight");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = preflight("https://evil.example").await.expect("preflight");
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Security headers everywhere; no-store unless a route chose.
    let r = t.get_auth("/auth/me", &other.access).await;
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-security-policy"]
        .to_str()
        .expect("ascii")
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        h.get("strict-transport-security").is_none(),
        "plain HTTP: no HSTS"
    );
    let r = t.http.get(t.url("/nowhere")).send().await.expect("404");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}
