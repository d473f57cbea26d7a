//! Mailed links: verification of an address (sending the link, and the
//! link coming back), and the notice of a changed password. Resets are
//! `recovery.rs`'s.

use crate::domain::clock::Now;
use crate::domain::tokens::{random_b64, refresh_token_hash};
use crate::service::context::Authenticated;
use crate::service::context::Client;
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::service::mail::templates;
use crate::store::{AuditEvent, SpentToken, TokenPurpose, User};
use crate::AppState;

/// Verification mails per user per hour at most (resends included).
const VERIFY_MAILS_PER_HOUR: i64 = 5;

pub fn new_token() -> ApiResult<(String, String)> {
    let token = format!("et_{}", random_b64(32)?);
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
        .await?;
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

pub fn mail_not_configured() -> ApiError {
    ApiError::new(
        Kind::Conflict,
        "mail_not_configured",
        "this server does not send mail",
    )
}

pub fn invalid_link() -> ApiError {
    ApiError::bad_request(
        "invalid_token",
        "this link is invalid, used or expired; ask for a new one",
    )
}

/// Sends the caller a new verification link.
pub async fn resend(state: &AppState, auth: &Authenticated) -> ApiResult<()> {
    if auth.user.email_verified_at.is_some() {
        return Err(ApiError::new(
            Kind::Conflict,
            "already_verified",
            "this email address is already verified",
        ));
    }
    if state.mailer.is_none() {
        return Err(mail_not_configured());
    }
    send_verification(state, &auth.user, state.now()).await?;
    Ok(())
}

/// A verification link came back: the address is proved (the token is
/// spent), when the one confirming also holds the account's password
/// where it has one.
pub async fn verify(
    state: &AppState,
    client: &Client,
    token: &str,
    password: Option<String>,
) -> ApiResult<SpentToken> {
    let now = state.now();
    let hash = refresh_token_hash(token.trim());
    password_holder(state, &hash, password, now).await?;
    let spent = state
        .store
        .spend_email_token(&hash, TokenPurpose::VerifyEmail, now.secs())
        .await?
        .ok_or_else(invalid_link)?;
    state
        .audit(
            AuditEvent::new(now.ms, "email_verified")
                .actor(&spent.user_id)
                .target(&spent.user_id)
                .email(&spent.email)
                .client(client),
        )
        .await;
    Ok(spent)
}

/// Before a link first proves an address: the one confirming must also
/// hold the account's password (through the throttled check), so the owner
/// of a mailbox cannot be made to confirm an account an attacker registered
/// with it. An unknown or spent link passes here and fails at the spend.
async fn password_holder(
    state: &AppState,
    hash: &str,
    password: Option<String>,
    now: Now,
) -> ApiResult<()> {
    let Some(live) = state
        .store
        .peek_email_token(hash, TokenPurpose::VerifyEmail, now.secs())
        .await?
    else {
        return Ok(());
    };
    let Some(user) = state
        .store
        .user_by_id(&live.user_id)
        .await?
        .filter(|u| u.has_password() && u.email_verified_at.is_none())
    else {
        return Ok(());
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(ApiError::bad_request(
            "password_required",
            "give the account's password to confirm its address",
        ));
    };
    let verified = crate::service::password_check::check(
        state,
        &user.email,
        Some(user.password_hash.clone()),
        password,
        now,
    )
    .await?;
    if !verified.ok {
        return Err(ApiError::forbidden("password is incorrect"));
    }
    Ok(())
}
