//! The attacker's review (issue 25), finding by finding: each test failed on
//! the code before its fix. On SQLite and PostgreSQL.

use std::sync::Arc;

use issuer::store::{Changed, DeleteUser, UserChange};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    refresh_and_step_up_meet_the_second_factor_gate,
    granting_a_role_that_needs_two_factors_ends_one_factor_sessions,
    concurrent_wrong_passwords_meet_the_delay_once,
    every_password_check_is_throttled,
    admin_actions_need_a_recent_authentication,
    the_last_admin_stays,
    a_sign_in_replaces_the_browser_s_session_and_pages_keep_retry_after,
);

fn id_of(user: &Value) -> String {
    user["id"].as_str().expect("id").to_string()
}

/// Finding 2: a one-factor session of a user who now holds a role that
/// needs two gets nothing more: not by refresh, not by a replay in the
/// grace window, not by a password step-up; and the session is over.
async fn refresh_and_step_up_meet_the_second_factor_gate(backend: Backend) {
    let Some(t) = start_with(backend, Arc::new(issuer::domain::clock::SystemClock), |a| {
        a.mfa_required_roles = vec!["admin".into()];
    })
    .await
    else {
        return;
    };
    let email = unique_email("gate");
    let user = t.register(&email, PASSWORD).await;
    let first = t.login(&email, PASSWORD).await;
    // Rotated once: `first.refresh` is now a grace-window replay.
    let r = t.refresh(&first.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let second = Tokens::from(r.json::<Value>().await.expect("json"));
    // The role arrives without touching sessions (as an older issuer, or
    // a database edit, would leave them).
    t.server
        .state
        .store
        .set_roles(&id_of(&user), &["admin".to_string()])
        .await
        .expect("roles");
    let r = t
        .post_auth(
            "/auth/mfa/step-up",
            &second.access,
            Some(json!({"password": PASSWORD})),
        )
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "mfa_required")
    );
    let (status, code, _) = error_code(t.refresh(&first.refresh).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_grant")
    );
    let (status, code, _) = error_code(t.refresh(&second.refresh).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_grant")
    );
    // Ended, so its access token is refused too (and at the edge, by feed).
    assert_eq!(
        t.get_auth("/auth/me", &second.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let feed = feed_records(&t).await;
    assert!(
        feed.iter().any(|r| r.subject == second.session_id),
        "{feed:?}"
    );
}

/// Finding 2, second half: granting the role (API or CLI, both through
/// `change_user`) ends the user's one-factor sessions at once.
async fn granting_a_role_that_needs_two_factors_ends_one_factor_sessions(backend: Backend) {
    let Some(t) = start_with(backend, Arc::new(issuer::domain::clock::SystemClock), |a| {
        a.mfa_required_roles = vec!["ops".into()];
    })
    .await
    else {
        return;
    };
    let admin = make_admin(&t).await;
    let email = unique_email("ops");
    let user = t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let r = t
        .http
        .patch(t.url(&format!("/admin/users/{}", id_of(&user))))
        .bearer_auth(&admin)
        .json(&json!({"roles": ["ops"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let now = t.server.state.now().secs();
    let sessions = t
        .server
        .state
        .store
        .live_sessions(&id_of(&user), now)
        .await
        .expect("sessions");
    assert!(sessions.is_empty(), "{sessions:?}");
    assert_eq!(
        t.get_auth("/auth/me", &tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _, _) = error_code(t.refresh(&tokens.refresh).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // And the next sign-in asks for enrolment.
    let r = t
        .post("/auth/login", json!({"email": email, "password": PASSWORD}))
        .await;
    let (_, code, _) = error_code(r).await;
    assert_eq!(code, "mfa_enrollment_required");
}

/// Finding 3: the delay is reserved before the hash, so eight guesses sent
/// together when the delay opens are one guess, not eight.
async fn concurrent_wrong_passwords_meet_the_delay_once(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let email = unique_email("race");
    t.register(&email, PASSWORD).await;
    let guess = |n: usize| {
        t.post(
            "/auth/login",
            json!({"email": email, "password": format!("wrong guess {n}")}),
        )
    };
    let mut codes = Vec::new();
    for n in 0..6 {
        codes.push(error_code(guess(n).await).await.1);
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "invalid_credentials").count(),
        6
    );
    assert_eq!(error_code(guess(6).await).await.1, "login_delayed");
    clock.advance_secs(61);
    let racing = futures_util::future::join_all((0..8).map(guess)).await;
    let mut codes = Vec::new();
    for r in racing {
        codes.push(error_code(r).await.1);
    }
    codes.sort();
    assert_eq!(
        codes.iter().filter(|c| *c == "invalid_credentials").count(),
        1,
        "{codes:?}"
    );
    assert_eq!(codes.iter().filter(|c| *c == "login_delayed").count(), 7);
    // The same for the step-up password, on its own account's count.
    clock.advance_secs(3600);
    let email = unique_email("race-step-up");
    t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let step_up = |n: usize| {
        t.post_auth(
            "/auth/mfa/step-up",
            &tokens.access,
            Some(json!({"password": format!("wrong guess {n}")})),
        )
    };
    for n in 0..6 {
        assert_eq!(step_up(n).await.status(), StatusCode::UNAUTHORIZED);
    }
    clock.advance_secs(61);
    let racing = futures_util::future::join_all((0..8).map(step_up)).await;
    let statuses: Vec<StatusCode> = racing.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        1,
        "{statuses:?}"
    );
}

/// Finding 4: a password check anywhere (here: changing the password)
/// counts against the account's delay, the one sign-in uses.
async fn every_password_check_is_throttled(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let email = unique_email("change");
    t.register(&email, PASSWORD).await;
    let tokens = t.login(&email, PASSWORD).await;
    let mut statuses = Vec::new();
    for n in 0..8 {
        let r = t
            .post_auth(
                "/auth/password",
                &tokens.access,
                Some(json!({"current_password": format!("wrong {n}"), "new_password": "another long passphrase"})),
            )
            .await;
        statuses.push(r.status());
    }
    assert_eq!(statuses[..6], [StatusCode::FORBIDDEN; 6], "{statuses:?}");
    assert_eq!(statuses[6..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // One count: the sign-in waits too, even with the right password.
    let (status, code, _) = error_code(
        t.post("/auth/login", json!({"email": email, "password": PASSWORD}))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "login_delayed")
    );
}

/// Finding 8: changing users, roles, factors or keys needs an
/// authentication at most `--mfa-recent-auth-secs` old (RFC 9470
/// challenge); reading does not.
async fn admin_actions_need_a_recent_authentication(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let admin = make_admin(&t).await;
    let user = t.register(&unique_email("target"), PASSWORD).await;
    let path = format!("/admin/users/{}", id_of(&user));
    let change = |token: String| {
        t.http
            .patch(t.url(&path))
            .bearer_auth(token)
            .json(&json!({"roles": ["reader"]}))
            .send()
    };
    assert_eq!(
        change(admin.clone()).await.expect("send").status(),
        StatusCode::OK
    );
    clock.advance_secs(301);
    let r = change(admin.clone()).await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.contains("insufficient_user_authentication") && challenge.contains("max_age=300"),
        "{challenge}"
    );
    for action in [
        t.http
            .post(t.url("/admin/keys/rotate"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("send"),
        t.http
            .delete(t.url(&format!("{path}/mfa")))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("send"),
        t.http
            .put(t.url("/admin/roles/reader"))
            .bearer_auth(&admin)
            .json(&json!({"permissions": ["docs.read"]}))
            .send()
            .await
            .expect("send"),
    ] {
        assert_eq!(action.status(), StatusCode::UNAUTHORIZED);
    }
    let r = t.get_auth(&path, &admin).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    // Authenticating again (a password step-up) lets the admin act.
    let r = t
        .post_auth(
            "/auth/mfa/step-up",
            &admin,
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh = r.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(change(fresh).await.expect("send").status(), StatusCode::OK);
}

/// Low: the last enabled admin cannot be demoted or disabled (checked
/// inside the transaction: two admins demoting each other at once leave
/// one), and a role made only of dots is refused.
async fn the_last_admin_stays(backend: Backend) {
    let Some(t) = start(backend).await else {
        return;
    };
    let store = &t.server.state.store;
    let mut admins = Vec::new();
    for _ in 0..2 {
        let email = unique_email("admin");
        let user = t.register(&email, PASSWORD).await;
        store
            .set_roles(&id_of(&user), &["admin".to_string()])
            .await
            .expect("roles");
        admins.push((id_of(&user), t.login(&email, PASSWORD).await.access));
    }
    // A role that only looks like `admin` (SQLite's LIKE ignores case)
    // does not count as one.
    let lookalike = t.register(&unique_email("lookalike"), PASSWORD).await;
    store
        .set_roles(&id_of(&lookalike), &["Admin".to_string()])
        .await
        .expect("roles");
    let demote = |by: &str, whom: &str| {
        t.http
            .patch(t.url(&format!("/admin/users/{whom}")))
            .bearer_auth(by)
            .json(&json!({"roles": []}))
            .send()
    };
    let (a, b) = futures_util::future::join(
        demote(&admins[0].1, &admins[1].0),
        demote(&admins[1].1, &admins[0].0),
    )
    .await;
    let statuses = [a.expect("send").status(), b.expect("send").status()];
    assert!(statuses.contains(&StatusCode::OK) || statuses.contains(&StatusCode::CONFLICT));
    let mut left = 0;
    for (id, _) in &admins {
        let user = store.user_by_id(id).await.expect("user").expect("exists");
        left += usize::from(user.roles.iter().any(|r| r == "admin"));
    }
    assert_eq!(left, 1, "{statuses:?}");
    // The one left, through the store (as the CLI does): refused.
    let last = if statuses[0] == StatusCode::OK {
        &admins[0].0
    } else {
        &admins[1].0
    };
    for change in [
        UserChange {
            roles: Some(Vec::new()),
            ..Default::default()
        },
        UserChange {
            disabled: Some(true),
            ..Default::default()
        },
    ] {
        let outcome = store
            .change_user(last, &change, 0, 0)
            .await
            .expect("change")
            .expect("user");
        assert!(matches!(outcome, Changed::LastAdmin), "{outcome:?}");
    }
    let deleted = store.delete_user(last, 0, 0).await.expect("delete");
    assert!(matches!(deleted, DeleteUser::LastAdmin), "{deleted:?}");
    let other = make_admin(&t).await;
    let r = t
        .http
        .patch(t.url(&format!("/admin/users/{last}")))
        .bearer_auth(&other)
        .json(&json!({"roles": ["..", "admin"]}))
        .send()
        .await
        .expect("send");
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_roles")
    );
}

/// Low: a sign-in from a browser that still holds another session's
/// refresh cookie ends that session (the pages' sign-in goes through the
/// same grant); a delayed sign-in on the page keeps its `Retry-After`.
async fn a_sign_in_replaces_the_browser_s_session_and_pages_keep_retry_after(backend: Backend) {
    let clock = manual_clock();
    let Some(t) = start_with(backend, clock.clone(), |_| {}).await else {
        return;
    };
    let email = unique_email("replace");
    t.register(&email, PASSWORD).await;
    let first = t.login(&email, PASSWORD).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects
        .post(t.url("/auth/ui/login"))
        .header("cookie", format!("__Host-refresh_token={}", first.refresh))
        .header("sec-fetch-site", "same-origin")
        .form(&[("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/auth/ui/account");
    assert_eq!(
        t.get_auth("/auth/me", &first.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.refresh(&first.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );

    for n in 0..6 {
        t.post(
            "/auth/login",
            json!({"email": email, "password": format!("wrong {n}")}),
        )
        .await;
    }
    let r = t
        .http
        .post(t.url("/auth/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html")
        .form(&[("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers().get("retry-after").is_some(),
        "{:?}",
        r.headers()
    );
}
