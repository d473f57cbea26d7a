//! Password reset by a mailed link (OWASP's Forgot Password cheat sheet:
//! the same answer whether or not the account exists, single-use hashed
//! tokens with a short expiry, a reset ends every session, and no automatic
//! sign-in).

use serde_json::json;

use crate::domain::clock::Now;
use crate::domain::password;
use crate::domain::tokens::refresh_token_hash;
use crate::service::accounts::normalize_email;
use crate::service::context::Client;
use crate::service::email::{
    human_duration, invalid_link, link, mail_not_configured, new_token, notify_password_changed,
};
use crate::service::error::{Error as ApiError, Kind, Result as ApiResult};
use crate::service::mail::templates;
use crate::store::{AuditEvent, Outcome, TokenPurpose};
use crate::AppState;

/// Reset mails per account per hour at most; more requests are answered
/// the same but mail nothing (no mail-bombing a victim).
const RESET_MAILS_PER_HOUR: i64 = 3;

/// Password reset lookups in flight at most, per replica.
static FORGOT_WORK: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(64)));

/// Asks for a reset link to `email`. It returns at once, the same whether
/// or not the account exists: the lookup and the mail happen after, so
/// neither the answer nor its timing tells.
pub fn request_reset(state: &AppState, client: &Client, email: &str) -> ApiResult<()> {
    let email = normalize_email(email)?;
    if state.mailer.is_none() {
        return Err(mail_not_configured());
    }
    let now = state.now();
    let worker = state.clone();
    let client = client.clone();
    // Bounded: a flood of requests must not pile up background work. Past
    // the bound the request is answered the same and dropped (logged).
    match FORGOT_WORK.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                if let Err(e) = mail_reset(&worker, &email, &client, now).await {
                    tracing::error!(error = %e.message, "password reset mail failed");
                }
                drop(permit);
            });
        }
        Err(_) => tracing::warn!("password reset requests over capacity; one dropped"),
    }
    Ok(())
}

async fn mail_reset(state: &AppState, email: &str, client: &Client, now: Now) -> ApiResult<()> {
    let user = state.store.user_by_email(email).await?;
    let event = AuditEvent::new(now.ms, "password_reset_requested")
        .email(email)
        .client(client);
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        state
            .audit(event.outcome(Outcome::Failure, "unknown_or_disabled_account"))
            .await;
        return Ok(());
    };
    let event = event.actor(&user.id).target(&user.id);
    let ttl = state.settings.mail.password_reset_ttl_secs;
    let (token, hash) = new_token()?;
    let created = state
        .store
        .create_email_token(
            &hash,
            &user,
            TokenPurpose::ResetPassword,
            now.secs(),
            now.secs() + ttl,
            now.secs() - 3600,
            RESET_MAILS_PER_HOUR,
        )
        .await?;
    if !created {
        state
            .audit(event.outcome(Outcome::Denied, "too_many_mails"))
            .await;
        return Ok(());
    }
    let mail = templates::password_reset(
        &user.email,
        &link(state, "/auth/password/reset", &token),
        &human_duration(ttl),
    );
    crate::service::mail::send(state, mail).await?;
    state.audit(event).await;
    Ok(())
}

/// Sets a new password with a mailed link's token: every session ends,
/// nobody is signed in.
pub async fn reset_password(
    state: &AppState,
    client: &Client,
    token: &str,
    new_password: String,
) -> ApiResult<()> {
    let now = state.now();
    let hash = refresh_token_hash(token.trim());
    // Checked before the password, and spent only after it passed: a weak
    // choice does not burn the link.
    let live = state
        .store
        .peek_email_token(&hash, TokenPurpose::ResetPassword, now.secs())
        .await?
        .ok_or_else(invalid_link)?;
    if let Some(reason) = password::weakness(&new_password, &live.email) {
        return Err(ApiError::new(Kind::Unprocessable, "weak_password", reason));
    }
    let new_hash = state.hasher.hash(new_password).await?;
    let now = state.now();
    let (spent, records) = state
        .store
        .reset_password(&hash, &new_hash, now.ms, state.revocation_expiry(now))
        .await?
        .ok_or_else(invalid_link)?;
    state.store.clear_login_failures(&spent.email).await?;
    let event = AuditEvent::new(now.ms, "password_reset")
        .actor(&spent.user_id)
        .target(&spent.user_id)
        .email(&spent.email)
        .client(client)
        // The first proof of the mailbox removed the factors and linked
        // accounts set up before it.
        .meta(json!({"first_proof": spent.first_proof}));
    state.sessions_ended(records, event).await;
    notify_password_changed(state, &spent.email, "by a reset link", client).await;
    Ok(())
}
