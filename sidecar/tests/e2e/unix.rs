//! ext_authz over a Unix domain socket (Envoy's `pipe` address), for the
//! sidecar in the same pod: the same decisions as over TCP.

use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_reaches_the_sidecar_over_a_unix_socket() {
    let Some(envoy_bin) = envoy_bin() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("authz.sock");
    // A stale socket from an earlier run is replaced.
    let _stale = std::os::unix::net::UnixListener::bind(&socket).expect("stale socket");
    let db = format!("sqlite://{}/issuer.db", dir.path().display());
    let issuer = start_issuer(issuer::testing::test_args(&db, dir.path())).await;
    let mut settings = sidecar_settings(&issuer.base_url);
    settings.listen_unix = Some(socket.clone());
    let sidecar = start_sidecar(settings, 0).await;
    let ai = echo_upstream("ai-gateway").await;
    let memory = echo_upstream("memory-service").await;
    let sidecar_socket = format!("SIDECAR=unix:{}", socket.display());
    let config = render_with(
        &[
            ("ENVOY_PORT", 0),
            ("ENVOY_ADMIN_PORT", 0),
            ("ISSUER_PORT", issuer.addr.port()),
            ("AI_GATEWAY_PORT", ai.port()),
            ("MEMORY_PORT", memory.port()),
        ],
        &["--set", &sidecar_socket],
    );
    assert!(
        config.contains("pipe: { path:"),
        "the sidecar over its socket"
    );
    let envoy = start_envoy_config(&envoy_bin, config).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", envoy.port);
    let r = http
        .post(url("/auth/register"))
        .json(&serde_json::json!({"email": unique_email("unix"), "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let email = r.json::<Value>().await.expect("json")["email"]
        .as_str()
        .expect("email")
        .to_string();
    let tokens: Value = http
        .post(url("/auth/login"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let access = token(&tokens);
    let r = http
        .get(url("/ai/chat"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("allowed");
    assert_eq!(r.status(), 200);
    let r = http.get(url("/ai/chat")).send().await.expect("denied");
    assert_eq!(r.status(), 401);
    let r = http
        .get(url("/ai/admin/settings"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("denied");
    assert_eq!(r.status(), 403);
    // The decisions came over the socket (TCP is still served, but Envoy
    // only knows the pipe).
    let metrics = reqwest::get(format!("http://{}/metrics", sidecar.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("sidecar_checks_total{decision=\"allow\",reason=\"ok\"}"),
        "{metrics}"
    );
    sidecar.stop().await;
    assert!(!socket.exists(), "the socket is removed on shutdown");
}
