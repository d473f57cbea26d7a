//! The edge cannot be talked around: whatever shape a path or header takes
//! on the wire, what the sidecar judged is what the upstream acts on.
//! Requests go out as raw bytes, so no client library tidies them first.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

/// One HTTP/1.1 request exactly as given (`Connection: close`).
pub async fn raw_request(port: u16, request_line: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut text = format!("{request_line}\r\nHost: mesh.local\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to envoy");
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("envoy answers within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    // Bodies may be chunked: the JSON object is what lies between the braces.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    RawResponse {
        status,
        head: head.to_string(),
        body,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Spellings of `/ai/admin/settings` (admin only) that lenient servers
/// resolve to it, plus the bare prefix.
const ADMIN_VARIANTS: &[&str] = &[
    "/ai/admin/settings",
    "/ai/admin",
    "/ai/admin/",
    "/ai/x/../admin/settings",
    "/ai/./admin/settings",
    "/ai//admin/settings",
    "//ai/admin/settings",
    "/ai/admin//settings",
    "/ai/x/%2e%2e/admin/settings",
    "/ai/x/%2E%2E/admin/settings",
    "/ai/x/.%2e/admin/settings",
    "/ai/%2e/admin/settings",
    "/ai/x%2F..%2Fadmin/settings",
    "/ai/x%2f..%2fadmin/settings",
    "/ai/x/..%2Fadmin/settings",
    "/ai/x/..%5Cadmin/settings",
    "/ai/x%5C..%5Cadmin/settings",
    "/ai/x/%252e%252e/admin/settings",
    "/ai/x%252F..%252Fadmin/settings",
    "/ai/%2561dmin/settings",
    "/ai/%61dmin/settings",
    "/ai/admin;x/settings",
    "/ai/admin;/settings",
    "/ai/x/..;/admin/settings",
    "/ai/x;/../admin/settings",
    "/ai/admin%3B/settings",
    "/ai/x\\..\\admin\\settings",
    "/ai\\admin\\settings",
    "/ai/admin%00/settings",
    "/ai/admin/settings?role=admin",
    "/ai/chat/../admin/settings?x=../../chat",
    "/ai/Admin/settings",
    "/ai/ADMIN",
    "/ai/admin.json",
    "/ai/Admin.json",
    "/ai/admin./settings",
    "/ai/admin%2e/settings",
    "/ai/admin%20/settings",
    "/ai/admin%09/settings",
    "/ai/x/%C0%AE%C0%AE/admin/settings",
    "/ai/x%C0%AF..%C0%AFadmin/settings",
    "/ai/%EF%BD%81dmin/settings",
    "/ai/x/%EF%BC%8E%EF%BC%8E/admin/settings",
    "/ai/x/%E2%80%A4%E2%80%A4/admin/settings",
];

async fn no_spelling_of_an_admin_path_reaches_the_upstream_for_a_plain_user(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let access = token(&stack.login(&unique_email("edge")).await);
    let auth = bearer(&access);
    let port = stack.envoy.port;
    let mut refused_400 = 0;
    for variant in ADMIN_VARIANTS {
        let r = raw_request(
            port,
            &format!("GET {variant} HTTP/1.1"),
            &[("authorization", &auth)],
        )
        .await;
        eprintln!("{variant:<45} {} {}", r.status, r.body["error"]);
        match r.status {
            // Refused by Envoy or by the sidecar (non-canonical), or judged
            // on the normalised path and denied for want of the admin role.
            400 | 403 | 404 => {}
            200 => {
                let seen = r.body["normalised"].as_str().unwrap_or_default();
                assert!(
                    !(seen == "/ai/admin" || seen.starts_with("/ai/admin/")),
                    "{variant:?} reached the upstream as {:?} (lenient: {seen:?})",
                    r.body["path"]
                );
            }
            other => panic!("{variant:?}: unexpected {other}\n{}", r.head),
        }
        if r.status == 403 {
            assert_eq!(r.body["error"], "missing_role", "{variant:?}");
        }
        if r.status == 400 {
            refused_400 += 1;
        }
    }
    // Most spellings are refused outright, and the plain path is a 403.
    assert!(refused_400 >= 10, "only {refused_400} refused with 400");

    // An allowed path Envoy normalises is forwarded in exactly the form the
    // sidecar allowed.
    for (variant, forwarded) in [
        ("/ai/x/../chat", "/ai/chat"),
        ("/ai//chat", "/ai/chat"),
        ("/ai/%63hat", "/ai/chat"),
        ("/ai/./chat?q=1", "/ai/chat"),
    ] {
        let r = raw_request(
            port,
            &format!("GET {variant} HTTP/1.1"),
            &[("authorization", &auth)],
        )
        .await;
        if r.status == 200 {
            assert_eq!(r.body["path"], forwarded, "{variant:?}");
            assert_eq!(r.body["normalised"], forwarded, "{variant:?}");
        } else {
            assert_eq!(r.status, 400, "{variant:?} neither normalised nor refused");
        }
    }

    // A lower-case method must not miss a method-restricted rule.
    for line in [
        "delete /ai/admin/settings HTTP/1.1",
        "Get /ai/chat HTTP/1.1",
    ] {
        let r = raw_request(port, line, &[("authorization", &auth)]).await;
        assert_eq!(r.status, 400, "{line}: {}", r.head);
    }

    // The sidecar itself refuses a non-canonical path even if Envoy let it
    // through (`;` is left alone by Envoy's normalisation).
    let r = raw_request(
        port,
        "GET /ai/admin;x/settings HTTP/1.1",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "non_canonical_path", "{}", r.head);
}

crate::both_fronts!(no_spelling_of_an_admin_path_reaches_the_upstream_for_a_plain_user);

async fn team_captures_cannot_be_steered_to_another_team(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let email = unique_email("team");
    stack.login(&email).await;
    let user = stack
        .issuer()
        .state
        .store
        .user_by_email(&email)
        .await
        .expect("db")
        .expect("user");
    let store = &stack.issuer().state.store;
    let created = store
        .create_team("blue", "Blue", Some(&user.id), 0, i64::MAX / 2)
        .await
        .expect("team");
    assert!(matches!(created, issuer::store::CreateTeam::Created(_)));
    let access = token(&stack.login_again(&email).await);
    let auth = bearer(&access);
    let port = stack.envoy.port;

    let own = raw_request(
        port,
        "GET /memory/teams/blue/notes HTTP/1.1",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.head);

    for variant in [
        "/memory/teams/red/notes",
        "/memory/teams/blue/../red/notes",
        "/memory/teams/blue/%2e%2e/red/notes",
        "/memory/teams/blue%2F..%2Fred/notes",
        "/memory/teams/blue/..;/red/notes",
        "/memory/teams/blue;/../red/notes",
        "/memory/teams/blue/..%252Fred/notes",
        "/memory/teams//red/notes",
        "/memory/teams/blue\\..\\red/notes",
        "/memory/x/../teams/red/notes",
    ] {
        let r = raw_request(
            port,
            &format!("GET {variant} HTTP/1.1"),
            &[("authorization", &auth)],
        )
        .await;
        match r.status {
            400 | 403 | 404 => {}
            200 => {
                let seen = r.body["normalised"].as_str().unwrap_or_default();
                assert!(
                    !seen.starts_with("/memory/teams/") || seen.starts_with("/memory/teams/blue"),
                    "{variant:?} reached team data as {seen:?}"
                );
            }
            other => panic!("{variant:?}: unexpected {other}\n{}", r.head),
        }
    }
}

crate::both_fronts!(team_captures_cannot_be_steered_to_another_team);

async fn identity_headers_arrive_once_whatever_the_client_sent(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let login = stack.login(&unique_email("hdr")).await;
    let access = token(&login);
    let auth = bearer(&access);
    let sub = auth_types::jws::verify(&access, &stack.issuer().state.keys.snapshot().verifying)
        .expect("valid")
        .claims
        .sub;
    let port = stack.envoy.port;

    let r = raw_request(
        port,
        "GET /memory/notes HTTP/1.1",
        &[
            ("authorization", &auth),
            ("X-User-Id", "attacker-1"),
            ("x-user-id", "attacker-2"),
            ("X-USER-ID", "attacker-3"),
            ("X-User-Roles", "admin"),
            ("x-user-roles", "team:red"),
            ("X-Session-Id", "forged"),
            ("x-session-id", "forged-2"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let headers = &r.body["headers"];
    assert_eq!(headers["x-user-id"], serde_json::json!([sub]), "{headers}");
    assert_eq!(
        headers["x-session-id"],
        serde_json::json!([login["session_id"]]),
        "{headers}"
    );
    assert!(headers.get("x-user-roles").is_none(), "{headers}");

    // Underscore spellings (x_user_id) would reach CGI-style upstreams as
    // X-User-Id: Envoy refuses them.
    for (name, value) in [("x_user_id", "attacker"), ("X_User_Roles", "admin")] {
        let r = raw_request(
            port,
            "GET /memory/notes HTTP/1.1",
            &[("authorization", &auth), (name, value)],
        )
        .await;
        assert_eq!(r.status, 400, "{name}: {}", r.head);
    }

    // Two Authorization headers never pick the one the attacker prefers.
    for pair in [
        [auth.as_str(), "Bearer forged"],
        ["Bearer forged", auth.as_str()],
    ] {
        let r = raw_request(
            port,
            "GET /ai/chat HTTP/1.1",
            &[("authorization", pair[0]), ("Authorization", pair[1])],
        )
        .await;
        assert_eq!(r.status, 401, "{pair:?}: {}", r.head);
    }

    // Headers that would make an upstream think of another host, or of
    // another client address, never arrive as the client wrote them.
    let r = raw_request(
        port,
        "GET /memory/notes HTTP/1.1",
        &[
            ("authorization", &auth),
            ("x-forwarded-host", "admin.example.com"),
            ("forwarded", "host=admin.example.com;for=6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let headers = &r.body["headers"];
    assert!(headers.get("x-forwarded-host").is_none(), "{headers}");
    assert!(headers.get("forwarded").is_none(), "{headers}");
    let xff = headers["x-forwarded-for"][0].as_str().unwrap_or_default();
    // Envoy appends the connection's peer: the right-most entry is Envoy's
    // word, not the client's (what --trusted-proxy-hops 1 reads).
    let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
    assert_eq!(entries.len(), 2, "{xff}");
    assert_eq!(entries[0], "6.6.6.6");
    assert_ne!(entries[1], "6.6.6.6", "{xff}");

    // Repeated copies on another upstream are replaced the same way.
    let r = raw_request(
        port,
        "GET /ai/chat HTTP/1.1",
        &[
            ("authorization", &auth),
            ("x-user-id", "a"),
            ("x-user-id", "b"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["headers"]["x-user-id"], serde_json::json!([sub]));
}

crate::both_fronts!(identity_headers_arrive_once_whatever_the_client_sent);

/// Review finding 1: the issuer's cookies (refresh, page, sign-in state)
/// never reach an application, whatever their spelling or split; the
/// application's own cookies do; the issuer's routes still get them.
async fn the_issuers_cookies_never_reach_an_application(front: Front) {
    let Some(stack) = Stack::start_front(front, |_| {}, |_| {}).await else {
        return;
    };
    let login = stack.login(&unique_email("cookies")).await;
    let auth = bearer(&token(&login));
    let refresh = login["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let port = stack.envoy.port;
    let rt = format!("__Host-refresh_token={refresh}");
    let r = raw_request(
        port,
        "GET /memory/notes HTTP/1.1",
        &[
            ("authorization", &auth),
            ("cookie", &format!("app=1; {rt}; __Secure-page_token=pt")),
            ("cookie", "__host-GITHUB_oauth=st, theme=dark"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let sent = r.body["headers"]["cookie"].to_string();
    assert!(!sent.contains(&refresh), "{sent}");
    assert!(!sent.to_ascii_lowercase().contains("page_token"), "{sent}");
    assert!(
        !sent.to_ascii_lowercase().contains("github_oauth"),
        "{sent}"
    );
    assert!(
        sent.contains("app=1") && sent.contains("theme=dark"),
        "{sent}"
    );
    // Only the issuer's: no cookie header at all.
    let r = raw_request(
        port,
        "GET /ai/chat HTTP/1.1",
        &[("authorization", &auth), ("cookie", &rt)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body["headers"].get("cookie").is_none(), "{}", r.body);
    // The issuer's own routes keep them: the cookie refreshes there.
    let r = raw_request(
        port,
        "POST /auth/refresh HTTP/1.1",
        &[("cookie", &rt), ("content-length", "0")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body.get("refresh_token").is_none(), "{}", r.body);
    assert!(r.head.contains("__Host-refresh_token="), "{}", r.head);
}

crate::both_fronts!(the_issuers_cookies_never_reach_an_application);

/// Review finding 7: headers that make frameworks act on another method
/// or path than the one judged never reach the upstream, and an exact
/// path rule covers its trailing-slash spelling.
async fn the_upstream_acts_on_the_request_judged(front: Front) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    let base = std::fs::read_to_string(policy_file()).expect("policy");
    let with_exact = base.replacen(
        "  - name: ai-gateway\n",
        "  - name: ai-settings\n    path: /ai/settings\n    roles: [admin]\n  - name: ai-gateway\n",
        1,
    );
    assert_ne!(with_exact, base, "the policy has an ai-gateway rule");
    std::fs::write(&policy, with_exact).expect("write");
    let Some(stack) = Stack::start_front(front, |_| {}, |s| s.policy = policy.clone()).await else {
        return;
    };
    let auth = bearer(&token(&stack.login(&unique_email("override")).await));
    let port = stack.envoy.port;
    let r = raw_request(
        port,
        "POST /ai/chat HTTP/1.1",
        &[
            ("authorization", &auth),
            ("content-length", "0"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-HTTP-Method", "DELETE"),
            ("X-Method-Override", "DELETE"),
            ("X-Original-URL", "/ai/admin/settings"),
            ("X-Rewrite-URL", "/ai/admin/settings"),
            ("X-Forwarded-Uri", "/ai/admin/settings"),
            ("X-Forwarded-Prefix", "/ai/admin"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-forwarded-prefix",
    ] {
        assert!(r.body["headers"].get(name).is_none(), "{name}: {}", r.body);
    }
    for path in ["/ai/settings", "/ai/settings/", "/ai/settings/?x=1"] {
        let r = raw_request(
            port,
            &format!("GET {path} HTTP/1.1"),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, 403, "{path}: {}", r.head);
    }
}

crate::both_fronts!(the_upstream_acts_on_the_request_judged);

/// Review finding 6: one-time tokens travel in queries (reset and
/// verification links); Envoy's access log has the path without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_holds_no_query() {
    let Some(stack) = Stack::start(|_| {}).await else {
        return;
    };
    let secret = "one-time-secret-4f2a9c";
    let r = raw_request(
        stack.envoy.port,
        &format!("GET /auth/email/verify?token={secret} HTTP/1.1"),
        &[],
    )
    .await;
    assert!(r.status < 500, "{}", r.head);
    wait_until(Duration::from_secs(10), || async {
        stack.envoy.access_log().contains("/auth/email/verify")
    })
    .await
    .unwrap_or_else(|_| panic!("not logged: {}", stack.envoy.access_log()));
    let log = stack.envoy.access_log();
    assert!(!log.contains(secret), "{log}");
}
