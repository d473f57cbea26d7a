//! Mailed links: verification of an address, and the notice of a changed
//! password. (Resets and verification answers are `http::json::email`'s.)

use crate::domain::clock::Now;
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::context::Client;
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::service::mail::templates;
use crate::store::{TokenPurpose, User};
use crate::AppState;

/// Verification mails per user per hour at most (resends included).
const VERIFY_MAILS_PER_HOUR: i64 = 5;

pub fn new_token() -> ApiResult<(String, String)> {
    let token = format!("et_{}", random_b64(32).map_err(ApiError::internal)?);
    let hash = refresh_token_hash(&token);
    Ok((token, hash))
}

/// "30 minutes", "1 hour", "24 hours", "90 seconds".
pub fn human_duration(secs: i64) -> String {
    let (n, unit) = if secs % 3600 == 0 {
        (secs / 3600, "hour")
    } else if secs % 60 == 0 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

pub fn link(state: &AppState, path: &str, token: &str) -> String {
    format!(
        "{}{path}?token={token}",
        state.settings.issuer_url.trim_end_matches('/')
    )
}

/// Mails a verification link to the user's address (when mail is set up).
pub async fn send_verification(state: &AppState, user: &User, now: Now) -> ApiResult<bool> {
    if state.mailer.is_none() || user.email_verified_at.is_some() {
        return Ok(false);
    }
    let ttl = state.settings.mail.email_verify_ttl_secs;
    let (token, hash) = new_token()?;
    let created = state
        .store
        .create_email_token(
            &hash,
            user,
            TokenPurpose::VerifyEmail,
            now.secs(),
            now.secs() + ttl,
            now.secs() - 3600,
            VERIFY_MAILS_PER_HOUR,
        )
        .await
        .map_err(ApiError::internal)?;
    if !created {
        let mut e = ApiError::new(
            Kind::TooMany,
            "too_many_mails",
            "verification mails are limited; try again later",
        );
        e.retry_after = Some(3600);
        return Err(e);
    }
    let mail = templates::verify_email(
        &user.email,
        &link(state, "/auth/email/verify", &token),
        &human_duration(ttl),
    );
    crate::service::mail::send(state, mail)
        .await
        .map_err(ApiError::internal)
}

/// Tells the account's address that its password changed. Best effort: the
/// change is done whether or not the notice could be queued.
pub async fn notify_password_changed(state: &AppState, email: &str, how: &str, client: &Client) {
    let mail = templates::password_changed(email, how, client.ip.as_deref());
    if let Err(e) = crate::service::mail::send(state, mail).await {
        tracing::error!(error = %e, "password change notice not queued");
    }
}
