//! Step-up at the edge, through real Envoy: a route that needs a second
//! factor or a recent sign-in answers 401 with an RFC 9470 challenge (not
//! an invalid-token one); the client completes MFA or steps up through the
//! issuer, and the route opens, without a new session.

use std::time::Duration;

use issuer::testing::required_service;
use serde_json::{json, Value};

use crate::support::*;

const POLICY: &str = r#"
rules:
  - name: issuer-public
    prefix: /auth/
    allow: public
  - name: jwks-public
    prefix: /.well-known/
    allow: public
  - name: ai-ops
    prefix: /ai/ops/
    allow: authenticated
    mfa: true
  - name: ai-gateway
    prefix: /ai/
    allow: authenticated
  - name: memory-recent
    prefix: /memory/recent/
    allow: authenticated
    max_auth_age: 5
  - name: memory-service
    prefix: /memory/
    allow: authenticated
"#;

fn unix_now() -> i64 {
    sidecar::authz::now_ms() / 1000
}

fn otp(python: &str, secret: &str, t: i64) -> String {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import pyotp, sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &t.to_string(),
        ])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_string()
}

async fn post(stack: &Stack, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = stack.http.post(stack.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request through envoy")
}

async fn step_up_challenges_then_allows_through_envoy(front: Front) {
    let Some(python) = required_service("DM_TEST_PYTHON", "Python with pyotp") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let Some(stack) = Stack::start_front(front, |_| {}, |s| s.policy = policy.clone()).await else {
        return;
    };
    let email = unique_email("-stepup");
    let one_factor = token(&stack.login(&email).await);

    // A one-factor token: the MFA route says how to get in.
    let r = stack.get("/ai/ops/deploy", Some(&one_factor)).await;
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    assert!(
        c.contains("error=\"insufficient_user_authentication\""),
        "{c}"
    );
    assert!(c.contains("acr_values=\"aal2\""), "{c}");
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "mfa_required"
    );
    assert_eq!(stack.get("/ai/chat", Some(&one_factor)).await.status(), 200);

    // Enrol TOTP through Envoy, confirming with the previous step's code so
    // the current step is left for the sign-in (a step is accepted once).
    let r = post(&stack, "/auth/mfa/totp", Some(&one_factor), json!({})).await;
    assert_eq!(r.status(), 200);
    let secret = r.json::<Value>().await.expect("json")["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let mut confirmed = false;
    for _ in 0..2 {
        let code = otp(&python, &secret, unix_now() - 30);
        let r = post(
            &stack,
            "/auth/mfa/totp/confirm",
            Some(&one_factor),
            json!({"code": code}),
        )
        .await;
        if r.status() == 200 {
            confirmed = true;
            break;
        }
        // Only if the step turned between computing and checking.
    }
    assert!(confirmed, "TOTP confirmed");
    let r = post(
        &stack,
        "/auth/login",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 401);
    let ticket = r.json::<Value>().await.expect("json")["mfa_ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    let code = otp(&python, &secret, unix_now());
    let r = post(
        &stack,
        "/auth/mfa/verify",
        None,
        json!({"mfa_ticket": ticket, "code": code}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let two_factor = token(&r.json::<Value>().await.expect("json"));
    assert_eq!(
        stack
            .get("/ai/ops/deploy", Some(&two_factor))
            .await
            .status(),
        200
    );

    // A recent-sign-in route: once the sign-in is over 5 s old, the
    // challenge names max_age; a step-up (password) opens it again in the
    // same session.
    wait_until(Duration::from_secs(20), || async {
        stack
            .get("/memory/recent/x", Some(&two_factor))
            .await
            .status()
            == 401
    })
    .await
    .expect("the sign-in ages past max_auth_age");
    let r = stack.get("/memory/recent/x", Some(&two_factor)).await;
    let c = challenge(&r);
    assert!(
        c.contains("insufficient_user_authentication") && c.contains("max_age=5"),
        "{c}"
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "authentication_too_old"
    );
    let r = post(
        &stack,
        "/auth/mfa/step-up",
        Some(&two_factor),
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let stepped = token(&r.json::<Value>().await.expect("json"));
    assert_eq!(
        stack.get("/memory/recent/x", Some(&stepped)).await.status(),
        200
    );
    // A password step-up proves one factor: the MFA route asks again.
    assert_eq!(
        stack.get("/ai/ops/deploy", Some(&stepped)).await.status(),
        401
    );
}

crate::both_fronts!(step_up_challenges_then_allows_through_envoy);

/// The software authenticator of `scripts/soft_passkey.py`, one JSON line
/// per ceremony.
async fn soft_passkey(
    python: &str,
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/soft_passkey.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .arg(issuer::testing::TEST_ISSUER_URL)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("soft_passkey.py");
    let stdin = child.stdin.take().expect("stdin");
    let lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, stdin, lines)
}

/// One ceremony answered by the software authenticator.
async fn ask(
    stdin: &mut tokio::process::ChildStdin,
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    op: &str,
    options: &Value,
) -> Value {
    use tokio::io::AsyncWriteExt;
    let line = format!("{}\n", json!({"op": op, "options": options}));
    stdin.write_all(line.as_bytes()).await.expect("write");
    let answer = lines.next_line().await.expect("read").expect("an answer");
    serde_json::from_str(&answer).expect("json")
}

async fn passkey_sign_in_through_envoy_opens_mfa_routes(front: Front) {
    let Some(python) = required_service("DM_TEST_PYTHON", "Python with cryptography") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let Some(stack) = Stack::start_front(front, |_| {}, |s| s.policy = policy.clone()).await else {
        return;
    };
    let (_child, mut stdin, mut lines) = soft_passkey(&python).await;
    let email = unique_email("passkey-edge");
    let one_factor = token(&stack.login(&email).await);
    let r = post(
        &stack,
        "/auth/passkeys/register/start",
        Some(&one_factor),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let start: Value = r.json().await.expect("json");
    let credential = ask(&mut stdin, &mut lines, "create", &start["options"]).await;
    let r = post(
        &stack,
        "/auth/passkeys/register/finish",
        Some(&one_factor),
        json!({"ceremony_id": start["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_eq!(r.status(), 201);

    // Passwordless through Envoy: the token shows two factors and opens the
    // route that asks for them.
    let r = post(&stack, "/auth/passkeys/login/start", None, json!({})).await;
    let start: Value = r.json().await.expect("json");
    let assertion = ask(&mut stdin, &mut lines, "get", &start["options"]).await;
    let r = post(
        &stack,
        "/auth/passkeys/login/finish",
        None,
        json!({"ceremony_id": start["ceremony_id"], "credential": assertion}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let two_factor = token(&r.json::<Value>().await.expect("json"));
    assert_eq!(
        stack
            .get("/ai/ops/deploy", Some(&one_factor))
            .await
            .status(),
        401
    );
    assert_eq!(
        stack
            .get("/ai/ops/deploy", Some(&two_factor))
            .await
            .status(),
        200
    );
}

crate::both_fronts!(passkey_sign_in_through_envoy_opens_mfa_routes);
