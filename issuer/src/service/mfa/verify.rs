//! Checking a second factor: the delay that counts attempts before a
//! check, completing a sign-in that met one, step-up inside a session,
//! and the admin reset.

use super::*;
/// A second factor as presented: a TOTP code or a recovery code.
enum Factor<'a> {
    Totp(&'a str),
    Recovery(&'a str),
}

fn one_factor<'a>(code: &'a Option<String>, recovery: &'a Option<String>) -> ApiResult<Factor<'a>> {
    match (code.as_deref(), recovery.as_deref()) {
        (Some(c), None) => Ok(Factor::Totp(c)),
        (None, Some(r)) => Ok(Factor::Recovery(r)),
        _ => Err(ApiError::bad_request(
            "invalid_request",
            "give exactly one of code, recovery_code",
        )),
    }
}

/// Checks a second factor of `user`, spending what it uses. Returns the
/// `amr` word it proves (`otp`, or `rc` for a recovery code).
async fn check_factor(
    state: &AppState,
    client: &Client,
    user: &User,
    factor: Factor<'_>,
    now: Now,
) -> ApiResult<Option<&'static str>> {
    match factor {
        Factor::Totp(code) => {
            let Some((secret, true, _)) = totp_secret(state, &user.id).await? else {
                return Ok(None);
            };
            let Some(step) = core::matching_step(&secret, code, now.secs())? else {
                return Ok(None);
            };
            let fresh = state.store.accept_totp_step(&user.id, step, None).await?;
            Ok(fresh.then_some("otp"))
        }
        Factor::Recovery(code) => {
            let used = state
                .store
                .use_recovery_code(&user.id, &core::recovery_code_hash(code), now.secs())
                .await?;
            if used {
                let left = state.store.mfa_status(&user.id).await?.recovery_codes_left;
                state
                    .audit(
                        AuditEvent::new(now.ms, "recovery_code_used")
                            .user(user)
                            .client(client)
                            .meta(json!({"left": left})),
                    )
                    .await;
                notify(
                    state,
                    user,
                    &format!("A recovery code was used to sign in; {left} remain."),
                )
                .await;
            }
            Ok(used.then_some("rc"))
        }
    }
}

/// The key under which a user's second-factor attempts are counted. Apart
/// from the password's count, so a known password (a sign-in, a password
/// step-up, a reset) never clears it.
fn factor_key(user: &User) -> String {
    format!("mfa:{}", user.id)
}

/// Counts an attempt at the user's second factor before it is checked:
/// concurrent guesses cannot all pass one check of the delay.
async fn reserve(state: &AppState, client: &Client, user: &User, now: Now) -> ApiResult<()> {
    let reserved = state
        .store
        .reserve_attempt(&factor_key(user), now.ms)
        .await?;
    match reserved {
        Ok(n) => {
            // The first delayed attempt: tell the user once.
            if n == crate::store::FREE_FAILURES + 1 {
                notify(
                    state,
                    user,
                    &format!(
                        "Several wrong second-factor codes were entered for your account from {}. If it was not you, change your password.",
                        client.ip.as_deref().unwrap_or("an unknown address")
                    ),
                )
                .await;
            }
            Ok(())
        }
        Err(until) => Err(wait_error("mfa_delayed", until, now)),
    }
}

async fn succeeded(state: &AppState, user: &User) -> ApiResult<()> {
    state.store.clear_login_failures(&factor_key(user)).await?;
    Ok(())
}

async fn failed(
    state: &AppState,
    client: &Client,
    user: &User,
    action: &str,
    now: Now,
) -> ApiError {
    state.metrics.login("mfa_failure");
    state
        .audit(
            AuditEvent::new(now.ms, action)
                .user(user)
                .client(client)
                .outcome(Outcome::Failure, "invalid_code"),
        )
        .await;
    invalid_code()
}

/// `POST /auth/mfa/verify {mfa_ticket, code | recovery_code}`: completes a
/// sign-in. Each ticket allows five attempts and one success; the user's
/// attempts are also counted across tickets.
/// Completes a sign-in with a second factor. Each ticket allows five
/// attempts and one success; the user's attempts are also counted across
/// tickets.
pub async fn verify(
    state: &AppState,
    client: &Client,
    mfa_ticket: &str,
    code: &Option<String>,
    recovery_code: &Option<String>,
) -> ApiResult<SignIn> {
    let now = state.now();
    let factor = one_factor(code, recovery_code)?;
    let ticket_hash = refresh_token_hash(mfa_ticket.trim());
    let invalid_ticket = || {
        ApiError::unauthorized(
            "invalid_ticket",
            "the sign-in ticket is unknown, used, expired or out of attempts; sign in again",
        )
    };
    // Whose ticket, without counting an attempt on it yet: a delayed
    // account's 429 does not use up the ticket.
    let peeked = state
        .store
        .peek_mfa_ticket(&ticket_hash, now.secs())
        .await?
        .filter(|t| !t.amr.starts_with(ENROL))
        .ok_or_else(invalid_ticket)?;
    let user = state
        .store
        .user_by_id(&peeked.user_id)
        .await?
        // A ticket from before a password change is void.
        .filter(|u| peeked.created_at >= u.password_changed_at)
        .ok_or_else(invalid_ticket)?;
    reserve(state, client, &user, now).await?;
    let ticket = state
        .store
        .attempt_mfa_ticket(&ticket_hash, now.secs())
        .await?
        .ok_or_else(invalid_ticket)?;
    let Some(word) = check_factor(state, client, &user, factor, now).await? else {
        return Err(failed(state, client, &user, "mfa_failure", now).await);
    };
    if !state.store.use_mfa_ticket(&ticket_hash, now.secs()).await? {
        return Err(invalid_ticket());
    }
    succeeded(state, &user).await?;
    state.store.clear_login_failures(&user.email).await?;
    let amr = core::with_second_factor(&ticket.amr, word);
    grant::start_session(state, client, &user, &amr, now).await
}

/// What a step-up proves: exactly one of these.
pub struct StepUp {
    pub code: Option<String>,
    pub recovery_code: Option<String>,
    pub password: Option<String>,
    /// A passkey assertion: its ceremony and the credential.
    pub passkey: Option<(String, webauthn_rs::prelude::PublicKeyCredential)>,
}

/// `POST /auth/mfa/step-up {code | recovery_code | password | passkey}`:
/// proves a factor again inside the session: a fresh `auth_time` (and
/// `mfa` for a second factor) in a new access token; the session goes on.
/// Proves a factor again inside the session: a fresh `auth_time` (and
/// `mfa` for a second factor) in a new access token; the session goes on.
pub async fn step_up(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    req: StepUp,
) -> ApiResult<Tokens> {
    let now = state.now();
    let user = &auth.user;
    let given = [
        req.code.is_some(),
        req.recovery_code.is_some(),
        req.password.is_some(),
        req.passkey.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give exactly one of code, recovery_code, password, passkey",
        ));
    }
    // The sign-in method (`pwd`, `fed`, …) stays first in the session's amr.
    let first = auth
        .session
        .amr
        .split_whitespace()
        .next()
        .filter(|w| matches!(*w, "pwd" | "fed"))
        .unwrap_or("pwd");
    let mut by_passkey = None;
    let amr = if let Some((ceremony_id, credential)) = &req.passkey {
        // A passkey cannot be guessed: no delay applies.
        let (_, word, cred_id) = crate::service::passkeys::verify_assertion(
            state,
            client,
            ceremony_id,
            credential,
            Some(&user.id),
            now,
        )
        .await?;
        by_passkey = Some(cred_id);
        core::with_second_factor(&auth.session.amr, word)
    } else if let Some(password) = &req.password {
        let verified = crate::service::password_check::check(
            state,
            &user.email,
            Some(user.password_hash.clone()).filter(|_| user.has_password()),
            password.clone(),
            now,
        )
        .await?;
        if !verified.ok {
            return Err(failed(state, client, user, "step_up_failure", now).await);
        }
        state.store.clear_login_failures(&user.email).await?;
        // A password proves the first factor again; a second factor the
        // session had is kept only if proved now, so `mfa` goes. A GitHub
        // session stays marked as one.
        if first == "fed" {
            "fed pwd".to_string()
        } else {
            "pwd".to_string()
        }
    } else {
        reserve(state, client, user, now).await?;
        let factor = one_factor(&req.code, &req.recovery_code)?;
        let Some(word) = check_factor(state, client, user, factor, now).await? else {
            return Err(failed(state, client, user, "step_up_failure", now).await);
        };
        succeeded(state, user).await?;
        core::with_second_factor(&auth.session.amr, word)
    };
    grant::step_up(
        state,
        client,
        user,
        &auth.session,
        &amr,
        by_passkey.as_deref(),
        now,
    )
    .await
}

/// `DELETE /admin/users/{id}/mfa`: removes the user's factors and ends
/// their sessions (someone who lost their device signs in with the password
/// and enrols again).
/// What an admin reset did.
#[derive(Debug, Serialize)]
pub struct Reset {
    pub removed: bool,
    pub sessions_ended: usize,
}

/// Removes the user's factors and ends their sessions (someone who lost
/// their device signs in with the password and enrols again).
pub async fn admin_reset(
    state: &AppState,
    client: &Client,
    admin: &Admin,
    id: &str,
) -> ApiResult<Reset> {
    let auth = admin.recent(state).await?;
    let now = state.now();
    let user = state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let removed = state.store.remove_mfa(id, true).await?;
    succeeded(state, &user).await?;
    let records = state
        .store
        .revoke_all_sessions(id, "mfa_reset", now.ms, state.revocation_expiry(now))
        .await?;
    let ended = records.len();
    let event = AuditEvent::new(now.ms, "mfa_reset")
        .by(auth)
        .on_user(&user)
        .client(client)
        .meta(json!({"had_factors": removed, "sessions_ended": ended}));
    state.sessions_ended(records, event).await;
    notify(
        state,
        &user,
        "An administrator removed the second factors of your account and signed it out everywhere.",
    )
    .await;
    Ok(Reset {
        removed,
        sessions_ended: ended,
    })
}
