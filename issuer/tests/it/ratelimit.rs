//! Rate limits per client IP and route class: answers, headers, sharing
//! through Redis between replicas, and what happens when Redis goes away.

use std::net::SocketAddr;
use std::sync::Arc;

use issuer::domain::clock::SystemClock;
use issuer::domain::ratelimit::RateSetting;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::support::*;

/// A client address no other test uses (limits are keyed on it, and tests
/// share one Redis).
fn fresh_ip() -> String {
    let n = uuid_bits();
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

fn uuid_bits() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::process::id().wrapping_mul(7919) ^ (N.fetch_add(1, Ordering::SeqCst) << 1)
}

async fn login_from(url: &str, ip: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/auth/login"))
        .header("x-forwarded-for", ip)
        // A different name each time: per-account delays are not the subject here.
        .json(&json!({"email": unique_email("nobody"), "password": "wrong password here"}))
        .send()
        .await
        .expect("login")
}

fn limited(args: &mut issuer::config::ServeArgs, login: &str) {
    args.trusted_proxy_hops = 1;
    args.rate_limit_login = login.parse::<RateSetting>().expect("rate");
    args.rate_limit_register = "2/60".parse::<RateSetting>().expect("rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_routes_are_limited_per_client_ip() {
    let Some(t) = start_with(Backend::Sqlite, Arc::new(SystemClock), |a| {
        limited(a, "3/60")
    })
    .await
    else {
        return;
    };
    let url = t.server.base_url.clone();
    let ip = fresh_ip();
    for remaining in [2, 1, 0] {
        let r = login_from(&url, &ip).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["ratelimit-policy"], "3;w=60");
        let state = r.headers()["ratelimit"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(
            state.starts_with(&format!("limit=3, remaining={remaining}, reset=")),
            "{state}"
        );
    }
    let r = login_from(&url, &ip).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .expect("ascii")
        .contains("remaining=0"));
    let (_, code, _) = error_code(r).await;
    assert_eq!(code, "rate_limited");

    // Another client is not affected, nor another class of route.
    assert_eq!(
        login_from(&url, &fresh_ip()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let register = |email: String, ip: String| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/auth/register"))
                .header("x-forwarded-for", ip)
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .expect("register")
                .status()
        }
    };
    assert_eq!(
        register(unique_email("rl"), ip.clone()).await,
        StatusCode::CREATED
    );
    assert_eq!(
        register(unique_email("rl"), ip.clone()).await,
        StatusCode::CREATED
    );
    assert_eq!(
        register(unique_email("rl"), ip.clone()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Routes outside /auth/ and CORS preflights are not counted.
    for _ in 0..5 {
        let r = reqwest::Client::new()
            .get(format!("{url}/.well-known/jwks.json"))
            .header("x-forwarded-for", &ip)
            .send()
            .await
            .expect("jwks");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("issuer_rate_limited_total{class=\"login\"} 1"),
        "{metrics}"
    );
    // The sign-in page's form counts in the same class, and a person at a
    // page is told so by a page (the pages' script and clients get JSON).
    let r = reqwest::Client::new()
        .post(format!("{url}/auth/ui/login"))
        .header("x-forwarded-for", &ip)
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html,application/xhtml+xml")
        .form(&[("email", "someone@example.com"), ("password", "whatever")])
        .send()
        .await
        .expect("page form");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers()["retry-after"]
        .to_str()
        .is_ok_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    assert!(r.headers()["content-type"]
        .to_str()
        .is_ok_and(|c| c.starts_with("text/html")));
    let page = r.text().await.expect("page");
    assert!(page.contains("Too many attempts"), "{page}");
}

/// With --trusted-proxies, a caller outside those networks (a pod that
/// reaches the issuer directly) cannot pick its address: X-Forwarded-For
/// is ignored and every forged address shares the caller's real bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let Some(t) = start_with(Backend::Sqlite, Arc::new(SystemClock), |a| {
        limited(a, "2/60");
        a.trusted_proxies = vec!["10.0.0.0/8".parse().expect("cidr")];
    })
    .await
    else {
        return;
    };
    let url = t.server.base_url.clone();
    for _ in 0..2 {
        let r = login_from(&url, &fresh_ip()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // A third "client" is the same loopback caller: refused.
    let r = login_from(&url, &fresh_ip()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_shared_across_replicas_through_redis() {
    let Some(redis) = issuer::testing::required_service("DM_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let Some(a) = start_with(Backend::Sqlite, Arc::new(SystemClock), |args| {
        limited(args, "4/60");
        args.redis_url = Some(redis.clone());
    })
    .await
    else {
        return;
    };
    let mut args = issuer::testing::test_args(&a._db.url, a._db.dir.path());
    limited(&mut args, "4/60");
    args.redis_url = Some(redis.clone());
    let b = issuer::testing::start(args, Arc::new(SystemClock))
        .await
        .expect("replica b");
    let ip = fresh_ip();
    for url in [
        &a.server.base_url,
        &b.base_url,
        &a.server.base_url,
        &b.base_url,
    ] {
        assert_eq!(
            login_from(url, &ip).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Four spent between the two: both refuse the fifth.
    for url in [&a.server.base_url, &b.base_url] {
        assert_eq!(
            login_from(url, &ip).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    b.stop().await;
}

/// Forwards TCP to `target` until the returned task is aborted, which
/// also cuts every connection it carries.
async fn proxy(
    listener: tokio::net::TcpListener,
    target: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_falls_back_to_limits_per_replica() {
    let Some(redis) = issuer::testing::required_service("DM_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let target: SocketAddr = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("redis address");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let front = listener.local_addr().expect("addr");
    let forwarding = proxy(listener, target).await;
    let Some(t) = start_with(Backend::Sqlite, Arc::new(SystemClock), |a| {
        limited(a, "3/60");
        a.redis_url = Some(format!("redis://{front}"));
    })
    .await
    else {
        return;
    };
    let url = t.server.base_url.clone();
    let ip = fresh_ip();
    for _ in 0..2 {
        assert_eq!(
            login_from(&url, &ip).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let local = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("issuer_rate_limit_local_decisions_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let metrics = || async {
        reqwest::get(format!("{url}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    assert_eq!(local(&metrics().await), 0.0, "Redis decided so far");

    // Redis goes away mid-test: every answer is still a decision (never a
    // 5xx, never unlimited), made from this replica's memory.
    forwarding.abort();
    let _ = forwarding.await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(login_from(&url, &ip).await.status());
    }
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        2,
        "memory allows its own budget of 3, then refuses: {statuses:?}"
    );
    assert!(local(&metrics().await) >= 5.0);
}

/// Review (low): an IPv6 client is limited per /64 (it holds the whole
/// network), and one client cannot hold more than its share of pending
/// passkey ceremonies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_limited_per_network_and_ceremonies_per_client() {
    let Some(t) = start_with(Backend::Sqlite, Arc::new(SystemClock), |a| {
        limited(a, "3/60")
    })
    .await
    else {
        return;
    };
    let url = t.server.base_url.clone();
    // A fresh issuer without Redis: its own budgets, fixed addresses do.
    let net = "2001:db8:1:2";
    for host in 1..=3 {
        let r = login_from(&url, &format!("{net}::{host:x}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_from(&url, &format!("{net}:ffff:ffff:ffff:ffff")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "same /64");
    let r = login_from(&url, "2001:db8:ffff:1::1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "another network");

    let start = |ip: &'static str| {
        reqwest::Client::new()
            .post(format!("{url}/auth/passkeys/login/start"))
            .header("x-forwarded-for", ip)
            .json(&json!({}))
            .send()
    };
    let mut ids = Vec::new();
    for _ in 0..=issuer::store::MAX_CEREMONIES_PER_CLIENT {
        let r = start("2001:db8:aaaa:1::1").await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.expect("json");
        ids.push(body["ceremony_id"].as_str().expect("id").to_string());
    }
    // Past its share a client's oldest ceremony went (refusing instead
    // would let one client behind a shared address block everyone's); the
    // newest are kept. Another host of the /64 is the same client.
    let live = |id: String| {
        let url = url.clone();
        async move {
            // Well-formed, so the ceremony is looked up (and spent).
            let credential = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
                "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA",
                    "signature": "AAAA", "userHandle": "AAAA"},
                "extensions": {}});
            let r = reqwest::Client::new()
                .post(format!("{url}/auth/passkeys/login/finish"))
                .header("x-forwarded-for", "2001:db8:aaaa:1::2")
                .json(&json!({"ceremony_id": id, "credential": credential}))
                .send()
                .await
                .expect("send");
            let status = r.status();
            let body: Value = r.json().await.expect("json");
            assert!(status.is_client_error(), "{status} {body}");
            body["error"] != "invalid_ceremony"
        }
    };
    assert!(!live(ids[0].clone()).await, "the oldest was dropped");
    assert!(live(ids[ids.len() - 1].clone()).await, "the newest is kept");
}

/// A device's polls count in a class of their own: a whole device login
/// (a poll every 5 s for up to 10 minutes) does not use up the token
/// endpoint's budget, nor does that budget stop the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_polls_have_a_budget_of_their_own() {
    let Some(t) = start_with(Backend::Sqlite, Arc::new(SystemClock), |a| {
        a.trusted_proxy_hops = 1;
        a.rate_limit_refresh = "3/60".parse::<RateSetting>().expect("rate");
        a.rate_limit_device = "6/60".parse::<RateSetting>().expect("rate");
    })
    .await
    else {
        return;
    };
    let admin = make_admin(&t).await;
    let r = t
        .post_auth(
            "/admin/clients",
            &admin,
            Some(
                json!({"client_id": "cli", "name": "CLI", "type": "public", "redirect_uris": [],
                        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
                        "scopes": ["openid"]}),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let ip = fresh_ip();
    let post = |form: Vec<(&'static str, String)>| {
        let (url, ip) = (t.url("/auth/oauth2/token"), ip.clone());
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-forwarded-for", ip)
                .form(&form)
                .send()
                .await
                .expect("token")
        }
    };
    let codes: Value = reqwest::Client::new()
        .post(t.url("/auth/oauth2/device_authorization"))
        .header("x-forwarded-for", &ip)
        .form(&[("client_id", "cli")])
        .send()
        .await
        .expect("codes")
        .json()
        .await
        .expect("json");
    let device_code = codes["device_code"].as_str().expect("code").to_string();
    // Six polls (pending, then slow_down: the code's own pace), none 429,
    // though the token endpoint's class allows three.
    for i in 0..6 {
        let r = post(vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:device_code".into(),
            ),
            ("device_code", device_code.clone()),
            ("client_id", "cli".into()),
        ])
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "poll {i}");
        assert_eq!(r.headers()["ratelimit-policy"], "6;w=60");
    }
    // The seventh is over the device class.
    let r = post(vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:device_code".into(),
        ),
        ("device_code", device_code.clone()),
        ("client_id", "cli".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // The token endpoint's budget was spent only by the codes' request:
    // other grants from the same address still have two.
    for _ in 0..2 {
        let r = post(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", "x".into()),
        ])
        .await;
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["ratelimit-policy"], "3;w=60");
    }
    let r = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", "x".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
