//! Second factors: TOTP enrolment, recovery codes, completing a sign-in
//! with a second factor, step-up inside a session, and the admin reset.
//!
//! Every sign-in that meets a second factor ends in `grant::start_session`
//! (with `mfa` in its `amr`), and every step-up in `grant::step_up`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::json;

use crate::domain::clock::Now;
use crate::domain::mfa as core;
use crate::domain::tokens::refresh_token_hash;
use crate::service::admin::Admin;
use crate::service::context::{Authenticated, Client};
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
pub use crate::service::factors::{
    end_sessions_of_factor, factor_changed, first_factor_added, notify, require_recent,
    require_recent_for, wait_error,
};
use crate::service::grant::{self, SignIn, Tokens};
use crate::service::tickets::{methods, ENROL};
use crate::store::{AuditEvent, Outcome, User};
use crate::AppState;

const ISSUER_LABEL: &str = "DevMentor";

fn sealed_aad(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// `GET /auth/mfa`: the caller's factors.
/// The caller's second factors.
#[derive(Debug, Serialize)]
pub struct Factors {
    pub totp: bool,
    pub recovery_codes_left: i64,
    pub passkeys: i64,
    pub methods: Vec<&'static str>,
}

pub async fn status(state: &AppState, auth: &Authenticated) -> ApiResult<Factors> {
    let s = state.store.mfa_status(&auth.user.id).await?;
    Ok(Factors {
        totp: s.totp,
        recovery_codes_left: s.recovery_codes_left,
        passkeys: s.passkeys,
        methods: methods(s),
    })
}

/// `POST /auth/mfa/totp`: starts TOTP enrolment. The secret, its
/// `otpauth://` URI and a QR code are shown this once; nothing changes
/// until a code confirms it.
pub async fn enrol_totp(state: &AppState, auth: &Authenticated) -> ApiResult<Enrolment> {
    let now = state.now();
    require_recent(state, auth, now).await?;
    begin_enrolment(state, &auth.user, now).await
}

/// The user of an enrolment ticket (one attempt counted), and how they
/// proved the first factor.
async fn enrolment_user(state: &AppState, ticket: &str, now: Now) -> ApiResult<(User, String)> {
    let invalid = || {
        ApiError::unauthorized(
            "invalid_ticket",
            "the enrolment ticket is unknown, used, expired or out of attempts; sign in again",
        )
    };
    let t = state
        .store
        .attempt_mfa_ticket(&refresh_token_hash(ticket.trim()), now.secs())
        .await?
        .filter(|t| t.amr.starts_with(ENROL))
        .ok_or_else(invalid)?;
    let user = state
        .store
        .user_by_id(&t.user_id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(invalid)?;
    let first = t.amr.trim_start_matches(ENROL).to_string();
    Ok((user, first))
}

/// `POST /auth/mfa/enrol {mfa_ticket}`: TOTP enrolment for a user whose
/// role requires it, before they have any token.
pub async fn enrol_with_ticket(
    state: &AppState,
    mfa_ticket: &str,
    code: Option<&str>,
) -> ApiResult<Enrolment> {
    let now = state.now();
    if code.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "code belongs to /auth/mfa/enrol/confirm",
        ));
    }
    let (user, _) = enrolment_user(state, mfa_ticket, now).await?;
    begin_enrolment(state, &user, now).await
}

/// `POST /auth/mfa/enrol/confirm {mfa_ticket, code}`: activates TOTP and
/// completes the sign-in: the token response, with the recovery codes.
/// The sign-in the confirmation completes, and the recovery codes (shown
/// once).
pub async fn confirm_with_ticket(
    state: &AppState,
    client: &Client,
    mfa_ticket: &str,
    code: Option<&str>,
) -> ApiResult<(SignIn, Vec<String>)> {
    let now = state.now();
    let code = code.ok_or_else(|| ApiError::bad_request("invalid_request", "code is required"))?;
    let (user, first) = enrolment_user(state, mfa_ticket, now).await?;
    // The ticket first: a factor is never activated without its recovery
    // codes reaching the caller.
    let spent = state
        .store
        .use_mfa_ticket(&refresh_token_hash(mfa_ticket.trim()), now.secs())
        .await?;
    if !spent {
        return Err(ApiError::unauthorized(
            "invalid_ticket",
            "the ticket was used",
        ));
    }
    let codes = confirm_enrolment(state, client, &user, None, code, now).await?;
    first_factor_added(state, &user, None, "otp", None, now).await?;
    let amr = core::with_second_factor(&first, "otp");
    let signed_in = grant::start_session(state, client, &user, &amr, now).await?;
    Ok((signed_in, codes))
}

/// A new TOTP secret, shown this once, with its `otpauth://` URI and QR code.
#[derive(Debug, Serialize)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
    pub digits: u32,
    pub period: u64,
    pub algorithm: &'static str,
}

async fn begin_enrolment(state: &AppState, user: &User, now: Now) -> ApiResult<Enrolment> {
    let secret = core::new_secret()?;
    let sealed = STANDARD.encode(state.keys.seal(&sealed_aad(&user.id), &secret)?);
    let started = state
        .store
        .begin_totp(&user.id, &sealed, now.secs())
        .await?;
    if !started {
        return Err(ApiError::new(
            Kind::Conflict,
            "mfa_already_enabled",
            "TOTP is already set up; remove it first to set up another",
        ));
    }
    let e = core::enrolment(&secret, &user.email, ISSUER_LABEL)?;
    Ok(Enrolment {
        secret: e.secret_base32,
        otpauth_uri: e.otpauth_uri,
        qr_svg: e.qr_svg,
        digits: 6,
        period: core::STEP_SECS as u64,
        algorithm: "SHA1",
    })
}

fn invalid_code() -> ApiError {
    ApiError::unauthorized("invalid_code", "the code is wrong, used or expired")
}

/// The user's TOTP secret, whether it is confirmed, and its sealed form.
async fn totp_secret(
    state: &AppState,
    user_id: &str,
) -> ApiResult<Option<(Vec<u8>, bool, String)>> {
    let Some(f) = state.store.totp(user_id).await? else {
        return Ok(None);
    };
    let sealed = STANDARD
        .decode(&f.sealed_secret)
        .map_err(ApiError::internal)?;
    let secret = state.keys.open_sealed(&sealed_aad(user_id), &sealed)?;
    Ok(Some((secret, f.confirmed_at.is_some(), f.sealed_secret)))
}

/// `POST /auth/mfa/totp/confirm {code}`: activates TOTP and answers the
/// recovery codes, shown this once.
/// Activates TOTP; answers the recovery codes, shown this once.
pub async fn confirm_totp(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
    code: &str,
) -> ApiResult<Vec<String>> {
    let now = state.now();
    require_recent(state, auth, now).await?;
    let had_factor = state.store.mfa_status(&auth.user.id).await?.any();
    let codes =
        confirm_enrolment(state, client, &auth.user, Some(&auth.session.id), code, now).await?;
    if !had_factor {
        first_factor_added(state, &auth.user, Some(&auth.session), "otp", None, now).await?;
    }
    Ok(codes)
}

async fn confirm_enrolment(
    state: &AppState,
    client: &Client,
    user: &User,
    session: Option<&str>,
    code: &str,
    now: Now,
) -> ApiResult<Vec<String>> {
    let Some((secret, confirmed, sealed)) = totp_secret(state, &user.id).await? else {
        return Err(ApiError::new(
            Kind::Conflict,
            "no_enrolment",
            "start with POST /auth/mfa/totp",
        ));
    };
    if confirmed {
        return Err(ApiError::new(
            Kind::Conflict,
            "mfa_already_enabled",
            "TOTP is already active",
        ));
    }
    let step = core::matching_step(&secret, code, now.secs())?;
    let accepted = match step {
        Some(step) => {
            state
                .store
                .accept_totp_step(&user.id, step, Some((now.secs(), &sealed)))
                .await?
        }
        None => false,
    };
    if !accepted {
        return Err(ApiError::bad_request(
            "invalid_code",
            "the code does not match: check the device's clock and try the next code",
        ));
    }
    let codes = new_recovery_codes(state, &user.id, now).await?;
    let mut event = AuditEvent::new(now.ms, "mfa_enabled")
        .user(user)
        .client(client)
        .meta(json!({"factor": "totp"}));
    if let Some(s) = session {
        event = event.session(s);
    }
    state.audit(event).await;
    notify(
        state,
        user,
        "An authenticator app was added as a second factor.",
    )
    .await;
    Ok(codes)
}

async fn new_recovery_codes(state: &AppState, user_id: &str, now: Now) -> ApiResult<Vec<String>> {
    let codes = core::new_recovery_codes()?;
    let hashes: Vec<String> = codes.iter().map(|c| core::recovery_code_hash(c)).collect();
    state
        .store
        .replace_recovery_codes(user_id, &hashes, now.secs())
        .await?;
    Ok(codes)
}

/// `DELETE /auth/mfa/totp`: removes TOTP and the recovery codes; needs a
/// recent authentication.
/// Removes TOTP and the recovery codes; needs a recent authentication.
pub async fn remove_totp(state: &AppState, client: &Client, auth: &Authenticated) -> ApiResult<()> {
    let now = state.now();
    require_recent(state, auth, now).await?;
    let removed = state.store.remove_mfa(&auth.user.id, false).await?;
    if !removed {
        return Err(ApiError::not_found("no second factor is set up"));
    }
    // The sessions its codes completed end with it (not this one).
    end_sessions_of_factor(
        state,
        &auth.user.id,
        crate::store::Which::CodesBut(&auth.session.id),
        now,
    )
    .await?;
    factor_changed(
        state,
        auth,
        client,
        AuditEvent::new(now.ms, "mfa_disabled"),
        "The second factors of your account were removed.",
    )
    .await;
    Ok(())
}

/// `POST /auth/mfa/recovery-codes`: a new set; the old one stops working.
/// A new set of recovery codes; the old one stops working.
pub async fn regenerate_codes(
    state: &AppState,
    client: &Client,
    auth: &Authenticated,
) -> ApiResult<Vec<String>> {
    let now = state.now();
    require_recent(state, auth, now).await?;
    let status = state.store.mfa_status(&auth.user.id).await?;
    if !status.totp {
        return Err(ApiError::new(
            Kind::Conflict,
            "mfa_not_enabled",
            "set up TOTP first",
        ));
    }
    let codes = new_recovery_codes(state, &auth.user.id, now).await?;
    factor_changed(
        state,
        auth,
        client,
        AuditEvent::new(now.ms, "recovery_codes_regenerated"),
        "New recovery codes were made; the old ones no longer work.",
    )
    .await;
    Ok(codes)
}

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
    crate::service::sessions::ended(state, records, event).await;
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
