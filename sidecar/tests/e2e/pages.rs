//! The issuer's hosted pages in a real browser (headless Chromium driven by
//! Playwright, scripts/browser/pages_test.py) through real Envoy: password
//! registration, sign-in and sign-out, TOTP enrolment with codes computed
//! by pyotp, a second factor at sign-in, a passkey added and used with
//! Chromium's virtual authenticator, ending another session from the account page
//! and seeing its token refused at the edge, GitHub sign-in, linking and
//! unlinking against the fake GitHub, the profile and passkey names, an
//! admin disabling a user, ending their sessions, resetting their second
//! factors and managing a team, and a cross-site form refused. Screenshots
//! go to target/screenshots/.

use std::process::Command;

use fake_github::{Config, FakeGitHub, FakeUser};
use issuer::config::Secret;
use issuer::testing::{required_service, TEST_ISSUER_URL};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_pages_in_a_real_browser() {
    let Some(python) = required_service("DM_TEST_PYTHON", "Python with Playwright and pyotp")
    else {
        return;
    };
    let chromium = "/usr/bin/chromium";
    if !std::path::Path::new(chromium).exists() {
        if std::env::var("DM_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("Chromium is required at {chromium}; run ./scripts/test.sh");
        }
        eprintln!("skipping: no Chromium at {chromium}");
        return;
    }
    // GitHub calls back to the issuer's public URL; the browser test sends
    // that URL to this Envoy (as a DNS name would).
    let fake = FakeGitHub::start(Config {
        client_id: "pages-client".into(),
        client_secret: "pages-secret".into(),
        redirect_uri: format!("{TEST_ISSUER_URL}/auth/github/callback"),
        users: Vec::new(),
    })
    .await
    .expect("fake GitHub");
    let github_email = unique_email("pages-gh");
    fake.add_user(FakeUser::new(
        7_001,
        "octo-link",
        &unique_email("pages-link"),
    ));
    fake.add_user(FakeUser::new(7_002, "octo-new", &github_email));
    // Passkeys for the pages' origin (http://localhost, any port).
    let Some(stack) = Stack::start_with(
        |a| {
            a.webauthn_rp_id = Some("localhost".into());
            a.webauthn_origin = Some("http://localhost".into());
            a.mfa_required_roles = vec!["admin".into()];
            a.github.github_client_id = Some("pages-client".into());
            a.github.github_client_secret = Some(Secret("pages-secret".into()));
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
    let admin = unique_email("pages-admin");
    let r = stack
        .http
        .post(stack.url("/auth/register"))
        .json(&json!({"email": admin, "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    stack
        .issuer()
        .state
        .store
        .set_roles(&id, &["admin".to_string()])
        .await
        .expect("admin");

    let shots = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/screenshots"
    ));
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    // localhost, not 127.0.0.1: the cookies are Secure, and browsers treat
    // http://localhost as a secure context.
    let base = format!("http://localhost:{}", stack.envoy.port);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/browser/pages_test.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(&base)
            .arg(&admin)
            .arg(PASSWORD)
            .arg(&shots)
            .arg(TEST_ISSUER_URL)
            .arg(&github_email)
            .output()
            .expect("run the browser test")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    // Page weight and first paint, for the record (the closing note).
    println!("pages: {stdout}");
    let measured: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("measurements");
    assert!(
        measured["sign_in"]["total_bytes"].as_u64().is_some(),
        "{measured}"
    );
}
