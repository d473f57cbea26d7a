//! Passkeys with a software authenticator (`scripts/soft_passkey.py`, ES256,
//! "none" attestation): registration, passwordless sign-in, passkeys as the
//! second factor after a password, list / rename / delete, tampered and
//! replayed assertions, and a ceremony finished on another replica.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use issuer::domain::clock::SystemClock;
use issuer::testing::{required_service, TEST_ISSUER_URL};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::on_both_backends;
use crate::support::*;

struct Authenticator {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Authenticator {
    async fn start() -> Option<Authenticator> {
        let python = required_service("DM_TEST_PYTHON", "Python with cryptography")?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/soft_passkey.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(TEST_ISSUER_URL)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start soft_passkey.py");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Some(Authenticator {
            _child: child,
            stdin,
            lines,
        })
    }

    async fn call(&mut self, request: Value) -> Value {
        self.stdin
            .write_all(format!("{request}\n").as_bytes())
            .await
            .expect("write");
        let line = self
            .lines
            .next_line()
            .await
            .expect("read")
            .expect("an answer");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert!(v.get("error").is_none(), "authenticator: {v}");
        v
    }

    async fn create(&mut self, options: &Value) -> Value {
        self.call(json!({"op": "create", "options": options})).await
    }

    async fn get(&mut self, options: &Value) -> Value {
        self.call(json!({"op": "get", "options": options})).await
    }
}

/// Registers a passkey for the signed-in user; returns its id.
async fn register(t: &TestIssuer, a: &mut Authenticator, access: &str, name: &str) -> String {
    let r = t
        .post_auth("/auth/passkeys/register/start", access, None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let start: Value = r.json().await.expect("json");
    let sel = &start["options"]["publicKey"]["authenticatorSelection"];
    assert_eq!(
        sel["residentKey"], "required",
        "discoverable, for passwordless"
    );
    assert_eq!(sel["userVerification"], "required");
    let credential = a.create(&start["options"]).await;
    let r = t
        .post_auth(
            "/auth/passkeys/register/finish",
            access,
            Some(json!({"ceremony_id": start["ceremony_id"], "credential": credential, "name": name})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

async fn login_start(t: &TestIssuer) -> Value {
    let r = t.post("/auth/passkeys/login/start", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

async fn passkeys_sign_in_alone_and_as_second_factor(backend: Backend) {
    let Some(mut a) = Authenticator::start().await else {
        return;
    };
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("-passkey");
    t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let id = register(&t, &mut a, &tokens.access, "Laptop").await;

    // Passwordless: any passkey of the site may answer; it names the user.
    let start = login_start(&t).await;
    assert!(start["options"]["publicKey"]["allowCredentials"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
    let assertion = a.get(&start["options"]).await;
    let r = t
        .post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pk_tokens = Tokens::from(r.json::<Value>().await.expect("json"));
    let claims = t.verify(&pk_tokens.access).await;
    assert_eq!(claims.amr, vec!["hwk", "mfa"]);
    assert_eq!(claims.acr.as_deref(), Some("aal2"));
    assert_eq!(claims.email.as_deref(), Some(email.as_str()));
    // The ceremony is spent: the same assertion does not sign in twice.
    let r = t
        .post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": assertion}),
        )
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_ceremony")
    );
    // A tampered signature is refused.
    let start = login_start(&t).await;
    let bad = a
        .call(json!({"op": "get", "options": start["options"], "tamper": true}))
        .await;
    let (status, code, _) = error_code(
        t.post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": bad}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_credential")
    );
    // An assertion made for another ceremony's challenge is refused.
    let first = login_start(&t).await;
    let second = login_start(&t).await;
    let for_first = a.get(&first["options"]).await;
    let (status, _, _) = error_code(
        t.post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": second["ceremony_id"], "credential": for_first}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // With a passkey, the password alone is no longer a sign-in: the
    // passkey completes it.
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge: Value = r.json().await.expect("json");
    assert_eq!(challenge["methods"], json!(["passkey"]));
    let ticket = challenge["mfa_ticket"].as_str().expect("ticket");
    let start = login_start(&t).await;
    let assertion = a.get(&start["options"]).await;
    let r = t
        .post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": assertion, "mfa_ticket": ticket}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let second_factor = Tokens::from(r.json::<Value>().await.expect("json"));
    assert_eq!(
        t.verify(&second_factor.access).await.amr,
        vec!["pwd", "hwk", "mfa"]
    );

    // Step-up with the passkey inside that session: a fresh auth_time.
    let start = login_start(&t).await;
    let assertion = a.get(&start["options"]).await;
    let r = t
        .post_auth(
            "/auth/mfa/step-up",
            &second_factor.access,
            Some(
                json!({"passkey": {"ceremony_id": start["ceremony_id"], "credential": assertion}}),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let stepped: Value = r.json().await.expect("json");
    let claims = t.verify(stepped["access_token"].as_str().expect("a")).await;
    assert_eq!(claims.sid, second_factor.session_id);
    assert_eq!(claims.amr, vec!["pwd", "hwk", "mfa"]);

    // Another user's ticket does not go with this passkey.
    let other = unique_email("other");
    t.register(&other, PASSWORD).await;
    let other_tokens = t.login(&other, PASSWORD).await;
    let mut b = Authenticator::start().await.expect("second authenticator");
    register(&t, &mut b, &other_tokens.access, "Phone").await;
    let r = t
        .post("/auth/login", json!({"email": other, "password": PASSWORD}))
        .await;
    let other_ticket = r.json::<Value>().await.expect("json")["mfa_ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    let start = login_start(&t).await;
    let mine = a.get(&start["options"]).await;
    let (status, code, _) = error_code(
        t.post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": mine, "mfa_ticket": other_ticket}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_credential")
    );

    // List, rename, delete.
    let list: Value = t
        .get_auth("/auth/passkeys", &pk_tokens.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["passkeys"][0]["id"], id.as_str());
    assert_eq!(list["passkeys"][0]["name"], "Laptop");
    assert!(list["passkeys"][0]["last_used_at"].is_i64());
    let r = t
        .http
        .patch(t.url(&format!("/auth/passkeys/{id}")))
        .bearer_auth(&pk_tokens.access)
        .json(&json!({"name": "Work laptop"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(r.status(), StatusCode::OK);
    let r = t
        .http
        .patch(t.url(&format!("/auth/passkeys/{id}")))
        .bearer_auth(&other_tokens.access)
        .json(&json!({"name": "mine now"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "someone else's passkey");
    let r = t
        .http
        .patch(t.url(&format!("/auth/passkeys/{id}")))
        .bearer_auth(&pk_tokens.access)
        .json(&json!({"name": "x".repeat(65)}))
        .send()
        .await
        .expect("rename");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Removed from another session it opened: the sessions the passkey
    // opened end with it (review finding 5), the one removing it stays.
    let start = login_start(&t).await;
    let assertion = a.get(&start["options"]).await;
    let r = t
        .post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": assertion}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let remover = Tokens::from(r.json::<Value>().await.expect("json"));
    let r = t
        .http
        .delete(t.url(&format!("/auth/passkeys/{id}")))
        .bearer_auth(&remover.access)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        t.get_auth("/auth/me", &pk_tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.refresh(&pk_tokens.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get_auth("/auth/me", &remover.access).await.status(),
        StatusCode::OK
    );
    // Gone: it signs nobody in, and the password alone works again.
    let start = login_start(&t).await;
    let stale = a.get(&start["options"]).await;
    let (status, _, _) = error_code(
        t.post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": stale}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    t.login(&email, PASSWORD).await;
    let audit = t
        .server
        .state
        .store
        .recent_audit_events(200)
        .await
        .expect("audit");
    for action in ["passkey_added", "passkey_removed", "passkey_failure"] {
        assert!(audit.iter().any(|a| a == action), "{action}: {audit:?}");
    }
}

async fn bad_passkey_input_is_a_clear_4xx(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let email = unique_email("pk-bad");
    t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    for (path, body) in [
        (
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": "nope", "credential": {}}),
        ),
        (
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": "nope"}),
        ),
        ("/auth/passkeys/login/finish", json!([1, 2])),
    ] {
        let r = t.post(path, body.clone()).await;
        assert!(
            r.status().is_client_error(),
            "{path} {body}: {}",
            r.status()
        );
        assert!(r.json::<Value>().await.expect("json")["error"].is_string());
    }
    let start = login_start(&t).await;
    let junk = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": "AAAA"},
        "extensions": {}});
    let (status, _, _) = error_code(
        t.post(
            "/auth/passkeys/login/finish",
            json!({"ceremony_id": start["ceremony_id"], "credential": junk}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = t
        .post_auth(
            "/auth/passkeys/register/finish",
            &tokens.access,
            Some(json!({"ceremony_id": "nope", "credential": junk})),
        )
        .await;
    assert!(r.status().is_client_error());
}

on_both_backends!(
    passkeys_sign_in_alone_and_as_second_factor,
    bad_passkey_input_is_a_clear_4xx,
);

/// A ceremony started on one replica finishes on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremonies_finish_on_any_replica() {
    let Some(mut a) = Authenticator::start().await else {
        return;
    };
    let Some(db) = database(Backend::Postgres).await else {
        return;
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let args = issuer::testing::test_args(&db.url, db.dir.path());
        replicas.push(
            issuer::testing::start(args, Arc::new(SystemClock))
                .await
                .expect("replica"),
        );
    }
    let http = reqwest::Client::new();
    let url = |i: usize, p: &str| format!("{}{p}", replicas[i].base_url);
    let email = unique_email("replicas");
    http.post(url(0, "/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    let tokens: Value = http
        .post(url(0, "/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let access = tokens["access_token"].as_str().expect("access");
    let start: Value = http
        .post(url(0, "/auth/passkeys/register/start"))
        .bearer_auth(access)
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let credential = a.create(&start["options"]).await;
    let r = http
        .post(url(1, "/auth/passkeys/register/finish"))
        .bearer_auth(access)
        .json(&json!({"ceremony_id": start["ceremony_id"], "credential": credential}))
        .send()
        .await
        .expect("finish");
    assert_eq!(r.status(), StatusCode::CREATED);
    let start: Value = http
        .post(url(1, "/auth/passkeys/login/start"))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let assertion = a.get(&start["options"]).await;
    let r = http
        .post(url(0, "/auth/passkeys/login/finish"))
        .json(&json!({"ceremony_id": start["ceremony_id"], "credential": assertion}))
        .send()
        .await
        .expect("finish");
    assert_eq!(r.status(), StatusCode::OK);
    for r in replicas {
        r.stop().await;
    }
}
