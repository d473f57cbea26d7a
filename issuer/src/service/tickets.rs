//! Sign-in tickets: a proved first factor that still needs a second (or an
//! enrolment) gets a short-lived ticket instead of tokens.

use serde_json::json;

use crate::domain::clock::Now;
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::context::Client;
use crate::service::error::Result as ApiResult;
use crate::service::signin::SignIn;
use crate::store::{AuditEvent, MfaStatus, Outcome, User};
use crate::AppState;

/// How long a sign-in may wait for its second factor.
pub const TICKET_SECS: i64 = 300;

/// Prefix of the `amr` kept with a ticket that may only enrol a factor.
pub const ENROL: &str = "enrol:";

pub fn methods(status: MfaStatus) -> Vec<&'static str> {
    let mut m = Vec::new();
    if status.totp {
        m.push("totp");
    }
    if status.passkeys > 0 {
        m.push("passkey");
    }
    if status.recovery_codes_left > 0 {
        m.push("recovery_code");
    }
    m
}

pub async fn new_ticket(state: &AppState, user: &User, amr: &str, now: Now) -> ApiResult<String> {
    let ticket = format!("mt_{}", random_b64(32)?);
    state
        .store
        .create_mfa_ticket(
            &refresh_token_hash(&ticket),
            &user.id,
            amr,
            now.secs(),
            now.secs() + TICKET_SECS,
        )
        .await?;
    Ok(ticket)
}

/// A user whose role requires a second factor and who has none: no
/// tokens, but a ticket that can only enrol TOTP (and then signs in).
pub async fn enrolment_required(
    state: &AppState,
    client: &Client,
    user: &User,
    amr: &str,
    now: Now,
) -> ApiResult<SignIn> {
    let ticket = new_ticket(state, user, &format!("{ENROL}{amr}"), now).await?;
    state.metrics.login("mfa_enrollment_required");
    state
        .audit(
            AuditEvent::new(now.ms, "mfa_enrollment_required")
                .user(user)
                .client(client)
                .outcome(Outcome::Denied, "mfa_enrollment_required"),
        )
        .await;
    Ok(SignIn::Enrol {
        ticket,
        expires_in: TICKET_SECS,
    })
}

/// Answers a correct first factor of a user with a second one: a ticket
/// for `/auth/mfa/verify` instead of tokens.
pub async fn challenge(
    state: &AppState,
    client: &Client,
    user: &User,
    amr: &str,
    status: MfaStatus,
    now: Now,
) -> ApiResult<SignIn> {
    let ticket = new_ticket(state, user, amr, now).await?;
    state.metrics.login("mfa_required");
    state
        .audit(
            AuditEvent::new(now.ms, "mfa_challenge")
                .user(user)
                .client(client)
                .meta(json!({"amr": amr})),
        )
        .await;
    Ok(SignIn::SecondFactor {
        ticket,
        methods: methods(status),
        expires_in: TICKET_SECS,
    })
}
