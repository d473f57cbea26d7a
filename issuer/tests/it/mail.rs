//! Mail through a real SMTP server (aiosmtpd, `scripts/smtp_sink.py`):
//! verification and reset links followed from the delivered message,
//! notices, an SMTP outage, and two replicas sharing one outbox.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use issuer::domain::clock::{Clock, SystemClock};
use issuer::testing::required_service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::on_both_backends;
use crate::support::*;

pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    /// A sink on a free port, or on `port`; `None` when Python is not
    /// provided (plain `cargo test`), a failure under ./scripts/test.sh.
    pub async fn start(port: Option<u16>) -> Option<Sink> {
        let python = required_service("DM_TEST_PYTHON", "Python with aiosmtpd")?;
        let dir = tempfile::tempdir().expect("tempdir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/smtp_sink.py");
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .arg(dir.path())
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = port {
            cmd.arg("--port").arg(p.to_string());
        }
        let mut child = cmd.spawn().expect("start smtp_sink.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("sink starts in time")
            .expect("read sink")
            .expect("sink said something");
        let port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("sink: {ready}"));
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Sink { child, port, dir })
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("sink dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json"))
            .collect()
    }

    /// Waits until `pred` holds for the messages received, and returns them.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.messages();
            if pred(&m) {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {m:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The first message to `to` whose subject contains `subject`.
    pub async fn wait_for(&self, to: &str, subject: &str) -> Value {
        let all = self
            .wait_until(&format!("{subject} to {to}"), |m| {
                m.iter().any(|x| is(x, to, subject))
            })
            .await;
        all.into_iter().find(|x| is(x, to, subject)).expect("found")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn is(m: &Value, to: &str, subject: &str) -> bool {
    m["to"].as_str() == Some(to) && m["subject"].as_str().is_some_and(|s| s.contains(subject))
}

/// The path and query of the issuer link in a mail's text part.
fn link_path(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("text part");
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains("token="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    // The HTML part carries the same link (escaped).
    assert!(mail["html"]
        .as_str()
        .expect("html part")
        .contains(&url.replace('&', "&amp;")));
    let rest = url.split_once("://").expect("scheme").1;
    rest[rest.find('/').expect("path")..].to_string()
}

fn token_of(path: &str) -> String {
    path.split_once("token=").expect("token").1.to_string()
}

async fn start_mailing(backend: Backend, sink: &Sink, clock: Arc<dyn Clock>) -> Option<TestIssuer> {
    let url = sink.url();
    start_with(backend, clock, move |a| {
        a.mail.smtp_url = Some(url.parse().expect("url"));
        a.mail.mail_poll_ms = 50;
        a.mail.mail_retry_base_ms = 50;
    })
    .await
}

async fn login_as(t: &TestIssuer, email: &str, password: &str, agent: &str) -> reqwest::Response {
    t.http
        .post(t.url("/auth/login"))
        .header("user-agent", agent)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login")
}

async fn verification_link_verifies_the_address(backend: Backend) {
    let Some(sink) = Sink::start(None).await else {
        return;
    };
    let Some(t) = start_mailing(backend, &sink, Arc::new(SystemClock)).await else {
        return;
    };
    let email = unique_email("-verify");
    t.register(&email, PASSWORD).await;
    let before = t.login(&email, PASSWORD).await;
    assert!(!t.verify(&before.access).await.email_verified);

    let mail = sink.wait_for(&email, "Confirm your email").await;
    assert!(mail["from"]
        .as_str()
        .expect("from")
        .contains("no-reply@localhost"));
    let path = link_path(&mail);
    assert!(path.starts_with("/auth/email/verify?token=et_"), "{path}");

    // Opening the link spends nothing: it shows a form that posts the token.
    for _ in 0..2 {
        let page = t.http.get(t.url(&path)).send().await.expect("page");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html"));
        let html = page.text().await.expect("html");
        assert!(
            html.contains(&format!("value=\"{}\"", token_of(&path))),
            "{html}"
        );
        assert!(html.contains("action=\"/auth/email/verify\""));
    }
    // The first proof of the address needs the account's password too
    // (review finding 5): without it, or with a wrong one, the link is
    // refused and not spent.
    let (status, code, _) = error_code(
        t.post("/auth/email/verify", json!({"token": token_of(&path)}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "password_required")
    );
    let r = t
        .post(
            "/auth/email/verify",
            json!({"token": token_of(&path), "password": "not the password"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let form = [
        ("token", token_of(&path)),
        ("password", PASSWORD.to_string()),
    ];
    // As a signed-in browser posts the page's form: with its refresh cookie,
    // and `Origin: null` (the page's no-referrer policy); a cross-site post
    // of the same form is refused.
    let browser_post = |site: &'static str| {
        t.http
            .post(t.url("/auth/email/verify"))
            .header("cookie", format!("__Host-refresh_token={}", before.refresh))
            .header("origin", "null")
            .header("sec-fetch-site", site)
            .form(&form)
    };
    let r = browser_post("cross-site").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = browser_post("same-origin").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.expect("html").contains("confirmed"));
    // Single use, by form and by JSON alike.
    let again = t
        .http
        .post(t.url("/auth/email/verify"))
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let (status, code, _) = error_code(
        t.post("/auth/email/verify", json!({"token": token_of(&path)}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_token")
    );
    let (status, code, _) = error_code(
        t.post("/auth/email/verify", json!({"token": "et_made_up"}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_token")
    );

    // Tokens minted from now on say so; asking for another mail is refused.
    let after = t.login(&email, PASSWORD).await;
    assert!(t.verify(&after.access).await.email_verified);
    let (status, code, _) = error_code(
        t.post_auth("/auth/email/verify/resend", &after.access, None)
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "already_verified")
    );

    // A sign-in from a device the account has not used before is told to
    // the user; a known device is not.
    let count = |m: &[Value]| m.iter().filter(|x| is(x, &email, "New sign-in")).count();
    assert_eq!(
        login_as(&t, &email, PASSWORD, "device-one").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        login_as(&t, &email, PASSWORD, "device-one").await.status(),
        StatusCode::OK
    );
    let notice = sink.wait_for(&email, "New sign-in").await;
    assert!(notice["text"]
        .as_str()
        .expect("text")
        .contains("device-one"));
    // (The test client's own user agent was the first device.)
    sink.wait_until("sent mail to settle", |_| {
        t.server
            .state
            .metrics
            .render()
            .contains("issuer_mail_outbox_backlog 0")
    })
    .await;
    assert_eq!(count(&sink.messages()), 1, "known devices are not news");
    sink.stop().await;
}

async fn password_reset_by_mail(backend: Backend) {
    let Some(sink) = Sink::start(None).await else {
        return;
    };
    let clock = manual_clock();
    let Some(t) = start_mailing(backend, &sink, clock.clone()).await else {
        return;
    };
    let email = unique_email("reset");
    let user = t.register(&email, PASSWORD).await;
    let user_id = user["id"].as_str().expect("id").to_string();
    let session = t.login(&email, PASSWORD).await;

    // Known and unknown addresses get the same answer.
    let known = t
        .post("/auth/password/forgot", json!({"email": email}))
        .await;
    let unknown = t
        .post(
            "/auth/password/forgot",
            json!({"email": unique_email("nobody")}),
        )
        .await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    assert_eq!(
        known.json::<Value>().await.expect("json"),
        unknown.json::<Value>().await.expect("json")
    );
    let mail = sink.wait_for(&email, "Reset your password").await;
    let path = link_path(&mail);
    assert!(path.starts_with("/auth/password/reset?token=et_"));
    let token = token_of(&path);
    let page = t
        .http
        .get(t.url(&path))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("name=\"new_password\"") && page.contains(&token));

    // A weak password is refused without spending the link.
    let (status, code, _) = error_code(
        t.post(
            "/auth/password/reset",
            json!({"token": token, "new_password": "short"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "weak_password")
    );
    let new_password = "a whole new passphrase";
    let r = t
        .post(
            "/auth/password/reset",
            json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"status": "password_reset"}),
        "no tokens: no automatic sign-in"
    );

    // Every session ended; the old password is gone; the link is spent.
    assert_eq!(
        t.refresh(&session.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get_auth("/auth/me", &session.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.post("/auth/login", json!({"email": email, "password": PASSWORD}))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let fresh = t.login(&email, new_password).await;
    assert!(
        t.verify(&fresh.access).await.email_verified,
        "the link proved the mailbox"
    );
    let (status, code, _) = error_code(
        t.post(
            "/auth/password/reset",
            json!({"token": token, "new_password": "yet another passphrase"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_token")
    );
    let notice = sink.wait_for(&email, "password was changed").await;
    assert!(notice["text"]
        .as_str()
        .expect("text")
        .contains("reset link"));

    // A disabled account's link does nothing.
    t.post("/auth/password/forgot", json!({"email": email}))
        .await;
    let mails = sink
        .wait_until("a reset mail for the disabled check", |m| {
            m.iter()
                .filter(|x| is(x, &email, "Reset your password"))
                .count()
                == 2
        })
        .await;
    let pending = token_of(&link_path(
        mails
            .iter()
            .rev()
            .find(|x| is(x, &email, "Reset your password"))
            .expect("mail"),
    ));
    let state = &t.server.state;
    let disable = |d: bool| issuer::store::UserChange {
        disabled: Some(d),
        ..Default::default()
    };
    state
        .store
        .change_user(
            &user_id,
            &disable(true),
            state.now().ms,
            state.revocation_expiry(state.now()),
        )
        .await
        .expect("disable");
    let (status, code, _) = error_code(
        t.post(
            "/auth/password/reset",
            json!({"token": pending, "new_password": "disabled passphrase"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_token")
    );
    state
        .store
        .change_user(
            &user_id,
            &disable(false),
            state.now().ms,
            state.revocation_expiry(state.now()),
        )
        .await
        .expect("enable");

    // A link older than its lifetime is refused (that one, now enabled again).
    let late = pending;
    clock.advance_secs(t.server.state.settings.mail.password_reset_ttl_secs + 1);
    let (status, code, _) = error_code(
        t.post(
            "/auth/password/reset",
            json!({"token": late, "new_password": "too late passphrase"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_token")
    );

    // At most three reset mails an hour per account; asking more changes
    // nothing in the answer.
    for _ in 0..3 {
        let r = t
            .post("/auth/password/forgot", json!({"email": email}))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    // The requests are handled after the answer: wait for their records.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let audit = t
            .server
            .state
            .store
            .audit_events(&user_id)
            .await
            .expect("audit");
        let requested = audit
            .iter()
            .filter(|a| *a == "password_reset_requested")
            .count();
        if requested == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{audit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sink.wait_until("reset mails", |m| {
        m.iter()
            .filter(|x| is(x, &email, "Reset your password"))
            .count()
            >= 3
    })
    .await;
    let limited = t
        .server
        .state
        .store
        .query_audit(
            &issuer::store::AuditFilter {
                action: Some("password_reset_requested".into()),
                outcome: Some(issuer::store::Outcome::Denied),
                user_id: Some(user_id.clone()),
                ..Default::default()
            },
            10,
        )
        .await
        .expect("audit");
    assert_eq!(
        limited.len(),
        2,
        "two of the five were over the hourly limit"
    );
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|x| is(x, &email, "Reset your password"))
            .count(),
        3
    );

    // A form post gets a page, not JSON, and the same rules.
    let r = t
        .http
        .post(t.url("/auth/password/reset"))
        .form(&[
            ("token", "et_nope"),
            ("new_password", "whatever passphrase"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/html"));
    sink.stop().await;
}

async fn without_smtp_reset_is_refused_plainly(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    // An address mail servers would read as another mailbox is not one.
    for bad in [
        "victim@corp.com<attacker@evil.com>",
        "\"victim@corp.com\"<attacker@evil.com>",
        "a@b.com,c@d.com",
    ] {
        let (status, code, _) = error_code(
            t.post(
                "/auth/register",
                json!({"email": bad, "password": PASSWORD}),
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email"),
            "{bad}"
        );
    }
    let (status, code, _) = error_code(
        t.post("/auth/password/forgot", json!({"email": "who@example.com"}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "mail_not_configured")
    );
    let (status, code, _) = error_code(
        t.post("/auth/password/forgot", json!({"email": "not an address"}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_email")
    );
    let (status, _, _) = error_code(
        t.post(
            "/auth/password/forgot",
            json!({"email": "a@b.co", "extra": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Review finding 5: someone registers the owner's address first and sets
/// up factors and a linked account; the owner's reset (the first proof of
/// the mailbox) removes them all. Once the address is proved, a reset
/// keeps what the owner set up.
async fn what_a_pre_registration_set_up_does_not_survive_the_owners_reset(backend: Backend) {
    let Some(sink) = Sink::start(None).await else {
        return;
    };
    let Some(t) = start_mailing(backend, &sink, Arc::new(SystemClock)).await else {
        return;
    };
    let store = &t.server.state.store;
    let email = unique_email("victim");
    let user = t.register(&email, "the attacker's passphrase").await;
    let user_id = user["id"].as_str().expect("id").to_string();
    let now = t.server.state.now().secs();
    store
        .replace_recovery_codes(&user_id, &["x".repeat(64)], now)
        .await
        .expect("codes");
    store
        .add_passkey(&issuer::store::StoredPasskey {
            cred_id: "attackers-key".into(),
            user_id: user_id.clone(),
            name: "theirs".into(),
            passkey: "{}".into(),
            created_at: now,
            last_used_at: None,
        })
        .await
        .expect("passkey");
    store
        .link_identity(&issuer::store::Identity {
            provider: "github".into(),
            subject: "666".into(),
            user_id: user_id.clone(),
            login: "attacker".into(),
            email: None,
            linked_at: now,
            last_used_at: now,
        })
        .await
        .expect("identity");
    let reset = |password: &'static str| {
        let (t, sink, email) = (&t, &sink, &email);
        async move {
            let before = sink.messages().len();
            t.post("/auth/password/forgot", json!({"email": email}))
                .await;
            let mail = loop {
                let all = sink.messages();
                if let Some(m) = all[before.min(all.len())..]
                    .iter()
                    .rev()
                    .find(|m| is(m, email, "Reset your password"))
                {
                    break m.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            };
            let r = t
                .post(
                    "/auth/password/reset",
                    json!({"token": token_of(&link_path(&mail)), "new_password": password}),
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    reset("the owner's own passphrase").await;
    let status = store.mfa_status(&user_id).await.expect("status");
    assert!(!status.any(), "{status:?}");
    assert!(store.identities_of(&user_id).await.expect("ids").is_empty());
    t.login(&email, "the owner's own passphrase").await;
    // Proved now: what the owner sets up from here survives a reset.
    store
        .replace_recovery_codes(&user_id, &["y".repeat(64)], now)
        .await
        .expect("codes");
    reset("another passphrase of the owner").await;
    assert_eq!(
        store
            .mfa_status(&user_id)
            .await
            .expect("status")
            .recovery_codes_left,
        1
    );
}

/// Review (low): with `--quiet-registration`, registering a taken address
/// answers exactly as a new one does; the owner gets a mail instead.
async fn quiet_registration_tells_nothing(backend: Backend) {
    let Some(sink) = Sink::start(None).await else {
        return;
    };
    let url = sink.url();
    let Some(t) = start_with(backend, Arc::new(SystemClock), move |a| {
        a.mail.smtp_url = Some(url.parse().expect("url"));
        a.mail.mail_poll_ms = 50;
        a.quiet_registration = true;
    })
    .await
    else {
        return;
    };
    let taken = unique_email("taken");
    let fresh = unique_email("fresh");
    let register = |email: &str| {
        t.post(
            "/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
    };
    let first = register(&taken).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    for email in [&taken, &fresh] {
        let r = register(email).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.json::<Value>().await.expect("json"), first);
    }
    sink.wait_for(&taken, "You already have an account").await;
    sink.wait_for(&fresh, "Confirm your email").await;
    // Both accounts work with their own password.
    t.login(&taken, PASSWORD).await;
    t.login(&fresh, PASSWORD).await;
}

on_both_backends!(
    quiet_registration_tells_nothing,
    what_a_pre_registration_set_up_does_not_survive_the_owners_reset,
    verification_link_verifies_the_address,
    password_reset_by_mail,
    without_smtp_reset_is_refused_plainly,
);

/// Two replicas share one outbox while the SMTP server is down, then up:
/// nothing is lost, and each mail arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_loses_nothing_and_replicas_send_each_mail_once() {
    let Some(db) = database(Backend::Postgres).await else {
        return;
    };
    // A port nobody listens on, for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut args = issuer::testing::test_args(&db.url, db.dir.path());
        args.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}").parse().expect("url"));
        args.mail.mail_poll_ms = 20;
        args.mail.mail_retry_base_ms = 20;
        args.mail.mail_max_attempts = 100;
        replicas.push(
            issuer::testing::start(args, Arc::new(SystemClock))
                .await
                .expect("replica"),
        );
    }
    let http = reqwest::Client::new();
    let mut addresses = Vec::new();
    for i in 0..10 {
        let email = unique_email("outage");
        let r = http
            .post(format!("{}/auth/register", replicas[i % 2].base_url))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), StatusCode::CREATED);
        addresses.push(email);
    }
    // Deliveries fail and are retried while nothing listens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let retried = replicas.iter().any(|r| {
            r.state
                .metrics
                .render()
                .lines()
                .any(|l| l.starts_with("issuer_mail_deliveries_total{outcome=\"retry\"}"))
        });
        if retried {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed delivery seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pending = replicas[0]
        .state
        .store
        .outbox_counts()
        .await
        .expect("counts");
    assert_eq!(pending.pending, 10, "{pending:?}");

    let Some(sink) = Sink::start(Some(port)).await else {
        return;
    };
    sink.wait_until("every mail", |m| m.len() >= 10).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while replicas[0]
        .state
        .store
        .outbox_counts()
        .await
        .expect("counts")
        .pending
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| m["to"].as_str().expect("to").to_string())
        .collect();
    got.sort();
    addresses.sort();
    assert_eq!(got, addresses, "each mail exactly once");
    let sent_by = |i: usize| {
        replicas[i]
            .state
            .metrics
            .render()
            .lines()
            .find(|l| l.starts_with("issuer_mail_deliveries_total{outcome=\"sent\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(sent_by(0) + sent_by(1), 10);
    for r in replicas {
        r.stop().await;
    }
    sink.stop().await;
}
