//! Second factors: TOTP codes computed independently (Python's pyotp), the
//! window's edges and replays on an injected clock, recovery codes, tickets,
//! step-up, and the admin reset; on SQLite and PostgreSQL.

use std::sync::Arc;

use issuer::domain::clock::{Clock, ManualClock, SystemClock};
use issuer::testing::required_service;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

/// The code pyotp computes for `secret` (base32) at Unix time `t`.
pub(crate) fn otp(secret: &str, t: i64) -> Option<String> {
    let python = required_service("DM_TEST_PYTHON", "Python with pyotp")?;
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import pyotp, sys; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))",
            secret,
            &t.to_string(),
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string(),
    )
}

/// A code that is certainly not `code`.
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

/// A clock 5 s into a 30 s step, so tests can walk step edges exactly.
fn step_clock() -> Arc<ManualClock> {
    let now = SystemClock.now_ms() / 1000;
    Arc::new(ManualClock::new((now - now % 30 + 5) * 1000))
}

fn secs(clock: &ManualClock) -> i64 {
    clock.now_ms() / 1000
}

struct Enrolled {
    email: String,
    user_id: String,
    secret: String,
    recovery: Vec<String>,
    tokens: Tokens,
}

/// Registers, signs in and sets up TOTP, confirmed with the current code.
async fn enrolled(t: &TestIssuer, clock: &ManualClock) -> Option<Enrolled> {
    let email = unique_email("-mfa");
    let user = t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let r = t.post_auth("/auth/mfa/totp", &tokens.access, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let e: Value = r.json().await.expect("json");
    let secret = e["secret"].as_str().expect("secret").to_string();
    let uri = e["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/DevMentor:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")));
    assert!(e["qr_svg"].as_str().expect("qr").contains("<svg"));
    // Not active until confirmed: sign-in still needs only the password.
    t.login(&email, PASSWORD).await;
    let code = otp(&secret, secs(clock))?;
    let (status, c, _) = error_code(
        t.post_auth(
            "/auth/mfa/totp/confirm",
            &tokens.access,
            Some(json!({"code": other_than(&code)})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, c.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_code")
    );
    let r = t
        .post_auth(
            "/auth/mfa/totp/confirm",
            &tokens.access,
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    let recovery: Vec<String> = body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    Some(Enrolled {
        email,
        user_id: user["id"].as_str().expect("id").to_string(),
        secret,
        recovery,
        tokens,
    })
}

/// Signs in with the password and returns the MFA ticket.
async fn ticket(t: &TestIssuer, email: &str) -> String {
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "mfa_required");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert!(body.get("access_token").is_none());
    body["mfa_ticket"].as_str().expect("ticket").to_string()
}

async fn verify(t: &TestIssuer, ticket: &str, code: &str) -> reqwest::Response {
    t.post(
        "/auth/mfa/verify",
        json!({"mfa_ticket": ticket, "code": code}),
    )
    .await
}

async fn totp_window_and_replay(backend: Backend) {
    let clock = step_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let Some(e) = enrolled(&t, &clock).await else {
        return;
    };
    let s0 = secs(&clock);
    let r = t.post_auth("/auth/mfa/totp", &e.tokens.access, None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT, "one TOTP at a time");

    // The confirming code's step is spent: replaying it fails.
    let tk = ticket(&t, &e.email).await;
    let code0 = otp(&e.secret, s0).expect("code");
    let (status, code, _) = error_code(verify(&t, &tk, &code0).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );

    // Next step: its code completes the sign-in.
    clock.advance_secs(30);
    let r = verify(&t, &tk, &otp(&e.secret, secs(&clock)).expect("code")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens = Tokens::from(r.json::<Value>().await.expect("json"));
    let claims = t.verify(&tokens.access).await;
    assert_eq!(claims.amr, vec!["pwd", "otp", "mfa"]);
    assert_eq!(claims.acr.as_deref(), Some("aal2"));
    assert_eq!(claims.auth_time, Some(secs(&clock)));
    // The ticket is spent.
    let (status, code, _) =
        error_code(verify(&t, &tk, &otp(&e.secret, secs(&clock)).expect("c")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_ticket")
    );
    // A refresh keeps amr, acr and auth_time.
    clock.advance_secs(5);
    let refreshed = Tokens::from(
        t.refresh(&tokens.refresh)
            .await
            .json::<Value>()
            .await
            .expect("json"),
    );
    let again = t.verify(&refreshed.access).await;
    assert_eq!(again.amr, claims.amr);
    assert_eq!(again.auth_time, claims.auth_time);
    assert!(again.iat > claims.iat);

    // The step after: the next step's code is refused; this step's code,
    // typed as the step turns, is accepted as the previous step's (the
    // window's edge).
    clock.advance_secs(25);
    let tk = ticket(&t, &e.email).await;
    let future = otp(&e.secret, secs(&clock) + 30).expect("code");
    let (status, code, _) = error_code(verify(&t, &tk, &future).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    let this_step = otp(&e.secret, secs(&clock)).expect("code");
    clock.advance_secs(30);
    assert_eq!(verify(&t, &tk, &this_step).await.status(), StatusCode::OK);
    // Two steps back is out of the window, even unused.
    clock.advance_secs(60);
    let tk = ticket(&t, &e.email).await;
    let stale = otp(&e.secret, secs(&clock) - 60).expect("code");
    let (status, code, _) = error_code(verify(&t, &tk, &stale).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    // Both fields, or neither, is a plain 400.
    let (status, _, _) = error_code(
        t.post(
            "/auth/mfa/verify",
            json!({"mfa_ticket": tk, "code": "123456", "recovery_code": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn tickets_run_out_and_failures_delay(backend: Backend) {
    let clock = step_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let Some(e) = enrolled(&t, &clock).await else {
        return;
    };
    clock.advance_secs(30);
    let good = otp(&e.secret, secs(&clock)).expect("code");
    let wrong = other_than(&good);
    let tk = ticket(&t, &e.email).await;
    for _ in 0..5 {
        let (status, code, _) = error_code(verify(&t, &tk, &wrong).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_code")
        );
    }
    // Five attempts per ticket: the right code no longer helps.
    let (status, code, _) = error_code(verify(&t, &tk, &good).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_ticket")
    );
    // Attempts are counted per user across tickets, before each is checked:
    // a sixth wrong code sets a delay, which a new ticket (a correct
    // password) does not lift; a delayed answer does not use up the ticket.
    let tk = ticket(&t, &e.email).await;
    let (status, code, _) = error_code(verify(&t, &tk, &wrong).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    for _ in 0..6 {
        let (status, code, _) = error_code(verify(&t, &tk, &good).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "mfa_delayed")
        );
    }
    clock.advance_secs(1);
    assert_eq!(verify(&t, &tk, &good).await.status(), StatusCode::OK);

    // A ticket lives five minutes.
    clock.advance_secs(30);
    let tk = ticket(&t, &e.email).await;
    clock.advance_secs(301);
    let (status, code, _) =
        error_code(verify(&t, &tk, &otp(&e.secret, secs(&clock)).expect("c")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_ticket")
    );
    let (status, code, _) = error_code(verify(&t, "mt_unknown", "123456").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_ticket")
    );
    // Wrong passwords still look as they did.
    let (status, code, _) = error_code(
        t.post(
            "/auth/login",
            json!({"email": e.email, "password": "not it at all"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
}

async fn recovery_codes_step_up_and_removal(backend: Backend) {
    let clock = step_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let Some(e) = enrolled(&t, &clock).await else {
        return;
    };
    // A recovery code signs in once (in any case, with or without its dash).
    let tk = ticket(&t, &e.email).await;
    let r = t
        .post(
            "/auth/mfa/verify",
            json!({"mfa_ticket": tk, "recovery_code": e.recovery[0].to_uppercase().replace('-', "")}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens = Tokens::from(r.json::<Value>().await.expect("json"));
    assert_eq!(t.verify(&tokens.access).await.amr, vec!["pwd", "rc", "mfa"]);
    let tk = ticket(&t, &e.email).await;
    let (status, code, _) = error_code(
        t.post(
            "/auth/mfa/verify",
            json!({"mfa_ticket": tk, "recovery_code": e.recovery[0]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    let status: Value = t
        .get_auth("/auth/mfa", &tokens.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(status["recovery_codes_left"], 9);
    let audit = t
        .server
        .state
        .store
        .audit_events(&e.user_id)
        .await
        .expect("audit");
    assert!(audit.iter().any(|a| a == "recovery_code_used"), "{audit:?}");

    // Six minutes on, changing factors needs a fresh authentication: an
    // RFC 9470 challenge names what is missing.
    clock.advance_secs(360);
    let r = t
        .post_auth("/auth/mfa/recovery-codes", &tokens.access, None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(challenge.contains("max_age=300"), "{challenge}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "recent_authentication_required");

    // Step-up with the app: a new access token for the same session, with
    // a fresh auth_time; the refresh token is untouched.
    let code = otp(&e.secret, secs(&clock)).expect("code");
    let r = t
        .post_auth(
            "/auth/mfa/step-up",
            &tokens.access,
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let stepped: Value = r.json().await.expect("json");
    assert!(stepped.get("refresh_token").is_none());
    let access = stepped["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    let claims = t.verify(&access).await;
    assert_eq!(claims.sid, tokens.session_id);
    assert_eq!(claims.auth_time, Some(secs(&clock)));
    assert_eq!(claims.acr.as_deref(), Some("aal2"));
    // The same code cannot step up twice.
    let (status, code_err, _) = error_code(
        t.post_auth("/auth/mfa/step-up", &access, Some(json!({"code": code})))
            .await,
    )
    .await;
    assert_eq!(
        (status, code_err.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    // A refresh of the session now carries the new auth_time.
    let refreshed = Tokens::from(
        t.refresh(&tokens.refresh)
            .await
            .json::<Value>()
            .await
            .expect("json"),
    );
    assert_eq!(
        t.verify(&refreshed.access).await.auth_time,
        Some(secs(&clock))
    );

    let r = t.post_auth("/auth/mfa/recovery-codes", &access, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh: Value = r.json().await.expect("json");
    assert_eq!(fresh["recovery_codes"].as_array().expect("codes").len(), 10);
    let tk = ticket(&t, &e.email).await;
    let (status, _, _) = error_code(
        t.post(
            "/auth/mfa/verify",
            json!({"mfa_ticket": tk, "recovery_code": e.recovery[1]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old set no longer works"
    );

    // A password step-up renews auth_time but proves one factor.
    let r = t
        .post_auth(
            "/auth/mfa/step-up",
            &access,
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pwd: Value = r.json().await.expect("json");
    let claims = t.verify(pwd["access_token"].as_str().expect("a")).await;
    assert_eq!(claims.amr, vec!["pwd"]);
    assert_eq!(claims.acr.as_deref(), Some("aal1"));

    // That session now rests on the password alone (recently): not enough
    // to remove a second factor. A second factor now is.
    let delete = || async {
        t.http
            .delete(t.url("/auth/mfa/totp"))
            .bearer_auth(&access)
            .send()
            .await
            .expect("delete")
    };
    let r = delete().await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("acr_values=\"aal2\""));
    clock.advance_secs(30);
    let r = t
        .post_auth(
            "/auth/mfa/step-up",
            &access,
            Some(json!({"code": otp(&e.secret, secs(&clock)).expect("code")})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(delete().await.status(), StatusCode::NO_CONTENT);
    let plain = t.login(&e.email, PASSWORD).await;
    assert_eq!(t.verify(&plain.access).await.acr.as_deref(), Some("aal1"));
}

async fn admin_reset_ends_sessions(backend: Backend) {
    let clock = step_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let Some(e) = enrolled(&t, &clock).await else {
        return;
    };
    let r = t
        .http
        .delete(t.url(&format!("/admin/users/{}/mfa", e.user_id)))
        .bearer_auth(&e.tokens.access)
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "admins only");
    let r = t
        .http
        .delete(t.url(&format!("/admin/users/{}/mfa", e.user_id)))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["removed"], true);
    // (Confirming the factor already ended the other, one-factor session.)
    assert_eq!(body["sessions_ended"], 1, "{body}");
    assert_eq!(
        t.get_auth("/auth/me", &e.tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    t.login(&e.email, PASSWORD).await;
    let events = t
        .server
        .state
        .store
        .query_audit(
            &issuer::store::AuditFilter {
                action: Some("mfa_reset".into()),
                target_id: Some(e.user_id.clone()),
                ..Default::default()
            },
            5,
        )
        .await
        .expect("audit");
    assert_eq!(events.len(), 1);
    let r = t
        .http
        .delete(t.url("/admin/users/no-such-user/mfa"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn roles_can_require_enrolment_before_any_token(backend: Backend) {
    let clock = step_clock();
    let Some(t) = start_with(backend, clock.clone(), |a| {
        a.mfa_required_roles = vec!["admin".into()];
    })
    .await
    else {
        return;
    };
    let email = unique_email("boss");
    let user = t.register(&email, PASSWORD).await;
    let user_id = user["id"].as_str().expect("id");
    t.server
        .state
        .store
        .set_roles(user_id, &["admin".to_string()])
        .await
        .expect("roles");
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "mfa_enrollment_required");
    assert!(body.get("access_token").is_none());
    let enrol_ticket = body["mfa_ticket"].as_str().expect("ticket").to_string();
    // The ticket enrols; it does not complete a sign-in by itself.
    let (status, code, _) = error_code(verify(&t, &enrol_ticket, "123456").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_ticket")
    );
    let r = t
        .post("/auth/mfa/enrol", json!({"mfa_ticket": enrol_ticket}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let secret = r.json::<Value>().await.expect("json")["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let Some(code) = otp(&secret, secs(&clock)) else {
        return;
    };
    let r = t
        .post(
            "/auth/mfa/enrol/confirm",
            json!({"mfa_ticket": enrol_ticket, "code": code}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["recovery_codes"].as_array().expect("codes").len(), 10);
    let tokens = Tokens::from(body);
    let claims = t.verify(&tokens.access).await;
    assert_eq!(claims.amr, vec!["pwd", "otp", "mfa"]);
    assert_eq!(claims.roles, vec!["admin"]);
    // Spent; and from now on the admin signs in with the second factor.
    let (status, _, _) = error_code(
        t.post(
            "/auth/mfa/enrol/confirm",
            json!({"mfa_ticket": enrol_ticket, "code": code}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    ticket(&t, &email).await;
}

/// A hundred wrong second factors in a row lock the check until an admin
/// clears it; the password's own count is apart.
async fn second_factor_attempts_lock_after_a_hundred(backend: Backend) {
    let clock = step_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let store = &t.server.state.store;
    let key = "mfa:someone";
    for n in 1..=100 {
        let r = store
            .reserve_attempt(key, clock.now_ms())
            .await
            .expect("db");
        assert_eq!(r, Ok(n), "attempt {n}");
        clock.advance_secs(61);
    }
    let r = store
        .reserve_attempt(key, clock.now_ms())
        .await
        .expect("db");
    assert_eq!(r, Ok(101), "the hundred-and-first is still counted…");
    clock.advance_secs(3600);
    let r = store
        .reserve_attempt(key, clock.now_ms())
        .await
        .expect("db");
    assert!(
        matches!(r, Err(until) if until > clock.now_ms() + 86_400_000),
        "…then locked: {r:?}"
    );
    assert!(store.clear_login_failures(key).await.expect("db"));
    assert_eq!(
        store
            .reserve_attempt(key, clock.now_ms())
            .await
            .expect("db"),
        Ok(1)
    );
    // Concurrent attempts are each counted: none slips past the delay.
    let other = "mfa:racer";
    for _ in 0..5 {
        store
            .reserve_attempt(other, clock.now_ms())
            .await
            .expect("db")
            .expect("free");
    }
    let now = clock.now_ms();
    let results =
        futures_util::future::join_all((0..8).map(|_| store.reserve_attempt(other, now))).await;
    let allowed = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(allowed, 1, "{results:?}");
}

on_both_backends!(
    second_factor_attempts_lock_after_a_hundred,
    roles_can_require_enrolment_before_any_token,
    totp_window_and_replay,
    tickets_run_out_and_failures_delay,
    recovery_codes_step_up_and_removal,
    admin_reset_ends_sessions,
);
