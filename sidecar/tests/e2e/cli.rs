//! The `devmentor` CLI, run as a process as a developer runs it: it signs
//! in by device code (the test approves on the verification page through
//! Envoy, as the user would in a browser), keeps its credentials in a file
//! only the user can read, hands out a token that the edge takes on a
//! route naming its scope, refreshes it, and logging out refuses it at the
//! edge.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use issuer::service::oauth::clients::NewClient;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The route whose rule names `scopes: [notes:read]` (envoy/policy.yaml).
const NOTES: &str = "/memory/notes/1";

/// `target/debug/devmentor`, built by `cargo build -p devmentor-cli`
/// (`scripts/test.sh` builds it before the tests); missing is a failure.
fn devmentor() -> PathBuf {
    if let Some(p) = std::env::var_os("DM_TEST_DEVMENTOR") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("devmentor");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p devmentor-cli` first",
        bin.display()
    );
    bin
}

async fn run(creds: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(devmentor())
        .args(args)
        .env("DEVMENTOR_CREDENTIALS", creds)
        .output()
        .await
        .expect("devmentor runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The verification page through Envoy: the code entered, then approved.
async fn approve(stack: &Stack, cookies: &str, code: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = http
        .post(stack.url("/auth/ui/device"))
        .header("cookie", cookies)
        .header("sec-fetch-site", "same-origin")
        .form(&[("user_code", code)])
        .send()
        .await
        .expect("enter code");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("page");
    assert!(page.contains("DevMentor CLI"), "{page}");
    let at = page.find("name=\"answer_token\" value=\"").expect("token") + 27;
    let token = page[at..].split('"').next().expect("token");
    let r = http
        .post(stack.url("/auth/ui/device/answer"))
        .header("cookie", cookies)
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("user_code", code),
            ("answer_token", token),
            ("decision", "allow"),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_by_device_code_through_envoy() {
    let bin = devmentor();
    let Some(stack) = Stack::start_full(false, true, |a| a.device_poll_interval = 1, |_| {}).await
    else {
        return;
    };
    let state = &stack.issuer().state;
    let new = NewClient {
        client_id: "devmentor-cli".into(),
        name: "DevMentor CLI".into(),
        kind: "public".into(),
        grant_types: Some(vec![DEVICE.into(), "refresh_token".into()]),
        scopes: vec!["openid".into(), "email".into(), "notes:read".into()],
        first_party: true,
        ..Default::default()
    };
    let (client, _) =
        issuer::service::oauth::clients::check(&new, state.now().secs()).expect("client");
    assert!(state
        .store
        .create_client(&client, "test")
        .await
        .expect("db"));
    issuer::service::keys::id_token_key(state)
        .await
        .expect("id-token key");
    let email = unique_email("cli");
    stack.login(&email).await;
    let cookies = stack.page_cookies(&email).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("devmentor").join("credentials.json");

    // Login: the CLI prints the page and the code, and waits; the user
    // approves in a browser; the CLI is signed in.
    sign_in(&stack, &bin, &cookies, &creds, &[]).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&creds), 0o600, "the credentials are the user's alone");
        assert_eq!(mode(creds.parent().expect("dir")), 0o700);
    }

    // A token for scripts: the edge takes it on the notes rule (an app's
    // token with notes:read), and nowhere it is not named.
    let (ok, out, err) = run(&creds, &["token"]).await;
    assert!(ok, "{err}");
    let token = out.trim().to_string();
    assert_eq!(stack.get(NOTES, Some(&token)).await.status(), 200);
    assert_eq!(stack.get("/ai/chat", Some(&token)).await.status(), 403);
    let (ok, out, err) = run(&creds, &["whoami"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("email: {email}")), "{out}");

    // About to expire: `token` refreshes (and keeps the rotated refresh
    // token); the new token works at the edge too.
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).expect("read")).expect("json");
    saved["expires_at"] = serde_json::json!(0);
    std::fs::write(&creds, saved.to_string()).expect("write");
    let (ok, out, err) = run(&creds, &["token"]).await;
    assert!(ok, "{err}");
    let renewed = out.trim().to_string();
    assert_ne!(renewed, token);
    assert_eq!(stack.get(NOTES, Some(&renewed)).await.status(), 200);

    // A credentials file others can read is refused, as ssh refuses keys.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |mode| std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(mode));
        set(0o644).expect("chmod");
        let (ok, _, err) = run(&creds, &["token"]).await;
        assert!(!ok && err.contains("too open"), "{err}");
        set(0o600).expect("chmod");
    }
    // An issuer in clear text elsewhere than on loopback is refused.
    let (ok, _, err) = run(&creds, &["login", "--issuer", "http://auth.example.com"]).await;
    assert!(!ok && err.contains("https only"), "{err}");

    // Logout revokes the session: the edge refuses its token within the
    // revocation lag, and the file is gone.
    let (ok, _, err) = run(&creds, &["logout"]).await;
    assert!(ok, "{err}");
    assert!(!creds.exists());
    let lag = wait_until(Duration::from_secs(2), || async {
        stack.get(NOTES, Some(&renewed)).await.status() == 401
    })
    .await
    .expect("the signed-out CLI's token refused at the edge");
    eprintln!("devmentor logout → its token denied at the edge after {lag:?}");
    let (ok, _, err) = run(&creds, &["token"]).await;
    assert!(!ok && err.contains("not signed in"), "{err}");

    // CI: a personal access token from the environment, for an access
    // token the edge takes; a wrong one is refused with the reason.
    let session = crate::support::token(&stack.login_again(&email).await);
    let pat = stack
        .personal_token(
            &session,
            serde_json::json!({"name": "ci", "scope": "notes:read"}),
        )
        .await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let pat_token = |pat: String| {
        let bin = bin.clone();
        let issuer = stack.issuer().base_url.clone();
        async move {
            let out = tokio::process::Command::new(bin)
                .args(["pat-token", "--issuer", &issuer])
                .env("DEVMENTOR_PAT", pat)
                .output()
                .await
                .expect("devmentor runs");
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            (out.status.success(), text(out.stdout), text(out.stderr))
        }
    };
    let (ok, out, err) = pat_token(pat.clone()).await;
    assert!(ok, "{err}");
    assert_eq!(stack.get(NOTES, Some(out.trim())).await.status(), 200);
    let (ok, _, err) = pat_token(format!("{}x", &pat[..pat.len() - 1])).await;
    assert!(!ok && err.contains("invalid_grant"), "{err}");

    // DPoP: `login --dpop` binds the tokens to a key kept with the
    // credentials. The token alone (a leaked copy) is refused at the edge;
    // with `devmentor proof` for the request it passes, once per proof,
    // and on the rule that requires DPoP. whoami and refreshes prove the
    // key too.
    let bound_creds = dir.path().join("dpop").join("credentials.json");
    sign_in(&stack, &bin, &cookies, &bound_creds, &["--dpop"]).await;
    let (ok, out, err) = run(&bound_creds, &["token"]).await;
    assert!(ok, "{err}");
    let bound = out.trim().to_string();
    assert_eq!(stack.get(NOTES, Some(&bound)).await.status(), 401);
    let through = |path: &'static str, token: String| {
        let (stack, creds) = (&stack, bound_creds.clone());
        async move {
            let url = stack.url(path);
            let (ok, proof, err) = run(&creds, &["proof", "GET", &url]).await;
            assert!(ok, "{err}");
            let proof = proof.trim().to_string();
            let send = || {
                stack
                    .http
                    .get(&url)
                    .header("authorization", format!("DPoP {token}"))
                    .header("dpop", &proof)
                    .send()
            };
            let first = send().await.expect("request").status().as_u16();
            let again = send().await.expect("request").status().as_u16();
            (first, again)
        }
    };
    assert_eq!(through(NOTES, bound.clone()).await, (200, 401));
    assert_eq!(
        through("/memory/notes/private/1", bound.clone()).await,
        (200, 401)
    );
    let (ok, out, err) = run(&bound_creds, &["whoami"]).await;
    assert!(ok && out.contains(&format!("email: {email}")), "{out}{err}");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bound_creds).expect("read")).expect("json");
    saved["expires_at"] = serde_json::json!(0);
    std::fs::write(&bound_creds, saved.to_string()).expect("write");
    let (ok, out, err) = run(&bound_creds, &["token"]).await;
    assert!(ok, "{err}");
    let renewed = out.trim().to_string();
    assert_ne!(renewed, bound);
    assert_eq!(through(NOTES, renewed).await, (200, 401));
    // Without the key, the refresh token is refused: copied out of the
    // file, it is no use elsewhere.
    let refresh = saved["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let r = stack
        .http
        .post(stack.url("/auth/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", "devmentor-cli"),
        ])
        .send()
        .await
        .expect("refresh");
    assert_eq!(r.status(), 400);
    let (ok, _, err) = run(&creds, &["proof", "GET", "http://x/"]).await;
    assert!(!ok, "{err}");
}

/// `devmentor login` (with `extra` flags), approved on the page as the
/// user would; waits for the CLI to finish signed in.
async fn sign_in(stack: &Stack, bin: &Path, cookies: &str, creds: &Path, extra: &[&str]) {
    let issuer = stack.issuer().base_url.clone();
    let mut args = vec!["login", "--issuer", &issuer, "--client-id", "devmentor-cli"];
    args.extend_from_slice(extra);
    let mut login = tokio::process::Command::new(bin)
        .args(&args)
        .env("DEVMENTOR_CREDENTIALS", creds)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("devmentor login");
    let mut lines = BufReader::new(login.stderr.take().expect("stderr")).lines();
    let mut printed = Vec::new();
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            printed.push(line.clone());
            if let Some(code) = line.strip_prefix("and enter the code: ") {
                return code.to_string();
            }
        }
        panic!("no code printed: {printed:?}");
    })
    .await
    .expect("the code within 10 s");
    approve(stack, cookies, &code).await;
    let status = tokio::time::timeout(Duration::from_secs(20), login.wait())
        .await
        .expect("login finishes once approved")
        .expect("exit status");
    assert!(status.success());
}
