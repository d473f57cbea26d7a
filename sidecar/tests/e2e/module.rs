//! What only the Envoy module has to prove (the shared suites run against
//! it through `both_fronts!`): a decision that has to wait — a key it has
//! not fetched yet — parks the request and resumes it on Envoy's worker
//! with its body intact, many at once; a filter config it cannot use is
//! refused at load with a line saying why; an issuer it cannot reach means
//! every protected request is refused, and Envoy keeps running.

use std::time::Duration;

use issuer::testing;
use serde_json::Value;

use crate::rotation::token_from_an_unannounced_key;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_waits_parks_the_request_and_resumes_it() {
    let Some(stack) = Stack::start_front(
        Front::Module,
        |_| {},
        |s| {
            // Only an unknown kid makes the module fetch.
            s.jwks_refresh_secs = 3600;
            s.max_staleness_secs = 7200;
        },
    )
    .await
    else {
        return;
    };
    let fresh = token_from_an_unannounced_key(&stack.issuer().state, "u-park").await;

    // Twenty requests with bodies, all signed by the key the module has
    // not seen: each waits for the one fetch, then goes upstream whole.
    let body: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let request = stack
            .http
            .post(stack.url("/ai/chat"))
            .bearer_auth(&fresh)
            .body(body.clone());
        calls.push(tokio::spawn(async move {
            let r = request.send().await.expect("through envoy");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or_default())
        }));
    }
    for call in calls {
        let (status, echoed) = call.await.expect("join");
        assert_eq!(status, 200, "{echoed}");
        assert_eq!(
            echoed["body_len"], 200_000,
            "the body waited and arrived whole"
        );
        assert_eq!(
            echoed["headers"]["x-user-id"],
            serde_json::json!(["u-park"])
        );
    }
    // From memory now.
    assert_eq!(stack.get("/ai/chat", Some(&fresh)).await.status(), 200);
}

/// Envoy with the module and these `sidecar serve` flags; its exit status
/// and log if it stops within `limit`, or `None` (still running).
async fn envoy_with_module(args: &[String], limit: Duration) -> Option<(bool, String)> {
    let envoy = envoy_bin()?;
    let module = module_dir()?;
    let mut extra = vec!["--authz".to_string(), "module".to_string()];
    extra.extend(args.iter().map(|a| format!("--module-arg={a}")));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let config = render_with(
        &[
            ("ENVOY_PORT", 0),
            ("ENVOY_ADMIN_PORT", 0),
            ("ISSUER_PORT", 1),
            ("AI_GATEWAY_PORT", 1),
            ("MEMORY_PORT", 1),
        ],
        &extra,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config).expect("write config");
    let child = tokio::process::Command::new(envoy)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module)
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn envoy");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("envoy output");
            Some((
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_config_the_module_cannot_use_is_refused_with_a_reason() {
    let policy = policy_file().display().to_string();
    for (args, says) in [
        (
            vec![
                "--policy".to_string(),
                "/nonexistent/policy.yaml".to_string(),
            ],
            "policy",
        ),
        (
            vec![
                "--policy".to_string(),
                policy.clone(),
                "--max-staleness-secs".to_string(),
                "0".to_string(),
            ],
            "max-staleness-secs",
        ),
        (
            vec![
                "--policy".to_string(),
                policy.clone(),
                "--colour".to_string(),
            ],
            "--colour",
        ),
    ] {
        let Some(outcome) = envoy_with_module(&args, Duration::from_secs(30)).await else {
            if testing::required_service("DM_TEST_ENVOY", "Envoy").is_none() {
                return;
            }
            panic!("Envoy kept running with an unusable module config {args:?}");
        };
        let (ok, log) = outcome;
        assert!(!ok, "Envoy accepted {args:?}");
        let line = log
            .lines()
            .find(|l| l.contains("devmentor_authz:"))
            .unwrap_or_else(|| panic!("no line from the module for {args:?}:\n{log}"));
        assert!(line.contains(says), "{args:?}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_it_cannot_reach_means_refusals_and_a_log_line() {
    let Some(envoy_bin) = envoy_bin() else { return };
    let Some(_) = module_dir() else { return };
    // An "issuer" that hangs up on every connection.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = gone.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = gone.accept().await {
            drop(socket);
        }
    });
    let mut settings = sidecar_settings(&format!("http://127.0.0.1:{port}"));
    settings.max_staleness_secs = 5;
    let mut extra = vec!["--authz".to_string(), "module".to_string()];
    extra.extend(
        module_args(&settings)
            .iter()
            .map(|a| format!("--module-arg={a}")),
    );
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let ai = echo_upstream("ai-gateway").await;
    let config = render_with(
        &[
            ("ENVOY_PORT", 0),
            ("ENVOY_ADMIN_PORT", 0),
            ("ISSUER_PORT", port),
            ("AI_GATEWAY_PORT", ai.port()),
            ("MEMORY_PORT", ai.port()),
        ],
        &extra,
    );
    let envoy = start_envoy_config(&envoy_bin, config).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://127.0.0.1:{}/ai/chat", envoy.port))
        .bearer_auth("a.b.c")
        .send()
        .await
        .expect("through envoy");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "authorization_state_stale");
    wait_until(Duration::from_secs(10), || async {
        envoy.log().contains("issuer unreachable")
    })
    .await
    .unwrap_or_else(|_| panic!("no log line about the issuer:\n{}", envoy.log()));
}

/// The listener from a rendered config, as an LDS file's content.
fn lds_of(config: &Value) -> String {
    let mut listener = config["static_resources"]["listeners"][0].clone();
    listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener".into();
    // JSON is YAML: Envoy reads it whatever the file's name says.
    serde_json::json!({ "resources": [listener] }).to_string()
}

/// Replaces the LDS file the way Envoy watches for: a rename into place.
fn publish(path: &std::path::Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).expect("write lds");
    std::fs::rename(&next, path).expect("rename lds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_reload_swaps_the_module_config_and_a_bad_one_keeps_the_old() {
    let Some(envoy_bin) = envoy_bin() else { return };
    let Some(_) = module_dir() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/issuer.db", dir.path().display());
    let issuer = start_issuer(testing::test_args(&url, dir.path())).await;
    let ai = echo_upstream("ai-gateway").await;
    let render_for = |settings: &sidecar::config::Settings| -> Value {
        let mut extra = vec!["--authz".to_string(), "module".to_string()];
        extra.extend(
            module_args(settings)
                .iter()
                .map(|a| format!("--module-arg={a}")),
        );
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let text = render_with(
            &[
                ("ENVOY_PORT", 0),
                ("ENVOY_ADMIN_PORT", 0),
                ("ISSUER_PORT", issuer.addr.port()),
                ("AI_GATEWAY_PORT", ai.port()),
                ("MEMORY_PORT", ai.port()),
            ],
            &extra,
        );
        yaml_serde::from_str(&text).expect("rendered YAML")
    };
    let settings = sidecar_settings(&issuer.base_url);
    let mut bootstrap = render_for(&settings);
    let lds = dir.path().join("lds.yaml");
    publish(&lds, &lds_of(&bootstrap));
    if let Some(resources) = bootstrap["static_resources"].as_object_mut() {
        resources.remove("listeners");
    }
    bootstrap["node"] = serde_json::json!({"id": "reload-test", "cluster": "reload-test"});
    bootstrap["dynamic_resources"] = serde_json::json!({
        "lds_config": {"path_config_source": {"path": lds.display().to_string()},
                       "resource_api_version": "V3"}
    });
    let envoy = start_envoy_config(&envoy_bin, bootstrap.to_string()).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", envoy.port);
    let email = unique_email("reload");
    let r = http
        .post(format!("{base}/auth/register"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let access = token(&login);
    let echoed = || async {
        let r = http
            .get(format!("{base}/ai/chat"))
            .bearer_auth(&access)
            .send()
            .await
            .expect("through envoy");
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or_default(),
        )
    };
    wait_until(Duration::from_secs(10), || async {
        echoed().await.0 == 200
    })
    .await
    .expect("the module judges");
    assert!(echoed().await.1["headers"]["x-user-id"].is_array());

    // A new config (another identity header): a new module config replaces
    // the old one while Envoy keeps serving.
    let mut renamed = settings.clone();
    renamed.user_id_header = "x-who".into();
    publish(&lds, &lds_of(&render_for(&renamed)));
    wait_until(Duration::from_secs(15), || async {
        let (status, body) = echoed().await;
        status == 200 && body["headers"]["x-who"].is_array()
    })
    .await
    .unwrap_or_else(|_| panic!("the reload did not take:\n{}", envoy.log()));

    // A config the module refuses: Envoy rejects the update, says why, and
    // the previous config goes on deciding.
    let mut broken = renamed.clone();
    broken.policy = dir.path().join("no-such-policy.yaml");
    let mut text = lds_of(&render_for(&renamed));
    text = text.replace(
        &renamed.policy.display().to_string(),
        &broken.policy.display().to_string(),
    );
    publish(&lds, &text);
    wait_until(Duration::from_secs(15), || async {
        envoy.log().contains("no-such-policy")
    })
    .await
    .unwrap_or_else(|_| panic!("no word of the refused config:\n{}", envoy.log()));
    let (status, body) = echoed().await;
    assert_eq!(status, 200, "{body}");
    assert!(body["headers"]["x-who"].is_array(), "{body}");
}
