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

mod verify;
pub use verify::*;

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
