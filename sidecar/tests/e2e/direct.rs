//! The sidecar's gRPC API driven directly (no Envoy): restarts, policy
//! reloads, the verified-token cache and the command line.

use std::path::Path;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use issuer::testing;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::support::*;

pub async fn client(addr: std::net::SocketAddr) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to sidecar")
}

pub fn check_request(method: &str, path: &str, token: Option<&str>) -> CheckRequest {
    sidecar::grpc::http_check_request(method, "mesh.local", path, token)
}

/// HTTP status the response tells Envoy to use (200 for allow), and the deny reason.
pub fn outcome(r: &CheckResponse) -> (u16, String) {
    match &r.http_response {
        Some(HttpResponse::OkResponse(_)) => (200, String::new()),
        Some(HttpResponse::DeniedResponse(d)) => {
            let body: Value = serde_json::from_str(&d.body).expect("deny body is JSON");
            (
                d.status.as_ref().map_or(0, |s| s.code as u16),
                body["error"].as_str().unwrap_or_default().to_string(),
            )
        }
        _ => panic!("no http_response"),
    }
}

async fn login(issuer: &testing::RunningIssuer, email: &str) -> Value {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/auth/register", issuer.base_url))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    http.post(format!("{}/auth/login", issuer.base_url))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json")
}

async fn sqlite_issuer(dir: &Path) -> testing::RunningIssuer {
    let url = format!("sqlite://{}/issuer.db", dir.display());
    start_issuer(testing::test_args(&url, dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_http_attributes_gets_an_error_status_not_a_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = sqlite_issuer(dir.path()).await;
    let sidecar = start_sidecar(sidecar_settings(&issuer.base_url), 0).await;
    let mut c = client(sidecar.grpc).await;
    let status = c
        .check(CheckRequest { attributes: None })
        .await
        .expect_err("no decision possible");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // A well-formed request without a token is a decision: a deny.
    let r = c
        .check(check_request("GET", "/ai/x", None))
        .await
        .expect("decision")
        .into_inner();
    assert_eq!(outcome(&r), (401, "missing_token".into()));
    let meta = r.dynamic_metadata.expect("metadata for the access log");
    assert!(meta.fields.contains_key("reason"));
    sidecar.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_from_saved_keys_and_revocations_while_the_issuer_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state dir");
    let issuer = sqlite_issuer(dir.path()).await;
    let mut settings = sidecar_settings(&issuer.base_url);
    settings.state_dir = Some(state.path().to_path_buf());
    let first = start_sidecar(settings.clone(), 0).await;
    let mut c = client(first.grpc).await;

    let keep = token(&login(&issuer, &unique_email("keep")).await);
    let gone = token(&login(&issuer, &unique_email("gone")).await);
    let r = reqwest::Client::new()
        .post(format!("{}/auth/logout", issuer.base_url))
        .bearer_auth(&gone)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    let mut denied = false;
    for _ in 0..100 {
        let r = c
            .check(check_request("GET", "/ai/x", Some(&gone)))
            .await
            .expect("check");
        if outcome(&r.into_inner()).0 == 401 {
            denied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(denied, "revocation reached the first sidecar");
    first.stop().await;
    issuer.stop().await;

    // Issuer down; a new sidecar starts from what the first one saved.
    let second = start_sidecar(settings.clone(), 0).await;
    let mut c = client(second.grpc).await;
    let r = c
        .check(check_request("GET", "/ai/x", Some(&keep)))
        .await
        .expect("check");
    assert_eq!(outcome(&r.into_inner()).0, 200);
    let r = c
        .check(check_request("GET", "/ai/x", Some(&gone)))
        .await
        .expect("check");
    assert_eq!(outcome(&r.into_inner()), (401, "token_revoked".into()));
    second.stop().await;

    // Without saved state and without the issuer it has nothing to vouch with: fail closed.
    let mut bare = settings;
    bare.state_dir = None;
    let sidecar = sidecar::start(bare).await.expect("starts, not ready");
    let decision = sidecar
        .authz
        .check(
            sidecar::decision::RequestAttrs {
                method: "GET",
                host: "h",
                path: "/ai/x",
            },
            sidecar::authz::Credential::bearer(&keep),
            sidecar::authz::now_ms(),
        )
        .await;
    assert!(
        matches!(
            decision,
            sidecar::decision::Decision::Deny {
                reason: sidecar::decision::DenyReason::StaleState,
                ..
            }
        ),
        "{decision:?}"
    );
    assert!(!sidecar.authz.is_ready(sidecar::authz::now_ms()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_apply_and_an_invalid_file_keeps_the_old_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = sqlite_issuer(dir.path()).await;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - prefix: /ai/\n    allow: authenticated\n",
    )
    .expect("write");
    let mut settings = sidecar_settings(&issuer.base_url);
    settings.policy = policy.clone();
    settings.policy_reload_secs = 1;
    let sidecar = start_sidecar(settings, 0).await;
    let mut c = client(sidecar.grpc).await;
    let access = token(&login(&issuer, &unique_email("policy")).await);
    let check = |c: &mut AuthorizationClient<Channel>| {
        let mut c = c.clone();
        let access = access.clone();
        async move {
            outcome(
                &c.check(check_request("GET", "/ai/x", Some(&access)))
                    .await
                    .expect("check")
                    .into_inner(),
            )
        }
    };
    assert_eq!(check(&mut c).await.0, 200);
    // Second check of the same token comes from the verified-token cache.
    assert_eq!(check(&mut c).await.0, 200);

    std::fs::write(&policy, "rules:\n  - prefix: /ai/\n    roles: [admin]\n").expect("write");
    let mut applied = false;
    for _ in 0..60 {
        if check(&mut c).await == (403, "missing_role".to_string()) {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "new policy applied");

    std::fs::write(&policy, "rules:\n  - prefix: ai\n    allow: public\n").expect("write");
    // Wait until the sidecar has read (and refused) the invalid file.
    let metrics_url = format!("http://{}/metrics", sidecar.admin);
    wait_until(Duration::from_secs(10), || async {
        reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .is_ok_and(|m| m.contains(r#"sidecar_policy_reloads_total{outcome="invalid"}"#))
    })
    .await
    .expect("the invalid policy was read");
    assert_eq!(
        check(&mut c).await,
        (403, "missing_role".to_string()),
        "old policy kept"
    );

    let admin = format!("http://{}/metrics", sidecar.admin);
    let metrics = reqwest::get(admin)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"sidecar_policy_reloads_total{outcome="invalid"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sidecar_token_cache_total{outcome="hit"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sidecar_checks_total{decision="deny",reason="missing_role"}"#),
        "{metrics}"
    );
    sidecar.stop().await;
    issuer.stop().await;
}

#[test]
fn check_policy_accepts_the_shipped_policies_and_names_the_first_error() {
    let bin = env!("CARGO_BIN_EXE_sidecar");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for file in ["envoy/policy.yaml", "k8s/base/policy/policy.yaml"] {
        let out = std::process::Command::new(bin)
            .args(["check-policy", &format!("{root}/{file}")])
            .output()
            .expect("run");
        assert!(out.status.success(), "{file}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - name: ok\n    prefix: /ok/\n    allow: public\n  - name: typo\n    prefix: /x/\n    alow: public\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin)
        .arg("check-policy")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:") && err.contains("alow"), "{err}");
    let out = std::process::Command::new(bin)
        .args(["check-policy", "/nonexistent/policy.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(65), "{out:?}");
}

#[test]
fn bad_settings_and_invalid_policies_exit_64_naming_the_problem() {
    let bin = env!("CARGO_BIN_EXE_sidecar");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - prefix: /ok\n    allow: public\n  - prefix: nope\n    allow: public\n",
    )
    .expect("write");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "serve".into(),
                "--policy".into(),
                "p".into(),
                "--leeway-secs=-5".into(),
            ],
            "--leeway-secs".into(),
        ),
        (
            vec![
                "serve".into(),
                "--policy".into(),
                "p".into(),
                "--issuer-url".into(),
                "ftp://x".into(),
            ],
            "--issuer-url".into(),
        ),
        (
            vec![
                "serve".into(),
                "--policy".into(),
                "p".into(),
                "--max-staleness-secs".into(),
                "10".into(),
                "--jwks-refresh-secs".into(),
                "60".into(),
            ],
            "--max-staleness-secs".into(),
        ),
        (
            vec![
                "serve".into(),
                "--policy".into(),
                bad.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--admin-listen".into(),
                "127.0.0.1:0".into(),
            ],
            format!("{}:4: rule 2", bad.display()),
        ),
    ];
    for (args, expected) in cases {
        let out = std::process::Command::new(bin)
            .args(&args)
            .env_remove("SIDECAR_POLICY")
            .output()
            .expect("run sidecar");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_tokens_identity_headers_and_authorization_stripping() {
    use envoy_types::ext_authz::v3::pb::HeaderAppendAction;
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = sqlite_issuer(dir.path()).await;
    let mut settings = sidecar_settings(&issuer.base_url);
    settings.token_cookie = Some("access_token".into());
    settings.strip_authorization = true;
    let sidecar = start_sidecar(settings, 0).await;
    let mut c = client(sidecar.grpc).await;
    let access = token(&login(&issuer, &unique_email("cookie")).await);

    let mut request = check_request("GET", "/ai/x", None);
    if let Some(http) = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.headers.insert(
            "cookie".into(),
            format!("theme=dark; access_token={access}"),
        );
    }
    let r = c.check(request).await.expect("check").into_inner();
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("cookie token allowed: {r:?}")
    };
    let set: Vec<(&str, i32)> = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref().map(|v| (v.key.as_str(), h.append_action)))
        .collect();
    for name in ["x-user-id", "x-session-id", "x-client-id"] {
        assert!(
            set.contains(&(name, HeaderAppendAction::OverwriteIfExistsOrAdd as i32)),
            "{name} overwrites client copies: {set:?}"
        );
    }
    assert!(ok.headers_to_remove.contains(&"authorization".to_string()));
    // No roles: the roles header is removed rather than left to the client.
    assert!(ok.headers_to_remove.contains(&"x-user-roles".to_string()));

    // An unsafe request whose token rides in the cookie must come from a
    // page of the same origin (CSRF); with a bearer header it need not.
    let cookie_post = |origin: Option<&str>, bearer: bool| {
        let mut request = check_request("POST", "/ai/x", bearer.then_some(access.as_str()));
        if let Some(http) = request
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            http.scheme = "https".into();
            http.host = "app.example".into();
            if !bearer {
                http.headers
                    .insert("cookie".into(), format!("access_token={access}"));
            }
            if let Some(o) = origin {
                http.headers.insert("origin".into(), o.into());
            }
        }
        request
    };
    for (origin, bearer, allowed) in [
        (Some("https://evil.example"), false, false),
        (Some("null"), false, false),
        (Some("https://app.example"), false, true),
        (None, false, true),
        (Some("https://evil.example"), true, true),
    ] {
        let r = c
            .check(cookie_post(origin, bearer))
            .await
            .expect("check")
            .into_inner();
        match (&r.http_response, allowed) {
            (Some(HttpResponse::OkResponse(_)), true) => {}
            (Some(HttpResponse::DeniedResponse(d)), false) => {
                assert!(d.body.contains("cross_site_request"), "{}", d.body);
                assert_eq!(d.status.as_ref().map(|s| s.code), Some(403));
            }
            other => panic!("{origin:?} bearer={bearer}: {other:?}"),
        }
    }

    // A public route carries no identity: every identity header is removed.
    let r = c
        .check(check_request("POST", "/auth/login", None))
        .await
        .expect("check")
        .into_inner();
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("public route allowed")
    };
    assert!(ok.headers.is_empty());
    for name in ["x-user-id", "x-user-roles", "x-session-id", "x-client-id"] {
        assert!(ok.headers_to_remove.contains(&name.to_string()), "{name}");
    }
    sidecar.stop().await;
    issuer.stop().await;
}
